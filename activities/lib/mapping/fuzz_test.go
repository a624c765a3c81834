package mapping

import (
	"bytes"
	"encoding/json"
	"errors"
	"math"
	"reflect"
	"strconv"
	"strings"
	"testing"
	"time"
	"unicode/utf8"
)

// fuzzCasts are the casts a fuzzed field picks from.
var fuzzCasts = []string{"", "string", "int", "float", "bool", "timestamp", "date", "json"}

// fuzzRecord decodes raw as a source record, as the pipeline does.
func fuzzRecord(raw []byte) (Record, bool) {
	d := json.NewDecoder(bytes.NewReader(raw))
	d.UseNumber()
	var src Record
	if err := d.Decode(&src); err != nil || src == nil {
		return nil, false
	}
	return src, true
}

// fuzzLookup follows a dot path the way the mapping documents it: object
// members by name, array elements by a decimal index. ok is false when a
// segment is a number spelled in a way the doc does not pin down ("01",
// "+1") and meets an array.
func fuzzLookup(rec Record, segs []string) (v any, scalarOnPath, ok bool) {
	var cur any = rec
	for _, s := range segs {
		switch c := cur.(type) {
		case map[string]any:
			cur = c[s]
		case []any:
			n, err := strconv.Atoi(s)
			if err == nil && strconv.Itoa(n) != s {
				return nil, false, false
			}
			if err != nil || n < 0 || n >= len(c) {
				return nil, false, true
			}
			cur = c[n]
		case nil:
			return nil, false, true
		default:
			return nil, true, true
		}
	}
	return cur, false, true
}

// fuzzPointer is the RFC 6901 pointer of segs.
func fuzzPointer(segs []string) string {
	var b strings.Builder
	for _, s := range segs {
		b.WriteString("/" + strings.ReplaceAll(strings.ReplaceAll(s, "~", "~0"), "/", "~1"))
	}
	return b.String()
}

// FuzzMapping_FromPath maps one field from any dot path of any record:
// a path with an empty segment is refused when compiling; otherwise the
// output has exactly the configured column, holds the source value
// unchanged when there is no cast (null when the path leads nowhere),
// the input record is left as it was, and every error is a FieldError
// naming the column and the source's JSON pointer.
func FuzzMapping_FromPath(f *testing.F) {
	for _, s := range []struct {
		raw, from string
		cast      uint8
		required  bool
	}{
		{sourceContact, "address.city", 0, false},
		{sourceContact, "tags.1", 7, true},
		{`{"a":{"b":[{"c":"x"}]}}`, "a.b.0.c", 1, false},
		{`{"a":"scalar"}`, "a.b", 0, true},
		{`{"a/b":{"~":1}}`, "a/b.~", 2, false},
		{`{"a":[1,2]}`, "a.01", 0, false},
		{`{"a":null}`, "a", 4, true},
		{`{"a":1}`, "a..b", 0, false},
	} {
		f.Add([]byte(s.raw), s.from, s.cast, s.required)
	}
	f.Fuzz(func(t *testing.T, raw []byte, from string, castIdx uint8, required bool) {
		cast := fuzzCasts[int(castIdx)%len(fuzzCasts)]
		fn, err := Mapping{Fields: []Field{{To: "out", From: from, Cast: cast, Required: required}}}.Compile()
		segs := strings.Split(from, ".")
		emptySeg := false
		for _, s := range segs {
			emptySeg = emptySeg || s == ""
		}
		if (err != nil) != emptySeg {
			t.Fatalf("Compile(From %q) = %v; empty segment: %v", from, err, emptySeg)
		}
		if err != nil {
			return
		}
		src, ok := fuzzRecord(raw)
		if !ok {
			return
		}
		before, _ := json.Marshal(src)
		out, err := fn(src)
		if after, _ := json.Marshal(src); !bytes.Equal(before, after) {
			t.Fatalf("mapping changed its input: %s became %s", before, after)
		}
		want, scalarOnPath, known := fuzzLookup(src, segs)
		if err != nil {
			var fe *FieldError
			if !errors.As(err, &fe) || fe.Field != "out" || fe.Message == "" {
				t.Fatalf("error %v is not a FieldError naming the column", err)
			}
			if fe.Pointer != fuzzPointer(segs) {
				t.Fatalf("error %v points at %q, want %q", err, fe.Pointer, fuzzPointer(segs))
			}
			if known && want == nil && !scalarOnPath && !required {
				t.Fatalf("error %v for a path that leads nowhere, not required", err)
			}
			return
		}
		if len(out) != 1 {
			t.Fatalf("output %v has other columns than out", out)
		}
		v, has := out["out"]
		if !has {
			t.Fatalf("output %v lacks the column", out)
		}
		if !known {
			return
		}
		switch {
		case scalarOnPath:
			t.Fatalf("path %q crosses a scalar in %s, mapped to %v without an error", from, raw, v)
		case want == nil && v != nil:
			t.Fatalf("path %q leads nowhere in %s, mapped to %v", from, raw, v)
		case want == nil && required:
			t.Fatalf("required path %q leads nowhere in %s, no error", from, raw)
		case cast == "" && !reflect.DeepEqual(v, want):
			t.Fatalf("path %q of %s mapped to %#v, want %#v", from, raw, v, want)
		case v == nil && want != nil:
			t.Fatalf("path %q of %s holds %#v, mapped to null", from, raw, want)
		}
	})
}

// FuzzNormalizers checks the string normalisers on any text a JSON record
// can hold (valid UTF-8): each is idempotent (a normalised value
// normalised again does not change, so re-running a sync rewrites
// nothing), collapse_spaces is strings.Fields joined by one space, email
// is trim then lower.
func FuzzNormalizers(f *testing.F) {
	for _, s := range []string{" Ada  Lovelace ", "\tA\u00a0b\u2003c\n", "Ada.Lovelace@Example.COM ", "", " ", "x", "İstanbul", "\u0085a\u0085"} {
		f.Add(s)
	}
	names := []string{"trim", "lower", "upper", "email", "collapse_spaces"}
	fns := map[string]func(string) string{}
	for _, n := range names {
		fn, err := Normalizer([]string{n})
		if err != nil {
			f.Fatal(err)
		}
		fns[n] = fn
	}
	f.Fuzz(func(t *testing.T, s string) {
		if !utf8.ValidString(s) {
			return
		}
		for _, n := range []string{"trim", "email", "collapse_spaces"} {
			once := fns[n](s)
			if twice := fns[n](once); twice != once {
				t.Fatalf("%s is not idempotent on %q: %q then %q", n, s, once, twice)
			}
		}
		if got, want := fns["collapse_spaces"](s), strings.Join(strings.Fields(s), " "); got != want {
			t.Fatalf("collapse_spaces(%q) = %q, want %q", s, got, want)
		}
		if got, want := fns["email"](s), strings.ToLower(strings.TrimSpace(s)); got != want {
			t.Fatalf("email(%q) = %q, want %q", s, got, want)
		}
		chain, err := Normalizer(names)
		if err != nil {
			t.Fatal(err)
		}
		want := s
		for _, n := range names {
			want = fns[n](want)
		}
		if got := chain(s); got != want {
			t.Fatalf("chain(%q) = %q, want %q (each in order)", s, got, want)
		}
	})
}

// FuzzMapping_Idempotent maps a record's "v" with each cast, then maps
// the output again: a cast value cast again stays the same (a row read
// back and re-mapped is not rewritten), and a cast's output has the Go
// type the cast promises.
func FuzzMapping_Idempotent(f *testing.F) {
	for _, s := range []string{`{"v": 1}`, `{"v": "12.0"}`, `{"v": "1e3"}`, `{"v": 9007199254740993}`, `{"v": "2026-01-02T03:04:05.123+02:00"}`,
		`{"v": "2026-02-03"}`, `{"v": true}`, `{"v": "yes"}`, `{"v": [1, {"a": null}]}`, `{"v": -0.0}`, `{"v": "1e400"}`, `{"v": null}`} {
		f.Add([]byte(s))
	}
	fns := map[string]Func{}
	for _, c := range fuzzCasts {
		fn, err := Mapping{Fields: []Field{{To: "v", From: "v", Cast: c}}}.Compile()
		if err != nil {
			f.Fatal(err)
		}
		fns[c] = fn
	}
	f.Fuzz(func(t *testing.T, raw []byte) {
		src, ok := fuzzRecord(raw)
		if !ok {
			return
		}
		for _, c := range fuzzCasts {
			once, err := fns[c](src)
			if err != nil {
				continue
			}
			v := once["v"]
			typeOK := true
			switch c {
			case "string":
				_, typeOK = v.(string)
			case "int":
				_, typeOK = v.(int64)
			case "float":
				x, isFloat := v.(float64)
				typeOK = isFloat && !math.IsNaN(x) && !math.IsInf(x, 0)
			case "bool":
				_, typeOK = v.(bool)
			case "timestamp", "date":
				tm, isTime := v.(time.Time)
				typeOK = isTime && tm.Location() == time.UTC
				if c == "date" && isTime {
					typeOK = typeOK && tm.Hour() == 0 && tm.Minute() == 0 && tm.Second() == 0 && tm.Nanosecond() == 0
				}
			}
			if v != nil && !typeOK {
				t.Fatalf("cast %q of %s gave %#v", c, raw, v)
			}
			twice, err := fns[c](once)
			if err != nil {
				t.Fatalf("cast %q of %s gave %#v, which the cast refuses: %v", c, raw, v, err)
			}
			if !reflect.DeepEqual(once, twice) {
				t.Fatalf("cast %q is not idempotent on %s: %#v then %#v", c, raw, once["v"], twice["v"])
			}
		}
	})
}
