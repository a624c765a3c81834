package httpsource

import (
	"bytes"
	"encoding/json"
	"io"
	"net/http"
	"net/url"
	"reflect"
	"strings"
	"testing"
	"unicode/utf8"

	"github.com/tetherflow/tether/activities/connector"
	"github.com/tetherflow/tether/activities/lib/cursor"
	"github.com/tetherflow/tether/activities/lib/httpclient"
)

// quoteLinkParam writes s as an RFC 8288 quoted-string.
func quoteLinkParam(s string) string {
	return `"` + strings.NewReplacer(`\`, `\\`, `"`, `\"`).Replace(s) + `"`
}

// FuzzLinkRoundTrip formats two link-values from any targets, relation
// types and titles, and parses them back: parse(format(x)) gives the
// same targets (trimmed), relation types (lower-cased, split on white
// space), titles and order, and nextLink finds the first "next".
func FuzzLinkRoundTrip(f *testing.F) {
	f.Add("https://api.example.com/v1/items?page=2&fields=id,name", "next", `say "hi", ok; bye`,
		"/v1/items?page=9", "LAST prev", "")
	f.Add("?after=abc%3D%3D;x=1", "next last", `\`, "https://x/y", "next", "é")
	f.Add(" a b ", "", ",", "c", "\tNext\t", ";")
	f.Fuzz(func(t *testing.T, target1, rel1, title1, target2, rel2, title2 string) {
		for _, tg := range []string{target1, target2} {
			if strings.ContainsAny(tg, "<>") {
				return // not a URI-Reference
			}
		}
		header := "<" + target1 + ">; rel=" + quoteLinkParam(rel1) + "; title=" + quoteLinkParam(title1) +
			", <" + target2 + ">;Title=" + quoteLinkParam(title2) + ";REL=" + quoteLinkParam(rel2)
		links := parseLinks([]string{header})
		if len(links) != 2 {
			t.Fatalf("parseLinks(%q) = %+v, want two links", header, links)
		}
		wantNext, hasNext := "", false
		for i, want := range []struct{ target, rel, title string }{{target1, rel1, title1}, {target2, rel2, title2}} {
			l := links[i]
			if l.Target != strings.TrimSpace(want.target) {
				t.Fatalf("link %d of %q: target %q, want %q", i, header, l.Target, strings.TrimSpace(want.target))
			}
			rels := strings.Fields(strings.ToLower(want.rel))
			if len(rels) != len(l.Rels) || (len(rels) > 0 && !reflect.DeepEqual(rels, l.Rels)) {
				t.Fatalf("link %d of %q: rels %q, want %q", i, header, l.Rels, rels)
			}
			if got := l.Params["title"]; got != want.title || len(l.Params) != 1 {
				t.Fatalf("link %d of %q: params %q, want title %q", i, header, l.Params, want.title)
			}
			for _, r := range rels {
				if r == "next" && !hasNext {
					wantNext, hasNext = l.Target, true
				}
			}
		}
		if got, ok := nextLink([]string{header}); ok != hasNext || got != wantNext {
			t.Fatalf("nextLink(%q) = %q, %v; want %q, %v", header, got, ok, wantNext, hasNext)
		}
	})
}

// FuzzDocument_RoundTrip encodes values under any member names with
// encoding/json and reads them back through the scanner: lookup and text
// give what was encoded, and records gives the array's elements.
func FuzzDocument_RoundTrip(f *testing.F) {
	f.Add("data", "next_cursor", "abc==", 42.5, true)
	f.Add(`a\"b`, "é", "", -1e300, false)
	f.Add("{", "]", `"\u0000"`, 0.0, true)
	f.Fuzz(func(t *testing.T, k1, k2, s string, n float64, b bool) {
		if k1 == "" || k2 == "" || strings.Contains(k1, ".") || strings.Contains(k2, ".") || k1 == k2 || k2 == "n" || k2 == "arr" {
			return // not a dot path of two distinct members
		}
		if !utf8.ValidString(k1) || !utf8.ValidString(k2) || !utf8.ValidString(s) {
			return // not text a JSON body holds
		}
		arr := []any{s, n, b, nil, map[string]any{k2: []any{s}}}
		body, err := json.Marshal(map[string]any{k1: map[string]any{k2: s, "n": n, "arr": arr}, k2: arr})
		if err != nil {
			return // n is not a JSON number
		}
		doc, err := parseDocument(body)
		if err != nil {
			t.Fatalf("parseDocument(%s): %v", body, err)
		}
		got, err := doc.text(k1 + "." + k2)
		if err != nil || got != s {
			t.Fatalf("text(%q) of %s = %q, %v; want %q", k1+"."+k2, body, got, err, s)
		}
		recs, err := doc.records(k2)
		if err != nil || len(recs) != len(arr) {
			t.Fatalf("records(%q) of %s = %q, %v", k2, body, recs, err)
		}
		for i, r := range recs {
			want, _ := json.Marshal(arr[i])
			if !bytes.Equal(r, want) {
				t.Fatalf("record %d = %s, want %s", i, r, want)
			}
		}
		if recs, err := doc.records(k1 + ".arr"); err != nil || len(recs) != len(arr) {
			t.Fatalf("records(%q) of %s = %q, %v", k1+".arr", body, recs, err)
		}
		if _, ok, err := doc.lookup(k1 + ".missing"); k2 != "missing" && (ok || err != nil) {
			t.Fatalf("lookup of a missing member: %v, %v", ok, err)
		}
	})
}

// fuzzStyles are the pagination styles FuzzReadPage picks from, and the
// records paths.
var (
	fuzzStyles       = []string{StyleNone, StylePage, StyleOffset, StyleCursor, StyleLink}
	fuzzRecordsPaths = []string{"data", "", "result.items"}
)

// FuzzReadPage hands any 200 answer (body and Link header) to the
// source's page reader, for every pagination style, without a network:
// it returns a page or an error, never panics; a page's records are JSON
// values and as many as RecordCount; a last page has no next position;
// any other page moves forward (the read ends), and a next link is on
// the base URL's origin and is a position the next Fetch accepts as
// that very URL.
func FuzzReadPage(f *testing.F) {
	sources := map[[2]int]*Source{}
	for i, style := range fuzzStyles {
		for j, rp := range fuzzRecordsPaths {
			s, err := New("fuzz", Config{BaseURL: "https://api.example.com/v1", Path: "/items", RecordsPath: rp,
				Pagination: Pagination{Style: style}, Total: Total{Path: "meta.total"}})
			if err != nil {
				f.Fatal(err)
			}
			sources[[2]int{i, j}] = s
		}
	}
	for _, s := range []struct {
		body, link, current, token string
		style, path                uint8
	}{
		{`{"data":[{"id":1},{"id":2}],"next_cursor":"c2","meta":{"total":5,"total_pages":3}}`, "", "", "c1", 3, 0},
		{`{"data":[{"id":1}]}`, `<https://api.example.com/v1/items?page=2>; rel="next"`, "", "", 4, 0},
		{`[{"id":1}]`, `</v1/items?after=1>; rel=next`, "https://api.example.com/v1/items?after=0", "", 4, 1},
		{`[{"id":1}]`, `<//evil.example.com/steal>; rel=next`, "", "", 4, 1},
		{`{"data":[1,2]}`, `<?page=2#frag>; rel=next`, "", "", 4, 0},
		{`{"result":{"items":[{"a":[1,{"b":"]"}]}]},"meta":{"total_pages":1}}`, "", "", "", 1, 2},
		{`{"data":null,"next_cursor":""}`, "", "", "x", 3, 0},
		{`{"data":[{}],"next_cursor":"x"}`, "", "", "x", 3, 0},
		{`{"data":[{}],"next_cursor":7}`, "", "", "", 3, 0},
		{`{"data":{"x":1}}`, "", "", "", 2, 0},
		{`{"data":[],"meta":{"total":"12"}}`, "", "", "", 0, 0},
		{"\xef\xbb\xbf[]", "", "", "", 0, 1},
	} {
		f.Add([]byte(s.body), s.link, s.current, s.token, s.style, s.path, uint8(2))
	}
	f.Fuzz(func(t *testing.T, body []byte, link, current, token string, styleIdx, pathIdx, limit uint8) {
		i, j := int(styleIdx)%len(fuzzStyles), int(pathIdx)%len(fuzzRecordsPaths)
		s, style := sources[[2]int{i, j}], fuzzStyles[i]
		req := connector.Request{Limit: int(limit % 8)}
		switch style {
		case StylePage:
			req.Position.Page = int(limit%4) + 1
		case StyleOffset:
			req.Position.Offset = int(limit) * 3
		case StyleCursor:
			req.Position.Token = token
		case StyleLink:
			req.Position.NextURL = current
		}
		u, err := s.requestURL(req)
		if err != nil {
			if style == StyleLink && current != "" {
				return // a position no page of this source gives
			}
			t.Fatalf("requestURL(%+v): %v", req.Position, err)
		}
		resp := &http.Response{StatusCode: http.StatusOK, ContentLength: -1,
			Header: http.Header{"Content-Type": {"application/json"}},
			Body:   io.NopCloser(bytes.NewReader(body))}
		if link != "" {
			resp.Header.Set("Link", link)
		}
		page, err := s.readPage(resp, req, u, cursor.Memo{}, false)
		if err != nil {
			if err.Error() == "" {
				t.Fatal("an error without a message")
			}
			return
		}
		if page.RecordCount != len(page.Records) || page.Total < 0 {
			t.Fatalf("RecordCount %d, Total %d for %d records", page.RecordCount, page.Total, len(page.Records))
		}
		for k, r := range page.Records {
			if !json.Valid(r) {
				t.Fatalf("record %d is not JSON: %q", k, r)
			}
		}
		if page.Done {
			if page.Next != (cursor.Position{}) {
				t.Fatalf("last page with a next position %+v", page.Next)
			}
			return
		}
		next := page.Next
		switch style {
		case StylePage:
			if next.Page != req.Position.Page+1 {
				t.Fatalf("page %d is followed by %+v", req.Position.Page, next)
			}
		case StyleOffset:
			if next.Offset <= req.Position.Offset || next.Offset != req.Position.Offset+len(page.Records) {
				t.Fatalf("offset %d with %d records is followed by %+v", req.Position.Offset, len(page.Records), next)
			}
		case StyleCursor:
			if next.Token == "" || next.Token == req.Position.Token {
				t.Fatalf("token %q is followed by %+v", req.Position.Token, next)
			}
		case StyleLink:
			if next.NextURL == "" || next.NextURL == u.String() {
				t.Fatalf("page %s is followed by %+v", u, next)
			}
			nu, err := url.Parse(next.NextURL)
			if err != nil || !httpclient.SameOrigin(s.base, nu) {
				t.Fatalf("next link %q (from %q) leaves the base URL's origin (%v)", next.NextURL, link, err)
			}
			again, err := s.requestURL(connector.Request{Position: next})
			if err != nil {
				t.Fatalf("next position %+v (from Link %q) is refused by the next Fetch: %v", next, link, err)
			}
			if again.String() != next.NextURL {
				t.Fatalf("next position %q is requested as %q", next.NextURL, again)
			}
		default:
			t.Fatalf("style %s gave a next page %+v", style, next)
		}
	})
}
