package schema

import (
	"encoding/json"
	"fmt"
	"io/fs"
	"reflect"
	"sort"
	"strings"
	"testing"
	"testing/fstest"

	"github.com/tetherflow/tether/schemas"
)

const validContact = `{
  "id": 42,
  "uuid": "3f2b8c1e-9a4d-4e6f-8b7a-1c2d3e4f5a6b",
  "first_name": "Ada",
  "last_name": "Lovelace",
  "email": "Ada.Lovelace@Example.com",
  "phone": "+44 20 7946 0958",
  "company_id": 7,
  "status": "customer",
  "score": 87,
  "opt_in": true,
  "opt_in_at": "2025-03-04T05:06:07.123Z",
  "website": "https://ada.example.com/about",
  "address": {"street": "12 St James's Square", "city": "London", "country": "GB"},
  "tags": ["vip", "newsletter"],
  "created_at": "2024-01-02T03:04:05.000Z",
  "updated_at": "2025-03-04T05:06:07.123Z"
}`

const validCompany = `{
  "id": 7,
  "name": "Analytical Engines Ltd",
  "domain": "analytical-engines.example.com",
  "industry": "manufacturing",
  "employees": 250,
  "founded_year": 1843,
  "country": "GB",
  "website": "https://analytical-engines.example.com",
  "created_at": "2024-01-02T03:04:05.000Z",
  "updated_at": "2025-03-04T05:06:07.123Z"
}`

// formatsSchema exercises the formats the CRM schemas do not use as such.
const formatsSchema = `{
  "$schema": "https://json-schema.org/draft/2020-12/schema",
  "type": "object",
  "properties": {
    "email": {"type": "string", "format": "email"},
    "extra": false
  },
  "additionalProperties": {"type": "string"}
}`

// testFS is the real schema files plus test-only ones.
func testFS(t testing.TB) fs.FS {
	t.Helper()
	m := fstest.MapFS{"formats.schema.json": {Data: []byte(formatsSchema)}}
	err := fs.WalkDir(schemas.FS(), ".", func(p string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		b, err := fs.ReadFile(schemas.FS(), p)
		m[p] = &fstest.MapFile{Data: b}
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	return m
}

func mustDecode(t testing.TB, s string) map[string]any {
	t.Helper()
	v, err := Decode([]byte(s))
	if err != nil {
		t.Fatal(err)
	}
	return v.(map[string]any)
}

// fe builds a FieldError without a message, for comparisons on pointer and
// keyword.
func fe(pointer, keyword string) FieldError { return FieldError{Pointer: pointer, Keyword: keyword} }

func TestValidator_Validate(t *testing.T) {
	reg, err := NewRegistry(testFS(t))
	if err != nil {
		t.Fatal(err)
	}
	const (
		contacts  = "contacts.schema.json"
		companies = "companies.schema.json"
		formats   = "formats.schema.json"
	)
	tests := []struct {
		name   string
		schema string
		give   string               // base record
		edit   func(map[string]any) // change to the record
		want   []FieldError
	}{
		{name: "valid contact", schema: contacts, give: validContact},
		{name: "valid company", schema: companies, give: validCompany},
		{
			name: "contact with optional fields absent", schema: contacts, give: validContact,
			edit: func(r map[string]any) {
				for _, k := range []string{"phone", "company_id", "opt_in", "opt_in_at", "website", "address", "tags"} {
					delete(r, k)
				}
			},
		},
		{
			name: "contact with optional fields null", schema: contacts, give: validContact,
			edit: func(r map[string]any) {
				for _, k := range []string{"phone", "company_id", "website", "address", "tags"} {
					r[k] = nil
				}
				r["opt_in"], r["opt_in_at"] = false, nil
			},
		},
		{
			name: "email with surrounding spaces is accepted", schema: contacts, give: validContact,
			edit: func(r map[string]any) { r["email"] = "  ada@example.com\t" },
		},
		{
			name: "upper-case email is accepted", schema: contacts, give: validContact,
			edit: func(r map[string]any) { r["email"] = "ADA@EXAMPLE.COM" },
		},
		{
			name: "type: string id", schema: contacts, give: validContact,
			edit: func(r map[string]any) { r["id"] = "42" },
			want: []FieldError{fe("/id", "type")},
		},
		{
			name: "type: fractional integer", schema: contacts, give: validContact,
			edit: func(r map[string]any) { r["score"] = json.Number("5.5") },
			want: []FieldError{fe("/score", "type")},
		},
		{
			name: "type: record is not an object", schema: contacts, give: `[1, 2]`,
			want: []FieldError{fe("", "type")},
		},
		{
			name: "type: tag item", schema: contacts, give: validContact,
			edit: func(r map[string]any) { r["tags"] = []any{"vip", json.Number("3")} },
			want: []FieldError{fe("/tags/1", "type")},
		},
		{
			name: "required: one missing", schema: contacts, give: validContact,
			edit: func(r map[string]any) { delete(r, "email") },
			want: []FieldError{fe("/email", "required")},
		},
		{
			name: "required: several missing", schema: contacts, give: validContact,
			edit: func(r map[string]any) { delete(r, "status"); delete(r, "created_at"); delete(r, "uuid") },
			want: []FieldError{fe("/created_at", "required"), fe("/status", "required"), fe("/uuid", "required")},
		},
		{
			name: "minimum", schema: contacts, give: validContact,
			edit: func(r map[string]any) { r["id"] = json.Number("0") },
			want: []FieldError{fe("/id", "minimum")},
		},
		{
			name: "maximum", schema: contacts, give: validContact,
			edit: func(r map[string]any) { r["score"] = json.Number("101") },
			want: []FieldError{fe("/score", "maximum")},
		},
		{
			name: "minimum and maximum in a draft-07 schema", schema: companies, give: validCompany,
			edit: func(r map[string]any) { r["founded_year"] = json.Number("1799"); r["employees"] = json.Number("-1") },
			want: []FieldError{fe("/employees", "minimum"), fe("/founded_year", "minimum")},
		},
		{
			name: "minLength and pattern: empty name", schema: contacts, give: validContact,
			edit: func(r map[string]any) { r["first_name"] = "" },
			want: []FieldError{fe("/first_name", "minLength"), fe("/first_name", "pattern")},
		},
		{
			name: "maxLength", schema: contacts, give: validContact,
			edit: func(r map[string]any) { r["last_name"] = strings.Repeat("é", 101) },
			want: []FieldError{fe("/last_name", "maxLength")},
		},
		{
			name: "format: email", schema: formats, give: `{"email": "ada@@example.com"}`,
			want: []FieldError{fe("/email", "format")},
		},
		{
			name: "format: email accepts upper case", schema: formats, give: `{"email": "Ada@Example.COM"}`,
		},
		{
			name: "format: date-time", schema: contacts, give: validContact,
			edit: func(r map[string]any) { r["updated_at"] = "2025-03-04 05:06:07" },
			want: []FieldError{fe("/updated_at", "format")},
		},
		{
			name: "format: date-time in a draft-07 schema", schema: companies, give: validCompany,
			edit: func(r map[string]any) { r["created_at"] = "2025-02-30T00:00:00Z" },
			want: []FieldError{fe("/created_at", "format")},
		},
		{
			name: "format: uuid", schema: contacts, give: validContact,
			edit: func(r map[string]any) { r["uuid"] = "3f2b8c1e-9a4d-4e6f-8b7a" },
			want: []FieldError{fe("/uuid", "format")},
		},
		{
			name: "format: uri", schema: contacts, give: validContact,
			edit: func(r map[string]any) { r["website"] = "ada.example.com/about" },
			want: []FieldError{fe("/website", "format")},
		},
		{
			name: "format: uri in a draft-07 schema", schema: companies, give: validCompany,
			edit: func(r map[string]any) { r["website"] = "www.example.com" },
			want: []FieldError{fe("/website", "format")},
		},
		{
			name: "format: hostname", schema: companies, give: validCompany,
			edit: func(r map[string]any) { r["domain"] = "-bad-.example.com" },
			want: []FieldError{fe("/domain", "format")},
		},
		{
			name: "pattern: phone", schema: contacts, give: validContact,
			edit: func(r map[string]any) { r["phone"] = "call me" },
			want: []FieldError{fe("/phone", "pattern")},
		},
		{
			name: "pattern: nested country", schema: contacts, give: validContact,
			edit: func(r map[string]any) { r["address"].(map[string]any)["country"] = "gb" },
			want: []FieldError{fe("/address/country", "pattern")},
		},
		{
			name: "pattern: email shape", schema: contacts, give: validContact,
			edit: func(r map[string]any) { r["email"] = "ada at example dot com" },
			want: []FieldError{fe("/email", "pattern")},
		},
		{
			name: "pattern: email with inner space", schema: contacts, give: validContact,
			edit: func(r map[string]any) { r["email"] = "ada lovelace@example.com" },
			want: []FieldError{fe("/email", "pattern")},
		},
		{
			name: "enum", schema: contacts, give: validContact,
			edit: func(r map[string]any) { r["status"] = "prospect" },
			want: []FieldError{fe("/status", "enum")},
		},
		{
			name: "enum in a draft-07 schema", schema: companies, give: validCompany,
			edit: func(r map[string]any) { r["industry"] = "Software" },
			want: []FieldError{fe("/industry", "enum")},
		},
		{
			name: "uniqueItems", schema: contacts, give: validContact,
			edit: func(r map[string]any) { r["tags"] = []any{"vip", "vip"} },
			want: []FieldError{fe("/tags", "uniqueItems")},
		},
		{
			name: "if/then: opted in without a time", schema: contacts, give: validContact,
			edit: func(r map[string]any) { delete(r, "opt_in_at") },
			want: []FieldError{fe("/opt_in_at", "required")},
		},
		{
			name: "if/then: opted in with a null time", schema: contacts, give: validContact,
			edit: func(r map[string]any) { r["opt_in_at"] = nil },
			want: []FieldError{fe("/opt_in_at", "type")},
		},
		{
			name: "if/then: not opted in needs no time", schema: contacts, give: validContact,
			edit: func(r map[string]any) { r["opt_in"] = false; delete(r, "opt_in_at") },
		},
		{
			name: "dependentRequired", schema: contacts, give: validContact,
			edit: func(r map[string]any) { delete(r, "opt_in") },
			want: []FieldError{fe("/opt_in", "dependentRequired")},
		},
		{
			name: "draft-07 dependencies", schema: companies, give: validCompany,
			edit: func(r map[string]any) { delete(r, "website") },
			want: []FieldError{fe("/website", "dependencies")},
		},
		{
			name: "false schema and additionalProperties", schema: formats, give: `{"extra": 1, "a/b": 2}`,
			want: []FieldError{fe("/a~1b", "type"), fe("/extra", "false")},
		},
		{
			name: "every problem, sorted by pointer", schema: contacts, give: validContact,
			edit: func(r map[string]any) {
				r["score"] = json.Number("200")
				r["id"] = "x"
				delete(r, "email")
				r["address"].(map[string]any)["country"] = "United Kingdom"
			},
			want: []FieldError{fe("/address/country", "pattern"), fe("/email", "required"), fe("/id", "type"), fe("/score", "maximum")},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			v, err := reg.Get(tt.schema)
			if err != nil {
				t.Fatal(err)
			}
			rec, err := Decode([]byte(tt.give))
			if err != nil {
				t.Fatal(err)
			}
			if tt.edit != nil {
				tt.edit(rec.(map[string]any))
			}
			got := v.Validate(rec)
			var gotKeys []FieldError
			for _, e := range got {
				if e.Message == "" {
					t.Errorf("%s %s: empty message", e.Pointer, e.Keyword)
				}
				gotKeys = append(gotKeys, fe(e.Pointer, e.Keyword))
			}
			if !reflect.DeepEqual(gotKeys, tt.want) {
				t.Errorf("Validate() = %v\nwant pointers and keywords %v", got, tt.want)
			}
		})
	}
}

func TestValidator_Validate_messages(t *testing.T) {
	reg, err := NewRegistry(schemas.FS())
	if err != nil {
		t.Fatal(err)
	}
	v, err := reg.Get("contacts.schema.json")
	if err != nil {
		t.Fatal(err)
	}
	rec := mustDecode(t, validContact)
	delete(rec, "email")
	delete(rec, "opt_in")
	rec["status"] = "prospect"
	got := v.Validate(rec)
	want := []FieldError{
		{Pointer: "/email", Keyword: "required", Message: `required property "email" is missing`},
		{Pointer: "/opt_in", Keyword: "dependentRequired", Message: `property "opt_in" is required when "opt_in_at" is present`},
		{Pointer: "/status", Keyword: "enum", Message: `value must be one of "lead", "customer", "churned"`},
	}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("Validate() =\n%#v\nwant\n%#v", got, want)
	}
}

func TestNewRegistry(t *testing.T) {
	tests := []struct {
		name      string
		give      fstest.MapFS
		wantNames []string
		wantErr   []string // substrings of the error
	}{
		{
			name:      "the project's schemas",
			give:      nil, // schemas.FS()
			wantNames: []string{"companies.schema.json", "contacts-table.schema.json", "contacts.schema.json"},
		},
		{
			name:    "not JSON",
			give:    fstest.MapFS{"ok.json": {Data: []byte(`{}`)}, "bad.schema.json": {Data: []byte("{\n  \"type\": \n}")}},
			wantErr: []string{"schema bad.schema.json: not valid JSON: line 3"},
		},
		{
			name:    "trailing data",
			give:    fstest.MapFS{"bad.schema.json": {Data: []byte(`{} {}`)}},
			wantErr: []string{"schema bad.schema.json: not valid JSON", "trailing data"},
		},
		{
			name:    "breaks the meta-schema",
			give:    fstest.MapFS{"bad.schema.json": {Data: []byte(`{"$schema": "https://json-schema.org/draft/2020-12/schema", "properties": {"id": {"type": "int", "minimum": "1"}}}`)}},
			wantErr: []string{"schema bad.schema.json: not a valid schema for its draft", "/properties/id/type", "/properties/id/minimum"},
		},
		{
			name:    "unknown draft",
			give:    fstest.MapFS{"bad.schema.json": {Data: []byte(`{"$schema": "https://example.com/no-such-draft"}`)}},
			wantErr: []string{"schema bad.schema.json: cannot load https://example.com/no-such-draft"},
		},
		{
			name:    "reference to a missing file",
			give:    fstest.MapFS{"a.schema.json": {Data: []byte(`{"$ref": "missing.schema.json"}`)}},
			wantErr: []string{"schema a.schema.json: cannot load missing.schema.json"},
		},
		{
			name: "references between files resolve",
			give: fstest.MapFS{
				"a.schema.json":      {Data: []byte(`{"$id": "https://tetherflow.dev/schemas/a.schema.json", "properties": {"b": {"$ref": "defs/b.schema.json"}, "c": {"$ref": "c.schema.json"}}}`)},
				"c.schema.json":      {Data: []byte(`{"$id": "https://tetherflow.dev/schemas/c.schema.json", "type": "integer"}`)},
				"defs/b.schema.json": {Data: []byte(`{"type": "string"}`)},
				"README.md":          {Data: []byte(`not a schema`)},
			},
			wantNames: []string{"a.schema.json", "c.schema.json", "defs/b.schema.json"},
		},
		{
			name: "every broken file is reported",
			give: fstest.MapFS{
				"a.schema.json": {Data: []byte(`{`)},
				"b.schema.json": {Data: []byte(`[`)},
			},
			wantErr: []string{"schema a.schema.json", "schema b.schema.json"},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var fsys fs.FS = tt.give
			if tt.give == nil {
				fsys = schemas.FS()
			}
			reg, err := NewRegistry(fsys)
			if len(tt.wantErr) > 0 {
				if err == nil {
					t.Fatalf("NewRegistry() error = nil, want one containing %q", tt.wantErr)
				}
				for _, w := range tt.wantErr {
					if !strings.Contains(err.Error(), w) {
						t.Errorf("NewRegistry() error = %q, want it to contain %q", err, w)
					}
				}
				return
			}
			if err != nil {
				t.Fatalf("NewRegistry() error = %v", err)
			}
			if got := reg.Names(); !reflect.DeepEqual(got, tt.wantNames) {
				t.Errorf("Names() = %v, want %v", got, tt.wantNames)
			}
		})
	}
}

func TestRegistry_Get(t *testing.T) {
	reg, err := NewRegistry(schemas.FS())
	if err != nil {
		t.Fatal(err)
	}
	if v, err := reg.Get("contacts.schema.json"); err != nil || v.Name() != "contacts.schema.json" {
		t.Errorf("Get(contacts) = %v, %v", v, err)
	}
	_, err = reg.Get("contact.schema.json")
	if err == nil || !strings.Contains(err.Error(), `no schema "contact.schema.json"; known schemas: companies.schema.json, contacts-table.schema.json, contacts.schema.json`) {
		t.Errorf("Get(unknown) error = %v", err)
	}
}

func TestDecode(t *testing.T) {
	tests := []struct {
		name    string
		give    string
		want    any
		wantErr string
	}{
		{name: "object with exact numbers", give: `{"id": 12345678901234567890, "x": 1.10}`,
			want: map[string]any{"id": json.Number("12345678901234567890"), "x": json.Number("1.10")}},
		{name: "surrounding whitespace", give: " \n[true, null] \n", want: []any{true, nil}},
		{name: "empty", give: "  ", wantErr: "empty input"},
		{name: "trailing value", give: `{} {}`, wantErr: "trailing data after the JSON value at offset 2"},
		{name: "trailing garbage", give: `{"a":1}x`, wantErr: "trailing data"},
		{name: "trailing bracket", give: `[1]]`, wantErr: "trailing data"},
		{name: "truncated", give: `{"a":`, wantErr: "unexpected EOF"},
		{name: "invalid", give: `{a:1}`, wantErr: "invalid character"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := Decode([]byte(tt.give))
			if tt.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
					t.Fatalf("Decode() error = %v, want %q", err, tt.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if !reflect.DeepEqual(got, tt.want) {
				t.Errorf("Decode() = %#v, want %#v", got, tt.want)
			}
		})
	}
}

func TestValidator_Validate_concurrent(t *testing.T) {
	reg, err := NewRegistry(schemas.FS())
	if err != nil {
		t.Fatal(err)
	}
	v, _ := reg.Get("contacts.schema.json")
	bad := mustDecode(t, validContact)
	bad["score"] = json.Number("-3")
	done := make(chan []FieldError)
	for range 8 {
		go func() {
			var last []FieldError
			for range 50 {
				last = v.Validate(bad)
			}
			done <- last
		}()
	}
	for range 8 {
		if got := <-done; len(got) != 1 || got[0].Pointer != "/score" {
			t.Errorf("Validate() = %v", got)
		}
	}
}

func FuzzDecodeValidate(f *testing.F) {
	reg, err := NewRegistry(testFS(f))
	if err != nil {
		f.Fatal(err)
	}
	names := reg.Names()
	for _, s := range []string{validContact, validCompany, `{}`, `[]`, `null`, `{"email": " A@B.co "}`,
		`{"tags": ["a", "a", 1], "address": {"country": 1}}`, `{"opt_in": true, "opt_in_at": null}`, `1e400`} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, raw []byte) {
		rec, err := Decode(raw)
		if err != nil {
			return
		}
		for _, n := range names {
			v, _ := reg.Get(n)
			got := v.Validate(rec)
			if !sort.SliceIsSorted(got, func(i, j int) bool { return got[i].Pointer < got[j].Pointer }) {
				t.Errorf("%s: not sorted by pointer: %v", n, got)
			}
			for _, e := range got {
				if e.Keyword == "" || e.Message == "" || (e.Pointer != "" && e.Pointer[0] != '/') {
					t.Errorf("%s: malformed error %#v", n, e)
				}
			}
			if again := v.Validate(rec); !reflect.DeepEqual(got, again) {
				t.Errorf("%s: not deterministic: %v then %v", n, got, again)
			}
		}
	})
}

// benchRecords returns n distinct raw contacts, one in ten invalid.
func benchRecords(b *testing.B, n int) [][]byte {
	b.Helper()
	base := mustDecode(b, validContact)
	out := make([][]byte, n)
	for i := range out {
		base["id"] = json.Number(fmt.Sprint(i + 1))
		base["email"] = fmt.Sprintf("user%d@example.com", i)
		base["score"] = json.Number(fmt.Sprint(i % 100))
		if i%10 == 0 {
			base["score"] = json.Number("150")
		}
		raw, err := json.Marshal(base)
		if err != nil {
			b.Fatal(err)
		}
		out[i] = raw
	}
	return out
}

// BenchmarkUnmarshal1000 is the baseline for BenchmarkValidate1000: plain
// json.Unmarshal of the same 1,000 records.
func BenchmarkUnmarshal1000(b *testing.B) {
	recs := benchRecords(b, 1000)
	b.ReportAllocs()
	for b.Loop() {
		for _, raw := range recs {
			var v any
			if err := json.Unmarshal(raw, &v); err != nil {
				b.Fatal(err)
			}
		}
	}
}

// BenchmarkDecode1000 decodes 1,000 records with Decode.
func BenchmarkDecode1000(b *testing.B) {
	recs := benchRecords(b, 1000)
	b.ReportAllocs()
	for b.Loop() {
		for _, raw := range recs {
			if _, err := Decode(raw); err != nil {
				b.Fatal(err)
			}
		}
	}
}

// BenchmarkValidate1000 decodes and validates 1,000 contacts, as the
// validate step does for one page.
func BenchmarkValidate1000(b *testing.B) {
	recs := benchRecords(b, 1000)
	reg, err := NewRegistry(schemas.FS())
	if err != nil {
		b.Fatal(err)
	}
	v, _ := reg.Get("contacts.schema.json")
	b.ReportAllocs()
	for b.Loop() {
		invalid := 0
		for _, raw := range recs {
			rec, err := Decode(raw)
			if err != nil {
				b.Fatal(err)
			}
			if len(v.Validate(rec)) > 0 {
				invalid++
			}
		}
		if invalid != 100 {
			b.Fatalf("%d invalid, want 100", invalid)
		}
	}
}
