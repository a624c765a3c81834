package pgsink

import (
	"encoding/json"
	"fmt"
	"strconv"
	"strings"
	"time"
)

// KeyString returns a stable text form of a row's key, such as
// `id=42` or `tenant="acme", id=7`, for logs and quarantine entries. A
// missing or nil key value shows as NULL.
func KeyString(row Row, key []string) string {
	var b strings.Builder
	for i, k := range key {
		if i > 0 {
			b.WriteString(", ")
		}
		b.WriteString(k)
		b.WriteByte('=')
		b.WriteString(keyValue(row[k]))
	}
	return b.String()
}

// keyValue renders one key value the same way every time.
func keyValue(v any) string {
	switch x := v.(type) {
	case nil:
		return "NULL"
	case string:
		return strconv.Quote(x)
	case json.Number:
		return x.String()
	case bool:
		return strconv.FormatBool(x)
	case float64:
		return strconv.FormatFloat(x, 'g', -1, 64)
	case time.Time:
		return x.Format(time.RFC3339Nano)
	}
	if i, ok := asInt64(v); ok {
		return strconv.FormatInt(i, 10)
	}
	if b, err := json.Marshal(v); err == nil {
		return string(b)
	}
	return fmt.Sprint(v)
}
