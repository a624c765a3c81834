// Package record reads fields of decoded JSON records: a dot path's value,
// its text as a key or cursor, its JSON Pointer for error messages, and
// the (cursor, key) of the last record of a page.
package record

import (
	"encoding/json"
	"fmt"
	"strings"

	"github.com/tetherflow/tether/activities/lib/cursor"
	"github.com/tetherflow/tether/activities/lib/schema"
)

// Path splits a dot path ("address.city"); nil for "".
func Path(p string) []string {
	if p == "" {
		return nil
	}
	return strings.Split(p, ".")
}

// Pointer is the JSON Pointer of a path ("/address/city").
func Pointer(path []string) string {
	if len(path) == 0 {
		return ""
	}
	var b strings.Builder
	for _, p := range path {
		b.WriteByte('/')
		b.WriteString(pointerEscaper.Replace(p))
	}
	return b.String()
}

// pointerEscaper escapes a JSON Pointer's reference token (RFC 6901): "~"
// as "~0", then "/" as "~1".
var pointerEscaper = strings.NewReplacer("~", "~0", "/", "~1")

// Lookup returns the value at path in rec, or nil.
func Lookup(rec map[string]any, path []string) any {
	var cur any = rec
	for _, p := range path {
		m, ok := cur.(map[string]any)
		if !ok {
			return nil
		}
		cur = m[p]
	}
	return cur
}

// Scalar renders a key or cursor value; false for absent, null, empty or
// non-scalar values.
func Scalar(v any) (string, bool) {
	switch x := v.(type) {
	case string:
		return x, x != ""
	case json.Number:
		return x.String(), true
	case bool:
		return fmt.Sprint(x), true
	case float64, int, int64:
		return fmt.Sprint(x), true
	}
	return "", false
}

// Kind names a decoded JSON value's type, for error messages.
func Kind(v any) string {
	switch v.(type) {
	case nil:
		return "null"
	case []any:
		return "array"
	case string:
		return "string"
	case json.Number, float64:
		return "number"
	case bool:
		return "boolean"
	case map[string]any:
		return "object"
	}
	return fmt.Sprintf("%T", v)
}

// Object decodes raw as a JSON object (numbers as json.Number).
func Object(raw []byte) (map[string]any, bool) {
	v, err := schema.Decode(raw)
	if err != nil {
		return nil, false
	}
	rec, ok := v.(map[string]any)
	return rec, ok
}

// Last returns the (cursor, key) of the last record of the page that has
// both.
func Last(records []json.RawMessage, cursorPath, keyPath []string) cursor.Checkpoint {
	for i := len(records) - 1; i >= 0; i-- {
		rec, ok := Object(records[i])
		if !ok {
			continue
		}
		cur, ok1 := Scalar(Lookup(rec, cursorPath))
		key, ok2 := Scalar(Lookup(rec, keyPath))
		if ok1 && ok2 {
			return cursor.Checkpoint{Cursor: cur, Key: key}
		}
	}
	return cursor.Checkpoint{}
}
