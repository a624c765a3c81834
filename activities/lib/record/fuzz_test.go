package record

import (
	"bytes"
	"encoding/json"
	"strconv"
	"strings"
	"testing"

	"github.com/tetherflow/tether/activities/lib/cursor"
)

// FuzzLast checks the checkpoint of a page against its records: Last
// returns the (cursor, key) read from one record of the page, that
// record has both, and no record after it has both; a page without such
// a record gives the zero checkpoint.
func FuzzLast(f *testing.F) {
	for _, s := range []struct{ page, cursorPath, keyPath string }{
		{`[{"id":1,"updated_at":"2026-01-01T00:00:00Z"},{"id":2,"updated_at":"2026-01-02T00:00:00Z"}]`, "updated_at", "id"},
		{`[{"id":1,"meta":{"v":3}},{"id":null,"meta":{"v":4}},"x",{"meta":{}}]`, "meta.v", "id"},
		{`[{"a":{"b":true},"k":""},{"a":{"b":1.5e300},"k":"z"}]`, "a.b", "k"},
		{`[{"":{"":1}, "k": 12345678901234567890}]`, ".", "k"},
		{`[[1],{"k":[1]},{"c":{},"k":1}]`, "c", "k"},
		{`[]`, "", ""},
	} {
		f.Add([]byte(s.page), s.cursorPath, s.keyPath)
	}
	f.Fuzz(func(t *testing.T, page []byte, cursorPath, keyPath string) {
		var records []json.RawMessage
		if err := json.Unmarshal(page, &records); err != nil {
			return
		}
		cp, kp := Path(cursorPath), Path(keyPath)
		got := Last(records, cp, kp)
		// Read independently: encoding/json, numbers as written.
		text := func(rec map[string]any, path []string) (string, bool) {
			var v any = rec
			for _, p := range path {
				m, ok := v.(map[string]any)
				if !ok {
					return "", false
				}
				v = m[p]
			}
			switch x := v.(type) {
			case string:
				return x, x != ""
			case json.Number:
				return x.String(), true
			case bool:
				return strconv.FormatBool(x), true
			}
			return "", false
		}
		both := func(i int) (cursor.Checkpoint, bool) {
			var rec map[string]any
			d := json.NewDecoder(bytes.NewReader(records[i]))
			d.UseNumber()
			if d.Decode(&rec) != nil || rec == nil {
				return cursor.Checkpoint{}, false
			}
			c, ok1 := text(rec, cp)
			k, ok2 := text(rec, kp)
			return cursor.Checkpoint{Cursor: c, Key: k}, ok1 && ok2
		}
		for i := len(records) - 1; i >= 0; i-- {
			want, ok := both(i)
			if !ok {
				continue
			}
			if got != want {
				t.Fatalf("Last = %+v, but record %d (the last with both) has %+v", got, i, want)
			}
			if want.Cursor == "" || want.Key == "" {
				t.Fatalf("record %d gives an empty cursor or key %+v", i, want)
			}
			return
		}
		if !got.IsZero() {
			t.Fatalf("Last = %+v from a page where no record has both", got)
		}
	})
}

// FuzzObject checks Object against encoding/json: it accepts exactly the
// bodies that are one JSON object, and reads the same members.
func FuzzObject(f *testing.F) {
	for _, s := range []string{`{"id":1}`, `{"a":{"b":[1,"x",null]}} `, `[]`, `{} {}`, `{"a":1e400}`, `null`, `{"a":"\ud800"}`, ``} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, raw []byte) {
		rec, ok := Object(raw)
		var want map[string]any
		d := json.NewDecoder(strings.NewReader(string(raw)))
		d.UseNumber()
		err := d.Decode(&want)
		// One object, and nothing but JSON white space after it.
		wantOK := err == nil && want != nil && strings.Trim(string(raw[d.InputOffset():]), " \t\r\n") == ""
		if ok != wantOK {
			t.Fatalf("Object(%q) ok = %v, encoding/json %v (%v)", raw, ok, wantOK, err)
		}
		if !ok {
			return
		}
		if len(rec) != len(want) {
			t.Fatalf("Object(%q) has %d members, encoding/json %d", raw, len(rec), len(want))
		}
		for k, v := range want {
			a, _ := json.Marshal(rec[k])
			b, _ := json.Marshal(v)
			if string(a) != string(b) {
				t.Fatalf("member %q = %s, encoding/json %s", k, a, b)
			}
			switch Kind(rec[k]) {
			case "null", "array", "string", "number", "boolean", "object":
			default:
				t.Fatalf("Kind(%#v) = %q, not a JSON kind", rec[k], Kind(rec[k]))
			}
		}
	})
}

// FuzzPath checks that a dot path splits and joins back, and that
// Pointer is its JSON pointer (RFC 6901): the pointer's reference
// tokens, unescaped, are the path's segments.
func FuzzPath(f *testing.F) {
	for _, p := range []string{"address.city", "id", "a.0.b", "", ".", "tags.0"} {
		f.Add(p)
	}
	f.Fuzz(func(t *testing.T, p string) {
		if p != "" && strings.Join(Path(p), ".") != p {
			t.Fatalf("Path(%q) = %q does not join back", p, Path(p))
		}
		// RFC 6901: the pointer's reference tokens, unescaped, are the
		// path's segments ("~1" for "/", "~0" for "~").
		if ptr := Pointer(Path(p)); ptr != "" {
			toks := strings.Split(ptr[1:], "/")
			for i := range toks {
				toks[i] = strings.ReplaceAll(strings.ReplaceAll(toks[i], "~1", "/"), "~0", "~")
			}
			if strings.Join(toks, "\x00") != strings.Join(Path(p), "\x00") {
				t.Fatalf("Pointer(Path(%q)) = %q is not the JSON pointer of %q", p, ptr, Path(p))
			}
		}
	})
}
