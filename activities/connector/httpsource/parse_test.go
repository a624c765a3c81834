package httpsource

import (
	"bytes"
	"encoding/json"
	"fmt"
	"strings"
	"testing"

	"github.com/tetherflow/tether/activities/lib/httpclient"
)

func TestNextLink(t *testing.T) {
	tests := []struct {
		name   string
		give   []string
		want   string
		wantOK bool
	}{
		{name: "GitHub style", give: []string{`<https://api.example.com/items?page=2>; rel="next", <https://api.example.com/items?page=9>; rel="last"`}, want: "https://api.example.com/items?page=2", wantOK: true},
		{name: "comma and semicolon inside the target", give: []string{`</v1/items?fields=id,name;v=2&after=5>; rel="next"`}, want: "/v1/items?fields=id,name;v=2&after=5", wantOK: true},
		{name: "several relation types", give: []string{`</p3>; rel="last next"`}, want: "/p3", wantOK: true},
		{name: "unquoted rel, upper case", give: []string{`</p2>;rel=NEXT`}, want: "/p2", wantOK: true},
		{name: "next in the second header field", give: []string{`</p1>; rel="prev"`, `</p3>; rel="next"`}, want: "/p3", wantOK: true},
		{name: "quoted parameter holding a comma before next", give: []string{`</a>; title="x, y"; rel="prev", </b>; rel="next"`}, want: "/b", wantOK: true},
		{name: "malformed link-value skipped", give: []string{`garbage; rel="next", </ok>; rel="next"`}, want: "/ok", wantOK: true},
		{name: "only the first rel counts", give: []string{`</a>; rel="prev"; rel="next"`}},
		{name: "rel-like text in another parameter", give: []string{`</a>; title="rel=next"`}},
		{name: "no next", give: []string{`</a>; rel="prev", </b>; rel="last"`}},
		{name: "nextpage is not next", give: []string{`</a>; rel="nextpage"`}},
		{name: "empty", give: nil},
		{name: "unterminated target", give: []string{`</a; rel="next"`}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, ok := nextLink(tt.give)
			if got != tt.want || ok != tt.wantOK {
				t.Errorf("nextLink(%q) = %q, %v; want %q, %v", tt.give, got, ok, tt.want, tt.wantOK)
			}
		})
	}
}

func TestDocument_Records(t *testing.T) {
	tests := []struct {
		name    string
		body    string
		path    string
		want    []string
		wantErr string
	}{
		{name: "top-level array", body: ` [ {"a":1} , 2 ,"x,]}" ] `, want: []string{`{"a":1}`, `2`, `"x,]}"`}},
		{name: "nested path", body: `{"meta":{"n":[1,{"data":0}]},"result":{"data":[[1,2],{"k":"}"}]}}`, path: "result.data", want: []string{`[1,2]`, `{"k":"}"}`}},
		{name: "escaped quotes and keys", body: `{"d\u0061ta":["a\"b\\",true], "data2": []}`, path: "data", want: []string{`"a\"b\\"`, `true`}},
		{name: "null is no records", body: `{"data":null}`, path: "data", want: []string{}},
		{name: "empty array", body: `{"data":[ ]}`, path: "data", want: []string{}},
		{name: "missing", body: `{"items":[]}`, path: "data", wantErr: `records path "data" is not in the body`},
		{name: "through a non-object", body: `{"result":[1]}`, path: "result.data", wantErr: `"result" is an array, not an object`},
		{name: "not an array", body: `{"data":"x"}`, path: "data", wantErr: `holds a string, not an array`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			doc, err := parseDocument([]byte(tt.body))
			if err != nil {
				t.Fatal(err)
			}
			recs, err := doc.records(tt.path)
			if tt.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
					t.Fatalf("err = %v, want %q", err, tt.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			got := make([]string, len(recs))
			for i, r := range recs {
				got[i] = string(r)
			}
			if fmt.Sprint(got) != fmt.Sprint(tt.want) || len(got) != len(tt.want) {
				t.Errorf("records = %q, want %q", got, tt.want)
			}
		})
	}
}

// FuzzDocumentRecords checks the fast scanner against encoding/json: for
// any valid body, the records it returns are exactly the elements
// encoding/json finds in the same array.
func FuzzDocumentRecords(f *testing.F) {
	for _, seed := range []struct{ body, path string }{
		{`{"data":[{"id":1},{"id":"2\"]"}]}`, "data"},
		{`[1, "two", [3], {"4": null}]`, ""},
		{`{"a":{"b":{"c":[true,false,null,-1.5e3]}}}`, "a.b.c"},
		{`{"a\\":1,"a":[ "\\\\" ]}`, "a"},
		{`{"data":{}}`, "data.x"},
	} {
		f.Add([]byte(seed.body), seed.path)
	}
	f.Fuzz(func(t *testing.T, body []byte, path string) {
		if httpclient.CheckDotPath(path) != nil {
			return
		}
		doc, err := parseDocument(body)
		if err != nil {
			return
		}
		raw, ok, err := doc.lookup(path)
		if err != nil || !ok {
			return
		}
		if !json.Valid(raw) {
			t.Fatalf("lookup(%q) returned invalid JSON %q", path, raw)
		}
		recs, err := doc.records(path)
		if err != nil {
			return
		}
		var want []json.RawMessage
		if err := json.Unmarshal(raw, &want); err != nil {
			t.Fatalf("records accepted %q that encoding/json rejects: %v", raw, err)
		}
		if len(recs) != len(want) {
			t.Fatalf("got %d records, encoding/json %d, in %q", len(recs), len(want), raw)
		}
		for i := range want {
			if !bytes.Equal(recs[i], want[i]) {
				t.Fatalf("record %d = %q, encoding/json %q", i, recs[i], want[i])
			}
		}
	})
}

// FuzzParseLinks checks that no Link header makes the parser panic or
// return a target it did not find between angle brackets, and that a
// well-formed next link is found whatever precedes it.
func FuzzParseLinks(f *testing.F) {
	f.Add(`<https://x/a?p=1,2>; rel="next"`, "/v1/items?after=5&fields=a,b")
	f.Add(`<a>; rel=prev; title="a\"b,c", garbage, <b>`, "https://h/p;x=1")
	f.Add(`<`, "")
	f.Fuzz(func(t *testing.T, header, target string) {
		for _, l := range parseLinks([]string{header}) {
			if strings.ContainsAny(l.Target, "<>") || !strings.Contains(header, l.Target) {
				t.Fatalf("target %q not taken from between brackets of %q", l.Target, header)
			}
		}
		target = strings.TrimSpace(target)
		if target == "" || strings.ContainsAny(target, "<>") {
			return
		}
		// A preceding field may be garbage; a well-formed one after it still counts.
		got, ok := nextLink([]string{header, "<" + target + `>; rel="next"`})
		if !ok {
			t.Fatalf("next link %q not found after %q", target, header)
		}
		if first, hasOwn := nextLink([]string{header}); hasOwn {
			target = first
		}
		if got != target {
			t.Fatalf("next = %q, want %q", got, target)
		}
	})
}
