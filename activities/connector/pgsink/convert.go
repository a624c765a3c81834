package pgsink

import (
	"encoding/json"
	"fmt"
	"math"
	"math/big"
	"reflect"
	"strconv"
	"strings"
	"time"
	"unicode/utf8"
)

// SQLSTATE codes the sink reports for rows it refuses before they reach
// PostgreSQL, chosen to match what PostgreSQL would have said.
const (
	stateInvalidText  = "22P02" // invalid_text_representation
	stateOutOfRange   = "22003" // numeric_value_out_of_range
	stateBadCharacter = "22021" // character_not_in_repertoire
	stateNotNull      = "23502" // not_null_violation
)

// valueError is a value that cannot be stored in its column.
type valueError struct {
	state string
	msg   string
}

// convertFunc turns a decoded JSON value into the text PostgreSQL reads for
// one column type in COPY, or nil for NULL.
type convertFunc func(v any) (any, *valueError)

// converterFor returns the conversion for a column type from the allow-list.
func converterFor(typ string) convertFunc {
	switch typ {
	case TypeText:
		return toText
	case TypeInteger:
		return func(v any) (any, *valueError) { return toInt(v, 32, "integer") }
	case TypeBigint:
		return func(v any) (any, *valueError) { return toInt(v, 64, "bigint") }
	case TypeNumeric:
		return toNumeric
	case TypeDoublePrecision:
		return toFloat
	case TypeBoolean:
		return toBool
	case TypeTimestamptz:
		return toTimestamptz
	case TypeDate:
		return toDate
	case TypeUUID:
		return toUUID
	case TypeJSONB:
		return toJSONB
	case TypeTextArray:
		return toTextArray
	}
	return func(any) (any, *valueError) {
		return nil, &valueError{stateInvalidText, fmt.Sprintf("unsupported column type %q", typ)}
	}
}

// invalid builds the error for a value of the wrong kind or syntax.
func invalid(v any, want string) *valueError {
	return &valueError{stateInvalidText, fmt.Sprintf("cannot convert %s to %s", describe(v), want)}
}

// describe shows a value in an error message without flooding it.
func describe(v any) string {
	var s string
	switch x := v.(type) {
	case string:
		s = strconv.Quote(x)
	case json.Number:
		s = "number " + x.String()
	case map[string]any:
		return "an object"
	case []any:
		return "an array"
	default:
		s = fmt.Sprintf("%T %v", v, v)
	}
	const max = 60
	if len(s) > max {
		s = s[:max] + "…"
	}
	return s
}

// checkString refuses text PostgreSQL cannot store: NUL bytes and invalid
// UTF-8.
func checkString(s string) *valueError {
	if strings.IndexByte(s, 0) >= 0 {
		return &valueError{stateBadCharacter, "text contains a NUL byte (\\u0000), which PostgreSQL cannot store"}
	}
	if !utf8.ValidString(s) {
		return &valueError{stateBadCharacter, "text is not valid UTF-8"}
	}
	return nil
}

// toText accepts strings and scalars (numbers and booleans as written).
func toText(v any) (any, *valueError) {
	switch x := v.(type) {
	case nil:
		return nil, nil
	case string:
		if e := checkString(x); e != nil {
			return nil, e
		}
		return x, nil
	case json.Number:
		return x.String(), nil
	case bool:
		return strconv.FormatBool(x), nil
	case float64:
		return strconv.FormatFloat(x, 'g', -1, 64), nil
	case time.Time:
		return x.Format(time.RFC3339Nano), nil
	}
	if i, ok := asInt64(v); ok {
		return strconv.FormatInt(i, 10), nil
	}
	return nil, invalid(v, "text")
}

// asInt64 reports v as an int64 when it is a Go integer that fits.
func asInt64(v any) (int64, bool) {
	rv := reflect.ValueOf(v)
	switch rv.Kind() {
	case reflect.Int, reflect.Int8, reflect.Int16, reflect.Int32, reflect.Int64:
		return rv.Int(), true
	case reflect.Uint, reflect.Uint8, reflect.Uint16, reflect.Uint32, reflect.Uint64:
		if u := rv.Uint(); u <= math.MaxInt64 {
			return int64(u), true
		}
	}
	return 0, false
}

// isDecimal reports whether s is a plain decimal number, optionally with an
// exponent (JSON number syntax, leading zeros and a leading '+' allowed).
func isDecimal(s string) bool {
	i := 0
	if i < len(s) && (s[i] == '+' || s[i] == '-') {
		i++
	}
	digits := 0
	for i < len(s) && s[i] >= '0' && s[i] <= '9' {
		i++
		digits++
	}
	if i < len(s) && s[i] == '.' {
		i++
		for i < len(s) && s[i] >= '0' && s[i] <= '9' {
			i++
			digits++
		}
	}
	if digits == 0 {
		return false
	}
	if i < len(s) && (s[i] == 'e' || s[i] == 'E') {
		i++
		if i < len(s) && (s[i] == '+' || s[i] == '-') {
			i++
		}
		start := i
		for i < len(s) && s[i] >= '0' && s[i] <= '9' {
			i++
		}
		if i == start || i-start > 4 { // exponents beyond ±9999 are out of range
			return false
		}
	}
	return i == len(s)
}

// toInt accepts integers of any Go type, integral floats, and numbers or
// numeric strings with an integral value, within bits.
func toInt(v any, bits int, typ string) (any, *valueError) {
	lo, hi := int64(math.MinInt32), int64(math.MaxInt32)
	if bits == 64 {
		lo, hi = math.MinInt64, math.MaxInt64
	}
	outOfRange := func() *valueError {
		return &valueError{stateOutOfRange, fmt.Sprintf("%s is out of range for %s", describe(v), typ)}
	}
	var s string
	switch x := v.(type) {
	case nil:
		return nil, nil
	case json.Number:
		s = x.String()
	case string:
		s = strings.TrimSpace(x)
	case float64:
		if x != math.Trunc(x) || math.IsInf(x, 0) || math.IsNaN(x) {
			return nil, invalid(v, typ)
		}
		if x < float64(lo) || x >= -float64(lo) {
			return nil, outOfRange()
		}
		return strconv.FormatInt(int64(x), 10), nil
	case bool:
		return nil, invalid(v, typ)
	default:
		if i, ok := asInt64(v); ok {
			if i < lo || i > hi {
				return nil, outOfRange()
			}
			return strconv.FormatInt(i, 10), nil
		}
		return nil, invalid(v, typ)
	}
	if i, err := strconv.ParseInt(s, 10, bits); err == nil {
		return strconv.FormatInt(i, 10), nil
	} else if ne, ok := err.(*strconv.NumError); ok && ne.Err == strconv.ErrRange {
		return nil, outOfRange()
	}
	if !isDecimal(s) {
		return nil, invalid(v, typ)
	}
	r, ok := new(big.Rat).SetString(s) // exact: "1e3", "42.0"
	if !ok || !r.IsInt() {
		return nil, invalid(v, typ)
	}
	n := r.Num()
	if !n.IsInt64() || n.Int64() < lo || n.Int64() > hi {
		return nil, outOfRange()
	}
	return n.String(), nil
}

// toNumeric accepts numbers and numeric strings exactly as written.
func toNumeric(v any) (any, *valueError) {
	switch x := v.(type) {
	case nil:
		return nil, nil
	case json.Number:
		if !isDecimal(x.String()) {
			return nil, invalid(v, "numeric")
		}
		return x.String(), nil
	case string:
		s := strings.TrimSpace(x)
		switch strings.ToLower(s) {
		case "nan", "infinity", "+infinity", "-infinity":
			return s, nil
		}
		if !isDecimal(s) {
			return nil, invalid(v, "numeric")
		}
		return s, nil
	case float64:
		return formatFloat(x), nil
	case float32:
		return formatFloat(float64(x)), nil
	case bool:
		return nil, invalid(v, "numeric")
	}
	if i, ok := asInt64(v); ok {
		return strconv.FormatInt(i, 10), nil
	}
	return nil, invalid(v, "numeric")
}

// formatFloat writes f as PostgreSQL reads it (NaN and infinities by name).
func formatFloat(f float64) string {
	switch {
	case math.IsNaN(f):
		return "NaN"
	case math.IsInf(f, 1):
		return "Infinity"
	case math.IsInf(f, -1):
		return "-Infinity"
	}
	return strconv.FormatFloat(f, 'g', -1, 64)
}

// toFloat accepts numbers and numeric strings within double precision.
func toFloat(v any) (any, *valueError) {
	var s string
	switch x := v.(type) {
	case nil:
		return nil, nil
	case float64:
		return formatFloat(x), nil
	case float32:
		return formatFloat(float64(x)), nil
	case json.Number:
		s = x.String()
	case string:
		s = strings.TrimSpace(x)
		switch strings.ToLower(s) {
		case "nan", "infinity", "+infinity", "-infinity", "inf", "+inf", "-inf":
			f, _ := strconv.ParseFloat(s, 64)
			return formatFloat(f), nil
		}
	case bool:
		return nil, invalid(v, "double precision")
	default:
		if i, ok := asInt64(v); ok {
			return formatFloat(float64(i)), nil
		}
		return nil, invalid(v, "double precision")
	}
	if !isDecimal(s) {
		return nil, invalid(v, "double precision")
	}
	f, err := strconv.ParseFloat(s, 64)
	if err != nil {
		return nil, &valueError{stateOutOfRange, fmt.Sprintf("%s is out of range for double precision", describe(v))}
	}
	return formatFloat(f), nil
}

// toBool accepts booleans and the strings strconv.ParseBool reads.
func toBool(v any) (any, *valueError) {
	switch x := v.(type) {
	case nil:
		return nil, nil
	case bool:
		return strconv.FormatBool(x), nil
	case string:
		b, err := strconv.ParseBool(strings.TrimSpace(x))
		if err != nil {
			return nil, invalid(v, "boolean")
		}
		return strconv.FormatBool(b), nil
	}
	return nil, invalid(v, "boolean")
}

// timeLayouts are the timestamp forms accepted from strings: RFC 3339, also
// with a space between date and time. A time zone is required.
func timeLayouts() []string {
	return []string{time.RFC3339Nano, "2006-01-02 15:04:05.999999999Z07:00"}
}

// checkYear keeps timestamps within what both Go formatting and PostgreSQL
// agree on.
func checkYear(t time.Time, v any, typ string) *valueError {
	if y := t.Year(); y < 1 || y > 9999 {
		return &valueError{stateOutOfRange, fmt.Sprintf("%s is out of range for %s (years 1-9999)", describe(v), typ)}
	}
	return nil
}

// toTimestamptz accepts time.Time and RFC 3339 strings with a time zone.
func toTimestamptz(v any) (any, *valueError) {
	var t time.Time
	switch x := v.(type) {
	case nil:
		return nil, nil
	case time.Time:
		t = x
	case string:
		s := strings.TrimSpace(x)
		var err error
		for _, layout := range timeLayouts() {
			if t, err = time.Parse(layout, s); err == nil {
				break
			}
		}
		if err != nil {
			return nil, &valueError{stateInvalidText,
				fmt.Sprintf("cannot convert %s to timestamptz: want RFC 3339 with a time zone, e.g. 2024-05-01T12:00:00Z", describe(v))}
		}
	default:
		return nil, invalid(v, "timestamptz")
	}
	if e := checkYear(t, v, "timestamptz"); e != nil {
		return nil, e
	}
	return t.Format(time.RFC3339Nano), nil
}

// toDate accepts YYYY-MM-DD strings, RFC 3339 timestamps (their date as
// written) and time.Time (its date in its own location).
func toDate(v any) (any, *valueError) {
	var t time.Time
	switch x := v.(type) {
	case nil:
		return nil, nil
	case time.Time:
		t = x
	case string:
		s := strings.TrimSpace(x)
		var err error
		for _, layout := range append([]string{time.DateOnly}, timeLayouts()...) {
			if t, err = time.Parse(layout, s); err == nil {
				break
			}
		}
		if err != nil {
			return nil, &valueError{stateInvalidText, fmt.Sprintf("cannot convert %s to date: want YYYY-MM-DD", describe(v))}
		}
	default:
		return nil, invalid(v, "date")
	}
	if e := checkYear(t, v, "date"); e != nil {
		return nil, e
	}
	return t.Format(time.DateOnly), nil
}

// toUUID accepts UUID strings (any case, with or without dashes or braces)
// and writes the canonical form.
func toUUID(v any) (any, *valueError) {
	switch x := v.(type) {
	case nil:
		return nil, nil
	case string:
		s := strings.TrimSuffix(strings.TrimPrefix(strings.TrimSpace(x), "{"), "}")
		if len(s) == 36 && s[8] == '-' && s[13] == '-' && s[18] == '-' && s[23] == '-' {
			s = s[:8] + s[9:13] + s[14:18] + s[19:23] + s[24:]
		}
		if len(s) != 32 {
			return nil, invalid(v, "uuid")
		}
		for i := 0; i < len(s); i++ {
			c := s[i]
			if !('0' <= c && c <= '9' || 'a' <= c && c <= 'f' || 'A' <= c && c <= 'F') {
				return nil, invalid(v, "uuid")
			}
		}
		s = strings.ToLower(s)
		return s[:8] + "-" + s[8:12] + "-" + s[12:16] + "-" + s[16:20] + "-" + s[20:], nil
	}
	return nil, invalid(v, "uuid")
}

// toJSONB marshals any value to JSON text; Go nil is SQL NULL.
func toJSONB(v any) (any, *valueError) {
	if v == nil {
		return nil, nil
	}
	if e := checkJSONStrings(v); e != nil {
		return nil, e
	}
	b, err := json.Marshal(v)
	if err != nil {
		return nil, &valueError{stateInvalidText, fmt.Sprintf("cannot convert %s to jsonb: %v", describe(v), err)}
	}
	return string(b), nil
}

// checkJSONStrings refuses strings jsonb cannot hold (\u0000) anywhere in v.
func checkJSONStrings(v any) *valueError {
	switch x := v.(type) {
	case string:
		if strings.IndexByte(x, 0) >= 0 {
			return &valueError{stateBadCharacter, "jsonb cannot hold a string containing \\u0000"}
		}
	case map[string]any:
		for k, e := range x {
			if err := checkJSONStrings(k); err != nil {
				return err
			}
			if err := checkJSONStrings(e); err != nil {
				return err
			}
		}
	case []any:
		for _, e := range x {
			if err := checkJSONStrings(e); err != nil {
				return err
			}
		}
	}
	return nil
}

// toTextArray accepts []string and []any of scalars (nil elements are NULL)
// and writes a PostgreSQL array literal.
func toTextArray(v any) (any, *valueError) {
	var elems []any
	switch x := v.(type) {
	case nil:
		return nil, nil
	case []string:
		elems = make([]any, len(x))
		for i, s := range x {
			elems[i] = s
		}
	case []any:
		elems = x
	default:
		return nil, invalid(v, "text[]")
	}
	var b strings.Builder
	b.WriteByte('{')
	for i, e := range elems {
		if i > 0 {
			b.WriteByte(',')
		}
		if e == nil {
			b.WriteString("NULL")
			continue
		}
		switch e.(type) {
		case map[string]any, []any:
			return nil, &valueError{stateInvalidText, fmt.Sprintf("cannot convert element %d (%s) to text", i, describe(e))}
		}
		s, verr := toText(e)
		if verr != nil {
			return nil, &valueError{verr.state, fmt.Sprintf("element %d: %s", i, verr.msg)}
		}
		b.WriteByte('"')
		for _, r := range s.(string) {
			if r == '"' || r == '\\' {
				b.WriteByte('\\')
			}
			b.WriteRune(r)
		}
		b.WriteByte('"')
	}
	b.WriteByte('}')
	return b.String(), nil
}
