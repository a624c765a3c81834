package pgsink

import (
	"context"
	"database/sql"
	"encoding/json"
	"fmt"
	"reflect"
	"strings"
	"testing"

	"github.com/tetherflow/tether/activities/lib/failure"
)

// del deletes rows in its own transaction (inTx: the transaction stays
// usable after it, as the events apply writes the deliveries after it).
func del(t testing.TB, db *sql.DB, s *TableWriter, rows []Row, opt DeleteOptions) Result {
	t.Helper()
	return inTx(t, db, "Delete", func(ctx context.Context, tx *sql.Tx) (Result, error) { return s.Delete(ctx, tx, rows, opt) })
}

// gone is a deletion of id at version hour (the key and the version are
// all Delete reads).
func gone(id, hour int) Row {
	return Row{"id": json.Number(fmt.Sprint(id)), "updated_at": fmt.Sprintf("2024-05-01T%02d:00:00Z", hour)}
}

func TestSink_Delete(t *testing.T) {
	tests := []struct {
		name         string
		before       []Row
		give         []Row
		want         Result
		wantRejected []string // "index sqlstate substring"
		wantRows     string
	}{
		{
			name:     "deletes the keys",
			before:   []Row{item(1, "a", 1, 10), item(2, "b", 2, 10), item(3, "c", 3, 10)},
			give:     []Row{gone(1, 11), gone(3, 11)},
			want:     Result{Received: 2, Updated: 2},
			wantRows: "2=b|2",
		},
		{
			name:     "a deletion older than the row keeps it and counts stale",
			before:   []Row{item(1, "a", 1, 12), item(2, "b", 2, 12)},
			give:     []Row{gone(1, 11), gone(2, 13)},
			want:     Result{Received: 2, Stale: 1, Updated: 1},
			wantRows: "1=a|1",
		},
		{
			name:     "a deletion at the row's version deletes it",
			before:   []Row{item(1, "a", 1, 12)},
			give:     []Row{gone(1, 12)},
			want:     Result{Received: 1, Updated: 1},
			wantRows: "",
		},
		{
			name:     "a deletion without a version deletes whatever the row's version",
			before:   []Row{item(1, "a", 1, 23), item(2, "b", 2, 1)},
			give:     []Row{{"id": 1}, {"id": json.Number("2"), "updated_at": nil}},
			want:     Result{Received: 2, Updated: 2},
			wantRows: "",
		},
		{
			name:     "a stored row without a version is deleted",
			before:   []Row{{"id": 1, "name": "a"}},
			give:     []Row{gone(1, 1)},
			want:     Result{Received: 1, Updated: 1},
			wantRows: "",
		},
		{
			name:     "a key not in the table counts unchanged",
			before:   []Row{item(1, "a", 1, 10)},
			give:     []Row{gone(9, 10), gone(1, 10)},
			want:     Result{Received: 2, Updated: 1, Unchanged: 1},
			wantRows: "",
		},
		{
			name:     "deleting twice: the second finds nothing",
			before:   []Row{item(1, "a", 1, 10)},
			give:     []Row{gone(1, 10), gone(1, 10)},
			want:     Result{Received: 2, Duplicates: 1, Updated: 1},
			wantRows: "",
		},
		{
			name:     "duplicate keys in a batch: the last one decides (an older one is stale)",
			before:   []Row{item(1, "a", 1, 12), item(2, "b", 2, 12)},
			give:     []Row{gone(1, 13), gone(1, 11), gone(2, 11), gone(2, 13)},
			want:     Result{Received: 4, Duplicates: 2, Stale: 1, Updated: 1},
			wantRows: "1=a|1",
		},
		{
			name:     "values of the other columns are not read",
			before:   []Row{item(1, "a", 1, 10)},
			give:     []Row{{"id": 1, "name": map[string]any{"not": "text"}, "qty": "many", "nope": true}},
			want:     Result{Received: 1, Updated: 1},
			wantRows: "",
		},
		{
			name:   "a key or version that cannot be converted is rejected, the rest deleted",
			before: []Row{item(1, "a", 1, 10), item(2, "b", 2, 10), item(3, "c", 3, 10)},
			give: []Row{{"id": "abc"}, gone(1, 10), {"id": nil}, {"name": "no key"},
				{"id": 2, "updated_at": "yesterday"}, {"id": json.Number("1.5")}},
			want: Result{Received: 6, Updated: 1},
			wantRejected: []string{`0 22P02 column "id" (bigint)`, `2 23502 key column "id" is NULL or missing`,
				`3 23502 key column "id" is NULL or missing`, `4 22P02 column "updated_at" (timestamptz)`, `5 22P02 column "id" (bigint)`},
			wantRows: "2=b|2 3=c|3",
		},
		{
			name:     "empty batch",
			before:   []Row{item(1, "a", 1, 10)},
			give:     nil,
			want:     Result{},
			wantRows: "1=a|1",
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			s, db := setup(t, itemsTable())
			if tt.before != nil {
				upsert(t, db, s, tt.before, UpsertOptions{})
			}
			got := del(t, db, s, tt.give, DeleteOptions{})
			if !reflect.DeepEqual(countsOf(got), tt.want) {
				t.Errorf("Delete() = %+v, want %+v", countsOf(got), tt.want)
			}
			if len(got.Rejected) != len(tt.wantRejected) {
				t.Fatalf("Rejected = %+v, want %q", got.Rejected, tt.wantRejected)
			}
			for i, w := range tt.wantRejected {
				r := got.Rejected[i]
				line := fmt.Sprintf("%d %s %s", r.Index, r.SQLState, r.Err)
				if !strings.HasPrefix(line, w) {
					t.Errorf("Rejected[%d] = %q, want %q...", i, line, w)
				}
			}
			if rows := names(t, db); rows != tt.wantRows {
				t.Errorf("table = %q, want %q", rows, tt.wantRows)
			}
		})
	}
}

// softItemsTable is itemsTable with a deleted_at column for tombstones.
func softItemsTable() Table {
	tab := itemsTable()
	tab.Columns = append(tab.Columns, Column{Name: "deleted_at", Type: TypeTimestamptz})
	return tab
}

// tombstones returns id=deleted_at (or NULL) for every row, ordered by id.
func tombstones(t testing.TB, db *sql.DB) string {
	t.Helper()
	var got sql.NullString
	if err := db.QueryRow(`SELECT string_agg(id || '=' || coalesce(deleted_at::text, 'NULL'), ' ' ORDER BY id) FROM items`).Scan(&got); err != nil {
		t.Fatal(err)
	}
	return got.String
}

func TestSink_Delete_Tombstone(t *testing.T) {
	t.Parallel()
	s, db := setup(t, softItemsTable())
	opt := DeleteOptions{Tombstone: "deleted_at"}
	upsert(t, db, s, []Row{item(1, "a", 1, 10), item(2, "b", 2, 10), item(3, "c", 3, 12)}, UpsertOptions{})

	got := del(t, db, s, []Row{gone(1, 11), gone(3, 11), gone(9, 11)}, opt)
	if want := (Result{Received: 3, Updated: 1, Stale: 1, Unchanged: 1}); !reflect.DeepEqual(countsOf(got), want) {
		t.Errorf("first tombstone: Delete() = %+v, want %+v", got, want)
	}
	if rows := names(t, db); rows != "1=a|1 2=b|2 3=c|3" {
		t.Errorf("a tombstone removed rows: %q", rows)
	}
	first := tombstones(t, db)
	if !strings.HasPrefix(first, "1=2") || !strings.HasSuffix(first, " 2=NULL 3=NULL") {
		t.Fatalf("tombstones = %q, want row 1 tombstoned, 2 and 3 (stale deletion) not", first)
	}

	// A second tombstone of the same row changes nothing, even the time.
	got = del(t, db, s, []Row{gone(1, 11)}, opt)
	if want := (Result{Received: 1, Unchanged: 1}); !reflect.DeepEqual(countsOf(got), want) {
		t.Errorf("second tombstone: Delete() = %+v, want %+v", got, want)
	}
	if again := tombstones(t, db); again != first {
		t.Errorf("second tombstone changed the rows: %q, was %q", again, first)
	}

	// A later upsert of the key brings the entity back.
	res := upsert(t, db, s, []Row{item(1, "back", 1, 12)}, UpsertOptions{})
	if res.Updated != 1 {
		t.Errorf("upsert after the tombstone: %+v, want 1 updated", res)
	}
	if got := tombstones(t, db); got != "1=NULL 2=NULL 3=NULL" {
		t.Errorf("tombstones after the upsert = %q, want none", got)
	}
	if rows := names(t, db); rows != "1=back|1 2=b|2 3=c|3" {
		t.Errorf("table = %q", rows)
	}
}

func TestSink_Delete_BadTombstoneColumn(t *testing.T) {
	t.Parallel()
	s, db := setup(t, softItemsTable())
	upsert(t, db, s, []Row{item(1, "a", 1, 10)}, UpsertOptions{})
	tests := []struct {
		give string
		want string
	}{
		{give: "nope", want: `tombstone column "nope" is not a non-key column of "items"`},
		{give: "id", want: `tombstone column "id" is not a non-key column of "items"`},
		{give: "name", want: `tombstone column "name" of "items" is text, not timestamptz`},
		{give: "DELETED_AT", want: `tombstone column "DELETED_AT" is not a non-key column`},
	}
	for _, tt := range tests {
		t.Run(tt.give, func(t *testing.T) {
			tx, err := db.BeginTx(context.Background(), nil)
			if err != nil {
				t.Fatal(err)
			}
			defer tx.Rollback() //nolint:errcheck // test
			_, err = s.Delete(context.Background(), tx, []Row{gone(1, 11)}, DeleteOptions{Tombstone: tt.give})
			if err == nil || !failure.IsPermanent(err) || !failure.IsType(err, failure.TypeSinkSQL) || !strings.Contains(err.Error(), tt.want) {
				t.Fatalf("Delete() = %v, want a permanent %s containing %q", err, failure.TypeSinkSQL, tt.want)
			}
		})
	}
	if rows := names(t, db); rows != "1=a|1" {
		t.Errorf("a refused delete changed the table: %q", rows)
	}
}

func TestSink_Delete_CompositeKey(t *testing.T) {
	t.Parallel()
	tab := Table{
		Name: "members",
		Columns: []Column{
			{Name: "tenant", Type: TypeText}, {Name: "id", Type: TypeInteger}, {Name: "role", Type: TypeText, NotNull: true},
		},
		Key: []string{"tenant", "id"},
	}
	s, db := setup(t, tab)
	upsert(t, db, s, []Row{
		{"tenant": "a", "id": 1, "role": "x"}, {"tenant": "a", "id": 2, "role": "x"},
		{"tenant": "b", "id": 1, "role": "y"}, {"tenant": "b", "id": 2, "role": "y"},
	}, UpsertOptions{})
	got := del(t, db, s, []Row{
		{"tenant": "a", "id": 1}, // role (not null) is not needed to delete
		{"tenant": "b", "id": "2"},
		{"tenant": "c", "id": 1},
		{"tenant": "a"},
	}, DeleteOptions{})
	want := Result{Received: 4, Updated: 2, Unchanged: 1}
	if !reflect.DeepEqual(countsOf(got), want) {
		t.Errorf("Delete() = %+v, want %+v", countsOf(got), want)
	}
	wantRejected := []Rejected{{Index: 3, Key: `tenant="a", id=NULL`, SQLState: "23502", Err: `key column "id" is NULL or missing`}}
	if !reflect.DeepEqual(got.Rejected, wantRejected) {
		t.Errorf("Rejected = %+v, want %+v", got.Rejected, wantRejected)
	}
	if got, want := contents(t, db, s), `[{"id": 2, "role": "x", "tenant": "a"}, {"id": 1, "role": "y", "tenant": "b"}]`; got != want {
		t.Errorf("table = %s, want %s", got, want)
	}
}

func TestSink_Delete_RolledBackChangesNothing(t *testing.T) {
	t.Parallel()
	s, db := setup(t, itemsTable())
	upsert(t, db, s, []Row{item(1, "a", 1, 10)}, UpsertOptions{})
	ctx := context.Background()
	tx, err := db.BeginTx(ctx, nil)
	if err != nil {
		t.Fatal(err)
	}
	if res, err := s.Delete(ctx, tx, []Row{gone(1, 11)}, DeleteOptions{}); err != nil || res.Updated != 1 {
		t.Fatalf("Delete() = %+v, %v", res, err)
	}
	if err := tx.Rollback(); err != nil {
		t.Fatal(err)
	}
	if rows := names(t, db); rows != "1=a|1" {
		t.Errorf("table after rollback = %q, want the row back", rows)
	}
}

func TestSink_Delete_TableChangedBehindTheSinksBack(t *testing.T) {
	t.Parallel()
	s, db := setup(t, itemsTable())
	if _, err := db.Exec(`ALTER TABLE items DROP COLUMN updated_at`); err != nil {
		t.Fatal(err)
	}
	tx, err := db.BeginTx(context.Background(), nil)
	if err != nil {
		t.Fatal(err)
	}
	defer tx.Rollback() //nolint:errcheck // test
	res, err := s.Delete(context.Background(), tx, []Row{gone(1, 11)}, DeleteOptions{})
	if err == nil || !failure.IsPermanent(err) || !strings.Contains(err.Error(), `delete from "items"`) || !strings.Contains(err.Error(), "updated_at") {
		t.Fatalf("Delete() = %v, want a permanent error naming the statement and the column", err)
	}
	if res.Received != 1 || res.Updated != 0 || res.Stale != 0 {
		t.Errorf("Delete() counts on error = %+v", res)
	}
}

// TestSink_Delete_TombstoneKeepsOlderUpsertsOut: a tombstone records
// that the entity was deleted at the deletion's version, so an update
// older than the deletion that arrives after it (webhooks arrive out of
// order) is stale and does not bring the entity back; a newer one does.
func TestSink_Delete_TombstoneKeepsOlderUpsertsOut(t *testing.T) {
	t.Parallel()
	s, db := setup(t, softItemsTable())
	upsert(t, db, s, []Row{item(1, "a", 1, 10)}, UpsertOptions{})
	if got := del(t, db, s, []Row{gone(1, 12)}, DeleteOptions{Tombstone: "deleted_at"}); got.Updated != 1 {
		t.Fatalf("tombstone at version 12: %+v", got)
	}
	late := upsert(t, db, s, []Row{item(1, "late", 1, 11)}, UpsertOptions{})
	if late.Stale != 1 || strings.Contains(tombstones(t, db), "1=NULL") {
		t.Errorf("an update at version 11, older than the deletion at 12, arrived after it: %+v; rows %q, tombstones %q; want it stale and the row still tombstoned",
			countsOf(late), names(t, db), tombstones(t, db))
	}
	newer := upsert(t, db, s, []Row{item(1, "back", 1, 13)}, UpsertOptions{})
	if newer.Updated != 1 || tombstones(t, db) != "1=NULL" || names(t, db) != "1=back|1" {
		t.Errorf("an update at version 13 after the deletion at 12: %+v; rows %q, tombstones %q; want the entity back",
			countsOf(newer), names(t, db), tombstones(t, db))
	}
}
