package pgsink

import (
	"context"
	"database/sql"
	"encoding/json"
	"fmt"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/tetherflow/tether/activities/lib/failure"
	"github.com/tetherflow/tether/tests/pgtest"
)

// itemsTable is the destination most tests write to.
func itemsTable() Table {
	return Table{
		Name: "items",
		Columns: []Column{
			{Name: "id", Type: TypeBigint, NotNull: true},
			{Name: "name", Type: TypeText},
			{Name: "qty", Type: TypeInteger},
			{Name: "updated_at", Type: TypeTimestamptz},
		},
		Key:           []string{"id"},
		VersionColumn: "updated_at",
	}
}

// item builds a row as the JSON decoder hands it over; hour is the version.
func item(id int, name string, qty, hour int) Row {
	return Row{
		"id":         json.Number(fmt.Sprint(id)),
		"name":       name,
		"qty":        json.Number(fmt.Sprint(qty)),
		"updated_at": fmt.Sprintf("2024-05-01T%02d:00:00Z", hour),
	}
}

// setup gives a test its own schema, runs ddl there, and ensures the sink's
// table.
func setup(t testing.TB, tab Table, ddl ...string) (*TableWriter, *sql.DB) {
	t.Helper()
	pg := pgtest.New(t)
	for _, d := range ddl {
		if _, err := pg.DB.Exec(d); err != nil {
			t.Fatalf("%s: %v", d, err)
		}
	}
	s, err := NewTableWriter(tab)
	if err != nil {
		t.Fatal(err)
	}
	if err := s.Ensure(context.Background(), pg.DB); err != nil {
		t.Fatalf("Ensure() = %v", err)
	}
	return s, pg.DB
}

// upsert applies one batch in its own transaction, with a checkpoint write
// after it in the same transaction (as the pipeline does), and commits.
func upsert(t testing.TB, db *sql.DB, s *TableWriter, rows []Row, opt UpsertOptions) Result {
	t.Helper()
	return inTx(t, db, "Upsert", func(ctx context.Context, tx *sql.Tx) (Result, error) { return s.Upsert(ctx, tx, rows, opt) })
}

// inTx runs one sink call (what) in its own transaction, checks the
// transaction is still usable after it (the pipeline writes its state
// after it), commits, and checks every row is accounted for.
func inTx(t testing.TB, db *sql.DB, what string, call func(context.Context, *sql.Tx) (Result, error)) Result {
	t.Helper()
	ctx := context.Background()
	tx, err := db.BeginTx(ctx, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer tx.Rollback() //nolint:errcheck // no-op after commit
	res, err := call(ctx, tx)
	if err != nil {
		t.Fatalf("%s() = %v", what, err)
	}
	if _, err := tx.Exec(`CREATE TABLE IF NOT EXISTS checkpoint (n int); INSERT INTO checkpoint VALUES (1)`); err != nil {
		t.Fatalf("the transaction is unusable after %s: %v", what, err)
	}
	if err := tx.Commit(); err != nil {
		t.Fatal(err)
	}
	checkAccounted(t, res)
	return res
}

// checkAccounted asserts that every received row is counted exactly once.
func checkAccounted(t testing.TB, r Result) {
	t.Helper()
	if sum := r.Duplicates + r.Inserted + r.Updated + r.Unchanged + r.Stale + len(r.Rejected); sum != r.Received {
		t.Errorf("counts %+v add up to %d, want Received %d", r, sum, r.Received)
	}
}

// contents returns the whole table as JSON text, ordered by key.
func contents(t testing.TB, db *sql.DB, s *TableWriter) string {
	t.Helper()
	order := make([]string, len(s.table.Key))
	for i, k := range s.table.Key {
		order[i] = "t." + k
	}
	var got string
	q := fmt.Sprintf(`SELECT coalesce(jsonb_agg(to_jsonb(t) ORDER BY %s), '[]')::text FROM %s t`,
		strings.Join(order, ", "), s.sql.target)
	if err := db.QueryRow(q).Scan(&got); err != nil {
		t.Fatal(err)
	}
	return got
}

// names returns id=name|qty for every row of items, ordered by id.
func names(t testing.TB, db *sql.DB) string {
	t.Helper()
	var got sql.NullString
	if err := db.QueryRow(`SELECT string_agg(id || '=' || coalesce(name, 'NULL') || '|' || coalesce(qty::text, 'NULL'), ' ' ORDER BY id) FROM items`).Scan(&got); err != nil {
		t.Fatal(err)
	}
	return got.String
}

// counts keeps the comparable part of a Result.
func countsOf(r Result) Result {
	r.Rejected = nil
	return r
}

func TestSink_Upsert(t *testing.T) {
	tests := []struct {
		name         string
		before       []Row // applied first
		give         []Row
		want         Result
		wantRejected []string // "index sqlstate substring"
		wantRows     string
	}{
		{
			name:     "insert into an empty table",
			give:     []Row{item(1, "a", 1, 10), item(2, "b", 2, 10), item(3, "c", 3, 10)},
			want:     Result{Received: 3, Inserted: 3},
			wantRows: "1=a|1 2=b|2 3=c|3",
		},
		{
			name:     "insert, update and unchanged",
			before:   []Row{item(1, "a", 1, 10), item(2, "b", 2, 10)},
			give:     []Row{item(1, "a2", 1, 11), item(2, "b", 2, 10), item(4, "d", 4, 10)},
			want:     Result{Received: 3, Inserted: 1, Updated: 1, Unchanged: 1},
			wantRows: "1=a2|1 2=b|2 4=d|4",
		},
		{
			name:     "older version is stale and not written",
			before:   []Row{item(1, "new", 1, 12)},
			give:     []Row{item(1, "old", 9, 11)},
			want:     Result{Received: 1, Stale: 1},
			wantRows: "1=new|1",
		},
		{
			name:     "same version with other content updates",
			before:   []Row{item(1, "a", 1, 12)},
			give:     []Row{item(1, "b", 1, 12)},
			want:     Result{Received: 1, Updated: 1},
			wantRows: "1=b|1",
		},
		{
			name:     "stored row without a version accepts any version",
			before:   []Row{{"id": 1, "name": "a"}},
			give:     []Row{item(1, "b", 1, 1)},
			want:     Result{Received: 1, Updated: 1},
			wantRows: "1=b|1",
		},
		{
			name:     "duplicate keys in a batch: the last one wins",
			give:     []Row{item(1, "first", 1, 10), item(2, "x", 2, 10), item(1, "second", 1, 10), item(1, "last", 1, 9)},
			want:     Result{Received: 4, Duplicates: 2, Inserted: 2},
			wantRows: "1=last|1 2=x|2",
		},
		{
			name:   "keys equal once converted are duplicates",
			before: []Row{item(1, "a", 1, 10)},
			give: []Row{
				{"id": json.Number("1"), "name": "n1"}, {"id": "1", "name": "n2"},
				{"id": 1.0, "name": "n3"}, {"id": json.Number("1e0"), "name": "n4", "updated_at": "2024-05-01T11:00:00Z"},
			},
			want:     Result{Received: 4, Duplicates: 3, Updated: 1},
			wantRows: "1=n4|NULL",
		},
		{
			name:     "rerunning the same batch changes nothing",
			before:   []Row{item(1, "a", 1, 10), item(2, "b", 2, 10), item(3, "c", 3, 10)},
			give:     []Row{item(1, "a", 1, 10), item(2, "b", 2, 10), item(3, "c", 3, 10)},
			want:     Result{Received: 3, Unchanged: 3},
			wantRows: "1=a|1 2=b|2 3=c|3",
		},
		{
			name:     "missing columns are NULL, unknown keys ignored",
			before:   []Row{item(1, "a", 1, 10)},
			give:     []Row{{"id": json.Number("1"), "name": "b", "nope": true, "updated_at": "2024-05-01T10:00:00Z"}},
			want:     Result{Received: 1, Updated: 1},
			wantRows: "1=b|NULL",
		},
		{
			name:         "NULL or missing key is rejected, the rest applied",
			give:         []Row{item(1, "a", 1, 10), {"id": nil, "name": "x"}, {"name": "y"}, item(2, "b", 2, 10)},
			want:         Result{Received: 4, Inserted: 2},
			wantRejected: []string{`1 23502 key column "id" is NULL or missing`, `2 23502 key column "id" is NULL or missing`},
			wantRows:     "1=a|1 2=b|2",
		},
		{
			name: "value that does not fit its column is rejected, naming the column",
			give: []Row{item(1, "a", 1, 10), {"id": 2, "qty": "many"}, {"id": 3, "qty": json.Number("3000000000")},
				{"id": 4, "updated_at": "yesterday"}, item(5, "e", 5, 10)},
			want: Result{Received: 5, Inserted: 2},
			wantRejected: []string{`1 22P02 column "qty" (integer): cannot convert "many"`,
				`2 22003 column "qty" (integer): number 3000000000 is out of range`,
				`3 22P02 column "updated_at" (timestamptz)`},
			wantRows: "1=a|1 5=e|5",
		},
		{
			name:         "empty batch",
			give:         nil,
			want:         Result{},
			wantRows:     "",
			wantRejected: nil,
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			s, db := setup(t, itemsTable())
			if tt.before != nil {
				upsert(t, db, s, tt.before, UpsertOptions{})
			}
			got := upsert(t, db, s, tt.give, UpsertOptions{})
			if !reflect.DeepEqual(countsOf(got), tt.want) {
				t.Errorf("Upsert() = %+v, want %+v", countsOf(got), tt.want)
			}
			if len(got.Rejected) != len(tt.wantRejected) {
				t.Fatalf("Rejected = %+v, want %d", got.Rejected, len(tt.wantRejected))
			}
			for i, w := range tt.wantRejected {
				r := got.Rejected[i]
				line := fmt.Sprintf("%d %s %s", r.Index, r.SQLState, r.Err)
				if !strings.HasPrefix(line, strings.SplitN(w, " ", 3)[0]+" ") || !strings.Contains(line, strings.SplitN(w, " ", 2)[1]) {
					t.Errorf("Rejected[%d] = %q, want %q", i, line, w)
				}
				if !strings.HasPrefix(r.Key, "id=") {
					t.Errorf("Rejected[%d].Key = %q, want id=...", i, r.Key)
				}
			}
			if rows := names(t, db); rows != tt.wantRows {
				t.Errorf("table = %q, want %q", rows, tt.wantRows)
			}
		})
	}
}

func TestSink_Upsert_CompositeKey(t *testing.T) {
	t.Parallel()
	tab := Table{
		Name: "members",
		Columns: []Column{
			{Name: "tenant", Type: TypeText}, {Name: "id", Type: TypeInteger}, {Name: "role", Type: TypeText, NotNull: true},
		},
		Key: []string{"tenant", "id"},
	}
	s, db := setup(t, tab)
	steps := []struct {
		give         []Row
		want         Result
		wantRejected []Rejected
	}{
		{
			give: []Row{{"tenant": "a", "id": 1, "role": "x"}, {"tenant": "b", "id": 1, "role": "y"}},
			want: Result{Received: 2, Inserted: 2},
		},
		{
			give: []Row{{"tenant": "a", "id": 1, "role": "z"}, {"tenant": "b", "id": 1, "role": "y"},
				{"tenant": "b", "id": 2, "role": "w"}, {"tenant": "a", "id": json.Number("1"), "role": "last"},
				{"tenant": "b", "id": 3}},
			want:         Result{Received: 5, Duplicates: 1, Inserted: 1, Updated: 1, Unchanged: 1},
			wantRejected: []Rejected{{Index: 4, Key: `tenant="b", id=3`, SQLState: "23502", Err: `not_null column "role" is NULL or missing`}},
		},
	}
	for i, st := range steps {
		got := upsert(t, db, s, st.give, UpsertOptions{})
		if !reflect.DeepEqual(countsOf(got), st.want) {
			t.Errorf("step %d: Upsert() = %+v, want %+v", i, got, st.want)
		}
		if !reflect.DeepEqual(got.Rejected, st.wantRejected) {
			t.Errorf("step %d: Rejected = %+v, want %+v", i, got.Rejected, st.wantRejected)
		}
	}
	want := `[{"id": 1, "role": "last", "tenant": "a"}, {"id": 1, "role": "y", "tenant": "b"}, {"id": 2, "role": "w", "tenant": "b"}]`
	if got := contents(t, db, s); got != want {
		t.Errorf("table = %s, want %s", got, want)
	}
	if got, want := KeyString(Row{"tenant": "a", "id": json.Number("1")}, tab.Key), `tenant="a", id=1`; got != want {
		t.Errorf("KeyString() = %q, want %q", got, want)
	}
}

// allTypesTable has one column of every supported type.
func allTypesTable() Table {
	return Table{
		Name: "everything",
		Columns: []Column{
			{Name: "id", Type: TypeInteger},
			{Name: "c_text", Type: TypeText},
			{Name: "c_integer", Type: TypeInteger},
			{Name: "c_bigint", Type: TypeBigint},
			{Name: "c_numeric", Type: TypeNumeric},
			{Name: "c_double", Type: TypeDoublePrecision},
			{Name: "c_boolean", Type: TypeBoolean},
			{Name: "c_timestamptz", Type: TypeTimestamptz},
			{Name: "c_date", Type: TypeDate},
			{Name: "c_uuid", Type: TypeUUID},
			{Name: "c_jsonb", Type: TypeJSONB},
			{Name: "c_text_array", Type: TypeTextArray},
		},
		Key: []string{"id"},
	}
}

func TestSink_Upsert_ColumnTypes(t *testing.T) {
	t.Parallel()
	s, db := setup(t, allTypesTable())
	tests := []struct {
		column string
		give   any
		want   string // the stored value as text (timestamps in UTC); "" with wantState
		// wantState is the SQLSTATE of a rejected row.
		wantState string
	}{
		{column: "c_text", give: "héllo\ttab\nline \\ back", want: "héllo\ttab\nline \\ back"},
		{column: "c_text", give: json.Number("12.50"), want: "12.50"},
		{column: "c_text", give: true, want: "true"},
		{column: "c_text", give: nil, want: "NULL"},
		{column: "c_text", give: "nul\x00byte", wantState: "22021"},
		{column: "c_text", give: "bad \xff utf8", wantState: "22021"},
		{column: "c_text", give: map[string]any{"a": 1}, wantState: "22P02"},
		{column: "c_integer", give: json.Number("42"), want: "42"},
		{column: "c_integer", give: json.Number("1e3"), want: "1000"},
		{column: "c_integer", give: float64(-7), want: "-7"},
		{column: "c_integer", give: int64(2147483647), want: "2147483647"},
		{column: "c_integer", give: " 12 ", want: "12"},
		{column: "c_integer", give: json.Number("2147483648"), wantState: "22003"},
		{column: "c_integer", give: json.Number("1.5"), wantState: "22P02"},
		{column: "c_integer", give: "abc", wantState: "22P02"},
		{column: "c_integer", give: true, wantState: "22P02"},
		{column: "c_bigint", give: json.Number("9223372036854775807"), want: "9223372036854775807"},
		{column: "c_bigint", give: json.Number("9223372036854775808"), wantState: "22003"},
		{column: "c_bigint", give: 1e300, wantState: "22003"},
		{column: "c_numeric", give: json.Number("123456789012345678901234567890.000100"), want: "123456789012345678901234567890.000100"},
		{column: "c_numeric", give: json.Number("-1.5e-3"), want: "-0.0015"},
		{column: "c_numeric", give: 0.1, want: "0.1"},
		{column: "c_numeric", give: "NaN", want: "NaN"},
		{column: "c_numeric", give: "12,5", wantState: "22P02"},
		{column: "c_double", give: json.Number("1.5"), want: "1.5"},
		{column: "c_double", give: json.Number("1e400"), wantState: "22003"},
		{column: "c_double", give: 42, want: "42"},
		{column: "c_double", give: "0x10", wantState: "22P02"},
		{column: "c_boolean", give: true, want: "true"},
		{column: "c_boolean", give: "FALSE", want: "false"},
		{column: "c_boolean", give: "maybe", wantState: "22P02"},
		{column: "c_boolean", give: json.Number("1"), wantState: "22P02"},
		{column: "c_timestamptz", give: "2024-05-01T12:30:00.123456+02:00", want: "2024-05-01 10:30:00.123456"},
		{column: "c_timestamptz", give: "2024-05-01 12:30:00Z", want: "2024-05-01 12:30:00"},
		{column: "c_timestamptz", give: time.Date(2024, 2, 29, 23, 0, 0, 0, time.FixedZone("X", -3600)), want: "2024-03-01 00:00:00"},
		{column: "c_timestamptz", give: "2024-05-01T12:30:00", wantState: "22P02"},
		{column: "c_timestamptz", give: "2024-13-01T00:00:00Z", wantState: "22P02"},
		{column: "c_date", give: "2024-02-29", want: "2024-02-29"},
		{column: "c_date", give: "2024-02-29T23:30:00-05:00", want: "2024-02-29"},
		{column: "c_date", give: time.Date(2024, 1, 2, 3, 4, 5, 0, time.UTC), want: "2024-01-02"},
		{column: "c_date", give: "2023-02-29", wantState: "22P02"},
		{column: "c_uuid", give: "{A0EEBC99-9C0B-4EF8-BB6D-6BB9BD380A11}", want: "a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11"},
		{column: "c_uuid", give: "a0eebc999c0b4ef8bb6d6bb9bd380a11", want: "a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11"},
		{column: "c_uuid", give: "not-a-uuid", wantState: "22P02"},
		{column: "c_jsonb", give: map[string]any{"b": []any{"x", nil, json.Number("1.50")}, "a": true},
			want: `{"a": true, "b": ["x", null, 1.50]}`},
		{column: "c_jsonb", give: "just a string", want: `"just a string"`},
		{column: "c_jsonb", give: []any{}, want: `[]`},
		{column: "c_jsonb", give: map[string]any{"k": "nul\x00"}, wantState: "22021"},
		{column: "c_text_array", give: []any{"a", "b,c", `q"uo\te`, nil, json.Number("5"), "", "NULL", "{x}"},
			want: `{a,"b,c","q\"uo\\te",NULL,5,"","NULL","{x}"}`},
		{column: "c_text_array", give: []string{"x", "y"}, want: `{x,y}`},
		{column: "c_text_array", give: []any{}, want: `{}`},
		{column: "c_text_array", give: "a,b", wantState: "22P02"},
		{column: "c_text_array", give: []any{[]any{"nested"}}, wantState: "22P02"},
	}
	for i, tt := range tests {
		t.Run(fmt.Sprintf("%s %v", tt.column, tt.give), func(t *testing.T) {
			res := upsert(t, db, s, []Row{{"id": i, tt.column: tt.give}}, UpsertOptions{})
			if tt.wantState != "" {
				if len(res.Rejected) != 1 || res.Rejected[0].SQLState != tt.wantState ||
					!strings.Contains(res.Rejected[0].Err, tt.column) {
					t.Fatalf("Upsert() = %+v, want the row rejected with %s naming %s", res, tt.wantState, tt.column)
				}
				return
			}
			if res.Inserted != 1 {
				t.Fatalf("Upsert() = %+v, want 1 inserted", res)
			}
			expr := tt.column + "::text"
			if tt.column == "c_timestamptz" {
				expr = "(c_timestamptz AT TIME ZONE 'UTC')::text"
			}
			var got sql.NullString
			if err := db.QueryRow(`SELECT `+expr+` FROM everything WHERE id = $1`, i).Scan(&got); err != nil {
				t.Fatal(err)
			}
			if !got.Valid {
				got.String = "NULL"
			}
			if got.String != tt.want {
				t.Errorf("stored %q, want %q", got.String, tt.want)
			}
		})
	}
}

func TestSink_Upsert_RowsRefusedByPostgreSQL(t *testing.T) {
	t.Parallel()
	ddl := []string{`CREATE TABLE items (
		id bigint PRIMARY KEY,
		name varchar(5),
		qty integer CHECK (qty >= 0),
		updated_at timestamptz,
		email text UNIQUE)`}
	tab := itemsTable()
	tab.Columns = append(tab.Columns, Column{Name: "email", Type: TypeText})
	tests := []struct {
		name         string
		give         []Row
		before       []Row
		opt          UpsertOptions
		want         Result
		wantRejected []string // "index sqlstate message substring"
		wantRows     string
	}{
		{
			name:         "one value too long",
			give:         []Row{item(1, "a", 1, 1), item(2, "b", 2, 1), item(3, "toolong", 3, 1), item(4, "d", 4, 1)},
			want:         Result{Received: 4, Inserted: 3},
			wantRejected: []string{"2 22001 value too long"},
			wantRows:     "1=a|1 2=b|2 4=d|4",
		},
		{
			name:         "check constraint and value too long in one batch, with before-images",
			before:       []Row{item(5, "e", 5, 1)},
			give:         []Row{item(1, "a", -1, 1), item(2, "b", 2, 1), item(3, "c", 3, 1), item(4, "dddddd", 4, 1), item(5, "e2", 5, 2)},
			opt:          UpsertOptions{BeforeImages: true, RunID: "r", Seq: 1},
			want:         Result{Received: 5, Inserted: 2, Updated: 1},
			wantRejected: []string{`0 23514 constraint "items_qty_check"`, "3 22001 value too long"},
			wantRows:     "2=b|2 3=c|3 5=e2|5",
		},
		{
			name:         "unique violation on another column",
			give:         []Row{{"id": 1, "email": "x@y"}, {"id": 2, "email": "x@y"}, {"id": 3, "email": "z@y"}},
			want:         Result{Received: 3, Inserted: 2},
			wantRejected: []string{`1 23505 constraint "items_email_key"`},
			wantRows:     "1=NULL|NULL 3=NULL|NULL",
		},
		{
			name:         "every row refused",
			give:         []Row{item(1, "aaaaaa", 1, 1), item(2, "bbbbbb", 2, 1)},
			want:         Result{Received: 2},
			wantRejected: []string{"0 22001", "1 22001"},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			s, db := setup(t, tab, ddl...)
			if tt.before != nil {
				upsert(t, db, s, tt.before, UpsertOptions{})
			}
			got := upsert(t, db, s, tt.give, tt.opt)
			if !reflect.DeepEqual(countsOf(got), tt.want) {
				t.Errorf("Upsert() = %+v, want %+v", countsOf(got), tt.want)
			}
			if len(got.Rejected) != len(tt.wantRejected) {
				t.Fatalf("Rejected = %+v, want %q", got.Rejected, tt.wantRejected)
			}
			for i, w := range tt.wantRejected {
				r := got.Rejected[i]
				line := fmt.Sprintf("%d %s %s", r.Index, r.SQLState, r.Err)
				if !strings.HasPrefix(line, w) && !strings.Contains(line, strings.SplitN(w, " ", 3)[len(strings.SplitN(w, " ", 3))-1]) ||
					!strings.HasPrefix(line, strings.Join(strings.SplitN(w, " ", 3)[:2], " ")) {
					t.Errorf("Rejected[%d] = %q, want %q", i, line, w)
				}
			}
			if rows := names(t, db); rows != tt.wantRows {
				t.Errorf("table = %q, want %q", rows, tt.wantRows)
			}
			if tt.opt.BeforeImages {
				// Only the applied rows keep before-images; compensating
				// restores the table as it was before the batch.
				var n int
				if err := db.QueryRow(`SELECT count(*) FROM tether_before_images`).Scan(&n); err != nil {
					t.Fatal(err)
				}
				if want := tt.want.Inserted + tt.want.Updated + tt.want.Unchanged + tt.want.Stale; n != want {
					t.Errorf("%d before-images kept, want %d", n, want)
				}
			}
		})
	}
}

// TestSink_Upsert_RefusedByCopy drives the path where PostgreSQL itself
// refuses a staged value during COPY (the conversions normally catch it
// before): the row is found and rejected, the rest applied.
func TestSink_Upsert_RefusedByCopy(t *testing.T) {
	t.Parallel()
	s, db := setup(t, itemsTable())
	ctx := context.Background()
	tx, err := db.BeginTx(ctx, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer tx.Rollback() //nolint:errcheck // no-op after commit
	staged := []stagedRow{
		{index: 0, row: Row{"id": 1}, values: []any{"1", "a", "1", nil, int64(0)}},
		{index: 1, row: Row{"id": 2}, values: []any{"2", "b", "not a number", nil, int64(1)}},
		{index: 2, row: Row{"id": 3}, values: []any{"3", "c", "3", nil, int64(2)}},
	}
	res := Result{Received: 3}
	if err := s.apply(ctx, tx, staged, UpsertOptions{}, &res); err != nil {
		t.Fatal(err)
	}
	if err := tx.Commit(); err != nil {
		t.Fatal(err)
	}
	if len(res.Rejected) != 1 || res.Rejected[0].Index != 1 || res.Rejected[0].Key != "id=2" ||
		res.Rejected[0].SQLState != "22P02" || res.Inserted != 2 {
		t.Errorf("apply() = %+v, want row 1 rejected with 22P02 and 2 inserted", res)
	}
	if got, want := names(t, db), "1=a|1 3=c|3"; got != want {
		t.Errorf("table = %q, want %q", got, want)
	}
}

func TestSink_Upsert_Errors(t *testing.T) {
	t.Parallel()
	s, db := setup(t, itemsTable())
	ctx := context.Background()
	tests := []struct {
		name     string
		prepare  func(t *testing.T)
		opt      UpsertOptions
		wantType string
		want     string
	}{
		{
			name:     "before-images without a run id",
			opt:      UpsertOptions{BeforeImages: true},
			wantType: failure.TypeSinkSQL,
			want:     "run id",
		},
		{
			name: "column dropped behind the sink's back",
			prepare: func(t *testing.T) {
				if _, err := db.Exec(`ALTER TABLE items DROP COLUMN qty`); err != nil {
					t.Fatal(err)
				}
			},
			wantType: failure.TypeSinkSQL,
			want:     `upsert into "items": pq: column "qty" of relation "items" does not exist`,
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if tt.prepare != nil {
				tt.prepare(t)
			}
			tx, err := db.BeginTx(ctx, nil)
			if err != nil {
				t.Fatal(err)
			}
			defer tx.Rollback() //nolint:errcheck // test
			_, err = s.Upsert(ctx, tx, []Row{item(1, "a", 1, 1)}, tt.opt)
			if err == nil || !failure.IsType(err, tt.wantType) || !failure.IsPermanent(err) || !strings.Contains(err.Error(), tt.want) {
				t.Fatalf("Upsert() = %v, want a permanent %s containing %q", err, tt.wantType, tt.want)
			}
		})
	}
}

func TestSink_Compensate(t *testing.T) {
	t.Parallel()
	s, db := setup(t, allTypesTable())
	ctx := context.Background()
	full := func(id int, text string, n int) Row {
		return Row{
			"id": id, "c_text": text, "c_integer": n, "c_bigint": json.Number("9007199254740993"),
			"c_numeric": json.Number("1.10"), "c_double": 0.1, "c_boolean": n%2 == 0,
			"c_timestamptz": "2024-05-01T12:30:00.000001+02:00", "c_date": "2024-02-29",
			"c_uuid":       "a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11",
			"c_jsonb":      map[string]any{"n": json.Number(fmt.Sprint(n)), "deep": []any{map[string]any{"x": nil}}},
			"c_text_array": []any{"a", nil, text},
		}
	}
	// The table as the run finds it: rows 1-4, with NULLs in row 4.
	upsert(t, db, s, []Row{full(1, "one", 1), full(2, "two", 2), full(3, "three", 3), {"id": 4}}, UpsertOptions{})
	original := contents(t, db, s)

	// Three batches touching overlapping keys, one with a rejected row.
	batches := [][]Row{
		{full(1, "one-b1", 10), full(2, "two", 2), full(5, "five-b1", 5)},
		{full(1, "one-b2", 11), full(5, "five-b2", 6), full(6, "six-b2", 6), {"id": 4, "c_text": "four"}},
		{full(5, "five-b3", 7), full(3, "three-b3", 3), {"id": 2, "c_integer": "bad"}, full(7, "seven", 7)},
	}
	for i, b := range batches {
		upsert(t, db, s, b, UpsertOptions{BeforeImages: true, RunID: "run-1", Seq: i + 1})
	}
	// A retried batch keeps its first before-images (ON CONFLICT DO NOTHING).
	// So does a batch that a reset execution numbers afresh: seq 1 again.
	upsert(t, db, s, []Row{full(1, "one-reset", 12)}, UpsertOptions{BeforeImages: true, RunID: "run-1", Seq: 1})
	upsert(t, db, s, batches[2], UpsertOptions{BeforeImages: true, RunID: "run-1", Seq: 3})
	// Another run's images are left alone.
	upsert(t, db, s, []Row{full(9, "other run", 9)}, UpsertOptions{BeforeImages: true, RunID: "run-2", Seq: 1})
	if contents(t, db, s) == original {
		t.Fatal("the batches changed nothing; the test proves nothing")
	}

	compensate := func(seq int) int {
		tx, err := db.BeginTx(ctx, nil)
		if err != nil {
			t.Fatal(err)
		}
		defer tx.Rollback() //nolint:errcheck // no-op after commit
		n, err := s.Compensate(ctx, tx, "run-1", seq)
		if err != nil {
			t.Fatalf("Compensate(%d) = %v", seq, err)
		}
		if err := tx.Commit(); err != nil {
			t.Fatal(err)
		}
		return n
	}
	// A key keeps the before-image of the first batch that touched it (its
	// state before the run): seq 3 restores 3 and 7; seq 2 restores 6 and 4;
	// seq 1 restores 1 and 5 (2 was unchanged).
	want := map[int]int{3: 2, 2: 2, 1: 2}
	for seq := 3; seq >= 1; seq-- {
		if n := compensate(seq); n != want[seq] {
			t.Errorf("Compensate(%d) restored %d rows, want %d", seq, n, want[seq])
		}
		// A retried compensation restores nothing.
		if n := compensate(seq); n != 0 {
			t.Errorf("second Compensate(%d) restored %d rows, want 0", seq, n)
		}
	}
	// Run 2's row 9 stays; remove it to compare with the original.
	if _, err := db.Exec(`DELETE FROM everything WHERE id = 9`); err != nil {
		t.Fatal(err)
	}
	if got := contents(t, db, s); got != original {
		t.Errorf("after compensation the table is\n%s\nwant\n%s", got, original)
	}

	// Compensating the whole run again, in any order, changes nothing.
	for _, seq := range []int{1, 3, 2} {
		if n := compensate(seq); n != 0 {
			t.Errorf("repeated Compensate(%d) restored %d rows, want 0", seq, n)
		}
	}
	if got := contents(t, db, s); got != original {
		t.Errorf("after a repeated compensation the table is\n%s\nwant\n%s", got, original)
	}

	// Dropping the run's images leaves the other run's.
	upsert(t, db, s, []Row{full(8, "eight", 8)}, UpsertOptions{BeforeImages: true, RunID: "run-1", Seq: 4})
	for range 2 {
		if err := s.DropBeforeImages(ctx, db, "run-1"); err != nil {
			t.Fatalf("DropBeforeImages() = %v", err)
		}
	}
	var runs string
	if err := db.QueryRow(`SELECT string_agg(DISTINCT run_id, ',') FROM tether_before_images`).Scan(&runs); err != nil {
		t.Fatal(err)
	}
	if runs != "run-2" {
		t.Errorf("before-images left for runs %q, want run-2", runs)
	}
}

func TestSink_Ensure(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name string
		ddl  []string
		want []string // substrings of the error; none means success
	}{
		{name: "creates a missing table"},
		{
			name: "accepts a compatible table: unique index instead of a primary key, wider types, extra columns",
			ddl: []string{`CREATE TABLE items (id bigint NOT NULL, name varchar(50), qty bigint, updated_at timestamptz,
				note text, created_at timestamptz NOT NULL DEFAULT now(), serial bigint GENERATED ALWAYS AS IDENTITY)`,
				`CREATE UNIQUE INDEX items_id ON items (id)`},
		},
		{
			name: "missing columns",
			ddl:  []string{`CREATE TABLE items (id bigint PRIMARY KEY, name text)`},
			want: []string{`table "items" does not match its definition`, `missing column "qty" (declared integer)`,
				`missing column "updated_at" (declared timestamptz)`},
		},
		{
			name: "no unique index on the key",
			ddl:  []string{`CREATE TABLE items (id bigint, name text UNIQUE, qty integer, updated_at timestamptz)`},
			want: []string{`no primary key or unique index on exactly the key (id)`, `items_name_key on (name)`},
		},
		{
			name: "unique index on more than the key",
			ddl:  []string{`CREATE TABLE items (id bigint, name text, qty integer, updated_at timestamptz, PRIMARY KEY (id, name))`},
			want: []string{`no primary key or unique index on exactly the key (id)`, `items_pkey on (id, name)`},
		},
		{
			name: "partial unique index does not count",
			ddl: []string{`CREATE TABLE items (id bigint, name text, qty integer, updated_at timestamptz)`,
				`CREATE UNIQUE INDEX items_id ON items (id) WHERE qty > 0`},
			want: []string{`no primary key or unique index on exactly the key (id)`},
		},
		{
			name: "undeclared NOT NULL column without default",
			ddl:  []string{`CREATE TABLE items (id bigint PRIMARY KEY, name text, qty integer, updated_at timestamptz, owner text NOT NULL)`},
			want: []string{`column "owner" is NOT NULL without a default and not declared`},
		},
		{
			name: "incompatible column type",
			ddl:  []string{`CREATE TABLE items (id bigint PRIMARY KEY, name text, qty boolean, updated_at timestamptz)`},
			want: []string{`does not accept the sink's upsert`, `42804`},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			pg := pgtest.New(t)
			for _, d := range tt.ddl {
				if _, err := pg.DB.Exec(d); err != nil {
					t.Fatal(err)
				}
			}
			s, err := NewTableWriter(itemsTable())
			if err != nil {
				t.Fatal(err)
			}
			err = s.Ensure(context.Background(), pg.DB)
			if len(tt.want) == 0 {
				if err != nil {
					t.Fatalf("Ensure() = %v", err)
				}
				if err := s.Ensure(context.Background(), pg.DB); err != nil {
					t.Fatalf("second Ensure() = %v", err)
				}
				if got := upsert(t, pg.DB, s, []Row{item(1, "a", 1, 1)}, UpsertOptions{BeforeImages: true, RunID: "r"}); got.Inserted != 1 {
					t.Errorf("Upsert() after Ensure = %+v", got)
				}
				return
			}
			if err == nil {
				t.Fatalf("Ensure() = nil, want an error containing %q", tt.want)
			}
			if !failure.IsType(err, failure.TypeSinkSQL) || !failure.IsPermanent(err) {
				t.Errorf("Ensure() = %v, want a permanent %s", err, failure.TypeSinkSQL)
			}
			for _, w := range tt.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("Ensure() = %q, want it to contain %q", err, w)
				}
			}
		})
	}
}

func TestSink_Ensure_SchemaQualified(t *testing.T) {
	t.Parallel()
	pg := pgtest.New(t)
	if _, err := pg.DB.Exec(`CREATE SCHEMA ` + pg.Name + `_dest`); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _, _ = pg.DB.Exec(`DROP SCHEMA ` + pg.Name + `_dest CASCADE`) })
	tab := itemsTable()
	tab.Schema = pg.Name + "_dest"
	s, err := NewTableWriter(tab)
	if err != nil {
		t.Fatal(err)
	}
	if err := s.Ensure(context.Background(), pg.DB); err != nil {
		t.Fatalf("Ensure() = %v", err)
	}
	upsert(t, pg.DB, s, []Row{item(1, "a", 1, 1)}, UpsertOptions{BeforeImages: true, RunID: "r", Seq: 1})
	var n int
	q := `SELECT (SELECT count(*) FROM ` + tab.Schema + `.items) + (SELECT count(*) FROM ` + tab.Schema + `.tether_before_images)`
	if err := pg.DB.QueryRow(q).Scan(&n); err != nil {
		t.Fatal(err)
	}
	if n != 2 {
		t.Errorf("%d rows in the destination schema, want 1 row and 1 before-image", n)
	}
}
