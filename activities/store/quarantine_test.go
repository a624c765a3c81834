package store

import (
	"encoding/json"
	"testing"
)

func TestStore_Quarantine(t *testing.T) {
	t.Parallel()
	s := newStore(t)
	ctx := t.Context()
	entries := []QuarantineEntry{
		{Integration: "crm", RunID: "r1", Page: 1, Index: 0, Key: "7", Step: StepValidate, Payload: json.RawMessage(`{"id": 7, "email": 12}`),
			Errors: []ErrorDetail{{Pointer: "/email", Keyword: "type", Message: "expected string, got number"}}},
		{Integration: "crm", RunID: "r1", Page: 1, Index: 3, Step: StepKey, Payload: json.RawMessage(`{"id": tru`),
			Errors: []ErrorDetail{{Pointer: "", Message: "not JSON"}}},
		{Integration: "crm", RunID: "r1", Page: 2, Index: 0, Key: "9\x00", Step: StepTransform, Payload: json.RawMessage(`{"name":"\u0000x"}`),
			Errors: []ErrorDetail{{Pointer: "/name", Message: "bad byte \x00 \xff"}}},
		{Integration: "other", RunID: "o1", Page: 1, Index: 0, Key: "1", Step: StepApply, Payload: json.RawMessage(`{"id":1}`),
			Errors: []ErrorDetail{{Pointer: "/id", Message: "duplicate key"}}},
	}

	n, err := s.Quarantine(ctx, nil, entries)
	if err != nil || n != len(entries) {
		t.Fatalf("Quarantine = %d, %v; want %d", n, err, len(entries))
	}
	// A retried step quarantines the same records again: nothing new.
	tx, err := s.DB.BeginTx(ctx, nil)
	if err != nil {
		t.Fatal(err)
	}
	if n, err := s.Quarantine(ctx, tx, append(entries, entries[0])); err != nil || n != 0 {
		t.Fatalf("Quarantine again = %d, %v; want 0 new", n, err)
	}
	if err := tx.Commit(); err != nil {
		t.Fatal(err)
	}
	if n, err := s.Quarantine(ctx, nil, nil); err != nil || n != 0 {
		t.Errorf("Quarantine(nil) = %d, %v", n, err)
	}

	all, err := s.ListQuarantine(ctx, QuarantineFilter{})
	if err != nil {
		t.Fatalf("ListQuarantine: %v", err)
	}
	if len(all) != len(entries) {
		t.Fatalf("ListQuarantine returned %d entries, want %d", len(all), len(entries))
	}
	for i := 1; i < len(all); i++ {
		if all[i].ID <= all[i-1].ID {
			t.Errorf("entries not ordered by id: %d after %d", all[i].ID, all[i-1].ID)
		}
	}
	first := all[0]
	if first.Key != "7" || first.Step != StepValidate || first.Page != 1 || first.Index != 0 || first.CreatedAt.IsZero() ||
		len(first.Errors) != 1 || first.Errors[0] != entries[0].Errors[0] || first.ReplayedAt != nil {
		t.Errorf("first entry = %+v", first)
	}
	var payload map[string]any
	if err := json.Unmarshal(first.Payload, &payload); err != nil || payload["email"] != float64(12) {
		t.Errorf("first payload = %s (%v)", first.Payload, err)
	}
	// Invalid JSON is kept as text, and the entry still marshals.
	notJSON := all[1]
	if notJSON.Payload != nil || notJSON.PayloadText != `{"id": tru` {
		t.Errorf("invalid JSON entry: Payload %q, PayloadText %q; want nil and the raw text", notJSON.Payload, notJSON.PayloadText)
	}
	if _, err := json.Marshal(notJSON); err != nil {
		t.Errorf("marshal entry with invalid payload: %v", err)
	}
	var payloadNull, textNull bool
	if err := s.DB.QueryRow(`SELECT payload IS NULL, payload_text IS NULL FROM tether_quarantine WHERE id = $1`, notJSON.ID).
		Scan(&payloadNull, &textNull); err != nil {
		t.Fatal(err)
	}
	if !payloadNull || textNull {
		t.Errorf("invalid JSON row: payload null %v, payload_text null %v; want true, false", payloadNull, textNull)
	}
	// What jsonb cannot hold (\u0000, NUL, invalid UTF-8) does not block the batch.
	odd := all[2]
	if odd.PayloadText != `{"name":"\u0000x"}` || odd.Key != "9\uFFFD" || odd.Errors[0].Message != "bad byte \uFFFD \uFFFD" {
		t.Errorf("odd entry: PayloadText %q, Key %q, message %q", odd.PayloadText, odd.Key, odd.Errors[0].Message)
	}

	if err := s.MarkReplayed(ctx, nil, []int64{all[0].ID, all[1].ID}, "replay-1"); err != nil {
		t.Fatalf("MarkReplayed: %v", err)
	}
	// A second replay of the same records keeps the first.
	if err := s.MarkReplayed(ctx, nil, []int64{all[0].ID}, "replay-2"); err != nil {
		t.Fatalf("MarkReplayed again: %v", err)
	}

	filters := []struct {
		name string
		give QuarantineFilter
		want []int64
	}{
		{"all", QuarantineFilter{}, []int64{all[0].ID, all[1].ID, all[2].ID, all[3].ID}},
		{"integration", QuarantineFilter{Integration: "crm"}, []int64{all[0].ID, all[1].ID, all[2].ID}},
		{"run", QuarantineFilter{RunID: "o1"}, []int64{all[3].ID}},
		{"pending", QuarantineFilter{Integration: "crm", PendingOnly: true}, []int64{all[2].ID}},
		{"after id", QuarantineFilter{AfterID: all[1].ID}, []int64{all[2].ID, all[3].ID}},
		{"limit", QuarantineFilter{Integration: "crm", Limit: 2}, []int64{all[0].ID, all[1].ID}},
		{"page 2 by keyset", QuarantineFilter{Integration: "crm", AfterID: all[1].ID, Limit: 2}, []int64{all[2].ID}},
		{"nothing", QuarantineFilter{Integration: "nobody"}, nil},
	}
	for _, tt := range filters {
		t.Run(tt.name, func(t *testing.T) {
			got, err := s.ListQuarantine(ctx, tt.give)
			if err != nil {
				t.Fatalf("ListQuarantine: %v", err)
			}
			var ids []int64
			for _, e := range got {
				ids = append(ids, e.ID)
			}
			if len(ids) != len(tt.want) {
				t.Fatalf("ListQuarantine(%+v) ids = %v, want %v", tt.give, ids, tt.want)
			}
			for i := range ids {
				if ids[i] != tt.want[i] {
					t.Fatalf("ListQuarantine(%+v) ids = %v, want %v", tt.give, ids, tt.want)
				}
			}
			wantCount := len(tt.want)
			if tt.give.Limit > 0 { // CountQuarantine ignores Limit
				f := tt.give
				f.Limit = 0
				all, err := s.ListQuarantine(ctx, f)
				if err != nil {
					t.Fatal(err)
				}
				wantCount = len(all)
			}
			if n, err := s.CountQuarantine(ctx, tt.give); err != nil || n != wantCount {
				t.Errorf("CountQuarantine(%+v) = %d, %v; want %d", tt.give, n, err, wantCount)
			}
		})
	}

	replayed, err := s.ListQuarantine(ctx, QuarantineFilter{Integration: "crm", Limit: 1})
	if err != nil {
		t.Fatal(err)
	}
	if r := replayed[0]; r.ReplayedAt == nil || r.ReplayRunID != "replay-1" {
		t.Errorf("replayed entry: ReplayedAt %v, ReplayRunID %q; want set, replay-1", r.ReplayedAt, r.ReplayRunID)
	}
}
