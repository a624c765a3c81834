package pgsink

import (
	"context"
	"encoding/json"
	"fmt"
	"strings"
	"testing"
)

// benchRows builds n rows with keys from first, as the JSON decoder hands
// them over.
func benchRows(first, n int) []Row {
	rows := make([]Row, n)
	for i := range rows {
		id := first + i
		rows[i] = Row{
			"id":         json.Number(fmt.Sprint(id)),
			"name":       fmt.Sprintf("item %d", id),
			"qty":        json.Number(fmt.Sprint(id % 100)),
			"updated_at": "2024-05-01T12:00:00Z",
		}
	}
	return rows
}

// BenchmarkUpsert1000 measures one 1,000-row batch of new keys through
// Upsert (COPY into staging, one INSERT ... ON CONFLICT), committed.
func BenchmarkUpsert1000(b *testing.B) {
	s, db := setup(b, itemsTable())
	ctx := context.Background()
	b.ResetTimer()
	for i := 0; b.Loop(); i++ {
		tx, err := db.BeginTx(ctx, nil)
		if err != nil {
			b.Fatal(err)
		}
		res, err := s.Upsert(ctx, tx, benchRows(i*1000, 1000), UpsertOptions{})
		if err != nil {
			b.Fatal(err)
		}
		if err := tx.Commit(); err != nil {
			b.Fatal(err)
		}
		if res.Inserted != 1000 {
			b.Fatalf("Upsert() = %+v", res)
		}
	}
}

// BenchmarkPlainInsert1000 is the baseline: the same rows as one plain
// multi-row INSERT with parameters, committed.
func BenchmarkPlainInsert1000(b *testing.B) {
	_, db := setup(b, itemsTable())
	ctx := context.Background()
	var q strings.Builder
	q.WriteString("INSERT INTO items (id, name, qty, updated_at) VALUES ")
	for r := range 1000 {
		if r > 0 {
			q.WriteByte(',')
		}
		fmt.Fprintf(&q, "($%d,$%d,$%d,$%d)", 4*r+1, 4*r+2, 4*r+3, 4*r+4)
	}
	sql := q.String()
	b.ResetTimer()
	for i := 0; b.Loop(); i++ {
		rows := benchRows(i*1000, 1000)
		args := make([]any, 0, 4000)
		for _, r := range rows {
			args = append(args, r["id"].(json.Number).String(), r["name"], r["qty"].(json.Number).String(), r["updated_at"])
		}
		tx, err := db.BeginTx(ctx, nil)
		if err != nil {
			b.Fatal(err)
		}
		if _, err := tx.ExecContext(ctx, sql, args...); err != nil {
			b.Fatal(err)
		}
		if err := tx.Commit(); err != nil {
			b.Fatal(err)
		}
	}
}
