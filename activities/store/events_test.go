package store

import (
	"context"
	"reflect"
	"testing"
	"time"

	"github.com/tetherflow/tether/activities/lib/failure"
)

// recordIn records ds in a transaction that commits.
func recordIn(t *testing.T, s *Store, integration string, ds ...Delivery) []bool {
	t.Helper()
	ctx := context.Background()
	tx, err := s.DB.BeginTx(ctx, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer tx.Rollback() //nolint:errcheck // no-op after commit
	fresh, err := s.RecordDeliveries(ctx, tx, integration, ds)
	if err != nil {
		t.Fatalf("RecordDeliveries() = %v", err)
	}
	if err := tx.Commit(); err != nil {
		t.Fatal(err)
	}
	return fresh
}

// deliveries lists the recorded deliveries as source/id=integration:key.
func deliveries(t *testing.T, s *Store) []string {
	t.Helper()
	rows, err := s.DB.Query(`SELECT source || '/' || delivery_id || '=' || integration || ':' || entity_key
		FROM tether_event_deliveries ORDER BY source, delivery_id`)
	if err != nil {
		t.Fatal(err)
	}
	defer rows.Close()
	var out []string
	for rows.Next() {
		var s string
		if err := rows.Scan(&s); err != nil {
			t.Fatal(err)
		}
		out = append(out, s)
	}
	if err := rows.Err(); err != nil {
		t.Fatal(err)
	}
	return out
}

func TestStore_RecordDeliveries(t *testing.T) {
	t.Parallel()
	s := newStore(t)
	steps := []struct {
		name string
		give []Delivery
		want []bool
	}{
		{
			name: "all new",
			give: []Delivery{{"crm", "d1", "1", ""}, {"crm", "d2", "2", ""}, {"billing", "d1", "1", ""}},
			want: []bool{true, true, true},
		},
		{
			name: "redelivered and new mixed, order kept",
			give: []Delivery{{"crm", "d3", "3", ""}, {"crm", "d1", "1", ""}, {"billing", "d2", "7", ""}, {"billing", "d1", "1", ""}},
			want: []bool{true, false, true, false},
		},
		{
			name: "the same delivery twice in one call: only the first is new",
			give: []Delivery{{"crm", "d4", "4", ""}, {"crm", "d5", "5", ""}, {"crm", "d4", "4", ""}, {"crm", "d4", "other", ""}},
			want: []bool{true, true, false, false},
		},
		{
			name: "a key that is not valid text is kept readable",
			give: []Delivery{{"crm", "d6", "a\x00b\xff", ""}},
			want: []bool{true},
		},
		{
			name: "nothing",
			give: nil,
			want: []bool{},
		},
	}
	for _, st := range steps {
		got := recordIn(t, s, "crm-contacts", st.give...)
		if !reflect.DeepEqual(got, st.want) {
			t.Errorf("%s: RecordDeliveries() = %v, want %v", st.name, got, st.want)
		}
	}
	want := []string{
		"billing/d1=crm-contacts:1", "billing/d2=crm-contacts:7",
		"crm/d1=crm-contacts:1", "crm/d2=crm-contacts:2", "crm/d3=crm-contacts:3",
		"crm/d4=crm-contacts:4", "crm/d5=crm-contacts:5", "crm/d6=crm-contacts:a\uFFFDb\uFFFD",
	}
	if got := deliveries(t, s); !reflect.DeepEqual(got, want) {
		t.Errorf("recorded deliveries:\n got %q\nwant %q", got, want)
	}
}

func TestStore_RecordDeliveries_RolledBackLeavesNothing(t *testing.T) {
	t.Parallel()
	s := newStore(t)
	ctx := context.Background()
	tx, err := s.DB.BeginTx(ctx, nil)
	if err != nil {
		t.Fatal(err)
	}
	fresh, err := s.RecordDeliveries(ctx, tx, "crm-contacts", []Delivery{{"crm", "d1", "1", ""}, {"crm", "d2", "2", ""}})
	if err != nil || !reflect.DeepEqual(fresh, []bool{true, true}) {
		t.Fatalf("RecordDeliveries() = %v, %v", fresh, err)
	}
	if err := tx.Rollback(); err != nil {
		t.Fatal(err)
	}
	if got := deliveries(t, s); len(got) != 0 {
		t.Fatalf("a rolled-back apply left deliveries: %q", got)
	}
	for _, id := range []string{"d1", "d2"} {
		if seen, err := s.DeliveryRecorded(ctx, "crm", id); err != nil || seen {
			t.Errorf("DeliveryRecorded(crm, %s) = %v, %v after a rollback, want false", id, seen, err)
		}
	}
	// The apply that retries the batch finds them new again.
	if got := recordIn(t, s, "crm-contacts", Delivery{"crm", "d1", "1", ""}, Delivery{"crm", "d2", "2", ""}); !reflect.DeepEqual(got, []bool{true, true}) {
		t.Errorf("retry after rollback: RecordDeliveries() = %v, want both new", got)
	}
}

func TestStore_RecordDeliveries_WithoutTransaction(t *testing.T) {
	t.Parallel()
	s := newStore(t)
	got, err := s.RecordDeliveries(context.Background(), nil, "crm-contacts", []Delivery{{"crm", "d1", "1", ""}, {"crm", "d1", "1", ""}})
	if err != nil || !reflect.DeepEqual(got, []bool{true, false}) {
		t.Fatalf("RecordDeliveries(nil tx) = %v, %v; want [true false]", got, err)
	}
	if seen, err := s.DeliveryRecorded(context.Background(), "crm", "d1"); err != nil || !seen {
		t.Errorf("DeliveryRecorded = %v, %v; want true", seen, err)
	}
}

func TestStore_RecordDeliveries_ErrorsAreClassified(t *testing.T) {
	t.Parallel()
	s := newStore(t)
	// A delivery id PostgreSQL cannot store as text.
	_, err := s.RecordDeliveries(context.Background(), nil, "crm-contacts", []Delivery{{"crm", "bad\x00id", "1", ""}})
	if err == nil || !failure.IsPermanent(err) {
		t.Fatalf("RecordDeliveries(NUL in the id) = %v, want a permanent error", err)
	}
}

func TestStore_DeliveryRecorded(t *testing.T) {
	t.Parallel()
	s := newStore(t)
	recordIn(t, s, "crm-contacts", Delivery{"crm", "d1", "1", ""})
	tests := []struct {
		source, id string
		want       bool
	}{
		{"crm", "d1", true},
		{"crm", "d2", false},
		{"billing", "d1", false}, // ids are per source
		{"CRM", "d1", false},
		{"crm", "D1", false},
	}
	for _, tt := range tests {
		got, err := s.DeliveryRecorded(context.Background(), tt.source, tt.id)
		if err != nil || got != tt.want {
			t.Errorf("DeliveryRecorded(%q, %q) = %v, %v; want %v", tt.source, tt.id, got, err, tt.want)
		}
	}
}

func TestStore_PruneDeliveries(t *testing.T) {
	t.Parallel()
	s := newStore(t)
	recordIn(t, s, "crm-contacts",
		Delivery{"crm", "old1", "1", ""}, Delivery{"crm", "old2", "2", ""}, Delivery{"crm", "recent", "3", ""}, Delivery{"crm", "new", "4", ""})
	for id, age := range map[string]string{"old1": "8 days", "old2": "30 days", "recent": "6 days"} {
		if _, err := s.DB.Exec(`UPDATE tether_event_deliveries SET applied_at = now() - $1::interval WHERE delivery_id = $2`, age, id); err != nil {
			t.Fatal(err)
		}
	}
	n, err := s.PruneDeliveries(context.Background(), 7*24*time.Hour)
	if err != nil || n != 2 {
		t.Fatalf("PruneDeliveries(7 days) = %d, %v; want 2", n, err)
	}
	want := []string{"crm/new=crm-contacts:4", "crm/recent=crm-contacts:3"}
	if got := deliveries(t, s); !reflect.DeepEqual(got, want) {
		t.Errorf("after pruning: %q, want %q", got, want)
	}
	// A pruned delivery is new again (only the version guards it then).
	if got := recordIn(t, s, "crm-contacts", Delivery{"crm", "old1", "1", ""}, Delivery{"crm", "recent", "3", ""}); !reflect.DeepEqual(got, []bool{true, false}) {
		t.Errorf("after pruning: RecordDeliveries() = %v, want [true false]", got)
	}
	if n, err := s.PruneDeliveries(context.Background(), 7*24*time.Hour); err != nil || n != 0 {
		t.Errorf("second PruneDeliveries = %d, %v; want 0", n, err)
	}
	// A retention that is not a whole number of days is honoured:
	// "new" (91s ago) and "recent" (6 days ago) go, "old1" (60s ago)
	// stays.
	for id, age := range map[string]string{"new": "91 seconds", "old1": "60 seconds"} {
		if _, err := s.DB.Exec(`UPDATE tether_event_deliveries SET applied_at = now() - $1::interval WHERE delivery_id = $2`, age, id); err != nil {
			t.Fatal(err)
		}
	}
	if n, err := s.PruneDeliveries(context.Background(), 90500*time.Millisecond); err != nil || n != 2 {
		t.Errorf("PruneDeliveries(90.5s) = %d, %v; want 2", n, err)
	}
	if got, want := deliveries(t, s), []string{"crm/old1=crm-contacts:1"}; !reflect.DeepEqual(got, want) {
		t.Errorf("after pruning with 90.5s: %q, want %q", got, want)
	}
}
