package httpsink

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"strconv"
	"strings"
)

// IdempotencyKey derives the idempotency key of a create from the run, the
// record's key and its content: a stable SHA-256 (hex) over canonical JSON
// (object members sorted). The same record of the same run always gets
// the same key, so a retried create is deduplicated by the destination;
// changed content gets a new key, as a new request should.
func IdempotencyKey(runID, key string, row map[string]any) string {
	b, err := json.Marshal([]any{runID, key, row})
	if err != nil {
		// A value JSON cannot hold (NaN, a channel): fmt prints maps sorted.
		b = fmt.Appendf(nil, "%q\x00%q\x00%#v", runID, key, row)
	}
	sum := sha256.Sum256(b)
	return hex.EncodeToString(sum[:])
}

// batchKey is the idempotency key of a batch: a hash of its records' keys.
func batchKey(keys []string) string {
	sum := sha256.Sum256([]byte(strings.Join(keys, "\n")))
	return hex.EncodeToString(sum[:])
}

// decodeJSON decodes a body with numbers kept as json.Number.
func decodeJSON(body []byte) (any, error) {
	dec := json.NewDecoder(bytes.NewReader(body))
	dec.UseNumber()
	var v any
	if err := dec.Decode(&v); err != nil {
		return nil, err
	}
	if dec.More() {
		return nil, fmt.Errorf("data after the JSON value")
	}
	return v, nil
}

// lookup follows a dot path ("customer.id", "items.0.id") into v.
func lookup(v any, path string) (any, bool) {
	if path == "" {
		return v, true
	}
	for seg := range strings.SplitSeq(path, ".") {
		switch x := v.(type) {
		case map[string]any:
			e, ok := x[seg]
			if !ok {
				return nil, false
			}
			v = e
		case []any:
			i, err := strconv.Atoi(seg)
			if err != nil || i < 0 || i >= len(x) {
				return nil, false
			}
			v = x[i]
		default:
			return nil, false
		}
	}
	return v, true
}

// idAt reads the id at path in v: a non-empty string or a number.
func idAt(v any, path string) (string, error) {
	e, ok := lookup(v, path)
	if !ok || e == nil {
		return "", fmt.Errorf("no id at %q", path)
	}
	switch x := e.(type) {
	case string:
		if x != "" {
			return x, nil
		}
	case json.Number:
		return x.String(), nil
	}
	return "", fmt.Errorf("the value at %q is not an id (a non-empty string or a number): %s", path, compact(e))
}

// describe renders an item's error for a person: a string as it is, an
// object's "message" when it has one, anything else as compact JSON.
func describe(v any) string {
	switch x := v.(type) {
	case nil:
		return ""
	case string:
		return x
	case map[string]any:
		if m, ok := x["message"].(string); ok && m != "" {
			return m
		}
	}
	return compact(v)
}

func compact(v any) string {
	b, err := json.Marshal(v)
	if err != nil {
		return fmt.Sprint(v)
	}
	return string(b)
}
