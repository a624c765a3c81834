package integration

import (
	"context"
	"strings"
	"testing"
	"testing/fstest"

	"github.com/tetherflow/tether/activities/connector/pgsink"
	"github.com/tetherflow/tether/activities/connector/pgsource"
	"github.com/tetherflow/tether/activities/integration"
	"github.com/tetherflow/tether/activities/lib/mapping"
	"github.com/tetherflow/tether/activities/store"
	"github.com/tetherflow/tether/workflows/datasync"
)

const ordersSchema = `{
  "$schema": "https://json-schema.org/draft/2020-12/schema",
  "type": "object",
  "required": ["id", "customer_email", "total", "updated_at"],
  "properties": {
    "id": {"type": "integer"},
    "customer_email": {"type": "string", "pattern": "@"},
    "total": {"type": "number", "minimum": 0},
    "updated_at": {"type": "string", "format": "date-time"}
  }
}`

// ordersFromPostgres reads table source_orders of the test schema
// incrementally by (updated_at, id) into orders_copy.
func ordersFromPostgres(dsn string) integration.Definition {
	return integration.Definition{
		Name:   "pg-orders",
		Source: integration.Source{Postgres: &pgsource.Config{DSN: dsn, Table: "source_orders", Key: []string{"id"}, CursorColumn: "updated_at"}},
		Schema: "orders.schema.json", KeyField: "id", CursorField: "updated_at",
		Mapping: mapping.Mapping{Fields: []mapping.Field{
			{To: "id", From: "id", Cast: "int", Required: true},
			{To: "email", From: "customer_email", Normalize: []string{"email"}},
			{To: "total", From: "total"},
			{To: "updated_at", From: "updated_at", Cast: "timestamp"},
		}},
		Destination: integration.Destination{Postgres: &pgsink.Table{
			Name: "orders_copy",
			Columns: []pgsink.Column{
				{Name: "id", Type: "bigint"}, {Name: "email", Type: "text"},
				{Name: "total", Type: "numeric"}, {Name: "updated_at", Type: "timestamptz"},
			},
			Key: []string{"id"}, VersionColumn: "updated_at",
		}},
		BatchSize: 500,
	}
}

func TestPostgresSource_IncrementalSyncIntoPostgres(t *testing.T) {
	s := newStack(t, stackOptions{noWorker: true})
	if _, err := s.schema.DB.Exec(`
CREATE TABLE source_orders (id bigint PRIMARY KEY, customer_email text, total numeric, updated_at timestamptz NOT NULL);
INSERT INTO source_orders
SELECT g, ' Buyer' || g || '@Example.com', g * 1.25, timestamptz '2026-01-01' + (g % 97) * interval '1 minute'
FROM generate_series(1, 3000) g;
UPDATE source_orders SET customer_email = 'no-at-sign' WHERE id IN (17, 1700);`); err != nil {
		t.Fatal(err)
	}
	s.restartWorker([]integration.Definition{ordersFromPostgres(s.schema.DSN)},
		withSchemaFiles(t, fstest.MapFS{"orders.schema.json": {Data: []byte(ordersSchema)}}))

	check := func() {
		t.Helper()
		var diff int
		if err := s.schema.DB.QueryRow(`
SELECT count(*) FROM source_orders o FULL JOIN orders_copy c USING (id)
WHERE o.customer_email LIKE '%@%' AND (c.id IS NULL OR c.email <> lower(trim(o.customer_email)) OR c.total <> o.total OR c.updated_at <> o.updated_at)
   OR o.customer_email NOT LIKE '%@%' AND c.id IS NOT NULL
   OR o.id IS NULL`).Scan(&diff); err != nil {
			t.Fatal(err)
		}
		if diff != 0 {
			t.Errorf("%d rows differ between source_orders and orders_copy", diff)
		}
	}
	first := s.mustSync(datasync.Input{Integration: "pg-orders"})
	if first.Counts.Inserted != 2998 || first.Counts.Invalid != 2 {
		t.Fatalf("first run counts %+v, want 2998 inserted and 2 quarantined", first.Counts)
	}
	check()

	// Rows change, some sharing the checkpoint's cursor value, one is fixed.
	if _, err := s.schema.DB.Exec(`
UPDATE source_orders SET total = total + 1, updated_at = timestamptz '2026-02-01' WHERE id % 100 = 0;
UPDATE source_orders SET customer_email = 'fixed@example.com', updated_at = timestamptz '2026-02-01' WHERE id = 17;
INSERT INTO source_orders VALUES (5000, 'new@example.com', 9, timestamptz '2026-02-01');`); err != nil {
		t.Fatal(err)
	}
	second := s.mustSync(datasync.Input{Integration: "pg-orders"})
	// 30 rows changed (1700 among them, still invalid), 17 fixed, 5000 new.
	if second.Counts.Fetched != 32 || second.Counts.Updated != 29 || second.Counts.Inserted != 2 || second.Counts.Invalid != 1 {
		t.Errorf("second run counts %+v, want 32 fetched, 29 updated, 2 inserted (5000 and the fixed 17), 1 invalid", second.Counts)
	}
	check()
	third := s.mustSync(datasync.Input{Integration: "pg-orders"})
	if third.Counts.Applied() != 0 {
		t.Errorf("a run with nothing new applied %d rows", third.Counts.Applied())
	}
	// The quarantine holds what is still broken: 1700 once, in its latest
	// version; 17's entry was resolved by the run that applied its fix.
	pending, err := s.store.ListQuarantine(context.Background(), store.QuarantineFilter{Integration: "pg-orders", PendingOnly: true})
	if err != nil || len(pending) != 1 || pending[0].Key != "1700" || !strings.Contains(string(pending[0].Payload), "2126") {
		t.Errorf("pending quarantine = %+v, %v; want only 1700 with total 2126", pending, err)
	}
	if n := s.count(`SELECT count(*) FROM tether_quarantine WHERE record_key = '17' AND replay_run_id = $1`, second.RunID); n != 1 {
		t.Errorf("17's entry is not marked resolved by the run that applied it")
	}
}
