package pgsource

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"net"
	"net/url"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/tetherflow/tether/activities/connector"
	"github.com/tetherflow/tether/activities/lib/cursor"
	"github.com/tetherflow/tether/activities/lib/failure"
	"github.com/tetherflow/tether/tests/pgtest"
)

// setup gives the test a fresh schema holding the tables the statements create.
func setup(t testing.TB, statements ...string) *pgtest.Schema {
	t.Helper()
	s := pgtest.New(t)
	for _, q := range statements {
		if _, err := s.DB.Exec(q); err != nil {
			t.Fatalf("%s: %v", q, err)
		}
	}
	return s
}

// newSource builds a Source on the test's schema (the DSN's search_path
// unless cfg names a schema).
func newSource(t testing.TB, db *pgtest.Schema, cfg Config, opts ...Option) *Source {
	t.Helper()
	if cfg.DSN == "" && cfg.DSNEnv == "" {
		cfg.DSN = db.DSN
	}
	s, err := New("test", cfg, opts...)
	if err != nil {
		t.Fatalf("New(): %v", err)
	}
	t.Cleanup(func() { s.Close() })
	return s
}

func fetch(t testing.TB, s *Source, req connector.Request) connector.Page {
	t.Helper()
	page, err := s.Fetch(context.Background(), req)
	if err != nil {
		t.Fatalf("Fetch(%+v): %v", req, err)
	}
	if page.RecordCount != len(page.Records) || page.StatusCode != 0 || page.CacheKey != "" || page.NotModified {
		t.Fatalf("Fetch() = {RecordCount: %d, StatusCode: %d, CacheKey: %q, NotModified: %v} for %d records",
			page.RecordCount, page.StatusCode, page.CacheKey, page.NotModified, len(page.Records))
	}
	return page
}

// record decodes a record as the pipeline does (numbers kept as written).
func record(t testing.TB, raw json.RawMessage) map[string]any {
	t.Helper()
	dec := json.NewDecoder(bytes.NewReader(raw))
	dec.UseNumber()
	var m map[string]any
	if err := dec.Decode(&m); err != nil {
		t.Fatalf("record %s is not a JSON object: %v", raw, err)
	}
	return m
}

// field renders a record's field as the pipeline renders cursors and keys.
func field(t testing.TB, rec map[string]any, name string) string {
	t.Helper()
	switch v := rec[name].(type) {
	case string:
		return v
	case json.Number:
		return v.String()
	}
	t.Fatalf("record %v: field %q is %T", rec, name, rec[name])
	return ""
}

// readFull pages through a full read, calling between after every page but
// the last, and returns every record and how many records each page held.
func readFull(t testing.TB, s *Source, limit int, between func(page int)) (recs []map[string]any, sizes []int) {
	t.Helper()
	var pos cursor.Position
	for n := 1; ; n++ {
		if n > 1000 {
			t.Fatal("read does not end")
		}
		page := fetch(t, s, connector.Request{Position: pos, Limit: limit})
		for _, raw := range page.Records {
			recs = append(recs, record(t, raw))
		}
		sizes = append(sizes, len(page.Records))
		if page.Done {
			return recs, sizes
		}
		if page.Next == (cursor.Position{}) || page.Next == pos {
			t.Fatalf("page %d: Next = %+v after %+v, not done", n, page.Next, pos)
		}
		pos = page.Next
		if between != nil {
			between(n)
		}
	}
}

// readIncremental pages through an incremental read as the pipeline does:
// each page starts strictly after the last (cursor, key) of the page
// before, with an empty position.
func readIncremental(t testing.TB, s *Source, since cursor.Checkpoint, limit int, cursorField, key string) []map[string]any {
	t.Helper()
	var recs []map[string]any
	for n := 1; ; n++ {
		if n > 1000 {
			t.Fatal("read does not end")
		}
		page := fetch(t, s, connector.Request{Since: since, Limit: limit})
		for _, raw := range page.Records {
			recs = append(recs, record(t, raw))
		}
		if page.Done {
			return recs
		}
		last := recs[len(recs)-1]
		since = cursor.Checkpoint{Cursor: field(t, last, cursorField), Key: field(t, last, key)}
	}
}

// ids returns the named field of every record.
func ids(t testing.TB, recs []map[string]any, name string) []string {
	out := make([]string, len(recs))
	for i, r := range recs {
		out[i] = field(t, r, name)
	}
	return out
}

// seq returns the decimal numbers from..to.
func seq(from, to int) []string {
	var out []string
	for i := from; i <= to; i++ {
		out = append(out, fmt.Sprint(i))
	}
	return out
}

const itemsDDL = `CREATE TABLE items (
	id bigint PRIMARY KEY,
	name text NOT NULL,
	amount numeric(12,2),
	updated_at timestamptz NOT NULL,
	tags text[]
)`

// insertItems adds items from..to in random physical order.
func insertItems(t testing.TB, db *pgtest.Schema, from, to int) {
	t.Helper()
	_, err := db.DB.Exec(`INSERT INTO items
		SELECT g, 'item ' || g, g * 1.5, timestamptz '2026-01-01 00:00:00+00' + g * interval '1.000123 second', ARRAY['a', 'b']
		FROM generate_series($1::int, $2::int) g ORDER BY random()`, from, to)
	if err != nil {
		t.Fatal(err)
	}
}

func TestSource_Fetch_Full(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name      string
		rows      int
		limit     int
		wantSizes []int
	}{
		{name: "2,500 rows in pages of 1,000", rows: 2500, limit: 1000, wantSizes: []int{1000, 1000, 500}},
		{name: "exact multiple ends on an empty page", rows: 2000, limit: 1000, wantSizes: []int{1000, 1000, 0}},
		{name: "empty table", rows: 0, limit: 1000, wantSizes: []int{0}},
		{name: "default limit", rows: 1500, limit: 0, wantSizes: []int{1000, 500}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			db := setup(t, itemsDDL)
			insertItems(t, db, 1, tt.rows)
			s := newSource(t, db, Config{Table: "items", Key: []string{"id"}})

			recs, sizes := readFull(t, s, tt.limit, nil)
			if !slices.Equal(sizes, tt.wantSizes) {
				t.Errorf("page sizes = %v, want %v", sizes, tt.wantSizes)
			}
			if got := ids(t, recs, "id"); !slices.Equal(got, seq(1, tt.rows)) {
				t.Errorf("read %d records, want ids 1..%d exactly once, in key order", len(got), tt.rows)
			}
		})
	}
}

func TestSource_Fetch_Records(t *testing.T) {
	t.Parallel()
	db := setup(t, itemsDDL,
		`INSERT INTO items VALUES (7, 'seven "7"', 10.50, '2026-01-02 03:04:05.123456+00', '{x,y}'),
		                          (8, 'eight', NULL, '2026-01-02 03:04:05+02', NULL)`)
	s := newSource(t, db, Config{Schema: db.Name, Table: "items", Key: []string{"id"}})
	page := fetch(t, s, connector.Request{Limit: 10})
	if len(page.Records) != 2 || !page.Done {
		t.Fatalf("Fetch() = %d records, Done %v; want 2, true", len(page.Records), page.Done)
	}
	want := []string{
		`{"id": 7, "name": "seven \"7\"", "tags": ["x", "y"], "amount": 10.50, "updated_at": "2026-01-02T03:04:05.123456+00:00"}`,
		`{"id": 8, "name": "eight", "tags": null, "amount": null, "updated_at": "2026-01-02T01:04:05+00:00"}`,
	}
	for i, raw := range page.Records {
		if string(raw) != want[i] {
			t.Errorf("record %d = %s, want %s", i, raw, want[i])
		}
	}
	// Timestamps are RFC 3339, as the pipeline parses cursors.
	rec := record(t, page.Records[0])
	ts, err := time.Parse(time.RFC3339Nano, field(t, rec, "updated_at"))
	if err != nil || !ts.Equal(time.Date(2026, 1, 2, 3, 4, 5, 123456000, time.UTC)) {
		t.Errorf("updated_at %q parses as %v, %v", rec["updated_at"], ts, err)
	}
	if n, ok := rec["amount"].(json.Number); !ok || n != "10.50" {
		t.Errorf("amount = %#v, want the JSON number 10.50", rec["amount"])
	}
	if want := `{"key":["8"]}`; page.Next.Token != want {
		t.Errorf("Next.Token = %q, want %q", page.Next.Token, want)
	}
}

func TestSource_Fetch_CompositeKey(t *testing.T) {
	t.Parallel()
	db := setup(t,
		`CREATE TABLE accounts (tenant text, id int, name text, PRIMARY KEY (tenant, id))`,
		`INSERT INTO accounts SELECT t, i, t || '-' || i FROM unnest(ARRAY['acme', 'Beta', 'beta', 'zeta', 'ß']) t, generate_series(1, 23) i ORDER BY random()`)
	s := newSource(t, db, Config{Table: "accounts", Key: []string{"tenant", "id"}})

	recs, sizes := readFull(t, s, 10, nil)
	if len(sizes) != 12 { // 115 rows
		t.Errorf("read %d pages, want 12", len(sizes))
	}
	var got []string
	for _, r := range recs {
		got = append(got, field(t, r, "tenant")+"/"+field(t, r, "id"))
	}
	var want []string
	rows, err := db.DB.Query(`SELECT tenant || '/' || id FROM accounts ORDER BY tenant, id`)
	if err != nil {
		t.Fatal(err)
	}
	defer rows.Close()
	for rows.Next() {
		var k string
		if err := rows.Scan(&k); err != nil {
			t.Fatal(err)
		}
		want = append(want, k)
	}
	if !slices.Equal(got, want) {
		t.Errorf("read\n%v\nwant every key once, in key order:\n%v", got, want)
	}
}

// TestSource_Fetch_FullUpdatesDuringRead updates rows (their cursor
// column too) between pages: ordered by the stable key, the read still
// returns each row exactly once. Rows inserted behind the position wait
// for the next run.
func TestSource_Fetch_FullUpdatesDuringRead(t *testing.T) {
	t.Parallel()
	db := setup(t, itemsDDL)
	insertItems(t, db, 1, 1000)
	s := newSource(t, db, Config{Table: "items", Key: []string{"id"}, CursorColumn: "", Columns: nil})

	exec := func(q string, args ...any) {
		t.Helper()
		if _, err := db.DB.Exec(q, args...); err != nil {
			t.Fatalf("%s: %v", q, err)
		}
	}
	var ahead []string
	recs, _ := readFull(t, s, 100, func(page int) {
		// Rows already read, rows about to be read and rows far ahead all
		// change, their updated_at moving to the front and to the back.
		exec(`UPDATE items SET updated_at = now() + id * interval '1 second', name = 'item ' || id || ' v' || $1::text WHERE id % 7 = 0`, page)
		exec(`UPDATE items SET updated_at = '2000-01-01' WHERE id % 11 = 0`)
		// A new row behind the position, and one ahead of it.
		exec(`INSERT INTO items VALUES ($1, 'behind', 0, now(), NULL)`, -page)
		exec(`INSERT INTO items VALUES ($1, 'ahead', 0, now(), NULL)`, 5000+page)
		ahead = append(ahead, fmt.Sprint(5000+page))
	})

	want := append(seq(1, 1000), ahead...)
	if got := ids(t, recs, "id"); !slices.Equal(got, want) {
		t.Errorf("read %d records, want ids 1..1000 and %v once each, in key order\ngot: %v", len(got), ahead, got)
	}
	// The last pages saw the updates.
	if name := field(t, recs[993], "name"); name != "item 994 v9" {
		t.Errorf("item 994 = %q, want the name of the last update", name)
	}
}

const eventsDDL = `CREATE TABLE events (
	id bigint PRIMARY KEY,
	updated_at timestamptz NOT NULL,
	version numeric NOT NULL,
	note text
)`

func TestSource_Fetch_Incremental(t *testing.T) {
	t.Parallel()
	db := setup(t, eventsDDL,
		// 10 rows at T0, 30 rows sharing T1 (ids 11..40, physically shuffled), 10 at T2.
		`INSERT INTO events
		 SELECT g, CASE WHEN g <= 10 THEN timestamptz '2026-01-01 00:00:00+00'
		                WHEN g <= 40 THEN timestamptz '2026-01-01 00:00:01.5+00'
		                ELSE timestamptz '2026-01-01 00:00:02+00' + g * interval '1 microsecond' END,
		        CASE WHEN g <= 10 THEN 2 WHEN g <= 40 THEN 10 ELSE 10.25 END, NULL
		 FROM generate_series(1, 50) g ORDER BY random()`)
	t1 := "2026-01-01T00:00:01.5+00:00"

	tests := []struct {
		name   string
		cursor string
		since  cursor.Checkpoint
		want   []string
	}{
		{name: "from the start", cursor: "updated_at", want: seq(1, 50)},
		{name: "after a boundary shared by greater keys", cursor: "updated_at", since: cursor.Checkpoint{Cursor: t1, Key: "25"}, want: seq(26, 50)},
		{name: "boundary written in another zone", cursor: "updated_at", since: cursor.Checkpoint{Cursor: "2026-01-01T01:00:01.5+01:00", Key: "25"}, want: seq(26, 50)},
		{name: "after the last key of a cursor value", cursor: "updated_at", since: cursor.Checkpoint{Cursor: t1, Key: "40"}, want: seq(41, 50)},
		{name: "initial cursor without a key keeps rows at it", cursor: "updated_at", since: cursor.Checkpoint{Cursor: "2026-01-01T00:00:01.5Z"}, want: seq(11, 50)},
		{name: "after everything", cursor: "updated_at", since: cursor.Checkpoint{Cursor: "2030-01-01T00:00:00Z", Key: "1"}, want: nil},
		{name: "numeric cursor", cursor: "version", since: cursor.Checkpoint{Cursor: "10", Key: "30"}, want: seq(31, 50)},
		{name: "numeric cursor compares as numbers", cursor: "version", since: cursor.Checkpoint{Cursor: "2.0", Key: "10"}, want: seq(11, 50)},
		{name: "numeric cursor from the start", cursor: "version", want: seq(1, 50)},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			s := newSource(t, db, Config{Table: "events", Key: []string{"id"}, CursorColumn: tt.cursor})
			// One page holding everything, then pages of 7: 30 rows share
			// T1, so page boundaries fall inside it.
			for _, limit := range []int{1000, 7} {
				recs := readIncremental(t, s, tt.since, limit, tt.cursor, "id")
				if got := ids(t, recs, "id"); !slices.Equal(got, tt.want) {
					t.Errorf("limit %d: read %v, want %v", limit, got, tt.want)
				}
			}
		})
	}
}

func TestSource_Fetch_IncrementalPipelineCheckpoints(t *testing.T) {
	t.Parallel()
	db := setup(t, eventsDDL,
		`INSERT INTO events SELECT g, timestamptz '2026-01-01 00:00:00+00' + (g / 10) * interval '1 second', g, NULL FROM generate_series(1, 95) g`)
	s := newSource(t, db, Config{Table: "events", Key: []string{"id"}, CursorColumn: "updated_at"})

	// The checkpoint the pipeline would save after the first page is the
	// page's last record; reading again from it misses nothing.
	page := fetch(t, s, connector.Request{Limit: 15})
	last := record(t, page.Records[len(page.Records)-1])
	since := cursor.Checkpoint{Cursor: field(t, last, "updated_at"), Key: field(t, last, "id")}
	if since != (cursor.Checkpoint{Cursor: "2026-01-01T00:00:01+00:00", Key: "15"}) {
		t.Fatalf("last position = %+v", since)
	}
	if want := `{"cursor":"2026-01-01T00:00:01+00:00","key":["15"]}`; page.Next.Token != want {
		t.Errorf("Next.Token = %q, want %q", page.Next.Token, want)
	}
	rest := readIncremental(t, s, since, 15, "updated_at", "id")
	if got := ids(t, rest, "id"); !slices.Equal(got, seq(16, 95)) {
		t.Errorf("read %v after %+v, want 16..95", got, since)
	}

	// A position token, when given, is where the read resumes.
	page2 := fetch(t, s, connector.Request{Position: page.Next, Since: cursor.Checkpoint{}, Limit: 3})
	if got := ids(t, []map[string]any{record(t, page2.Records[0])}, "id"); got[0] != "16" {
		t.Errorf("read from token %q starts at %v, want 16", page.Next.Token, got)
	}
}

func TestSource_Fetch_IncrementalNullCursor(t *testing.T) {
	t.Parallel()
	db := setup(t, `CREATE TABLE notes (id int PRIMARY KEY, changed date)`,
		`INSERT INTO notes VALUES (1, '2026-01-01'), (2, NULL), (3, '2026-01-02'), (4, '2026-01-01')`)
	s := newSource(t, db, Config{Table: "notes", Key: []string{"id"}, CursorColumn: "changed"})
	recs := readIncremental(t, s, cursor.Checkpoint{}, 10, "changed", "id")
	if got := ids(t, recs, "id"); !slices.Equal(got, []string{"1", "4", "3"}) {
		t.Errorf("read %v, want 1, 4, 3 (dates in order; NULL cursor not read)", got)
	}
}

// TestSource_Fetch_IncrementalTextOrder reads text keys and cursors whose
// collation orders them otherwise than byte-wise: the read follows the
// pipeline's (byte-wise) order, and fails loudly where the two cannot agree.
func TestSource_Fetch_IncrementalTextOrder(t *testing.T) {
	t.Parallel()
	db := setup(t,
		`CREATE TABLE tags (code text COLLATE "und-x-icu" PRIMARY KEY, stamp text COLLATE "und-x-icu" NOT NULL)`,
		`INSERT INTO tags VALUES ('b', 'x'), ('B', 'x'), ('a', 'x'), ('A', 'x'), ('c', 'Y'), ('C', 'y')`,
		`CREATE TABLE codes (code text PRIMARY KEY, stamp date NOT NULL)`,
		`INSERT INTO codes VALUES ('9', '2026-01-01'), ('10', '2026-01-01')`)

	s := newSource(t, db, Config{Table: "tags", Key: []string{"code"}, CursorColumn: "stamp"})
	for _, limit := range []int{100, 1} {
		recs := readIncremental(t, s, cursor.Checkpoint{}, limit, "stamp", "code")
		if got, want := ids(t, recs, "code"), []string{"c", "A", "B", "a", "b", "C"}; !slices.Equal(got, want) {
			t.Errorf("limit %d: read %v, want %v (byte order of (stamp, code))", limit, got, want)
		}
	}

	// Text keys that look like numbers: PostgreSQL orders "10" before "9",
	// the pipeline the other way round. The read refuses to go on.
	s = newSource(t, db, Config{Table: "codes", Key: []string{"code"}, CursorColumn: "stamp"})
	_, err := s.Fetch(context.Background(), connector.Request{Limit: 10})
	if err == nil || !failure.IsPermanent(err) || !failure.IsType(err, failure.TypeConfig) {
		t.Fatalf("Fetch() = %v, want a permanent %s", err, failure.TypeConfig)
	}
	if want := `PostgreSQL orders (cursor "2026-01-01", key "9") after (cursor "2026-01-01", key "10")`; !strings.Contains(err.Error(), want) {
		t.Errorf("Fetch() = %q, want it to contain %q", err, want)
	}
}

func TestSource_Fetch_ColumnsAndWhere(t *testing.T) {
	t.Parallel()
	var cols, defs []string
	for i := range 60 {
		cols = append(cols, fmt.Sprintf("c%02d", i))
		defs = append(defs, fmt.Sprintf("c%02d int DEFAULT %d", i, i))
	}
	db := setup(t, itemsDDL, `CREATE TABLE wide (id int PRIMARY KEY, `+strings.Join(defs, ", ")+`)`,
		`INSERT INTO wide (id) SELECT generate_series(1, 3)`)
	insertItems(t, db, 1, 300)

	t.Run("columns", func(t *testing.T) {
		t.Parallel()
		s := newSource(t, db, Config{Table: "items", Key: []string{"id"}, Columns: []string{"name", "id"}})
		page := fetch(t, s, connector.Request{Limit: 2})
		if got, want := string(page.Records[1]), `{"id": 2, "name": "item 2"}`; got != want {
			t.Errorf("record = %s, want %s", got, want)
		}
	})
	t.Run("more columns than one jsonb_build_object takes", func(t *testing.T) {
		t.Parallel()
		s := newSource(t, db, Config{Table: "wide", Key: []string{"id"}, Columns: append([]string{"id"}, cols...)})
		recs, _ := readFull(t, s, 2, nil)
		if len(recs) != 3 || len(recs[0]) != 61 || field(t, recs[2], "c59") != "59" || field(t, recs[2], "id") != "3" {
			t.Errorf("read %d records of %d fields: %v", len(recs), len(recs[0]), recs[2])
		}
	})
	t.Run("where", func(t *testing.T) {
		t.Parallel()
		s := newSource(t, db, Config{Table: "items", Key: []string{"id"},
			Where: "amount > 150 AND t.id % 2 = 0 -- even items above 150\n  AND name <> 'item 102'"})
		recs, _ := readFull(t, s, 20, nil)
		var want []string
		for i := 101; i <= 300; i++ {
			if i%2 == 0 && i != 102 {
				want = append(want, fmt.Sprint(i))
			}
		}
		if got := ids(t, recs, "id"); !slices.Equal(got, want) {
			t.Errorf("read %v, want %v", got, want)
		}
	})
	t.Run("where, incremental", func(t *testing.T) {
		t.Parallel()
		s := newSource(t, db, Config{Table: "items", Key: []string{"id"}, CursorColumn: "updated_at", Where: "id <= 10 OR id > 295"})
		recs := readIncremental(t, s, cursor.Checkpoint{}, 4, "updated_at", "id")
		if got, want := ids(t, recs, "id"), append(seq(1, 10), seq(296, 300)...); !slices.Equal(got, want) {
			t.Errorf("read %v, want %v", got, want)
		}
	})
}

func TestSource_DSNEnv(t *testing.T) {
	t.Parallel()
	db := setup(t, itemsDDL)
	insertItems(t, db, 1, 3)
	env := func(name string) (string, bool) {
		if name == "ITEMS_DSN" {
			return db.DSN, true
		}
		return "", false
	}
	s := newSource(t, db, Config{DSNEnv: "ITEMS_DSN", Table: "items", Key: []string{"id"}}, WithLookupEnv(env))
	if page := fetch(t, s, connector.Request{Limit: 10}); len(page.Records) != 3 {
		t.Errorf("read %d records, want 3", len(page.Records))
	}
}

func TestSource_Fetch_Errors(t *testing.T) {
	t.Parallel()
	db := setup(t, itemsDDL,
		`CREATE TABLE loose (id int, name text)`,
		`CREATE TABLE nullable (id int UNIQUE, updated_at timestamptz)`,
		`CREATE TABLE blobs (id int PRIMARY KEY, data jsonb NOT NULL)`,
		`CREATE SEQUENCE counter`)
	insertItems(t, db, 1, 5)
	table := func(name string) string { return fmt.Sprintf(`%q.%q`, db.Name, name) }

	tests := []struct {
		name string
		give Config
		req  connector.Request
		want []string
	}{
		{name: "no such table", give: Config{Schema: db.Name, Table: "nope", Key: []string{"id"}},
			want: []string{table("nope"), "table does not exist"}},
		{name: "no such column", give: Config{Schema: db.Name, Table: "items", Key: []string{"ident"}, Columns: []string{"ident", "title", "name"}},
			want: []string{table("items"), `no column "ident", "title" in the table`}},
		{name: "no such column in where", give: Config{Schema: db.Name, Table: "items", Key: []string{"id"}, Where: "colour = 'red'"},
			want: []string{`read ` + table("items") + ` on postgres://postgres@127.0.0.1`, `column "colour" does not exist`, "(42703)"}},
		{name: "syntax error in where", give: Config{Schema: db.Name, Table: "items", Key: []string{"id"}, Where: "id >"},
			want: []string{table("items"), "(42601)"}},
		{name: "where writes", give: Config{Schema: db.Name, Table: "items", Key: []string{"id"}, Where: "nextval('counter') > 0"},
			want: []string{table("items"), "read-only transaction (25006)"}},
		{name: "key not unique", give: Config{Schema: db.Name, Table: "loose", Key: []string{"name"}},
			want: []string{`key: column "name" is nullable`, "key: (name) is not unique"}},
		{name: "key nullable", give: Config{Schema: db.Name, Table: "nullable", Key: []string{"id"}},
			want: []string{`key: column "id" is nullable; key columns must be NOT NULL`}},
		{name: "cursor type", give: Config{Schema: db.Name, Table: "blobs", Key: []string{"id"}, CursorColumn: "data"},
			want: []string{`cursor_column: "data" has type jsonb`}},
		{name: "position token from elsewhere", give: Config{Schema: db.Name, Table: "items", Key: []string{"id"}},
			req: connector.Request{Position: cursor.Position{Token: "page-2"}}, want: []string{`position token "page-2" is not one this source writes; run a full sync`}},
		{name: "position token from another key", give: Config{Schema: db.Name, Table: "items", Key: []string{"id"}},
			req: connector.Request{Position: cursor.Position{Token: `{"key":["a","1"]}`}}, want: []string{"holds 2 key values, the key has 1 columns"}},
		{name: "checkpoint given to a full read", give: Config{Schema: db.Name, Table: "items", Key: []string{"id"}},
			req: connector.Request{Since: cursor.Checkpoint{Cursor: "2026-01-01T00:00:00Z", Key: "4"}}, want: []string{"cursor_column is not set"}},
		{name: "since cursor of another type", give: Config{Schema: db.Name, Table: "items", Key: []string{"id"}, CursorColumn: "updated_at"},
			req: connector.Request{Since: cursor.Checkpoint{Cursor: "yesterday-ish", Key: "1"}}, want: []string{"(22007)"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			s := newSource(t, db, tt.give)
			_, err := s.Fetch(context.Background(), tt.req)
			if err == nil {
				t.Fatal("Fetch() = nil error")
			}
			if !failure.IsPermanent(err) || !failure.IsType(err, failure.TypeConfig) {
				t.Errorf("Fetch() = %v, want a permanent %s", err, failure.TypeConfig)
			}
			for _, w := range tt.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("Fetch() = %q, want it to contain %q", err, w)
				}
			}
		})
	}
}

// TestSource_Fetch_TableChanged changes the key's type under a read: the
// statement built for the old type fails permanently, and the next Fetch
// reads the catalog again and goes on.
func TestSource_Fetch_TableChanged(t *testing.T) {
	t.Parallel()
	db := setup(t, `CREATE TABLE codes (id text PRIMARY KEY)`, `INSERT INTO codes VALUES ('1'), ('2'), ('3')`)
	s := newSource(t, db, Config{Table: "codes", Key: []string{"id"}})
	page := fetch(t, s, connector.Request{Limit: 1})
	if _, err := db.DB.Exec(`ALTER TABLE codes ALTER COLUMN id TYPE bigint USING id::bigint`); err != nil {
		t.Fatal(err)
	}
	req := connector.Request{Position: page.Next, Limit: 5}
	if _, err := s.Fetch(context.Background(), req); !failure.IsPermanent(err) {
		t.Fatalf("Fetch() with statements for the old type = %v, want a permanent error", err)
	}
	page = fetch(t, s, req)
	if got := ids(t, []map[string]any{record(t, page.Records[0]), record(t, page.Records[1])}, "id"); !slices.Equal(got, []string{"2", "3"}) {
		t.Errorf("read %v after the change, want 2, 3", got)
	}
}

// TestSource_Fetch_AdminShutdown terminates the Source's connections
// between pages: the next Fetch fails retryably or reconnects, and the one
// after it reads on from where the read stood.
func TestSource_Fetch_AdminShutdown(t *testing.T) {
	t.Parallel()
	db := setup(t, itemsDDL)
	insertItems(t, db, 1, 30)
	app := "pgsource_" + db.Name
	u, err := url.Parse(db.DSN)
	if err != nil {
		t.Fatal(err)
	}
	q := u.Query()
	q.Set("application_name", app)
	u.RawQuery = q.Encode()
	s := newSource(t, db, Config{DSN: u.String(), Table: "items", Key: []string{"id"}})

	page := fetch(t, s, connector.Request{Limit: 10})
	var killed int
	if err := db.DB.QueryRow(`SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity WHERE application_name = $1`, app).Scan(&killed); err != nil {
		t.Fatal(err)
	}
	if killed == 0 {
		t.Fatal("no connection of the Source to terminate")
	}
	time.Sleep(50 * time.Millisecond) // let the backends go
	req := connector.Request{Position: page.Next, Limit: 10}
	if _, err := s.Fetch(context.Background(), req); err != nil {
		if failure.IsPermanent(err) || !failure.IsType(err, failure.TypeSourceUnavailable) {
			t.Fatalf("Fetch() after an admin shutdown = %v, want a retryable %s", err, failure.TypeSourceUnavailable)
		}
		t.Logf("Fetch() after an admin shutdown: %v", err)
	}
	page = fetch(t, s, req)
	if got := ids(t, []map[string]any{record(t, page.Records[0])}, "id"); got[0] != "11" {
		t.Errorf("read resumed at %v, want 11", got)
	}
}

func TestSource_Fetch_Unreachable(t *testing.T) {
	t.Parallel()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := l.Addr().String()
	l.Close() // nothing listens there now

	dsn := "postgres://tether:s3cret-pw@" + addr + "/crm?sslmode=disable&connect_timeout=5"
	s, err := New("orders", Config{DSN: dsn, Schema: "crm", Table: "orders", Key: []string{"id"}})
	if err != nil {
		t.Fatal(err) // New does not connect
	}
	defer s.Close()
	_, err = s.Fetch(context.Background(), connector.Request{Limit: 10})
	if err == nil {
		t.Fatal("Fetch() = nil error")
	}
	if failure.IsPermanent(err) || !failure.IsType(err, failure.TypeSourceUnavailable) {
		t.Errorf("Fetch() = %v, want a retryable %s", err, failure.TypeSourceUnavailable)
	}
	msg := err.Error()
	for _, w := range []string{`"crm"."orders"`, "postgres://tether:xxxxx@" + addr + "/crm", "connection refused"} {
		if !strings.Contains(msg, w) {
			t.Errorf("Fetch() = %q, want it to contain %q", msg, w)
		}
	}
	if strings.Contains(msg, "s3cret-pw") {
		t.Errorf("Fetch() = %q shows the password", msg)
	}
	if d := s.Describe(); strings.Contains(d, "s3cret-pw") || !strings.Contains(d, `postgres "crm"."orders" on postgres://tether:xxxxx@`) {
		t.Errorf("Describe() = %q", d)
	}
}

func TestSource_Describe(t *testing.T) {
	t.Parallel()
	s, err := New("orders", Config{DSN: "postgres://u:pw@h/db", Table: "orders", Key: []string{"tenant", "id"}})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	if got, want := s.Describe(), `postgres "orders" on postgres://u:xxxxx@h/db, full read by key (tenant, id)`; got != want {
		t.Errorf("Describe() = %q, want %q", got, want)
	}
	keys := s.KeyColumns()
	keys[0] = "changed"
	if got := s.KeyColumns(); !slices.Equal(got, []string{"tenant", "id"}) {
		t.Errorf("KeyColumns() = %v after changing a copy", got)
	}
	s2, err := New("orders", Config{DSN: "host=h password=pw", Schema: "crm", Table: "orders", Key: []string{"id"}, CursorColumn: "updated_at"})
	if err != nil {
		t.Fatal(err)
	}
	defer s2.Close()
	if got, want := s2.Describe(), `postgres "crm"."orders" on host=h password=xxxxx, incremental by (updated_at, id)`; got != want {
		t.Errorf("Describe() = %q, want %q", got, want)
	}
}
