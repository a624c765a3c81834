package mapping

import (
	"encoding/json"
	"fmt"
	"math"
	"strconv"
	"strings"
	"time"
	"unicode"
	"unicode/utf8"
)

// caster converts a non-null value; problem is empty on success.
type caster struct {
	name string
	fn   func(v any) (out any, problem string)
}

// normalizer rewrites a string.
type normalizer struct {
	name string
	fn   func(string) string
}

// casterFor returns the cast with the given name; "" keeps the value.
func casterFor(name string) (caster, bool) {
	switch name {
	case "":
		return caster{}, true
	case "string":
		return caster{name, castString}, true
	case "int":
		return caster{name, castInt}, true
	case "float":
		return caster{name, castFloat}, true
	case "bool":
		return caster{name, castBool}, true
	case "timestamp":
		return caster{name, castTimestamp}, true
	case "date":
		return caster{name, castDate}, true
	case "json":
		return caster{name, castJSON}, true
	}
	return caster{}, false
}

const castNames = `"", "string", "int", "float", "bool", "timestamp", "date", "json"`

// normalizerFor returns the normaliser with the given name.
func normalizerFor(name string) (normalizer, bool) {
	switch name {
	case "trim":
		return normalizer{name, strings.TrimSpace}, true
	case "lower":
		return normalizer{name, strings.ToLower}, true
	case "upper":
		return normalizer{name, strings.ToUpper}, true
	case "email":
		return normalizer{name, normalizeEmail}, true
	case "collapse_spaces":
		return normalizer{name, collapseSpaces}, true
	}
	return normalizer{}, false
}

const normalizerNames = `"trim", "lower", "upper", "email", "collapse_spaces"`

// normalizeEmail trims and lower-cases an address.
func normalizeEmail(s string) string { return strings.ToLower(strings.TrimSpace(s)) }

func castString(v any) (any, string) {
	switch x := v.(type) {
	case string:
		return v, ""
	case json.Number:
		return string(x), ""
	case bool:
		return strconv.FormatBool(x), ""
	case int64:
		return strconv.FormatInt(x, 10), ""
	case int:
		return strconv.Itoa(x), ""
	case float64:
		return strconv.FormatFloat(x, 'g', -1, 64), ""
	case time.Time:
		return x.Format(time.RFC3339Nano), ""
	}
	return nil, "not a scalar (" + kindOf(v) + ")"
}

func castInt(v any) (any, string) {
	switch x := v.(type) {
	case json.Number:
		return parseInt(string(x))
	case string:
		return parseInt(x)
	case int64:
		return x, ""
	case int:
		return int64(x), ""
	case int32:
		return int64(x), ""
	case float64:
		return floatToInt(x)
	}
	return nil, "not a number (" + kindOf(v) + ")"
}

// parseInt accepts integers, and decimals or exponents with an integral
// value ("12.0", "1e3").
func parseInt(s string) (any, string) {
	n, err := strconv.ParseInt(s, 10, 64)
	if err == nil {
		return n, ""
	}
	if ne, ok := err.(*strconv.NumError); ok && ne.Err == strconv.ErrRange {
		return nil, "out of range for a 64-bit integer"
	}
	f, err := strconv.ParseFloat(s, 64)
	if err != nil || isNonFinite(s) {
		return nil, "not a number"
	}
	return floatToInt(f)
}

func floatToInt(f float64) (any, string) {
	switch {
	case math.IsNaN(f) || math.IsInf(f, 0):
		return nil, "not a finite number"
	case f != math.Trunc(f):
		return nil, "not an integer"
	case f < -9.223372036854775808e18 || f >= 9.223372036854775808e18:
		return nil, "out of range for a 64-bit integer"
	}
	return int64(f), ""
}

// isNonFinite tells whether strconv would read s as NaN or an infinity,
// which JSON has no words for.
func isNonFinite(s string) bool {
	s = strings.TrimLeft(s, "+-")
	return len(s) > 0 && (s[0] == 'n' || s[0] == 'N' || s[0] == 'i' || s[0] == 'I')
}

func castFloat(v any) (any, string) {
	var s string
	switch x := v.(type) {
	case json.Number:
		s = string(x)
	case string:
		s = x
	case float64:
		return x, ""
	case int64:
		return float64(x), ""
	case int:
		return float64(x), ""
	default:
		return nil, "not a number (" + kindOf(v) + ")"
	}
	f, err := strconv.ParseFloat(s, 64)
	switch {
	case isNonFinite(s):
		return nil, "not a finite number"
	case err != nil && err.(*strconv.NumError).Err == strconv.ErrRange:
		return nil, "out of range for a 64-bit float"
	case err != nil:
		return nil, "not a number"
	}
	return f, ""
}

func castBool(v any) (any, string) {
	switch x := v.(type) {
	case bool:
		return x, ""
	case string:
		switch x {
		case "true", "TRUE", "True", "t", "1", "yes":
			return true, ""
		case "false", "FALSE", "False", "f", "0", "no":
			return false, ""
		}
	case json.Number:
		switch x {
		case "1":
			return true, ""
		case "0":
			return false, ""
		}
	case int64, int:
		switch x {
		case int64(1), 1:
			return true, ""
		case int64(0), 0:
			return false, ""
		}
	}
	return nil, "not a boolean"
}

func castTimestamp(v any) (any, string) {
	switch x := v.(type) {
	case string:
		t, err := time.Parse(time.RFC3339Nano, x)
		if err != nil {
			return nil, "not an RFC 3339 timestamp"
		}
		return t.UTC(), ""
	case time.Time:
		return x.UTC(), ""
	}
	return nil, "not an RFC 3339 timestamp (" + kindOf(v) + ")"
}

func castDate(v any) (any, string) {
	var t time.Time
	switch x := v.(type) {
	case string:
		var err error
		if len(x) == len(time.DateOnly) {
			t, err = time.Parse(time.DateOnly, x)
		} else {
			t, err = time.Parse(time.RFC3339Nano, x)
		}
		if err != nil {
			return nil, "not a date (2006-01-02) or RFC 3339 timestamp"
		}
	case time.Time:
		t = x
	default:
		return nil, "not a date (" + kindOf(v) + ")"
	}
	y, m, d := t.UTC().Date()
	return time.Date(y, m, d, 0, 0, 0, 0, time.UTC), ""
}

func castJSON(v any) (any, string) {
	switch v.(type) {
	case map[string]any, []any, string, json.Number, bool, float64:
		return v, ""
	}
	return nil, "not a JSON value (" + kindOf(v) + ")"
}

// collapseSpaces trims s and turns each run of white space into one space,
// without allocating when s is already in that form.
func collapseSpaces(s string) string {
	clean := true
	prevSpace := true // a leading space is not clean
	for _, r := range s {
		sp := unicode.IsSpace(r)
		if sp && (prevSpace || r != ' ') {
			clean = false
			break
		}
		prevSpace = sp
	}
	if clean && !prevSpace || s == "" {
		return s
	}
	var b strings.Builder
	b.Grow(len(s))
	pending := false // a space is due before the next word
	for _, r := range s {
		if unicode.IsSpace(r) {
			pending = b.Len() > 0
			continue
		}
		if pending {
			b.WriteByte(' ')
			pending = false
		}
		b.WriteRune(r)
	}
	return b.String()
}

// kindOf names the JSON kind of a value for messages.
func kindOf(v any) string {
	switch v.(type) {
	case nil:
		return "null"
	case string:
		return "a string"
	case json.Number, float64, float32, int, int64, int32:
		return "a number"
	case bool:
		return "a boolean"
	case map[string]any:
		return "an object"
	case []any:
		return "an array"
	case time.Time:
		return "a time"
	}
	return fmt.Sprintf("a Go %T", v)
}

// describe renders a value for a message: strings quoted, long ones cut.
func describe(v any) string {
	const maxLen = 64
	var s string
	switch x := v.(type) {
	case string:
		if len(x) > maxLen {
			cut := maxLen
			for cut > 0 && !utf8.RuneStart(x[cut]) {
				cut--
			}
			return strconv.Quote(x[:cut]) + "…"
		}
		return strconv.Quote(x)
	case map[string]any:
		return "an object"
	case []any:
		return "an array"
	case json.Number:
		s = string(x)
	default:
		s = fmt.Sprint(x)
	}
	if len(s) > maxLen {
		s = s[:maxLen] + "…"
	}
	return s
}

// Normalizer returns the named normalisers chained in order, as a
// Field's Normalize applies them; an unknown name is an error naming it.
func Normalizer(names []string) (func(string) string, error) {
	fns := make([]func(string) string, 0, len(names))
	for _, name := range names {
		n, ok := normalizerFor(name)
		if !ok {
			return nil, fmt.Errorf("unknown normaliser %q (want one of %s)", name, normalizerNames)
		}
		fns = append(fns, n.fn)
	}
	return func(s string) string {
		for _, fn := range fns {
			s = fn(s)
		}
		return s
	}, nil
}
