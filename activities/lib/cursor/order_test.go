package cursor

import (
	"slices"
	"testing"
)

func TestCompareValues(t *testing.T) {
	tests := []struct {
		a, b  string
		times bool
		want  int
	}{
		{"9", "10", false, -1}, // numbers, not text
		{"12345678901234567890", "12345678901234567891", false, -1}, // beyond float64
		{"0.30000000000000001", "0.3", false, 1},                    // exact decimals
		{"1.0", "1", false, 0},                                      // one number, two spellings
		{"1e2", "100", false, 0},
		{"2026-01-01T00:00:00Z", "2026-01-01T01:00:00+01:00", true, 0}, // one instant
		{"2026-01-01T00:00:00.5Z", "2026-01-01T00:00:00.25Z", true, 1},
		{"2026-01-01T00:00:00Z", "2026-01-01T00:00:00Z", false, 0},
		{"b", "a", false, 1},
		{"10", "2026-01-01T00:00:00Z", true, -1}, // kinds: numbers before instants before text
		{"2026-01-01T00:00:00Z", "abc", true, -1},
		{"10", "9a", false, -1},
		{"1e999999", "1", false, 1}, // large exponents are text, not a huge number
	}
	for _, tt := range tests {
		if got := CompareValues(tt.a, tt.b, tt.times); got != tt.want {
			t.Errorf("CompareValues(%q, %q, %v) = %d, want %d", tt.a, tt.b, tt.times, got, tt.want)
		}
		if got := CompareValues(tt.b, tt.a, tt.times); got != -tt.want {
			t.Errorf("CompareValues(%q, %q, %v) = %d, want %d (antisymmetry)", tt.b, tt.a, tt.times, got, -tt.want)
		}
	}
}

// TestCompareValuesIsATotalOrder: sorting a field that mixes kinds gives
// one order whatever the input order, so a checkpoint never moves back.
func TestCompareValuesIsATotalOrder(t *testing.T) {
	values := []string{"10", "9", "9a", "a", "2026-01-01T00:00:00Z", "2025-12-31T23:00:00-02:00", "-1", "0.5", "", "Z"}
	for _, times := range []bool{true, false} {
		var first []string
		for i := range values {
			v := slices.Clone(values)
			v = append(v[i:], v[:i]...)
			slices.SortStableFunc(v, func(a, b string) int { return CompareValues(a, b, times) })
			for j := 1; j < len(v); j++ {
				for k := 0; k < j; k++ {
					if CompareValues(v[k], v[j], times) > 0 {
						t.Fatalf("times=%v: %q sorts before %q but compares greater", times, v[k], v[j])
					}
				}
			}
			if first == nil {
				first = v
			} else if !slices.Equal(first, v) {
				t.Fatalf("times=%v: order depends on input order: %q vs %q", times, first, v)
			}
		}
	}
}

func TestCompare(t *testing.T) {
	cp := func(c, k string) Checkpoint { return Checkpoint{Cursor: c, Key: k} }
	if Compare(cp("2026-01-01T00:00:00Z", "10"), cp("2026-01-01T00:00:00Z", "9")) <= 0 {
		t.Error("same cursor: key 10 must come after key 9")
	}
	if Compare(cp("2026-01-01T00:00:00Z", "1"), cp("2026-01-01T00:00:00+00:00", "1")) != 0 {
		t.Error("one instant spelled twice, same key: equal")
	}
	if Compare(cp("2026-01-02T00:00:00Z", "1"), cp("2026-01-01T00:00:00Z", "99")) <= 0 {
		t.Error("a later cursor wins over the key")
	}
	// An initial cursor has no key: every record at that cursor is after it.
	for _, key := range []string{"5", "-1", "abc", "2026-01-01T00:00:00Z"} {
		if Compare(cp("1970-01-01T00:00:00Z", key), cp("1970-01-01T00:00:00Z", "")) <= 0 {
			t.Errorf("key %q at the initial cursor must come after the keyless checkpoint", key)
		}
	}
}
