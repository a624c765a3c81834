package pgsource

import (
	"strings"
	"testing"

	"github.com/tetherflow/tether/activities/lib/cursor"
)

func TestDecodeToken(t *testing.T) {
	t.Parallel()
	cur := "2026-01-02T03:04:05+00:00"
	tests := []struct {
		name        string
		give        string
		keys        int
		incremental bool
		want        token
		wantErr     string
	}{
		{name: "full, composite key", give: `{"key":["acme","7"]}`, keys: 2, want: token{Key: []string{"acme", "7"}}},
		{name: "incremental", give: `{"cursor":"` + cur + `","key":["7"]}`, keys: 1, incremental: true, want: token{Cursor: &cur, Key: []string{"7"}}},
		{name: "round trip of quotes", give: token{Key: []string{`a"b\c`}}.encode(), keys: 1, want: token{Key: []string{`a"b\c`}}},
		{name: "not JSON", give: `7`, keys: 1, wantErr: `position token "7" is not one this source writes`},
		{name: "unknown field", give: `{"key":["7"],"page":2}`, keys: 1, wantErr: "is not one this source writes"},
		{name: "trailing data", give: `{"key":["7"]}{}`, keys: 1, wantErr: "is not one this source writes"},
		{name: "key count", give: `{"key":["7"]}`, keys: 2, wantErr: "holds 1 key values, the key has 2 columns"},
		{name: "full token in an incremental read", give: `{"key":["7"]}`, keys: 1, incremental: true, wantErr: "was not written by an incremental read"},
		{name: "incremental token in a full read", give: `{"cursor":"1","key":["7"]}`, keys: 1, wantErr: "was not written by a full read"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			got, err := decodeToken(tt.give, tt.keys, tt.incremental)
			if tt.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
					t.Fatalf("decodeToken(%q) error = %v, want %q", tt.give, err, tt.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatalf("decodeToken(%q): %v", tt.give, err)
			}
			if got.encode() != tt.want.encode() {
				t.Errorf("decodeToken(%q) = %s, want %s", tt.give, got.encode(), tt.want.encode())
			}
		})
	}
}

func TestComparePositions(t *testing.T) {
	t.Parallel()
	cp := func(c, k string) cursor.Checkpoint { return cursor.Checkpoint{Cursor: c, Key: k} }
	tests := []struct {
		a, b cursor.Checkpoint
		want int
	}{
		// to_jsonb's rendering against another rendering of the same instant.
		{cp("2026-01-02T03:04:05.123456+00:00", "1"), cp("2026-01-02T04:04:05.123456+01:00", "1"), 0},
		{cp("2026-01-02T03:04:05+00:00", "9"), cp("2026-01-02T03:04:05.000001+00:00", "1"), -1},
		{cp("10", "1"), cp("9.5", "1"), 1},
		{cp("1.50", "1"), cp("1.5", "1"), 0},
		{cp("b", "1"), cp("a", "1"), 1},
		{cp("a", "10"), cp("a", "9"), 1},
		{cp("a", "B"), cp("a", "a"), -1},
		{cp("2026-01-02", "1"), cp("2026-01-10", "1"), -1},
		// Past 2^53 and long decimals: exact.
		{cp("1", "9007199254740993"), cp("1", "9007199254740992"), 1},
		{cp("0.30000000000000000001", "1"), cp("0.3", "1"), 1},
		// Values of different kinds: numbers, then instants, then text.
		{cp("5", "1"), cp("2026-01-02T03:04:05Z", "1"), -1},
		{cp("2026-01-02T03:04:05Z", "1"), cp("infinity", "1"), -1},
		{cp("1", "10"), cp("1", "9a"), -1},
		{cp("1", "0x10"), cp("1", "9"), 1}, // not a JSON number: text
	}
	for _, tt := range tests {
		if got := comparePositions(tt.a, tt.b); got != tt.want {
			t.Errorf("comparePositions(%v, %v) = %d, want %d", tt.a, tt.b, got, tt.want)
		}
	}
}

func TestCheckOrder(t *testing.T) {
	t.Parallel()
	cp := func(c, k string) cursor.Checkpoint { return cursor.Checkpoint{Cursor: c, Key: k} }
	tests := []struct {
		name    string
		give    []cursor.Checkpoint
		since   cursor.Checkpoint
		wantErr string
	}{
		{name: "increasing", give: []cursor.Checkpoint{cp("1", "5"), cp("1", "6"), cp("2", "1")}},
		{name: "after since", give: []cursor.Checkpoint{cp("1", "6")}, since: cp("1", "5")},
		{name: "a starting cursor without a key is no position", give: []cursor.Checkpoint{cp("1", "1"), cp("1", "a")}, since: cp("1", "")},
		{name: "a starting cursor without a key still checks the page", give: []cursor.Checkpoint{cp("1", "10"), cp("1", "9")}, since: cp("1", ""),
			wantErr: `(cursor "1", key "9") after (cursor "1", key "10")`},
		{name: "empty key passed over", give: []cursor.Checkpoint{cp("1", "5"), cp("1", ""), cp("1", "6")}},
		{name: "not after since", give: []cursor.Checkpoint{cp("1", "5")}, since: cp("1", "5"),
			wantErr: `PostgreSQL orders (cursor "1", key "5") after (cursor "1", key "5"), the pipeline does not`},
		{name: "byte order against number order", give: []cursor.Checkpoint{cp("1", "10"), cp("1", "9")},
			wantErr: `(cursor "1", key "9") after (cursor "1", key "10")`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			err := checkOrder(tt.give, tt.since)
			if tt.wantErr == "" {
				if err != nil {
					t.Fatalf("checkOrder() = %v", err)
				}
				return
			}
			if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
				t.Fatalf("checkOrder() = %v, want %q", err, tt.wantErr)
			}
		})
	}
}
