package pgsink_test

import (
	"bytes"
	"encoding/json"
	"fmt"
	"testing"

	"github.com/tetherflow/tether/activities/connector"
	"github.com/tetherflow/tether/activities/connector/connectortest"
	"github.com/tetherflow/tether/activities/connector/pgsink"
	"github.com/tetherflow/tether/activities/lib/postgres"
	"github.com/tetherflow/tether/tests/pgtest"
)

// TestSink_Acceptance runs the connector acceptance suite on a table of a
// PostgreSQL schema of its own, the worker's database.
func TestSink_Acceptance(t *testing.T) {
	connectortest.Sink(t, connectortest.SinkDriver{
		Open:    openItems,
		Row:     itemRow,
		BadRows: badItems(),
		BadConfigs: []connectortest.BadConfig{
			{Name: "no table name", Config: pgsink.Table{Columns: itemsTable().Columns, Key: []string{"id"}}, Field: "name"},
			{Name: "unsupported column type", Config: withColumn(pgsink.Column{Name: "note", Type: "varchar(10)"}), Field: "columns[4].type"},
			{Name: "key not a declared column", Config: &pgsink.Table{Name: "items", Columns: itemsTable().Columns, Key: []string{"sku"}}, Field: "key[0]"},
			{Name: "version column in the key", Config: pgsink.Table{Name: "items", Columns: itemsTable().Columns, Key: []string{"id"}, VersionColumn: "id"}, Field: "version_column"},
			{Name: "reserved table name", Config: pgsink.Table{Name: pgsink.BeforeImagesTable, Columns: itemsTable().Columns, Key: []string{"id"}}, Field: "name"},
		},
	})
}

// itemsTable is the destination: versioned items, qty checked by
// PostgreSQL itself.
func itemsTable() pgsink.Table {
	return pgsink.Table{
		Name: "items",
		Columns: []pgsink.Column{
			{Name: "id", Type: pgsink.TypeBigint, NotNull: true},
			{Name: "name", Type: pgsink.TypeText, NotNull: true},
			{Name: "qty", Type: pgsink.TypeInteger},
			{Name: "version", Type: pgsink.TypeBigint},
		},
		Key:           []string{"id"},
		VersionColumn: "version",
	}
}

func withColumn(c pgsink.Column) pgsink.Table {
	t := itemsTable()
	t.Columns = append(t.Columns, c)
	return t
}

// openItems creates the items table (with a check constraint the sink
// does not know of) in a fresh schema.
func openItems(t *testing.T) connectortest.SinkFixture {
	pg := pgtest.New(t)
	if _, err := pg.DB.Exec(`CREATE TABLE items (id bigint PRIMARY KEY, name text NOT NULL,
		qty integer CONSTRAINT items_qty_not_negative CHECK (qty >= 0), version bigint)`); err != nil {
		t.Fatal(err)
	}
	return connectortest.SinkFixture{
		Factory:   pgsink.Factory(pg.DB),
		Config:    itemsTable(),
		NewWriter: func() connectortest.CommitWriter { return postgres.NewLazyTx(pg.DB, "acceptance batch") },
		State: func(t *testing.T) []connectortest.StoredRow {
			rows, err := pg.DB.Query(`SELECT id::text, to_jsonb(t)::text FROM items t ORDER BY id`)
			if err != nil {
				t.Fatal(err)
			}
			defer rows.Close()
			var out []connectortest.StoredRow
			for rows.Next() {
				var key, doc string
				if err := rows.Scan(&key, &doc); err != nil {
					t.Fatal(err)
				}
				dec := json.NewDecoder(bytes.NewReader([]byte(doc)))
				dec.UseNumber()
				var row connector.Row
				if err := dec.Decode(&row); err != nil {
					t.Fatal(err)
				}
				out = append(out, connectortest.StoredRow{Key: key, Row: row})
			}
			if err := rows.Err(); err != nil {
				t.Fatal(err)
			}
			return out
		},
	}
}

// itemRow is item key at version v, as the pipeline decodes it.
func itemRow(key string, v int) connector.Row {
	return connector.Row{
		"id":      json.Number(key),
		"name":    fmt.Sprintf("item %s v%d", key, v),
		"qty":     v * 10,
		"version": v,
	}
}

func badItems() []connectortest.BadRow {
	with := func(change func(connector.Row)) func(string) connector.Row {
		return func(key string) connector.Row {
			r := itemRow(key, 1)
			change(r)
			return r
		}
	}
	return []connectortest.BadRow{
		{Name: "quantity not a number", Row: with(func(r connector.Row) { r["qty"] = "many" }), Why: `"qty"`},
		{Name: "no key", Row: with(func(r connector.Row) { delete(r, "id") }), Why: `"id"`},
		{Name: "not_null column missing", Row: with(func(r connector.Row) { r["name"] = nil }), Why: `"name"`},
		{Name: "check constraint", Row: with(func(r connector.Row) { r["qty"] = -1 }), Why: "items_qty_not_negative"},
		{Name: "integer out of range", Row: with(func(r connector.Row) { r["qty"] = json.Number("99999999999") }), Why: "qty"},
	}
}
