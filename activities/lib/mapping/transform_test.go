package mapping

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"reflect"
	"strings"
	"testing"
	"time"
)

const sourceContact = `{
  "id": 42,
  "uuid": "3f2b8c1e-9a4d-4e6f-8b7a-1c2d3e4f5a6b",
  "first_name": "  Ada ",
  "last_name": "King  Lovelace",
  "email": " Ada.Lovelace@Example.COM ",
  "phone": null,
  "company_id": 7,
  "status": "Customer",
  "score": 87,
  "opt_in": true,
  "opt_in_at": "2025-03-04T07:06:07.123+02:00",
  "address": {"street": "12 St James's Square", "city": " London ", "country": "gb"},
  "tags": ["vip", "newsletter"],
  "created_at": "2024-01-02T03:04:05.000Z",
  "updated_at": "2025-03-04T05:06:07.123Z"
}`

// decode decodes JSON as the validate step does: numbers as json.Number.
func decode(t testing.TB, s string) Record {
	t.Helper()
	d := json.NewDecoder(strings.NewReader(s))
	d.UseNumber()
	var r Record
	if err := d.Decode(&r); err != nil {
		t.Fatal(err)
	}
	return r
}

func fullName(r Record) (any, error) {
	first, _ := r["first_name"].(string)
	last, _ := r["last_name"].(string)
	return first + " " + last, nil
}

func TestMapping_Compile(t *testing.T) {
	ts := func(s string) time.Time {
		v, err := time.Parse(time.RFC3339Nano, s)
		if err != nil {
			t.Fatal(err)
		}
		return v.UTC()
	}
	errCompute := errors.New("no name")
	tests := []struct {
		name    string
		fields  []Field
		give    string // source record; sourceContact when empty
		want    Record
		wantErr string // the whole error text
		wantPtr string // the first FieldError's pointer
	}{
		{
			name: "the contacts mapping",
			fields: []Field{
				{To: "id", From: "id", Cast: "int", Required: true},
				{To: "first_name", From: "first_name", Normalize: []string{"trim"}},
				{To: "last_name", From: "last_name", Normalize: []string{"collapse_spaces"}},
				{To: "full_name", Compute: fullName, Normalize: []string{"collapse_spaces"}},
				{To: "email", From: "email", Normalize: []string{"email"}, Required: true},
				{To: "phone", From: "phone"},
				{To: "status", From: "status", Normalize: []string{"lower"}},
				{To: "score", From: "score", Cast: "int", Default: 0},
				{To: "opt_in_at", From: "opt_in_at", Cast: "timestamp"},
				{To: "city", From: "address.city", Normalize: []string{"trim"}},
				{To: "country", From: "address.country", Normalize: []string{"upper"}},
				{To: "first_tag", From: "tags.0"},
				{To: "tags", From: "tags", Cast: "json"},
				{To: "source", Default: "crm"},
			},
			want: Record{
				"id": int64(42), "first_name": "Ada", "last_name": "King Lovelace", "full_name": "Ada King Lovelace",
				"email": "ada.lovelace@example.com", "phone": nil, "status": "customer", "score": int64(87),
				"opt_in_at": ts("2025-03-04T05:06:07.123Z"), "city": "London", "country": "GB",
				"first_tag": "vip", "tags": []any{"vip", "newsletter"}, "source": "crm",
			},
		},
		{name: "no cast keeps the JSON number", fields: []Field{{To: "n", From: "score"}}, want: Record{"n": json.Number("87")}},
		{name: "cast int from an integral decimal", fields: []Field{{To: "n", From: "n", Cast: "int"}}, give: `{"n": 12.0}`, want: Record{"n": int64(12)}},
		{name: "cast int from an exponent", fields: []Field{{To: "n", From: "n", Cast: "int"}}, give: `{"n": 1e3}`, want: Record{"n": int64(1000)}},
		{name: "cast int from a string", fields: []Field{{To: "n", From: "n", Cast: "int", Normalize: []string{"trim"}}}, give: `{"n": " -7 "}`, want: Record{"n": int64(-7)}},
		{
			name: "cast int: not a number", fields: []Field{{To: "score", From: "score", Cast: "int"}}, give: `{"score": "abc"}`,
			wantErr: `field "score": cast "abc" to int: not a number`, wantPtr: "/score",
		},
		{
			name: "cast int: a fraction", fields: []Field{{To: "score", From: "score", Cast: "int"}}, give: `{"score": 12.5}`,
			wantErr: `field "score": cast 12.5 to int: not an integer`, wantPtr: "/score",
		},
		{
			name: "cast int: too large", fields: []Field{{To: "id", From: "id", Cast: "int"}}, give: `{"id": 12345678901234567890}`,
			wantErr: `field "id": cast 12345678901234567890 to int: out of range for a 64-bit integer`, wantPtr: "/id",
		},
		{
			name: "cast int: NaN is not a JSON number", fields: []Field{{To: "n", From: "n", Cast: "int"}}, give: `{"n": "NaN"}`,
			wantErr: `field "n": cast "NaN" to int: not a number`, wantPtr: "/n",
		},
		{
			name: "cast int: an object", fields: []Field{{To: "n", From: "n", Cast: "int"}}, give: `{"n": {"a": 1}}`,
			wantErr: `field "n": cast an object to int: not a number (an object)`, wantPtr: "/n",
		},
		{name: "cast float", fields: []Field{{To: "f", From: "f", Cast: "float"}}, give: `{"f": 0.25}`, want: Record{"f": 0.25}},
		{name: "cast float from a string", fields: []Field{{To: "f", From: "f", Cast: "float"}}, give: `{"f": "1e-3"}`, want: Record{"f": 0.001}},
		{
			name: "cast float: infinity", fields: []Field{{To: "f", From: "f", Cast: "float"}}, give: `{"f": "-Inf"}`,
			wantErr: `field "f": cast "-Inf" to float: not a finite number`, wantPtr: "/f",
		},
		{
			name: "cast float: out of range", fields: []Field{{To: "f", From: "f", Cast: "float"}}, give: `{"f": 1e400}`,
			wantErr: `field "f": cast 1e400 to float: out of range for a 64-bit float`, wantPtr: "/f",
		},
		{
			name:   "cast bool",
			fields: []Field{{To: "a", From: "a", Cast: "bool"}, {To: "b", From: "b", Cast: "bool"}, {To: "c", From: "c", Cast: "bool"}},
			give:   `{"a": true, "b": "no", "c": 1}`, want: Record{"a": true, "b": false, "c": true},
		},
		{
			name: "cast bool: not a boolean", fields: []Field{{To: "opt_in", From: "opt_in", Cast: "bool"}}, give: `{"opt_in": "maybe"}`,
			wantErr: `field "opt_in": cast "maybe" to bool: not a boolean`, wantPtr: "/opt_in",
		},
		{
			name:   "cast string",
			fields: []Field{{To: "a", From: "a", Cast: "string"}, {To: "b", From: "b", Cast: "string"}, {To: "c", From: "c", Cast: "string"}},
			give:   `{"a": 1.50, "b": false, "c": "x"}`, want: Record{"a": "1.50", "b": "false", "c": "x"},
		},
		{
			name: "cast string: an array", fields: []Field{{To: "tags", From: "tags", Cast: "string"}},
			wantErr: `field "tags": cast an array to string: not a scalar (an array)`, wantPtr: "/tags",
		},
		{
			name: "cast timestamp to UTC", fields: []Field{{To: "t", From: "t", Cast: "timestamp"}}, give: `{"t": "2025-03-04T07:06:07.5+02:00"}`,
			want: Record{"t": time.Date(2025, 3, 4, 5, 6, 7, 500_000_000, time.UTC)},
		},
		{
			name: "cast timestamp: no time zone", fields: []Field{{To: "updated_at", From: "updated_at", Cast: "timestamp"}}, give: `{"updated_at": "2025-03-04 05:06:07"}`,
			wantErr: `field "updated_at": cast "2025-03-04 05:06:07" to timestamp: not an RFC 3339 timestamp`, wantPtr: "/updated_at",
		},
		{
			name:   "cast date",
			fields: []Field{{To: "d", From: "d", Cast: "date"}, {To: "e", From: "e", Cast: "date"}},
			give:   `{"d": "2025-03-04", "e": "2025-03-04T23:30:00-02:00"}`,
			want:   Record{"d": time.Date(2025, 3, 4, 0, 0, 0, 0, time.UTC), "e": time.Date(2025, 3, 5, 0, 0, 0, 0, time.UTC)},
		},
		{
			name: "cast date: not a date", fields: []Field{{To: "d", From: "d", Cast: "date"}}, give: `{"d": "2025-02-30"}`,
			wantErr: `field "d": cast "2025-02-30" to date: not a date (2006-01-02) or RFC 3339 timestamp`, wantPtr: "/d",
		},
		{
			name: "cast json keeps objects", fields: []Field{{To: "address", From: "address", Cast: "json"}},
			want: Record{"address": map[string]any{"street": "12 St James's Square", "city": " London ", "country": "gb"}},
		},
		{
			name:   "defaults for absent and null values, cast once",
			fields: []Field{{To: "a", From: "missing", Cast: "int", Default: 5}, {To: "b", From: "phone", Default: " n/a ", Normalize: []string{"trim", "upper"}}, {To: "c", From: "address.zip", Cast: "bool", Default: "false"}},
			want:   Record{"a": int64(5), "b": "N/A", "c": false},
		},
		{name: "absent without default is null", fields: []Field{{To: "a", From: "nope.deeper"}, {To: "b", From: "tags.9"}, {To: "c", From: "tags.x"}}, want: Record{"a": nil, "b": nil, "c": nil}},
		{
			name: "required value missing", fields: []Field{{To: "email", From: "contact.email", Required: true}}, give: `{"contact": {}}`,
			wantErr: `field "email": required value /contact/email is missing or null`, wantPtr: "/contact/email",
		},
		{
			name: "required value null", fields: []Field{{To: "phone", From: "phone", Required: true}},
			wantErr: `field "phone": required value /phone is missing or null`, wantPtr: "/phone",
		},
		{name: "required value defaulted", fields: []Field{{To: "phone", From: "phone", Required: true, Default: ""}}, want: Record{"phone": ""}},
		{
			name: "path through a scalar", fields: []Field{{To: "city", From: "address.city"}}, give: `{"address": "London"}`,
			wantErr: `field "city": source /address is a string, not an object`, wantPtr: "/address/city",
		},
		{
			name: "normaliser on a number", fields: []Field{{To: "score", From: "score", Normalize: []string{"trim"}}},
			wantErr: `field "score": normalize trim: 87 is a number, not a string`, wantPtr: "/score",
		},
		{
			name: "computed value error", fields: []Field{{To: "full_name", Compute: func(Record) (any, error) { return nil, errCompute }}},
			wantErr: `field "full_name": compute: no name`, wantPtr: "",
		},
		{
			name: "computed value is cast", fields: []Field{{To: "n", Compute: func(r Record) (any, error) { return len(r), nil }, Cast: "string"}},
			give: `{"a": 1, "b": 2}`, want: Record{"n": "2"},
		},
		{
			name:   "every bad value is reported",
			fields: []Field{{To: "id", From: "id", Cast: "int"}, {To: "score", From: "score", Cast: "int"}, {To: "t", From: "t", Cast: "timestamp"}},
			give:   `{"id": "x", "score": 1, "t": "yesterday"}`,
			wantErr: `field "id": cast "x" to int: not a number` + "\n" +
				`field "t": cast "yesterday" to timestamp: not an RFC 3339 timestamp`,
			wantPtr: "/id",
		},
		{
			name: "long values are cut in messages", fields: []Field{{To: "n", From: "n", Cast: "int"}}, give: `{"n": "` + strings.Repeat("é", 40) + `"}`,
			wantErr: `field "n": cast "` + strings.Repeat("é", 32) + `"… to int: not a number`, wantPtr: "/n",
		},
		{
			name: "escaped pointer", fields: []Field{{To: "x", From: "a/b.c~d", Cast: "int"}}, give: `{"a/b": {"c~d": true}}`,
			wantErr: `field "x": cast true to int: not a number (a boolean)`, wantPtr: "/a~1b/c~0d",
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			fn, err := Mapping{Fields: tt.fields}.Compile()
			if err != nil {
				t.Fatal(err)
			}
			give := tt.give
			if give == "" {
				give = sourceContact
			}
			src := decode(t, give)
			before := fmt.Sprint(src)
			got, err := fn(src)
			if after := fmt.Sprint(src); after != before {
				t.Errorf("source record changed:\n%s\n%s", before, after)
			}
			if tt.wantErr != "" {
				if err == nil {
					t.Fatalf("got %v, want error %q", got, tt.wantErr)
				}
				if err.Error() != tt.wantErr {
					t.Errorf("error = %q\nwant    %q", err, tt.wantErr)
				}
				var fe *FieldError
				if !errors.As(err, &fe) {
					t.Fatalf("error %T is not a *FieldError", err)
				}
				if fe.Pointer != tt.wantPtr {
					t.Errorf("Pointer = %q, want %q", fe.Pointer, tt.wantPtr)
				}
				if tt.name == "computed value error" && !errors.Is(err, errCompute) {
					t.Errorf("error does not wrap the Compute error")
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if !reflect.DeepEqual(got, tt.want) {
				t.Errorf("got  %#v\nwant %#v", got, tt.want)
			}
		})
	}
}

func TestMapping_Validate(t *testing.T) {
	tests := []struct {
		name string
		give Mapping
		want []string // the problems, in order
	}{
		{
			name: "valid",
			give: Mapping{Fields: []Field{{To: "id", From: "id", Cast: "int"}, {To: "n", Compute: fullName}, {To: "src", Default: "crm"}}},
		},
		{name: "no fields", give: Mapping{}, want: []string{"mapping has no fields"}},
		{
			name: "every problem",
			give: Mapping{Fields: []Field{
				{To: "id", From: "id", Cast: "integer"},
				{From: "email"},
				{To: "id", From: "id2"},
				{To: "name", Normalize: []string{"trim", "title"}},
				{To: "both", From: "a", Compute: fullName},
				{To: "path", From: "address..city"},
				{To: "score", Default: "abc", Cast: "int"},
				{To: "ok", From: "ok"},
			}},
			want: []string{
				`field 0 ("id"): unknown cast "integer" (want one of "", "string", "int", "float", "bool", "timestamp", "date", "json")`,
				`field 1 (""): empty To: every field needs an output column`,
				`field 2 ("id"): duplicate To: field 0 also maps to "id"`,
				`field 3 ("name"): no source: set From, Compute or Default`,
				`field 3 ("name"): unknown normaliser "title" (want one of "trim", "lower", "upper", "email", "collapse_spaces")`,
				`field 4 ("both"): both From and Compute: a value has one source`,
				`field 5 ("path"): From "address..city": empty path segment`,
				`field 6 ("score"): Default: cast "abc" to int: not a number`,
			},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := tt.give.Validate()
			if tt.want == nil {
				if err != nil {
					t.Fatalf("Validate() = %v, want nil", err)
				}
				if _, err := tt.give.Compile(); err != nil {
					t.Fatalf("Compile() = %v", err)
				}
				return
			}
			if err == nil {
				t.Fatal("Validate() = nil, want errors")
			}
			if got := strings.Split(err.Error(), "\n"); !reflect.DeepEqual(got, tt.want) {
				t.Errorf("Validate() =\n%s\nwant\n%s", strings.Join(got, "\n"), strings.Join(tt.want, "\n"))
			}
			if _, cerr := tt.give.Compile(); cerr == nil || cerr.Error() != err.Error() {
				t.Errorf("Compile() error = %v, want the Validate error", cerr)
			}
		})
	}
}

func TestChain(t *testing.T) {
	add := func(k string) Func {
		return func(r Record) (Record, error) {
			r["trail"] = fmt.Sprint(r["trail"], k)
			return r, nil
		}
	}
	boom := errors.New("boom")
	fail := func(Record) (Record, error) { return nil, boom }
	tests := []struct {
		name    string
		give    []Func
		want    string
		wantErr error
	}{
		{name: "none", give: nil, want: "<nil>"},
		{name: "only nil", give: []Func{nil, nil}, want: "<nil>"},
		{name: "one", give: []Func{add("a")}, want: "<nil>a"},
		{name: "in order, nil skipped", give: []Func{add("a"), nil, add("b"), add("c")}, want: "<nil>abc"},
		{name: "error stops the chain", give: []Func{add("a"), fail, add("b")}, wantErr: boom},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := Chain(tt.give...)(Record{})
			if tt.wantErr != nil {
				if !errors.Is(err, tt.wantErr) || got != nil {
					t.Fatalf("Chain() = %v, %v, want error %v", got, err, tt.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if fmt.Sprint(got["trail"]) != tt.want && !(tt.want == "<nil>" && got["trail"] == nil) {
				t.Errorf("trail = %v, want %s", got["trail"], tt.want)
			}
		})
	}
}

func TestCollapseSpaces(t *testing.T) {
	tests := []struct{ give, want string }{
		{"", ""},
		{"Ada", "Ada"},
		{"Ada King", "Ada King"},
		{" Ada", "Ada"},
		{"Ada ", "Ada"},
		{"Ada  King", "Ada King"},
		{"Ada\tKing", "Ada King"},
		{"  Ada \n\u00a0 King  ", "Ada King"},
		{"   ", ""},
	}
	for _, tt := range tests {
		if got := collapseSpaces(tt.give); got != tt.want {
			t.Errorf("collapseSpaces(%q) = %q, want %q", tt.give, got, tt.want)
		}
	}
}

// fuzzMapping touches every cast and normaliser.
func fuzzMapping() Mapping {
	return Mapping{Fields: []Field{
		{To: "id", From: "id", Cast: "int"},
		{To: "s", From: "s", Cast: "string", Normalize: []string{"collapse_spaces", "upper"}},
		{To: "f", From: "f", Cast: "float", Default: 1.5},
		{To: "b", From: "b", Cast: "bool"},
		{To: "t", From: "t", Cast: "timestamp"},
		{To: "d", From: "a.d", Cast: "date"},
		{To: "j", From: "a.b.0", Cast: "json"},
		{To: "e", From: "e", Normalize: []string{"email"}, Default: "x"},
		{To: "c", Compute: func(r Record) (any, error) { return len(r), nil }, Cast: "string"},
		{To: "r", From: "r", Required: true, Cast: "json"},
	}}
}

func FuzzMapping(f *testing.F) {
	fn, err := fuzzMapping().Compile()
	if err != nil {
		f.Fatal(err)
	}
	for _, s := range []string{sourceContact, `{}`, `{"id": 1, "r": null}`, `{"a": {"b": [1]}, "r": []}`,
		`{"id": "1e3", "s": " a  b ", "f": "NaN", "b": "t", "t": "2025-01-01T00:00:00Z", "a": {"d": "2025-01-01"}, "r": 0}`,
		`{"a": [], "e": 3, "r": {}}`} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, raw []byte) {
		d := json.NewDecoder(bytes.NewReader(raw))
		d.UseNumber()
		var src Record
		if err := d.Decode(&src); err != nil {
			return
		}
		out, err := fn(src)
		if err != nil {
			var fe *FieldError
			if !errors.As(err, &fe) || fe.Field == "" || fe.Message == "" {
				t.Fatalf("error %v is not a FieldError naming a field", err)
			}
			return
		}
		if len(out) != len(fuzzMapping().Fields) {
			t.Fatalf("output %v does not have exactly the mapped columns", out)
		}
		if out["r"] == nil {
			t.Fatalf("required value is null in %v", out)
		}
	})
}

// benchRecords returns n raw contacts.
func benchRecords(b *testing.B, n int) [][]byte {
	b.Helper()
	base := decode(b, sourceContact)
	out := make([][]byte, n)
	for i := range out {
		base["id"] = json.Number(fmt.Sprint(i + 1))
		base["email"] = fmt.Sprintf(" User%d@Example.com", i)
		raw, err := json.Marshal(base)
		if err != nil {
			b.Fatal(err)
		}
		out[i] = raw
	}
	return out
}

// contactsMapping is the shape of the crm-contacts integration's mapping.
func contactsMapping() Mapping {
	return Mapping{Fields: []Field{
		{To: "id", From: "id", Cast: "int", Required: true},
		{To: "uuid", From: "uuid", Cast: "string"},
		{To: "first_name", From: "first_name", Normalize: []string{"trim", "collapse_spaces"}},
		{To: "last_name", From: "last_name", Normalize: []string{"trim", "collapse_spaces"}},
		{To: "full_name", Compute: fullName, Normalize: []string{"collapse_spaces"}},
		{To: "email", From: "email", Normalize: []string{"email"}, Required: true},
		{To: "phone", From: "phone", Normalize: []string{"trim"}},
		{To: "company_id", From: "company_id", Cast: "int"},
		{To: "status", From: "status", Normalize: []string{"lower"}},
		{To: "score", From: "score", Cast: "int", Default: 0},
		{To: "opt_in", From: "opt_in", Cast: "bool", Default: false},
		{To: "opt_in_at", From: "opt_in_at", Cast: "timestamp"},
		{To: "website", From: "website"},
		{To: "city", From: "address.city", Normalize: []string{"trim"}},
		{To: "country", From: "address.country", Normalize: []string{"upper"}},
		{To: "tags", From: "tags", Cast: "json"},
		{To: "created_at", From: "created_at", Cast: "timestamp", Required: true},
		{To: "updated_at", From: "updated_at", Cast: "timestamp", Required: true},
	}}
}

func decodeAll(b *testing.B, raws [][]byte) []Record {
	b.Helper()
	recs := make([]Record, len(raws))
	for i, raw := range raws {
		recs[i] = decode(b, string(raw))
	}
	return recs
}

// BenchmarkUnmarshal1000 is a baseline for BenchmarkMapping1000: plain
// json.Unmarshal of the same 1,000 records.
func BenchmarkUnmarshal1000(b *testing.B) {
	raws := benchRecords(b, 1000)
	b.ReportAllocs()
	for b.Loop() {
		for _, raw := range raws {
			var v any
			if err := json.Unmarshal(raw, &v); err != nil {
				b.Fatal(err)
			}
		}
	}
}

// BenchmarkCopy1000 is the floor for BenchmarkMapping1000: copying the
// same 18 columns into a new map, with no conversion.
func BenchmarkCopy1000(b *testing.B) {
	recs := decodeAll(b, benchRecords(b, 1000))
	fields := contactsMapping().Fields
	b.ReportAllocs()
	for b.Loop() {
		for _, r := range recs {
			out := make(Record, len(fields))
			for _, f := range fields {
				out[f.To] = r[f.From]
			}
		}
	}
}

// BenchmarkMapping1000 runs the crm-contacts mapping on 1,000 decoded
// records, as the transform step does for one page.
func BenchmarkMapping1000(b *testing.B) {
	recs := decodeAll(b, benchRecords(b, 1000))
	fn, err := contactsMapping().Compile()
	if err != nil {
		b.Fatal(err)
	}
	b.ReportAllocs()
	for b.Loop() {
		for _, r := range recs {
			if _, err := fn(r); err != nil {
				b.Fatal(err)
			}
		}
	}
}
