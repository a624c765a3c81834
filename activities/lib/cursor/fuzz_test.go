package cursor

import (
	"encoding/json"
	"testing"
	"unicode/utf8"
)

// sign is -1, 0 or 1.
func sign(n int) int {
	switch {
	case n < 0:
		return -1
	case n > 0:
		return 1
	}
	return 0
}

// FuzzCompareValues checks that CompareValues is a total preorder on any
// text, as the checkpoint logic needs (a record skipped as "at or before
// the checkpoint" on one side of the pipeline must be skipped on the
// other): reflexive, antisymmetric, transitive, with ties transitive too,
// and Compare on checkpoints is the lexicographic order of (cursor, key).
func FuzzCompareValues(f *testing.F) {
	for _, s := range [][3]string{
		{"9", "10", "2026-01-01T00:00:00Z"},
		{"1.0", "1", "1e0"},
		{"2026-01-01T00:00:00Z", "2026-01-01T01:00:00+01:00", "abc"},
		{"12345678901234567890", "12345678901234567891", ""},
		{"1e999", "1e999999", "-0"},
		{"2026-01-01T00:00:00.5Z", "2026-01-01T00:00:00.25Z", "0.30000000000000001"},
	} {
		f.Add(s[0], s[1], s[2], true)
		f.Add(s[0], s[1], s[2], false)
	}
	f.Fuzz(func(t *testing.T, a, b, c string, times bool) {
		if got := CompareValues(a, a, times); got != 0 {
			t.Fatalf("CompareValues(%q, %q) = %d, want 0", a, a, got)
		}
		ab, ba := CompareValues(a, b, times), CompareValues(b, a, times)
		if sign(ab) != -sign(ba) {
			t.Fatalf("not antisymmetric: (%q, %q) = %d, (%q, %q) = %d", a, b, ab, b, a, ba)
		}
		bc, ac := CompareValues(b, c, times), CompareValues(a, c, times)
		switch {
		case ab <= 0 && bc <= 0 && ac > 0:
			t.Fatalf("not transitive: %q <= %q <= %q but %q > %q (times %v)", a, b, c, a, c, times)
		case ab >= 0 && bc >= 0 && ac < 0:
			t.Fatalf("not transitive: %q >= %q >= %q but %q < %q (times %v)", a, b, c, a, c, times)
		case ab == 0 && bc == 0 && ac != 0:
			t.Fatalf("ties not transitive: %q = %q = %q but (%q, %q) = %d", a, b, c, a, c, ac)
		}

		// Checkpoints: by cursor, then by key (keys never as instants).
		x, y := Checkpoint{Cursor: a, Key: b}, Checkpoint{Cursor: c, Key: a}
		want := CompareValues(a, c, true)
		if want == 0 {
			want = CompareValues(b, a, false)
		}
		if got := Compare(x, y); sign(got) != sign(want) {
			t.Fatalf("Compare(%+v, %+v) = %d, want sign %d", x, y, got, sign(want))
		}

		// A checkpoint travels through workflow history as JSON (its values
		// come from decoded JSON records: always valid UTF-8).
		if !utf8.ValidString(a) || !utf8.ValidString(b) {
			return
		}
		raw, err := json.Marshal(x)
		if err != nil {
			t.Fatal(err)
		}
		var back Checkpoint
		if err := json.Unmarshal(raw, &back); err != nil {
			t.Fatalf("unmarshal %s: %v", raw, err)
		}
		if Compare(back, x) != 0 || back.IsZero() != x.IsZero() {
			t.Fatalf("checkpoint %+v came back from %s as %+v", x, raw, back)
		}
	})
}
