package twoway

import (
	"context"
	"encoding/json"
	"strings"
	"testing"
)

func TestCasts_RoundTripOrRefuse(t *testing.T) {
	for _, tc := range []struct {
		cast        string
		side        any
		shared      any
		sharedWrite any    // a shared value written to the side
		refused     string // FromShared's refusal of sharedWrite, if any
	}{
		{cast: "cents", side: json.Number("1234"), shared: json.Number("12.34"), sharedWrite: 20.5},
		{cast: "cents", side: json.Number("-5"), shared: json.Number("-0.05"), sharedWrite: "12.345", refused: "more than two decimals"},
		{cast: "cents", side: json.Number("100"), shared: json.Number("1"), sharedWrite: json.Number("7")},
		{cast: "string", side: "42", shared: json.Number("42"), sharedWrite: true},
		{cast: "string", side: "false", shared: false, sharedWrite: map[string]any{}, refused: "neither a number nor a boolean"},
		{cast: "unix", side: json.Number("1796670000"), shared: "2026-12-07T19:00:00Z", sharedWrite: "2026-12-07T19:40:00.5Z", refused: "fractions of a second"},
	} {
		c, ok := castNamed(tc.cast)
		if !ok {
			t.Fatalf("no cast %s", tc.cast)
		}
		got, err := c.ToShared(tc.side)
		if err != nil || !equal(got, tc.shared) {
			t.Errorf("%s.ToShared(%v) = %v, %v; want %v", tc.cast, tc.side, got, err, tc.shared)
		}
		if back, err := c.FromShared(got); err != nil || !equal(back, tc.side) {
			t.Errorf("%s: %v does not come back: %v, %v", tc.cast, tc.side, back, err)
		}
		side, err := c.FromShared(tc.sharedWrite)
		switch {
		case tc.refused != "" && (err == nil || !strings.Contains(err.Error(), tc.refused)):
			t.Errorf("%s.FromShared(%v) = %v, %v; want refused: %s", tc.cast, tc.sharedWrite, side, err, tc.refused)
		case tc.refused == "" && err != nil:
			t.Errorf("%s.FromShared(%v): %v", tc.cast, tc.sharedWrite, err)
		case tc.refused == "":
			if again, err := c.ToShared(side); err != nil || !equal(again, tc.sharedWrite) {
				t.Errorf("%s: %v written as %v comes back as %v, %v", tc.cast, tc.sharedWrite, side, again, err)
			}
		}
	}
}

// memEndpoint holds records in memory: what a cast endpoint hands on.
type memEndpoint struct {
	feed []Change
	put  Record
}

func (m *memEndpoint) Changes(_ context.Context, _, _ string, fn func([]Change) error) error {
	return fn(m.feed)
}
func (m *memEndpoint) Put(_ context.Context, key string, rec Record, _, _ string) (Written, error) {
	m.put = rec
	return Written{Key: key}, nil
}
func (m *memEndpoint) Delete(context.Context, string, string) error { return nil }

// A side's casts convert what it reads and writes; a value its cast
// refuses marks the record invalid (it waits for a person) and the others
// go on; a write whose value would not come back unchanged is refused.
func TestCastEndpoint_ConvertsAndGuardsTheRoundTrip(t *testing.T) {
	RegisterCast("lossy", Cast{ // loses the case: not invertible
		ToShared:   func(v any) (any, error) { return strings.ToLower(v.(string)), nil },
		FromShared: func(v any) (any, error) { return strings.ToUpper(v.(string)), nil },
	})
	inner := &memEndpoint{feed: []Change{
		{Key: "1", Record: Record{"balance": json.Number("1234"), "name": "Ada"}},
		{Key: "2", Record: Record{"balance": "lots", "name": "Bob"}},
	}}
	e, err := withCasts(inner, nil, map[string]string{"balance": "cents"})
	if err != nil {
		t.Fatal(err)
	}
	var got []Change
	if err := e.Changes(context.Background(), "", "", func(p []Change) error { got = p; return nil }); err != nil {
		t.Fatal(err)
	}
	if !equal(got[0].Record["balance"], json.Number("12.34")) || got[0].Invalid != "" || !strings.Contains(got[1].Invalid, "field balance") {
		t.Errorf("changes read: %+v", got)
	}
	if _, err := e.Put(context.Background(), "1", Record{"balance": 20.5, "name": "Ada"}, "", ""); err != nil || !equal(inner.put["balance"], json.Number("2050")) {
		t.Errorf("written %+v, %v; want 2050 cents", inner.put, err)
	}
	if _, err := withCasts(inner, nil, map[string]string{"balance": "dollars"}); err == nil || !strings.Contains(err.Error(), `no cast "dollars"`) {
		t.Errorf("an unknown cast: %v", err)
	}
	lossy, _ := withCasts(inner, nil, map[string]string{"name": "lossy"})
	if _, err := lossy.Put(context.Background(), "1", Record{"name": "Ada"}, "", ""); err == nil || !strings.Contains(err.Error(), "does not come back unchanged") {
		t.Errorf("a lossy cast: %v", err)
	}
}
