package httpsource

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"strconv"
	"strings"
)

// document is a JSON body that has been checked to be one well-formed
// value. Paths are looked up and arrays split by a small scanner that only
// tracks strings and nesting (safe because the body is known valid), so a
// page costs one validating pass plus one fast pass, and records are
// sub-slices of the body: never decoded, never copied.
type document struct {
	raw json.RawMessage
}

// parseDocument checks that body is one well-formed JSON value. A syntax
// error names the byte offset.
func parseDocument(body []byte) (document, error) {
	body = bytes.TrimSpace(body)
	if len(body) == 0 {
		return document{}, errors.New("empty body")
	}
	if !json.Valid(body) {
		return document{}, syntaxError(body)
	}
	return document{raw: body}, nil
}

// syntaxError finds and describes the first syntax error in body.
func syntaxError(body []byte) error {
	var v json.RawMessage
	if err := json.Unmarshal(body, &v); err != nil {
		return describeJSONError(err)
	}
	return errors.New("invalid JSON")
}

func describeJSONError(err error) error {
	var se *json.SyntaxError
	if errors.As(err, &se) {
		return fmt.Errorf("invalid JSON at byte offset %d: %w", se.Offset, err)
	}
	return fmt.Errorf("invalid JSON: %w", err)
}

// isObject reports whether the body is a JSON object.
func (d document) isObject() bool { return kind(d.raw) == "an object" }

// lookup returns the raw value at the dot path ("" = the whole body) and
// whether it is there at all.
func (d document) lookup(path string) (json.RawMessage, bool, error) {
	if path == "" {
		return d.raw, true, nil
	}
	segs := strings.Split(path, ".")
	cur := d.raw
	for i, seg := range segs {
		if k := kind(cur); k != "an object" {
			where := "the body"
			if i > 0 {
				where = fmt.Sprintf("%q", strings.Join(segs[:i], "."))
			}
			return nil, false, fmt.Errorf("path %q: %s is %s, not an object", path, where, k)
		}
		v, ok := member(cur, seg)
		if !ok {
			return nil, false, nil
		}
		cur = v
	}
	return cur, true, nil
}

// records returns the elements of the array at path, each exactly as sent.
// A JSON null there counts as no records.
func (d document) records(path string) ([]json.RawMessage, error) {
	raw, ok, err := d.lookup(path)
	if err != nil {
		return nil, err
	}
	if !ok {
		return nil, fmt.Errorf("records path %q is not in the body", path)
	}
	switch kind(raw) {
	case "an array":
	case "null":
		return nil, nil
	default:
		return nil, fmt.Errorf("records path %q holds %s, not an array", displayPath(path), kind(raw))
	}
	return elements(raw), nil
}

// text returns the value at path as a string: a JSON string unquoted, a
// number or boolean as written, and "" when missing, null or empty.
func (d document) text(path string) (string, error) {
	raw, ok, err := d.lookup(path)
	if err != nil || !ok {
		return "", err
	}
	switch kind(raw) {
	case "a string":
		var s string
		if err := json.Unmarshal(raw, &s); err != nil {
			return "", fmt.Errorf("path %q: %w", path, err)
		}
		return s, nil
	case "a number", "a boolean":
		return string(raw), nil
	case "null":
		return "", nil
	default:
		return "", fmt.Errorf("path %q holds %s, not a string or number", path, kind(raw))
	}
}

// integer returns the number at path, and false when it is missing or null.
func (d document) integer(path string) (int, bool, error) {
	s, err := d.text(path)
	if err != nil || s == "" {
		return 0, false, err
	}
	n, err := strconv.Atoi(s)
	if err != nil {
		return 0, false, fmt.Errorf("path %q: %q is not an integer", path, s)
	}
	return n, true, nil
}

// kind names the JSON type of a well-formed raw value.
func kind(raw json.RawMessage) string {
	raw = bytes.TrimSpace(raw)
	if len(raw) == 0 {
		return "nothing"
	}
	switch raw[0] {
	case '{':
		return "an object"
	case '[':
		return "an array"
	case '"':
		return "a string"
	case 'n':
		return "null"
	case 't', 'f':
		return "a boolean"
	default:
		return "a number"
	}
}

func displayPath(p string) string {
	if p == "" {
		return "(body)"
	}
	return p
}

// The scanner below runs on values that json.Valid accepted; its bounds
// checks only keep a bug from becoming a panic.

// member returns the value of key in the object obj (the first one, if
// the key repeats).
func member(obj []byte, key string) (json.RawMessage, bool) {
	i := skipWS(obj, 1)
	for i < len(obj) && obj[i] == '"' {
		kEnd := skipString(obj, i)
		k := obj[i:kEnd]
		i = skipWS(obj, kEnd)
		if i >= len(obj) || obj[i] != ':' {
			break
		}
		vStart := skipWS(obj, i+1)
		vEnd := skipValue(obj, vStart)
		if keyEquals(k, key) {
			return obj[vStart:vEnd:vEnd], true
		}
		i = skipWS(obj, vEnd)
		if i >= len(obj) || obj[i] != ',' {
			break
		}
		i = skipWS(obj, i+1)
	}
	return nil, false
}

// elements splits the array arr into its elements, as sub-slices whose
// capacity ends with the element (appending to one cannot clobber the next).
func elements(arr []byte) []json.RawMessage {
	out := make([]json.RawMessage, 0, 16)
	i := skipWS(arr, 1)
	for i < len(arr) && arr[i] != ']' {
		end := skipValue(arr, i)
		if end <= i {
			break
		}
		out = append(out, arr[i:end:end])
		i = skipWS(arr, end)
		if i >= len(arr) || arr[i] != ',' {
			break
		}
		i = skipWS(arr, i+1)
	}
	return out
}

// keyEquals compares a raw JSON string (with quotes) to key.
func keyEquals(raw []byte, key string) bool {
	if len(raw) < 2 {
		return false
	}
	inner := raw[1 : len(raw)-1]
	if bytes.IndexByte(inner, '\\') < 0 {
		return string(inner) == key
	}
	var s string
	return json.Unmarshal(raw, &s) == nil && s == key
}

// skipValue returns the index just past the value that starts at i.
func skipValue(b []byte, i int) int {
	if i >= len(b) {
		return len(b)
	}
	switch b[i] {
	case '"':
		return skipString(b, i)
	case '{', '[':
		depth := 0
		for i < len(b) {
			switch b[i] {
			case '"':
				i = skipString(b, i)
				continue
			case '{', '[':
				depth++
			case '}', ']':
				depth--
				if depth == 0 {
					return i + 1
				}
			}
			i++
		}
		return len(b)
	default: // number, true, false, null
		for i < len(b) {
			switch b[i] {
			case ',', '}', ']', ' ', '\t', '\n', '\r':
				return i
			}
			i++
		}
		return i
	}
}

// skipString returns the index just past the string whose quote is at i.
func skipString(b []byte, i int) int {
	for i++; i < len(b); {
		j := bytes.IndexByte(b[i:], '"')
		if j < 0 {
			return len(b)
		}
		i += j
		// The quote ends the string unless an odd run of backslashes escapes it.
		k := i
		for k > 0 && b[k-1] == '\\' {
			k--
		}
		if (i-k)%2 == 0 {
			return i + 1
		}
		i++
	}
	return len(b)
}

func skipWS(b []byte, i int) int {
	for i < len(b) && (b[i] == ' ' || b[i] == '\t' || b[i] == '\n' || b[i] == '\r') {
		i++
	}
	return i
}
