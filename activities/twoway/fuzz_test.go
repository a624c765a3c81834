package twoway

import (
	"bytes"
	"encoding/json"
	"maps"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/tetherflow/tether/activities/store"
	"github.com/tetherflow/tether/activities/syncstep"
)

// fuzzFields and fuzzValues are what fuzzed records are made of: few
// enough that edits collide, values equal in spite of their spelling
// (1, 1.0) or not (1, "1").
var (
	fuzzFields = []string{"email", "name", "plan", "balance"}
	fuzzValues = []any{
		nil, // absent
		"ada@example.com", "Ada", "", json.Number("1"), json.Number("1.0"), float64(1), "1",
		json.Number("12345678901234567890"), true, false, []any{"a", json.Number("2")}, map[string]any{"k": "v"}, nil,
	}
	fuzzT0 = time.Date(2026, 12, 1, 9, 0, 0, 0, time.UTC)
)

// fuzzBytes reads a fuzzed byte string, 0 when it is used up.
type fuzzBytes []byte

func (b *fuzzBytes) next() int {
	if len(*b) == 0 {
		return 0
	}
	c := (*b)[0]
	*b = (*b)[1:]
	return int(c)
}

// record is a record of fuzzFields: each field absent or one of
// fuzzValues (the last nil of fuzzValues is a JSON null).
func (b *fuzzBytes) record(from Record) Record {
	r := Record{}
	for _, f := range fuzzFields {
		if from != nil {
			if v, ok := from[f]; ok && b.next()%3 != 0 {
				r[f] = v // kept
				continue
			}
			if b.next()%2 == 0 {
				continue // absent or removed
			}
		}
		if i := b.next() % len(fuzzValues); i > 0 {
			r[f] = fuzzValues[i]
		}
	}
	return r
}

// observed is one side: nil (never had the record since the base),
// deleted, the base unchanged, or the base edited.
func (b *fuzzBytes) observed(base Record) *Observed {
	at := fuzzT0.Add(time.Duration(b.next()%4) * time.Minute)
	switch b.next() % 6 {
	case 0:
		return nil
	case 1:
		return &Observed{Deleted: true, At: at}
	case 2:
		if base != nil {
			return &Observed{Record: maps.Clone(base), At: at}
		}
	}
	return &Observed{Record: b.record(base), At: at}
}

// fuzzPair makes a pair from a fuzzed byte string.
func fuzzPair(data []byte) Pair {
	b := fuzzBytes(data)
	var pr Pair
	if b.next()%5 != 0 {
		pr.Base = b.record(nil)
	}
	pr.A, pr.B = b.observed(pr.Base), b.observed(pr.Base)
	return pr
}

var (
	fuzzKinds     = []string{LastWriterWins, Merge, FieldOwner, Manual, Custom}
	fuzzFallbacks = []string{"", LastWriterWins, Manual, string(A), string(B)}
	fuzzTieBreaks = []Side{"", A, B}
	fuzzDeletes   = []string{"", Propagate, Tombstone, DeleteConflicts}
)

// fuzzPolicy picks a policy; the custom one takes a's record, or b's.
func fuzzPolicy(kind, fallback, tie, deletes uint8) Policy {
	p := Policy{Kind: fuzzKinds[int(kind)%len(fuzzKinds)], Fallback: fuzzFallbacks[int(fallback)%len(fuzzFallbacks)],
		TieBreak: fuzzTieBreaks[int(tie)%len(fuzzTieBreaks)], Deletes: fuzzDeletes[int(deletes)%len(fuzzDeletes)]}
	if p.Kind == FieldOwner {
		p.Owners = map[string]Side{"email": A, "plan": B}
	}
	if p.Kind == Custom {
		p.Resolver = func(c Conflict) (Record, error) {
			if c.A != nil {
				return c.A, nil
			}
			return c.B, nil
		}
	}
	return p
}

// holds is what side o holds now (nil: nothing).
func holds(o *Observed) Record {
	if o.Has() {
		return o.Record
	}
	return nil
}

// swapped is p with the sides' roles exchanged.
func swapped(p Policy) Policy {
	q := p
	switch p.Fallback {
	case string(A):
		q.Fallback = string(B)
	case string(B):
		q.Fallback = string(A)
	}
	q.TieBreak = B
	if p.TieBreak == B {
		q.TieBreak = A
	}
	if p.Owners != nil {
		q.Owners = map[string]Side{}
		for f, s := range p.Owners {
			q.Owners[f] = s.Other()
		}
	}
	return q
}

// FuzzResolve resolves pairs of records made from a fuzzed byte string
// under every policy: it never fails (the custom resolver here does not);
// the writes bring both sides to the result, and none is redundant; a
// parked record writes nothing; under last_writer_wins a conflict's
// result is the whole record of the later side (the tie-break's on equal
// times); a merge or field-owner result holds only values one of the
// inputs had; a merge of edits to different fields keeps both; a merge
// is the same with the sides exchanged; and the outcome is the same
// every time.
func FuzzResolve(f *testing.F) {
	for _, s := range []string{"\x01\x01\x02\x03\x04\x00\x05\x01\x02\x03\x00\x04\x01\x05", "\x00\x00\x05", "\x01\x02\x02\x02\x02\x01\x01\x00\x00",
		"\x03\x04\x05\x06\x07\x08\x09\x0a\x0b\x0c\x0d\x0e\x0f\x10\x11\x12\x13\x14\x15\x16\x17\x18\x19\x1a"} {
		for k := range fuzzKinds {
			f.Add([]byte(s), uint8(k), uint8(k+1), uint8(k), uint8(k))
		}
	}
	f.Fuzz(func(t *testing.T, data []byte, kind, fallback, tie, deletes uint8) {
		p := fuzzPolicy(kind, fallback, tie, deletes)
		if p.Validate() != nil {
			return
		}
		pr := fuzzPair(data)
		out, err := Resolve(pr, p)
		if err != nil {
			t.Fatalf("Resolve(%+v, %s): %v", pr, p.Kind, err)
		}
		again, _ := Resolve(pr, p)
		if !outcomesEqual(out, again) {
			t.Fatalf("Resolve is not deterministic: %+v then %+v", out, again)
		}
		if out.Parked {
			if len(out.Write)+len(out.Delete)+len(out.Tombstone) > 0 || out.Result != nil {
				t.Fatalf("a parked record writes: %+v", out)
			}
			return
		}

		// The writes bring both sides to the result, and are needed.
		for _, s := range []Side{A, B} {
			o, now := pr.side(s), holds(pr.side(s))
			switch {
			case slices.Contains(out.Write, s):
				if now != nil && equal(now, out.Result) {
					t.Fatalf("side %s already holds the result %v, written again", s, out.Result)
				}
				now = out.Result
			case slices.Contains(out.Delete, s) || slices.Contains(out.Tombstone, s):
				if !o.Has() {
					t.Fatalf("side %s has no record, deleted: %+v", s, out)
				}
				now = nil
			}
			if (now == nil) != (out.Result == nil) || (now != nil && !equal(now, out.Result)) {
				t.Fatalf("after the writes side %s holds %v, the result is %v (pair %+v, outcome %+v)", s, now, out.Result, pr, out)
			}
		}
		if out.Conflict == nil {
			return
		}
		c := out.Conflict
		deleteVsEdit := c.ADeleted || c.BDeleted
		if deleteVsEdit && p.Deletes != DeleteConflicts {
			return // the delete policy decides
		}

		switch p.Kind {
		case LastWriterWins:
			w := A
			switch {
			case c.BAt.After(c.AAt):
				w = B
			case c.AAt.Equal(c.BAt) && p.TieBreak == B:
				w = B
			}
			if want := c.of(w); (want == nil) != (out.Result == nil) || !equal(want, out.Result) {
				t.Fatalf("last writer %s: result %v, want its record %v", w, out.Result, want)
			}
		case Merge, FieldOwner:
			for f, v := range out.Result {
				if !slices.ContainsFunc([]Record{c.Base, c.A, c.B}, func(r Record) bool { x, ok := r[f]; return ok && equal(x, v) }) {
					t.Fatalf("merged %s = %v, which no input holds: %+v", f, v, c)
				}
			}
		}

		if p.Kind == Merge && !deleteVsEdit && c.Base != nil {
			changedBy := func(r Record) map[string]bool {
				ch := map[string]bool{}
				for _, f := range fuzzFields {
					x, inR := r[f]
					y, inBase := c.Base[f]
					if inR != inBase || (inR && !equal(x, y)) {
						ch[f] = true
					}
				}
				return ch
			}
			chA, chB := changedBy(c.A), changedBy(c.B)
			disjoint := true
			for f := range chA {
				disjoint = disjoint && !chB[f]
			}
			if disjoint {
				want := maps.Clone(c.Base)
				for _, side := range []struct {
					r  Record
					ch map[string]bool
				}{{c.A, chA}, {c.B, chB}} {
					for f := range side.ch {
						if v, ok := side.r[f]; ok {
							want[f] = v
						} else {
							delete(want, f)
						}
					}
				}
				if !equal(out.Result, want) || len(c.Fields) > 0 {
					t.Fatalf("edits to different fields (a: %v, b: %v) merged into %v, want %v (fields %v)", chA, chB, out.Result, want, c.Fields)
				}
			}
			mirror, err := Resolve(Pair{Base: pr.Base, A: pr.B, B: pr.A}, swapped(p))
			if err != nil || mirror.Parked != out.Parked || !equal(mirror.Result, out.Result) {
				t.Fatalf("merge with the sides exchanged: %v (%v), want %v", mirror.Result, err, out.Result)
			}
		}
	})
}

// outcomesEqual compares two outcomes of the same pair.
func outcomesEqual(a, b Outcome) bool {
	return equal(a.Result, b.Result) && (a.Result == nil) == (b.Result == nil) && slices.Equal(a.Write, b.Write) &&
		slices.Equal(a.Delete, b.Delete) && slices.Equal(a.Tombstone, b.Tombstone) && slices.Equal(a.Changed, b.Changed) &&
		a.Resolution == b.Resolution && a.Parked == b.Parked && (a.Conflict == nil) == (b.Conflict == nil)
}

// FuzzEqual checks the comparison that decides whether a side changed:
// reflexive and symmetric on any JSON record, and a record stored as the
// base (encoded, then decoded) is equal to the record it was, or the
// pair would be seen to change on every cycle and be written back and
// forth.
func FuzzEqual(f *testing.F) {
	for _, s := range [][2]string{
		{`{"a":1,"b":[1,2]}`, `{"b":[1.0,2e0],"a":1.00}`},
		{`{"n":12345678901234567890}`, `{"n":12345678901234567891}`},
		{`{"n":9007199254740993}`, `{"n":9007199254740992}`},
		{`{"x":null}`, `{}`},
		{`{"s":"1"}`, `{"s":1}`},
		{`{"f":1e400}`, `{"f":-0}`},
		{`{"o":{"a":{"b":[{}]}}}`, `{"o":{"a":{"b":[{"c":null}]}}}`},
	} {
		f.Add([]byte(s[0]), []byte(s[1]))
	}
	f.Fuzz(func(t *testing.T, raw1, raw2 []byte) {
		a, err1 := decode(raw1)
		b, err2 := decode(raw2)
		if err1 != nil || err2 != nil || a == nil || b == nil {
			return
		}
		if !equal(a, a) {
			t.Fatalf("%s is not equal to itself", raw1)
		}
		if equal(a, b) != equal(b, a) {
			t.Fatalf("equal(%s, %s) is not symmetric", raw1, raw2)
		}
		stored := encode(a)
		if stored == nil {
			t.Fatalf("record %s does not encode", raw1)
		}
		back, err := decode(stored)
		if err != nil {
			t.Fatalf("stored %s does not decode: %v", stored, err)
		}
		if !equal(a, back) {
			t.Fatalf("%s stored as %s is not equal to itself", raw1, stored)
		}
		if equal(a, b) && !equal(back, b) {
			t.Fatalf("%s = %s, but not once stored as %s", raw1, raw2, stored)
		}
	})
}

// FuzzCasts converts a side's value to the shared form and back with
// every cast: a value a cast reads is shared as JSON (it is stored and
// sent), and written back unchanged, as the same value on the side (a
// field nobody edited must not change when its record is written); the
// shared value written is read back the same. A shared value that does
// not survive being written is refused, never changed.
func FuzzCasts(f *testing.F) {
	for _, s := range []string{"1234", "-5", "0", "1796670000", "1.5", "true", "false", "42", "1e3", "-0", "12.345", "2026-12-07T19:00:00Z", `"x"`} {
		f.Add(s, uint8(0))
		f.Add(s, uint8(1))
		f.Add(s, uint8(2))
	}
	names := []string{"cents", "string", "unix"} // the shipped ones (tests register others)
	f.Fuzz(func(t *testing.T, text string, which uint8) {
		name := names[int(which)%len(names)]
		c, _ := castNamed(name)
		// The side's value: text for the string cast, else a JSON number
		// (as a table's or an API's numeric column gives it).
		var side any = text
		if name != "string" {
			var n json.Number
			d := json.NewDecoder(strings.NewReader(text))
			d.UseNumber()
			if d.Decode(&n) != nil || d.More() || n == "" {
				return
			}
			side = n
		}
		shared, err := c.ToShared(side)
		if err != nil {
			return
		}
		if _, err := json.Marshal(Record{"f": shared}); err != nil {
			t.Fatalf("cast %s read %#v as %#v, which is not JSON: %v", name, side, shared, err)
		}
		written, err := c.FromShared(shared)
		if err != nil {
			t.Fatalf("cast %s read %#v as %#v, which it cannot write back: %v", name, side, shared, err)
		}
		if !equal(written, side) {
			t.Fatalf("cast %s: side value %#v read as %#v is written back as %#v", name, side, shared, written)
		}
		if again, err := c.ToShared(written); err != nil || !equal(again, shared) {
			t.Fatalf("cast %s: shared %#v written as %#v reads back as %#v (%v)", name, shared, written, again, err)
		}
	})
}

// FuzzChosenRecord applies a person's choice (any JSON of an Update) to
// a parked conflict of any stored records: a choice CheckChoice refuses
// is refused; "a" and "b" take that side's record; "values" gives
// exactly the values, all shared fields; "merge" holds only values one of
// the records had, and is never parked (prefer decides).
func FuzzChosenRecord(f *testing.F) {
	fields := []string{"email", "name", "plan"}
	for _, s := range []struct{ base, a, b, in string }{
		{`{"email":"a@x","name":"A"}`, `{"email":"a@x","name":"B"}`, `{"email":"b@x","name":"A"}`, `{"choose":"merge","prefer":"a"}`},
		{`{"name":"A"}`, `{"name":"B"}`, `{"name":"C"}`, `{"choose":"merge","prefer":"b"}`},
		{`{"name":"A"}`, `null`, `{"name":"C"}`, `{"choose":"a"}`},
		{`{"name":"A"}`, `{"name":"B"}`, `{"name":"C"}`, `{"choose":"values","values":{"name":"D","plan":null}}`},
		{`{"name":"A"}`, `{"name":"B"}`, `{"name":"C"}`, `{"choose":"values","values":{"id":1}}`},
		{`{}`, `{}`, `{}`, `{"choose":"b","prefer":"a"}`},
		{`[]`, `{}`, `{}`, `{"choose":"c"}`},
	} {
		f.Add([]byte(s.base), []byte(s.a), []byte(s.b), false, true, []byte(s.in))
	}
	f.Fuzz(func(t *testing.T, base, a, b []byte, aDeleted, bDeleted bool, raw []byte) {
		var in syncstep.ResolveInput
		d := json.NewDecoder(bytes.NewReader(raw))
		d.UseNumber()
		if d.Decode(&in) != nil {
			return
		}
		c := store.Conflict{Base: base, A: a, B: b, ADeleted: aDeleted, BDeleted: bDeleted}
		if aDeleted {
			c.A = nil
		}
		if bDeleted {
			c.B = nil
		}
		rb, errBase := decode(c.Base)
		ra, errA := decode(c.A)
		rbb, errB := decode(c.B)
		got, how, err := ChosenRecord(c, in, fields)
		if checkErr := syncstep.CheckChoice(in, fields); checkErr != nil {
			if err == nil {
				t.Fatalf("choice %s refused by CheckChoice (%v) but applied", raw, checkErr)
			}
			return
		}
		if errBase != nil || errA != nil || errB != nil {
			if err == nil {
				t.Fatal("records that do not decode, resolved")
			}
			return
		}
		if err != nil {
			t.Fatalf("choice %s of a=%s b=%s base=%s: %v", raw, a, b, base, err)
		}
		if how == "" {
			t.Fatal("no resolution named")
		}
		switch in.Choose {
		case syncstep.ChooseA, syncstep.ChooseB:
			want := ra
			if in.Choose == syncstep.ChooseB {
				want = rbb
			}
			if (got == nil) != (want == nil) || !equal(got, want) {
				t.Fatalf("choose %s gave %v, want %v", in.Choose, got, want)
			}
		case syncstep.ChooseValues:
			if !equal(got, Record(in.Values)) {
				t.Fatalf("values %v gave %v", in.Values, got)
			}
			for k := range got {
				if !slices.Contains(fields, k) {
					t.Fatalf("values gave the field %q, not a shared one", k)
				}
			}
		case syncstep.ChooseMerge:
			for k, v := range got {
				if !slices.ContainsFunc([]Record{rb, ra, rbb}, func(r Record) bool { x, ok := r[k]; return ok && equal(x, v) }) {
					t.Fatalf("merged %s = %v, which no record holds", k, v)
				}
			}
		}
	})
}
