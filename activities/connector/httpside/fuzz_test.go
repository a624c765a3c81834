package httpside

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/tetherflow/tether/activities/connector"
)

// fuzzConfig is a side of three shared fields, one under another name.
func fuzzConfig() Config {
	return Config{BaseURL: "https://billing.example.com", Path: "/v1/customers",
		Fields: map[string]string{"email": "email", "name": "full_name", "plan": "plan"}}
}

// checkChange checks one change of the feed read from obj.
func checkChange(t *testing.T, e *httpEndpoint, obj map[string]any, c connector.Change) {
	t.Helper()
	s := e.side
	switch obj[s.Key].(type) {
	case string, json.Number, bool:
	default:
		t.Fatalf("record %v with id %#v (not a string or number) read as key %q", obj, obj[s.Key], c.Key)
	}
	if c.Key == "" {
		t.Fatalf("record %v read without a key", obj)
	}
	if c.Cursor != c.At.UTC().Format(time.RFC3339Nano) {
		t.Fatalf("change at %s has the cursor %q", c.At, c.Cursor)
	}
	if c.Deleted {
		if c.Record != nil {
			t.Fatalf("a deleted record with fields %v", c.Record)
		}
		return
	}
	if c.Record == nil {
		t.Fatalf("record %v read as neither deleted nor a record", obj)
	}
	for f, v := range c.Record {
		m, shared := s.Fields[f]
		if !shared {
			t.Fatalf("record %v read with the field %q, not a shared one", obj, f)
		}
		if w, ok := obj[m]; !ok || v == nil || !jsonEqual(v, w) {
			t.Fatalf("shared %s = %#v, the API's %s = %#v", f, v, m, w)
		}
	}
}

func jsonEqual(a, b any) bool {
	x, err1 := json.Marshal(a)
	y, err2 := json.Marshal(b)
	return err1 == nil && err2 == nil && bytes.Equal(x, y)
}

// FuzzChange reads any record of an API's feed: it is refused, or read
// with a key from a string or number id, the cursor of its change time,
// and only shared fields holding the API's values (none when deleted).
func FuzzChange(f *testing.F) {
	for _, s := range []string{
		`{"id":"cus_1","version":3,"updated_at":"2026-12-01T09:00:00Z","email":"a@x","full_name":"Ada","plan":null,"other":1}`,
		`{"id":7,"updated_at":"2026-12-01T10:00:00+01:00","deleted":true,"email":"a@x"}`,
		`{"id":7,"updated_at":"2026-12-01T09:00:00.123456789Z","deleted":"true"}`,
		`{"id":"","updated_at":"2026-12-01T09:00:00Z"}`,
		`{"id":1,"updated_at":"yesterday"}`,
		`{"id":1e400,"updated_at":"2026-12-01T09:00:00Z","name":"not shared"}`,
	} {
		f.Add([]byte(s))
	}
	e := &httpEndpoint{side: fuzzConfig().withDefaults(), fields: []string{"email", "name", "plan"}, page: 10}
	f.Fuzz(func(t *testing.T, raw []byte) {
		var obj map[string]any
		d := json.NewDecoder(bytes.NewReader(raw))
		d.UseNumber()
		if d.Decode(&obj) != nil || obj == nil {
			return
		}
		c, err := e.change(obj)
		if err != nil {
			return
		}
		checkChange(t, e, obj, c)
	})
}

// roundTrip answers every request in-process.
type roundTrip func(*http.Request) (*http.Response, error)

func (f roundTrip) RoundTrip(r *http.Request) (*http.Response, error) { return f(r) }

// FuzzChanges reads a feed whose first page is one fuzzed body and
// every later page another (served in-process, no network): the read
// ends, with the records or an error, after at most three requests (the
// first page, the page its next cursor names, and the page that one's
// cursor names: a page naming itself again must end the read, not loop),
// and every change handed on is a well-read record.
func FuzzChanges(f *testing.F) {
	for _, s := range [][2]string{
		{`{"data":[{"id":"cus_1","updated_at":"2026-12-01T09:00:00Z","email":"a@x"}],"next_cursor":"p2"}`,
			`{"data":[{"id":"cus_2","updated_at":"2026-12-01T09:00:01Z","deleted":true}],"next_cursor":""}`},
		{`{"data":[{"id":"cus_1","updated_at":"2026-12-01T09:00:00Z","deleted":true}]}`, ``},
		{`{"data":[1],"next_cursor":"x"}`, `{"data":[]}`},
		{`{"data":null,"next_cursor":"x"}`, `{"data":null,"next_cursor":null}`},
		{`[]`, `[]`},
		{`{"next_cursor":"x"}`, `not JSON`},
	} {
		f.Add([]byte(s[0]), []byte(s[1]))
	}
	f.Fuzz(func(t *testing.T, first, rest []byte) {
		ctx, cancel := context.WithCancel(context.Background())
		defer cancel()
		var cursors []string
		transport := roundTrip(func(r *http.Request) (*http.Response, error) {
			cursors = append(cursors, r.URL.Query().Get("cursor"))
			if len(cursors) > 10 {
				cancel()
				return nil, ctx.Err()
			}
			body := rest
			if len(cursors) == 1 {
				body = first
			}
			return &http.Response{StatusCode: http.StatusOK, Header: http.Header{"Content-Type": {"application/json"}},
				Body: io.NopCloser(bytes.NewReader(body)), ContentLength: int64(len(body)), Request: r}, nil
		})
		side, err := Open("fuzz/billing", fuzzConfig(), transport)
		if err != nil {
			t.Fatal(err)
		}
		e := side.(*httpEndpoint)
		pages := 0
		err = side.Changes(ctx, "", "", func(cs []connector.Change) error {
			body := rest
			if pages++; len(cursors) == 1 {
				body = first
			}
			var page struct {
				Data []map[string]any `json:"data"`
			}
			d := json.NewDecoder(bytes.NewReader(body))
			d.UseNumber()
			if err := d.Decode(&page); err != nil || len(page.Data) != len(cs) {
				t.Fatalf("page %q handed on as %d changes (%v)", body, len(cs), err)
			}
			for i, c := range cs {
				checkChange(t, e, page.Data[i], c)
			}
			return nil
		})
		if len(cursors) > 3 {
			t.Fatalf("a feed of %q then always %q read with %d requests (cursors %q; %v): it never ends", first, rest, len(cursors), cursors, err)
		}
		if err != nil && (errors.Is(err, context.Canceled) || strings.TrimSpace(err.Error()) == "") {
			t.Fatalf("error %v", err)
		}
	})
}
