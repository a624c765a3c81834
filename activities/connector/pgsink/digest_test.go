package pgsink

import (
	"context"
	"encoding/json"
	"testing"
)

// TestSink_RowTexts: the texts RowTexts computes for rows not yet written
// equal the texts of the same rows once upserted (every column type, values
// spelled differently than PostgreSQL prints them), differ as soon as one
// value differs, and rows Upsert would reject are rejected.
func TestSink_RowTexts(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	s, db := setup(t, allTypesTable())
	rows := []Row{
		{"id": json.Number("1"), "c_text": "héllo\ttab", "c_integer": " 12 ", "c_bigint": json.Number("9223372036854775807"),
			"c_numeric": json.Number("-1.5e-3"), "c_double": json.Number("1.50"), "c_boolean": "true",
			"c_timestamptz": "2026-03-01T10:00:00.5+02:00", "c_date": "2026-03-01", "c_uuid": "A0EEBC99-9C0B-4EF8-BB6D-6BB9BD380A11",
			"c_jsonb": map[string]any{"b": 1, "a": []any{"x", nil}}, "c_text_array": []any{"a", "b c", nil}},
		{"id": json.Number("2")},
		{"id": json.Number("3"), "c_integer": "not a number"},
	}
	upsert(t, db, s, rows[:2], UpsertOptions{})
	texts, rejected, err := s.RowTexts(ctx, db, rows)
	if err != nil {
		t.Fatal(err)
	}
	if len(rejected) != 1 || rejected[0].Index != 2 {
		t.Fatalf("rejected %+v, want row 2", rejected)
	}
	if len(texts) != 2 {
		t.Fatalf("%d texts, want 2", len(texts))
	}
	e := s.Exprs()
	stored := map[string]string{}
	rs, err := db.QueryContext(ctx, `SELECT `+e.Key+`, `+e.Row+`, `+e.KeyColumn+` FROM `+e.Target+` t`)
	if err != nil {
		t.Fatal(err)
	}
	defer rs.Close()
	for rs.Next() {
		var k, r, kc string
		if err := rs.Scan(&k, &r, &kc); err != nil {
			t.Fatal(err)
		}
		stored[k] = r
		if k != "("+kc+")" {
			t.Errorf("key text %q and key column %q disagree", k, kc)
		}
	}
	for _, tx := range texts {
		if stored[tx.Key] != tx.Row {
			t.Errorf("row %d: computed %q, stored %q", tx.Index, tx.Row, stored[tx.Key])
		}
	}
	changed := Row{"id": json.Number("2"), "c_text": "now set"}
	again, _, err := s.RowTexts(ctx, db, []Row{changed})
	if err != nil {
		t.Fatal(err)
	}
	if len(again) != 1 || again[0].Row == stored[again[0].Key] {
		t.Errorf("a changed row has the stored text: %+v", again)
	}
}
