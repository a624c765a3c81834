package twoway

import (
	"encoding/json"
	"math"
	"strconv"
)

// equal reports whether a and b are the same JSON value: objects whatever
// their key order, numbers by value (1, 1.0 and json.Number("1") are
// equal; integers beyond float64's precision compare exactly).
func equal(a, b any) bool {
	ca, errA := json.Marshal(normalize(a))
	cb, errB := json.Marshal(normalize(b))
	return errA == nil && errB == nil && string(ca) == string(cb)
}

// Equal reports whether two records hold the same values.
func Equal(a, b Record) bool { return equal(a, b) }

func normalize(v any) any {
	switch x := v.(type) {
	case map[string]any:
		m := make(map[string]any, len(x))
		for k, e := range x {
			m[k] = normalize(e)
		}
		return m
	case []any:
		s := make([]any, len(x))
		for i, e := range x {
			s[i] = normalize(e)
		}
		return s
	case json.Number:
		if n, err := strconv.ParseInt(string(x), 10, 64); err == nil {
			return n
		}
		if f, err := x.Float64(); err == nil {
			return number(f)
		}
		return string(x)
	case float64:
		return number(x)
	case float32:
		return number(float64(x))
	case int:
		return int64(x)
	case int32:
		return int64(x)
	}
	return v
}

// number is f as an int64 when it is a whole number float64 holds
// exactly, so that 1.0 and 1 compare equal.
func number(f float64) any {
	if f == math.Trunc(f) && math.Abs(f) <= 1<<53 {
		return int64(f)
	}
	return f
}
