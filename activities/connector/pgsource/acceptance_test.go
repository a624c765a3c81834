package pgsource_test

import (
	"cmp"
	"fmt"
	"slices"
	"strconv"
	"testing"
	"time"

	"github.com/tetherflow/tether/activities/connector/connectortest"
	"github.com/tetherflow/tether/activities/connector/pgsource"
	"github.com/tetherflow/tether/activities/lib/failure"
	"github.com/tetherflow/tether/tests/pgtest"
)

// TestSource_Acceptance runs the connector acceptance suite on a table of
// a PostgreSQL schema of its own, read in full by key and incrementally
// by (updated_at, id).
func TestSource_Acceptance(t *testing.T) {
	tests := []struct {
		name   string
		cursor string
	}{
		{name: "full", cursor: ""},
		{name: "incremental", cursor: "updated_at"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			connectortest.Source(t, tableDriver(tt.cursor))
		})
	}
}

// itemCount is the number of rows a fresh table holds.
const itemCount = 23

// tableDriver reads a table of items, incrementally when cursorColumn is set.
func tableDriver(cursorColumn string) connectortest.SourceDriver {
	return connectortest.SourceDriver{
		Open: func(t *testing.T) connectortest.SourceFixture {
			pg := pgtest.New(t)
			exec := func(q string, args ...any) {
				t.Helper()
				if _, err := pg.DB.Exec(q, args...); err != nil {
					t.Fatalf("%s: %v", q, err)
				}
			}
			exec(`CREATE TABLE items (id bigint PRIMARY KEY, name text NOT NULL, qty integer NOT NULL, updated_at timestamptz NOT NULL)`)
			// Cursors out of key order, several rows sharing one.
			base := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
			type item struct {
				id int
				at time.Time
			}
			var items []item
			for i := 1; i <= itemCount; i++ {
				at := base.Add(time.Duration((i*7)%5) * time.Minute)
				exec(`INSERT INTO items VALUES ($1, $2, $3, $4)`, i, fmt.Sprintf("item %d", i), i*10, at)
				items = append(items, item{i, at})
			}
			if cursorColumn != "" {
				slices.SortFunc(items, func(a, b item) int { return cmp.Or(a.at.Compare(b.at), cmp.Compare(a.id, b.id)) })
			}
			var keys []string
			for _, it := range items {
				keys = append(keys, strconv.Itoa(it.id))
			}
			return connectortest.SourceFixture{
				Factory: pgsource.Factory(),
				Config:  pgsource.Config{DSN: pg.DSN, Table: "items", Key: []string{"id"}, CursorColumn: cursorColumn},
				Keys:    keys,
				Change: func(t *testing.T) []string {
					exec(`UPDATE items SET qty = qty + 1, updated_at = (SELECT max(updated_at) FROM items) + interval '1 hour' WHERE id IN (2, 9, 16)`)
					exec(`INSERT INTO items SELECT n, 'item ' || n, 0, (SELECT max(updated_at) FROM items) FROM generate_series(24, 25) n`)
					return []string{"2", "9", "16", "24", "25"}
				},
				Breaks: []connectortest.Break{
					{Name: "table dropped", Do: func(*testing.T) { exec(`DROP TABLE items`) }, Type: failure.TypeConfig},
					{Name: "key column renamed", Do: func(*testing.T) { exec(`ALTER TABLE items RENAME COLUMN id TO item_id`) }, Type: failure.TypeConfig},
				},
			}
		},
		KeyField:    "id",
		CursorField: "updated_at",
		PageSize:    5,
		BadConfigs: []connectortest.BadConfig{
			{Name: "no table", Config: pgsource.Config{DSN: pgtest.DefaultDSN, Key: []string{"id"}}, Field: "table"},
			{Name: "no key", Config: pgsource.Config{DSN: pgtest.DefaultDSN, Table: "items"}, Field: "key"},
			{Name: "not a postgres DSN", Config: &pgsource.Config{DSN: "mysql://db/items", Table: "items", Key: []string{"id"}}, Field: "dsn"},
			{Name: "incremental on a composite key", Config: pgsource.Config{DSN: pgtest.DefaultDSN, Table: "items", Key: []string{"tenant", "id"}, CursorColumn: "updated_at"}, Field: "key"},
			{Name: "columns without the key", Config: pgsource.Config{DSN: pgtest.DefaultDSN, Table: "items", Key: []string{"id"}, Columns: []string{"name"}}, Field: "columns"},
			{Name: "dsn_env not set", Config: pgsource.Config{DSNEnv: "TETHER_ACCEPTANCE_UNSET_DSN", Table: "items", Key: []string{"id"}}, Field: "dsn_env"},
		},
	}
}
