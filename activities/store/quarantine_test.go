package store

import (
	"encoding/json"
	"strings"
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
	if err != nil || n.New != len(entries) || n.Counted != len(entries) {
		t.Fatalf("Quarantine = %+v, %v; want %d new and counted", n, err, len(entries))
	}
	// A retried step quarantines the same records again: nothing new, and
	// its run counts them as the first attempt did.
	tx, err := s.DB.BeginTx(ctx, nil)
	if err != nil {
		t.Fatal(err)
	}
	if n, err := s.Quarantine(ctx, tx, append(entries, entries[0])); err != nil || n.New != 0 || n.Counted != len(entries) {
		t.Fatalf("Quarantine again = %+v, %v; want 0 new, %d counted", n, err, len(entries))
	}
	if err := tx.Commit(); err != nil {
		t.Fatal(err)
	}
	if n, err := s.Quarantine(ctx, nil, nil); err != nil || n != (Quarantined{}) {
		t.Errorf("Quarantine(nil) = %+v, %v", n, err)
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

// TestStore_QuarantineOnePendingEntryPerRecord: a record met again while it
// waits in quarantine (a rerun, a full read, a reset, a replay that still
// finds it invalid) keeps one pending entry per key (per payload without a
// key), with its latest version and errors.
func TestStore_QuarantineOnePendingEntryPerRecord(t *testing.T) {
	t.Parallel()
	s := newStore(t)
	ctx := t.Context()
	entry := func(run string, page, index int, key, payload, msg string) QuarantineEntry {
		return QuarantineEntry{Integration: "crm", RunID: run, Page: page, Index: index, Key: key, Step: StepValidate,
			Payload: json.RawMessage(payload), Errors: []ErrorDetail{{Pointer: "/email", Message: msg}}}
	}
	pending := func() []QuarantineEntry {
		t.Helper()
		got, err := s.ListQuarantine(ctx, QuarantineFilter{Integration: "crm", PendingOnly: true})
		if err != nil {
			t.Fatal(err)
		}
		return got
	}
	// Two identical keyless records in one page are one entry; two versions
	// of key 7 in one page are one entry, the last.
	n, err := s.Quarantine(ctx, nil, []QuarantineEntry{
		entry("r1", 1, 0, "7", `{"id":7,"email":1}`, "first"),
		entry("r1", 1, 1, "", `{"email":2}`, "no key"),
		entry("r1", 1, 2, "", `{"email": 2}`, "no key"), // same JSON, other spacing
		entry("r1", 1, 3, "", `{"email":3}`, "no key"),  // another keyless record
		entry("r1", 1, 4, "7", `{"id":7,"email":4}`, "changed"),
	})
	if err != nil || n.New != 3 || n.Counted != 3 {
		t.Fatalf("Quarantine = %+v, %v; want 3 new, 3 counted (one per distinct record)", n, err)
	}
	got := pending()
	if len(got) != 3 || got[2].Key != "7" || got[2].Index != 4 || got[2].Errors[0].Message != "changed" {
		t.Fatalf("pending = %+v; want key 7 once, as its last version", got)
	}
	// Another run meets record 7 again, changed: no new entry, the latest
	// version, errors and location.
	n, err = s.Quarantine(ctx, nil, []QuarantineEntry{entry("r2", 5, 9, "7", `{"email":5, "id":7}`, "second")})
	if err != nil || n.New != 0 || n.Counted != 1 {
		t.Fatalf("Quarantine again = %+v, %v; want 0 new, 1 counted by r2", n, err)
	}
	got = pending()
	if e := got[2]; len(got) != 3 || e.RunID != "r2" || e.Page != 5 || e.Errors[0].Message != "second" || !strings.Contains(string(e.Payload), `"email": 5`) {
		t.Fatalf("pending = %+v; want key 7's entry updated to r2's version", got)
	}
	// r2's step retried at the same place counts it again; r2 meeting key
	// 7 at another place of its read (the source gave it twice) does not.
	if n, err := s.Quarantine(ctx, nil, []QuarantineEntry{entry("r2", 5, 9, "7", `{"email":5, "id":7}`, "second")}); err != nil || n.Counted != 1 {
		t.Fatalf("retried at the same place = %+v, %v; want 1 counted", n, err)
	}
	if n, err := s.Quarantine(ctx, nil, []QuarantineEntry{entry("r2", 6, 0, "7", `{"email":5, "id":7}`, "second")}); err != nil || n.Counted != 0 || n.New != 0 {
		t.Fatalf("met again on another page = %+v, %v; want 0 counted", n, err)
	}
	// The entry stays where r2 first met it: page 5's step retried after
	// page 6 still counts it.
	if n, err := s.Quarantine(ctx, nil, []QuarantineEntry{entry("r2", 5, 9, "7", `{"email":5, "id":7}`, "second")}); err != nil || n.Counted != 1 {
		t.Fatalf("page 5 again after page 6 = %+v, %v; want 1 counted", n, err)
	}
	// Once replayed, meeting the record again is a new pending entry.
	if err := s.MarkReplayed(ctx, nil, []int64{got[2].ID}, "replay-1"); err != nil {
		t.Fatal(err)
	}
	if n, err := s.Quarantine(ctx, nil, []QuarantineEntry{entry("r3", 1, 0, "7", `{"id":7,"email":6}`, "third")}); err != nil || n.New != 1 || n.Counted != 1 {
		t.Fatalf("Quarantine after replay = %+v, %v; want 1 new", n, err)
	}
	// Compensating replay-1 puts its entry back only when the key has no
	// other pending entry (here it has), so the list never holds it twice.
	if err := s.UnmarkReplayed(ctx, "replay-1"); err != nil {
		t.Fatal(err)
	}
	if got := pending(); len(got) != 3 {
		t.Fatalf("after UnmarkReplayed with a pending twin: %d pending, want 3", len(got))
	}
	// Without a twin it is pending again.
	if err := s.MarkReplayed(ctx, nil, []int64{got[0].ID}, "replay-2"); err != nil {
		t.Fatal(err)
	}
	if got := pending(); len(got) != 2 {
		t.Fatalf("after MarkReplayed: %d pending, want 2", len(got))
	}
	if err := s.UnmarkReplayed(ctx, "replay-2"); err != nil {
		t.Fatal(err)
	}
	if again := pending(); len(again) != 3 || again[0].ID != got[0].ID || again[0].ReplayRunID != "" {
		t.Fatalf("after UnmarkReplayed: %+v; want entry %d pending again", again, got[0].ID)
	}
	// A sync run applying a valid version of key 7 resolves its entry.
	if err := s.Supersede(ctx, nil, "crm", []string{"7", "8"}, "sync-9"); err != nil {
		t.Fatal(err)
	}
	for _, e := range pending() {
		if e.Key == "7" {
			t.Errorf("key 7 still pending after Supersede: %+v", e)
		}
	}
	if n, _ := s.CountQuarantine(ctx, QuarantineFilter{Integration: "crm", PendingOnly: true}); n != 2 {
		t.Errorf("%d pending after Supersede, want the 2 keyless records", n)
	}
}
