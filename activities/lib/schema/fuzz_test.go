package schema

import (
	"encoding/json"
	"strconv"
	"strings"
	"testing"
	"testing/fstest"
	"unicode/utf8"
)

// pointersSchema fails records in ways whose errors point at properties
// of any name: unknown ones, pattern ones, nested ones, dependent ones.
const pointersSchema = `{
  "$schema": "https://json-schema.org/draft/2020-12/schema",
  "type": "object",
  "required": ["id"],
  "properties": {
    "id": {"type": "integer"},
    "tags": {"type": "array", "items": {"type": "string"}, "uniqueItems": true},
    "nested": {"type": "object", "additionalProperties": {"type": "integer"}, "propertyNames": {"maxLength": 5}},
    "a b": {}, "c/d": {}, "e~f": {}
  },
  "patternProperties": {"^x-": {"type": "string"}},
  "dependentRequired": {"a b": ["c/d", "e~f"]},
  "additionalProperties": false
}`

// namesSchema holds the value of every property of any name to one type.
const namesSchema = `{"type": "object", "additionalProperties": {"type": "integer"}}`

// resolvePointer follows an RFC 6901 pointer in a decoded value.
func resolvePointer(doc any, ptr string) (any, bool) {
	if ptr == "" {
		return doc, true
	}
	if ptr[0] != '/' {
		return nil, false
	}
	cur := doc
	for _, tok := range strings.Split(ptr[1:], "/") {
		tok = strings.ReplaceAll(strings.ReplaceAll(tok, "~1", "/"), "~0", "~")
		switch c := cur.(type) {
		case map[string]any:
			v, ok := c[tok]
			if !ok {
				return nil, false
			}
			cur = v
		case []any:
			i, err := strconv.Atoi(tok)
			if err != nil || strconv.Itoa(i) != tok || i < 0 || i >= len(c) {
				return nil, false
			}
			cur = c[i]
		default:
			return nil, false
		}
	}
	return cur, true
}

// escapeToken escapes a property name as an RFC 6901 reference token.
func escapeToken(s string) string {
	return strings.ReplaceAll(strings.ReplaceAll(s, "~", "~0"), "/", "~1")
}

// fuzzRegistry is the shipped schemas, the test ones and pointersSchema.
func fuzzRegistry(f *testing.F) *Registry {
	fsys := testFS(f).(fstest.MapFS)
	fsys["pointers.schema.json"] = &fstest.MapFile{Data: []byte(pointersSchema)}
	fsys["names.schema.json"] = &fstest.MapFile{Data: []byte(namesSchema)}
	reg, err := NewRegistry(fsys)
	if err != nil {
		f.Fatal(err)
	}
	return reg
}

// FuzzValidate_ErrorPointers checks that a record either validates or
// every error names a path of the record (RFC 6901): the offending
// value, the property that is not allowed, or, for a missing property,
// the object that lacks it.
func FuzzValidate_ErrorPointers(f *testing.F) {
	reg := fuzzRegistry(f)
	names := reg.Names()
	for _, s := range []string{validContact, validCompany, `{}`, `{"id": "1", "x-a": 1, "zz": 2}`,
		`{"id": 1, "tags": ["a", "a", 3], "nested": {"toolong": "x", "a/b": 1, "c~d": "y"}}`,
		`{"id": 1, "a_b": 1, "c/d": 2, "e~f": 3}`,
		`{"email": "not an email", "address": {"country": 7}, "tags": [1]}`, `[1, {"a": 2}]`, `"x"`} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, raw []byte) {
		rec, err := Decode(raw)
		if err != nil {
			return
		}
		for _, n := range names {
			v, _ := reg.Get(n)
			for _, e := range v.Validate(rec) {
				target := e.Pointer
				if e.Keyword == "required" || e.Keyword == "dependentRequired" || e.Keyword == "dependencies" {
					i := strings.LastIndexByte(target, '/')
					if i < 0 {
						t.Fatalf("%s: %s error %q points at no property", n, e.Keyword, e)
					}
					parent, ok := resolvePointer(rec, target[:i])
					if _, isObj := parent.(map[string]any); !ok || !isObj {
						t.Fatalf("%s: error %q: %q is not an object of the record %s", n, e, target[:i], raw)
					}
					if _, there := resolvePointer(rec, target); there && e.Keyword == "required" {
						t.Fatalf("%s: error %q: the property is there in %s", n, e, raw)
					}
					continue
				}
				if _, ok := resolvePointer(rec, target); !ok {
					t.Fatalf("%s: error %q: pointer %q is not a path of the record %s", n, e, target, raw)
				}
			}
		}
	})
}

// FuzzValidate_PropertyNames checks the errors of a property of any name
// (as a JSON record can spell it): a value of the wrong type, a property
// not allowed and a required one missing each give one error whose
// pointer is "/" plus the name escaped as RFC 6901 says, and the message
// quotes the name as it is.
func FuzzValidate_PropertyNames(f *testing.F) {
	reg := fuzzRegistry(f)
	names, _ := reg.Get("names.schema.json")
	strict, _ := reg.Get("pointers.schema.json")
	for _, s := range []string{"email", "a/b", "c~d", "x-y", "id", "first_name"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, name string) {
		if !utf8.ValidString(name) {
			return // not a name a JSON record can hold
		}
		want := "/" + escapeToken(name)
		// The library does not extend an error's location with an empty
		// property name (a known limit of jsonschema v5): an error of the
		// property "" points at its object, the record.
		valueAt := want
		if name == "" {
			valueAt = ""
		}
		one := func(what string, got []FieldError, keyword string) {
			t.Helper()
			want := want
			if keyword == "type" {
				want = valueAt
			}
			if len(got) != 1 || got[0].Pointer != want || got[0].Keyword != keyword {
				t.Fatalf("%s of property %q: errors %q, want one %s error at %q", what, name, got, keyword, want)
			}
		}
		one("a string value", names.Validate(map[string]any{name: "x"}), "type")

		switch name {
		case "id", "tags", "nested", "a b", "c/d", "e~f":
		default:
			if !strings.HasPrefix(name, "x-") {
				got := strict.Validate(map[string]any{"id": json.Number("1"), name: json.Number("1")})
				one("an unknown property", got, "additionalProperties")
				if !strings.Contains(got[0].Message, strconv.Quote(name)) {
					t.Fatalf("message %q does not quote %q", got[0].Message, name)
				}
			}
		}

		doc, err := json.Marshal(map[string]any{"type": "object", "required": []string{name}})
		if err != nil {
			t.Fatal(err)
		}
		r := NewEmptyRegistry()
		if err := r.Add("required.json", doc); err != nil {
			t.Fatalf("Add(%s): %v", doc, err)
		}
		v, _ := r.Get("required.json")
		got := v.Validate(map[string]any{})
		one("a missing property", got, "required")
		if !strings.Contains(got[0].Message, strconv.Quote(name)) {
			t.Fatalf("message %q does not quote %q", got[0].Message, name)
		}
	})
}
