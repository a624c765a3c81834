package pgsink

import (
	"context"
	"database/sql"
	"encoding/json"
	"fmt"
	"strings"
	"testing"

	"github.com/tetherflow/tether/activities/lib/failure"
)

// sweep runs Sweep in its own transaction and commits.
func sweep(t testing.TB, db *sql.DB, s *TableWriter, runID string, seq int, images bool, keep []string) int {
	t.Helper()
	ctx := context.Background()
	tx, err := db.BeginTx(ctx, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer tx.Rollback() //nolint:errcheck // no-op after commit
	n, err := s.Sweep(ctx, tx, runID, seq, images, keep)
	if err != nil {
		t.Fatalf("Sweep(%s, %d) = %v", runID, seq, err)
	}
	if err := tx.Commit(); err != nil {
		t.Fatal(err)
	}
	return n
}

// seenKeys lists the keys a run recorded in the seen-keys table, as text.
func seenKeys(t testing.TB, db *sql.DB, runID string) string {
	t.Helper()
	var got sql.NullString
	if err := db.QueryRow(`SELECT string_agg(key::text, ' ' ORDER BY key::text) FROM tether_seen_keys WHERE run_id = $1`, runID).Scan(&got); err != nil {
		t.Fatal(err)
	}
	return got.String
}

func TestSink_Sweep(t *testing.T) {
	tests := []struct {
		name   string
		images bool
	}{
		{name: "plain"},
		{name: "with before-images, compensated afterwards", images: true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			s, db := setup(t, itemsTable())
			// The destination as the refresh finds it: rows 1-6 from
			// earlier syncs.
			upsert(t, db, s, []Row{item(1, "a", 1, 10), item(2, "b", 2, 10), item(3, "c", 3, 10),
				item(4, "d", 4, 10), item(5, "e", 5, 10), item(6, "f", 6, 10)}, UpsertOptions{})
			original := contents(t, db, s)

			// The refresh: 1 unchanged, 2 changed, 3 stale (older version
			// in the source), 7 new; 4 is quarantined; 5 and 6 are gone
			// from the source. Another run's keys do not count.
			opt := func(seq int) UpsertOptions {
				return UpsertOptions{BeforeImages: tt.images, RunID: "refresh-1", Seq: seq, SeenRun: "refresh-1"}
			}
			upsert(t, db, s, []Row{item(1, "a", 1, 10), item(2, "b2", 2, 11)}, opt(1))
			upsert(t, db, s, []Row{item(3, "c-old", 3, 9), item(7, "g", 7, 10), item(7, "g", 7, 10)}, opt(2))
			upsert(t, db, s, []Row{item(5, "e", 5, 10)}, UpsertOptions{SeenRun: "other-run"})
			if got, want := seenKeys(t, db, "refresh-1"), `{"id": 1} {"id": 2} {"id": 3} {"id": 7}`; got != want {
				t.Errorf("seen keys = %s, want %s", got, want)
			}

			if n := sweep(t, db, s, "refresh-1", 3, tt.images, []string{"4", "not-a-row"}); n != 2 {
				t.Errorf("Sweep() deleted %d rows, want 2 (5 and 6)", n)
			}
			if got, want := names(t, db), "1=a|1 2=b2|2 3=c|3 4=d|4 7=g|7"; got != want {
				t.Errorf("after the sweep the table is %q, want %q", got, want)
			}
			// A retried sweep (its first commit unknown) deletes nothing more.
			if n := sweep(t, db, s, "refresh-1", 3, tt.images, []string{"4"}); n != 0 {
				t.Errorf("second Sweep() deleted %d rows, want 0", n)
			}
			if !tt.images {
				if n := count(t, db, `SELECT count(*) FROM tether_before_images`); n != 0 {
					t.Errorf("%d before-images kept without BeforeImages", n)
				}
				return
			}
			// Compensating the sweep, then the batches, in reverse order
			// puts the table back exactly.
			for seq := 3; seq >= 1; seq-- {
				tx, err := db.Begin()
				if err != nil {
					t.Fatal(err)
				}
				if _, err := s.Compensate(context.Background(), tx, "refresh-1", seq); err != nil {
					t.Fatalf("Compensate(%d) = %v", seq, err)
				}
				if err := tx.Commit(); err != nil {
					t.Fatal(err)
				}
				if seq == 3 {
					if got, want := names(t, db), "1=a|1 2=b2|2 3=c|3 4=d|4 5=e|5 6=f|6 7=g|7"; got != want {
						t.Errorf("after compensating the sweep the table is %q, want %q", got, want)
					}
				}
			}
			if got := contents(t, db, s); got != original {
				t.Errorf("after compensation the table is\n%s\nwant\n%s", got, original)
			}
		})
	}
}

// TestSink_Sweep_RestoresEveryColumnType deletes rows holding every type
// and NULLs, and puts them back from their before-images exactly.
func TestSink_Sweep_RestoresEveryColumnType(t *testing.T) {
	t.Parallel()
	s, db := setup(t, allTypesTable())
	full := func(id int, text string) Row {
		return Row{
			"id": id, "c_text": text, "c_integer": id, "c_bigint": json.Number("9007199254740993"),
			"c_numeric": json.Number("1.10"), "c_double": 0.1, "c_boolean": id%2 == 0,
			"c_timestamptz": "2024-05-01T12:30:00.000001+02:00", "c_date": "2024-02-29",
			"c_uuid":       "a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11",
			"c_jsonb":      map[string]any{"n": json.Number(fmt.Sprint(id)), "deep": []any{map[string]any{"x": nil}}},
			"c_text_array": []any{"a", nil, text},
		}
	}
	upsert(t, db, s, []Row{full(1, "one"), full(2, "two"), full(3, "three"), {"id": 4}}, UpsertOptions{})
	original := contents(t, db, s)
	upsert(t, db, s, []Row{full(1, "one")}, UpsertOptions{BeforeImages: true, RunID: "r", Seq: 1, SeenRun: "r"})
	if n := sweep(t, db, s, "r", 2, true, nil); n != 3 {
		t.Fatalf("Sweep() deleted %d rows, want 3", n)
	}
	tx, err := db.Begin()
	if err != nil {
		t.Fatal(err)
	}
	defer tx.Rollback() //nolint:errcheck // no-op after commit
	if n, err := s.Compensate(context.Background(), tx, "r", 2); err != nil || n != 3 {
		t.Fatalf("Compensate(2) = %d, %v; want 3 rows restored", n, err)
	}
	if err := tx.Commit(); err != nil {
		t.Fatal(err)
	}
	if got := contents(t, db, s); got != original {
		t.Errorf("after compensating the sweep the table is\n%s\nwant\n%s", got, original)
	}
}

// TestSink_Sweep_RejectedRowsAreNotSeen: a row PostgreSQL refuses is split
// out of the batch; the keys of the rows applied are seen, the refused
// one's is not (its attempt rolled back), so its old row goes unless kept.
func TestSink_Sweep_RejectedRowsAreNotSeen(t *testing.T) {
	t.Parallel()
	s, db := setup(t, itemsTable(), `CREATE TABLE items (id bigint PRIMARY KEY, name text CHECK (name <> 'bad'), qty integer, updated_at timestamptz)`)
	upsert(t, db, s, []Row{item(1, "a", 1, 10), item(2, "b", 2, 10), item(3, "c", 3, 10), item(4, "d", 4, 10)}, UpsertOptions{})
	res := upsert(t, db, s, []Row{item(1, "a", 1, 10), item(2, "bad", 2, 11), item(3, "c", 3, 10), item(4, "bad", 4, 11)},
		UpsertOptions{SeenRun: "r"})
	if len(res.Rejected) != 2 {
		t.Fatalf("Rejected = %+v, want rows 1 and 3", res.Rejected)
	}
	if got, want := seenKeys(t, db, "r"), `{"id": 1} {"id": 3}`; got != want {
		t.Errorf("seen keys = %s, want %s", got, want)
	}
	// Key 2's record was quarantined by the run: kept. Key 4's was not.
	if n := sweep(t, db, s, "r", 1, false, []string{"2"}); n != 1 {
		t.Errorf("Sweep() deleted %d rows, want 1", n)
	}
	if got, want := names(t, db), "1=a|1 2=b|2 3=c|3"; got != want {
		t.Errorf("table = %q, want %q", got, want)
	}
}

func TestSink_Sweep_TextAndCompositeKeys(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	t.Run("text key keeps quarantined keys by their text", func(t *testing.T) {
		t.Parallel()
		s, db := setup(t, Table{Name: "tags", Columns: []Column{{Name: "tag", Type: TypeText}, {Name: "n", Type: TypeInteger}}, Key: []string{"tag"}})
		upsert(t, db, s, []Row{{"tag": "abc", "n": 1}, {"tag": "42", "n": 2}, {"tag": "gone", "n": 3}, {"tag": "kept"}}, UpsertOptions{})
		upsert(t, db, s, []Row{{"tag": "abc", "n": 1}, {"tag": "42", "n": 2}}, UpsertOptions{SeenRun: "r"})
		if n := sweep(t, db, s, "r", 1, false, []string{"kept"}); n != 1 {
			t.Errorf("Sweep() deleted %d rows, want 1 (gone)", n)
		}
		var got string
		if err := db.QueryRow(`SELECT string_agg(tag, ' ' ORDER BY tag) FROM tags`).Scan(&got); err != nil {
			t.Fatal(err)
		}
		if got != "42 abc kept" {
			t.Errorf("tags = %q, want %q", got, "42 abc kept")
		}
	})
	t.Run("composite key sweeps without kept keys and refuses with some", func(t *testing.T) {
		t.Parallel()
		s, db := setup(t, Table{Name: "members", Columns: []Column{
			{Name: "tenant", Type: TypeText}, {Name: "id", Type: TypeInteger}, {Name: "role", Type: TypeText},
		}, Key: []string{"tenant", "id"}})
		upsert(t, db, s, []Row{{"tenant": "a", "id": 1}, {"tenant": "a", "id": 2}, {"tenant": "b", "id": 1}}, UpsertOptions{})
		upsert(t, db, s, []Row{{"tenant": "a", "id": 1}, {"tenant": "b", "id": 1, "role": "x"}}, UpsertOptions{SeenRun: "r"})

		tx, err := db.BeginTx(ctx, nil)
		if err != nil {
			t.Fatal(err)
		}
		_, err = s.Sweep(ctx, tx, "r", 1, false, []string{"2"})
		_ = tx.Rollback()
		if !failure.IsType(err, failure.TypeConfig) || !failure.IsPermanent(err) ||
			!strings.Contains(err.Error(), "several columns") || !strings.Contains(err.Error(), "nothing was deleted") {
			t.Errorf("Sweep() with kept keys on a composite key = %v, want a permanent %s naming the key", err, failure.TypeConfig)
		}
		if n := count(t, db, `SELECT count(*) FROM members`); n != 3 {
			t.Errorf("a refused sweep left %d rows, want 3", n)
		}
		if n := sweep(t, db, s, "r", 1, false, nil); n != 1 {
			t.Errorf("Sweep() deleted %d rows, want 1 (a/2)", n)
		}
		if n := count(t, db, `SELECT count(*) FROM members WHERE tenant = 'a' AND id = 2`); n != 0 {
			t.Error("row a/2, unseen, was not deleted")
		}
	})
}

// TestSink_Sweep_TimestampKeyAcrossTimeZones: the seen key of a
// timestamptz column does not depend on the session's TimeZone, so a sweep
// on a connection set otherwise than the upserts' keeps every seen row.
func TestSink_Sweep_TimestampKeyAcrossTimeZones(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	s, db := setup(t, Table{Name: "events", Columns: []Column{{Name: "at", Type: TypeTimestamptz}, {Name: "what", Type: TypeText}}, Key: []string{"at"}})
	upsert(t, db, s, []Row{{"at": "2024-05-01T10:00:00Z", "what": "a"}, {"at": "2024-05-01T11:00:00Z", "what": "gone"}}, UpsertOptions{})
	inZone := func(zone string, fn func(tx *sql.Tx)) {
		tx, err := db.BeginTx(ctx, nil)
		if err != nil {
			t.Fatal(err)
		}
		defer tx.Rollback() //nolint:errcheck // no-op after commit
		if _, err := tx.Exec(`SET LOCAL TimeZone = ` + fmt.Sprintf("'%s'", zone)); err != nil {
			t.Fatal(err)
		}
		fn(tx)
		if err := tx.Commit(); err != nil {
			t.Fatal(err)
		}
	}
	inZone("America/New_York", func(tx *sql.Tx) {
		if _, err := s.Upsert(ctx, tx, []Row{{"at": "2024-05-01T12:00:00+02:00", "what": "a"}}, UpsertOptions{SeenRun: "r"}); err != nil {
			t.Fatal(err)
		}
	})
	inZone("Asia/Tokyo", func(tx *sql.Tx) {
		n, err := s.Sweep(ctx, tx, "r", 1, true, nil)
		if err != nil || n != 1 {
			t.Errorf("Sweep() = %d, %v; want 1 row deleted (11:00Z)", n, err)
		}
	})
	var got string
	if err := db.QueryRow(`SELECT string_agg(what, ' ') FROM events`).Scan(&got); err != nil {
		t.Fatal(err)
	}
	if got != "a" {
		t.Errorf("events = %q, want only the seen row %q", got, "a")
	}
}

func TestSink_Sweep_RunThatSawNothing(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	s, db := setup(t, itemsTable())
	// An empty table: nothing to delete, not an error.
	if n := sweep(t, db, s, "r", 1, false, nil); n != 0 {
		t.Errorf("Sweep() on an empty table deleted %d rows", n)
	}
	upsert(t, db, s, []Row{item(1, "a", 1, 10), item(2, "b", 2, 10)}, UpsertOptions{SeenRun: "earlier"})
	tx, err := db.BeginTx(ctx, nil)
	if err != nil {
		t.Fatal(err)
	}
	_, err = s.Sweep(ctx, tx, "r", 1, false, nil)
	_ = tx.Rollback()
	if !failure.IsType(err, failure.TypeSinkSQL) || !failure.IsPermanent(err) || !strings.Contains(err.Error(), "wrote no row") {
		t.Errorf("Sweep() for a run that wrote nothing = %v, want a permanent %s saying so", err, failure.TypeSinkSQL)
	}
	if got := names(t, db); got != "1=a|1 2=b|2" {
		t.Errorf("table = %q after a refused sweep, want both rows", got)
	}
}

func TestSink_DropSeen(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	s, db := setup(t, itemsTable())
	upsert(t, db, s, []Row{item(1, "a", 1, 10)}, UpsertOptions{SeenRun: "r1"})
	upsert(t, db, s, []Row{item(2, "b", 2, 10)}, UpsertOptions{SeenRun: "r2"})
	upsert(t, db, s, []Row{item(3, "c", 3, 10)}, UpsertOptions{SeenRun: "r3"})
	if err := s.DropSeen(ctx, db, "r1"); err != nil {
		t.Fatalf("DropSeen(r1) = %v", err)
	}
	if err := s.DropSeen(ctx, db, "r1", "r2"); err != nil {
		t.Fatalf("DropSeen(r1, r2) = %v", err)
	}
	if got := seenKeys(t, db, "r1") + "|" + seenKeys(t, db, "r2") + "|" + seenKeys(t, db, "r3"); got != `||{"id": 3}` {
		t.Errorf("seen keys of r1|r2|r3 = %s, want only r3's", got)
	}
	// Without the table (never ensured), there is nothing to forget.
	other, err := NewTableWriter(Table{Schema: "tether_no_such_schema", Name: "x", Columns: []Column{{Name: "id", Type: TypeText}}, Key: []string{"id"}})
	if err != nil {
		t.Fatal(err)
	}
	if err := other.DropSeen(ctx, db, "r3"); err != nil {
		t.Errorf("DropSeen() without a seen-keys table = %v, want nil", err)
	}
}

func TestTable_Validate_SeenKeysTableIsReserved(t *testing.T) {
	err := Table{Name: SeenKeysTable, Columns: []Column{{Name: "id", Type: TypeText}}, Key: []string{"id"}}.Validate()
	if err == nil || !strings.Contains(err.Error(), "reserved") {
		t.Errorf("Validate() = %v, want the name refused as reserved", err)
	}
}

func count(t testing.TB, db *sql.DB, query string) int {
	t.Helper()
	var n int
	if err := db.QueryRow(query).Scan(&n); err != nil {
		t.Fatalf("%s: %v", query, err)
	}
	return n
}
