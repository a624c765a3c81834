package pgsource

import (
	"context"
	"encoding/json"
	"testing"

	"github.com/tetherflow/tether/activities/connector"
	"github.com/tetherflow/tether/activities/lib/cursor"
)

// benchRows is the size of the table the benchmarks read 1,000-row pages of.
const benchRows = 10000

// BenchmarkFetchPage reads 1,000-row pages through Fetch, walking the
// table by key: keyset SQL, its own REPEATABLE READ READ ONLY transaction
// per page, records rendered by to_jsonb.
func BenchmarkFetchPage(b *testing.B) {
	db := setup(b, itemsDDL)
	insertItems(b, db, 1, benchRows)
	s := newSource(b, db, Config{Table: "items", Key: []string{"id"}})
	ctx := context.Background()
	var pos cursor.Position
	for b.Loop() {
		page, err := s.Fetch(ctx, connector.Request{Position: pos, Limit: 1000})
		if err != nil {
			b.Fatal(err)
		}
		if len(page.Records) != 1000 && !page.Done {
			b.Fatalf("Fetch() = %d records", len(page.Records))
		}
		pos = page.Next
		if page.Done || page.Next.Token == "" {
			pos = cursor.Position{}
		}
	}
}

// BenchmarkPlainQuery is the baseline: the same 1,000-row keyset SELECT of
// to_jsonb records with database/sql into []json.RawMessage, outside a
// transaction.
func BenchmarkPlainQuery(b *testing.B) {
	db := setup(b, itemsDDL)
	insertItems(b, db, 1, benchRows)
	ctx := context.Background()
	var after int64
	for b.Loop() {
		rows, err := db.DB.QueryContext(ctx,
			`SELECT t.id, to_jsonb(t)::text FROM items AS t WHERE t.id > $1 ORDER BY t.id LIMIT $2`, after, 1000)
		if err != nil {
			b.Fatal(err)
		}
		records := make([]json.RawMessage, 0, 1000)
		for rows.Next() {
			var rec []byte
			if err := rows.Scan(&after, &rec); err != nil {
				b.Fatal(err)
			}
			records = append(records, rec)
		}
		if err := rows.Err(); err != nil {
			b.Fatal(err)
		}
		rows.Close()
		if len(records) < 1000 {
			after = 0
		}
	}
}
