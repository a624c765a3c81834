package capture

import (
	"bytes"
	"context"
	"database/sql"
	"encoding/json"
	"errors"
	"fmt"
	"net/url"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/lib/pq"

	"github.com/tetherflow/tether/activities/lib/failure"
	"github.com/tetherflow/tether/tests/pgtest"
)

// contactsDDL is the source table most tests capture.
const contactsDDL = `CREATE TABLE contacts (id int PRIMARY KEY, email text NOT NULL, name text)`

// setup gives the test a fresh schema holding the tables the statements
// create, and a Target on its contacts table whose outbox schema is the
// test's own (dropped when the test ends).
func setup(t *testing.T, key []string, statements ...string) (*pgtest.Schema, Target) {
	t.Helper()
	pg := pgtest.New(t)
	tg := Target{Integration: "crm-contacts", Schema: pg.Name, Table: "contacts", Key: key, OutboxSchema: pg.Name + "_outbox"}
	t.Cleanup(func() {
		_, _ = pg.DB.Exec(`DROP SCHEMA IF EXISTS ` + pq.QuoteIdentifier(tg.OutboxSchema) + ` CASCADE`)
	})
	for _, q := range statements {
		exec(t, pg.DB, q)
	}
	return pg, tg
}

// installed is setup with capture installed on contacts (key id), and a
// Reader on it.
func installed(t *testing.T) (*pgtest.Schema, Target, *Reader) {
	t.Helper()
	pg, tg := setup(t, []string{"id"}, contactsDDL)
	if err := Install(context.Background(), pg.DB, tg); err != nil {
		t.Fatalf("Install(): %v", err)
	}
	return pg, tg, newReader(t, pg, tg)
}

func newReader(t *testing.T, pg *pgtest.Schema, tg Target) *Reader {
	t.Helper()
	r, err := NewReader(pg.DB, pg.DSN, tg)
	if err != nil {
		t.Fatalf("NewReader(): %v", err)
	}
	t.Cleanup(func() { r.Close() })
	return r
}

func exec(t *testing.T, db *sql.DB, q string, args ...any) {
	t.Helper()
	if _, err := db.Exec(q, args...); err != nil {
		t.Fatalf("%s: %v", q, err)
	}
}

// read reads up to limit changes and renders each as "op {row}".
func read(t *testing.T, r *Reader, limit int) ([]string, []int64) {
	t.Helper()
	changes, err := r.Read(context.Background(), limit)
	if err != nil {
		t.Fatalf("Read(%d): %v", limit, err)
	}
	var got []string
	var ids []int64
	var last Change
	for _, c := range changes {
		if c.ID <= last.ID || c.ChangedAt.IsZero() || c.ChangedAt.Before(last.ChangedAt) {
			t.Errorf("change %d (at %v) follows change %d (at %v): want ascending ids and capture times",
				c.ID, c.ChangedAt, last.ID, last.ChangedAt)
		}
		var row bytes.Buffer
		if err := json.Compact(&row, c.Row); err != nil {
			t.Fatalf("change %d: row %s is not JSON: %v", c.ID, c.Row, err)
		}
		got = append(got, string(c.Op)+" "+row.String())
		ids = append(ids, c.ID)
		last = c
	}
	return got, ids
}

func wantChanges(t *testing.T, got, want []string) {
	t.Helper()
	if !slices.Equal(got, want) {
		t.Errorf("changes:\n got %q\nwant %q", got, want)
	}
}

func count(t *testing.T, db *sql.DB, q string, args ...any) int {
	t.Helper()
	var n int
	if err := db.QueryRow(q, args...).Scan(&n); err != nil {
		t.Fatalf("%s: %v", q, err)
	}
	return n
}

func TestTarget_Validate(t *testing.T) {
	t.Parallel()
	valid := Target{Integration: "crm-contacts", Table: "contacts", Key: []string{"id"}}
	tests := []struct {
		name string
		give func(*Target)
		want []string // substrings of the error; none: valid
	}{
		{name: "valid", give: func(*Target) {}},
		{name: "valid with schemas", give: func(tg *Target) { tg.Schema, tg.OutboxSchema = "Crm", "cdc" }},
		{name: "long integration name", give: func(tg *Target) { tg.Integration = strings.Repeat("a", 63) }},
		{name: "empty", give: func(tg *Target) { *tg = Target{} },
			want: []string{"integration: is required", "table: is required", "key: at least one"}},
		{name: "bad names", give: func(tg *Target) {
			tg.Integration, tg.Schema, tg.Table, tg.OutboxSchema = "CRM_Contacts", "a-b", "x y", "1st"
		}, want: []string{`integration: "CRM_Contacts" is not a valid integration name`, `schema: "a-b"`, `table: "x y"`, `outbox_schema: "1st"`}},
		{name: "integration too long", give: func(tg *Target) { tg.Integration = strings.Repeat("a", 64) },
			want: []string{"integration: "}},
		{name: "bad and duplicate key", give: func(tg *Target) { tg.Key = []string{"id", "", "id", `i"d`} },
			want: []string{"key[1]: is required", `key[2]: duplicate key column "id"`, `key[3]: "i\"d"`}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			tg := valid
			tt.give(&tg)
			err := tg.Validate()
			if len(tt.want) == 0 {
				if err != nil {
					t.Fatalf("Validate() = %v, want nil", err)
				}
				return
			}
			if err == nil {
				t.Fatalf("Validate() = nil, want %q", tt.want)
			}
			for _, w := range tt.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("Validate() = %q, want it to contain %q", err, w)
				}
			}
		})
	}
}

func TestObjectName(t *testing.T) {
	t.Parallel()
	if got := objectName("crm-contacts"); got != "tether_capture_crm-contacts" {
		t.Errorf("objectName(crm-contacts) = %q", got)
	}
	a, b := objectName(strings.Repeat("a", 62)+"b"), objectName(strings.Repeat("a", 62)+"c")
	if len(a) > maxIdentLen || len(b) > maxIdentLen || a == b {
		t.Errorf("objectName of two long names = %q, %q: want distinct names of at most %d bytes", a, b, maxIdentLen)
	}
}

// TestInstallSQL_Golden pins the SQL a DBA reviews. Regenerate with
// UPDATE_GOLDEN=1 go test ./activities/connector/pgsource/capture -run Golden
// and review the diff.
func TestInstallSQL_Golden(t *testing.T) {
	t.Parallel()
	tg := Target{Integration: "crm-contacts", Schema: "crm", Table: "Contacts", Key: []string{"tenant", "id"}}
	got := InstallSQL(tg) + "\n" + RemoveSQL(tg)
	path := filepath.Join("testdata", "crm_contacts.golden")
	if os.Getenv("UPDATE_GOLDEN") != "" {
		if err := os.WriteFile(path, []byte(got), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	want, err := os.ReadFile(path)
	if err != nil {
		t.Fatalf("read golden file (UPDATE_GOLDEN=1 creates it): %v", err)
	}
	if got != string(want) {
		t.Errorf("generated SQL differs from %s (UPDATE_GOLDEN=1 to accept):\n%s", path, got)
	}
}

// TestInstallSQL_RunByHand runs the scripts as a DBA would, whole.
func TestInstallSQL_RunByHand(t *testing.T) {
	t.Parallel()
	pg, tg := setup(t, []string{"id"}, contactsDDL)
	ctx := context.Background()
	for range 2 {
		exec(t, pg.DB, InstallSQL(tg))
	}
	if ok, err := Installed(ctx, pg.DB, tg); err != nil || !ok {
		t.Fatalf("after InstallSQL, Installed() = %v, %v; want true", ok, err)
	}
	exec(t, pg.DB, `INSERT INTO contacts VALUES (1, 'a@example.com', 'Ann')`)
	got, _ := read(t, newReader(t, pg, tg), 10)
	wantChanges(t, got, []string{`upsert {"id":1,"name":"Ann","email":"a@example.com"}`})

	exec(t, pg.DB, RemoveSQL(tg))
	if ok, err := Installed(ctx, pg.DB, tg); err != nil || ok {
		t.Fatalf("after RemoveSQL, Installed() = %v, %v; want false", ok, err)
	}
}

func TestInstall_Idempotent(t *testing.T) {
	t.Parallel()
	pg, tg := setup(t, []string{"id"}, contactsDDL)
	ctx := context.Background()
	if ok, err := Installed(ctx, pg.DB, tg); err != nil || ok {
		t.Fatalf("before Install, Installed() = %v, %v; want false", ok, err)
	}
	for i := range 2 {
		if err := Install(ctx, pg.DB, tg); err != nil {
			t.Fatalf("Install() #%d: %v", i+1, err)
		}
	}
	// Several workers starting at once.
	var wg sync.WaitGroup
	errs := make([]error, 8)
	for i := range errs {
		wg.Go(func() { errs[i] = Install(ctx, pg.DB, tg) })
	}
	wg.Wait()
	if err := errors.Join(errs...); err != nil {
		t.Fatalf("concurrent Install(): %v", err)
	}
	if ok, err := Installed(ctx, pg.DB, tg); err != nil || !ok {
		t.Fatalf("Installed() = %v, %v; want true", ok, err)
	}
	if n := count(t, pg.DB, `SELECT count(*) FROM pg_trigger WHERE tgrelid = $1::regclass`, tg.Schema+".contacts"); n != 1 {
		t.Errorf("%d triggers on contacts, want 1", n)
	}
	exec(t, pg.DB, `INSERT INTO contacts VALUES (1, 'a@example.com', 'Ann')`)
	r := newReader(t, pg, tg)
	got, ids := read(t, r, 10)
	wantChanges(t, got, []string{`upsert {"id":1,"name":"Ann","email":"a@example.com"}`})
	if err := r.Ack(ctx, ids); err != nil {
		t.Fatal(err)
	}

	// A changed key replaces the trigger function.
	tg.Key = []string{"id", "email"}
	if err := Install(ctx, pg.DB, tg); err != nil {
		t.Fatalf("Install() with another key: %v", err)
	}
	exec(t, pg.DB, `UPDATE contacts SET email = 'ann@example.com'`)
	got, _ = read(t, r, 10)
	wantChanges(t, got, []string{
		`delete {"id":1,"name":"Ann","email":"a@example.com"}`,
		`upsert {"id":1,"name":"Ann","email":"ann@example.com"}`,
	})
}

func TestReader_CapturesChanges(t *testing.T) {
	t.Parallel()
	pg, _, r := installed(t)
	exec(t, pg.DB, `INSERT INTO contacts VALUES (1, 'a@example.com', 'Ann'), (2, 'b@example.com', NULL)`)
	exec(t, pg.DB, `UPDATE contacts SET name = 'Anne' WHERE id = 1`)
	exec(t, pg.DB, `DELETE FROM contacts WHERE id = 2`)
	// One transaction changing a row twice: both changes, in statement order.
	exec(t, pg.DB, `DO $$ BEGIN
		INSERT INTO contacts VALUES (3, 'c@example.com', 'Cy');
		UPDATE contacts SET email = 'cy@example.com' WHERE id = 3;
	END $$`)
	// Rolled back: nothing captured.
	exec(t, pg.DB, `DO $$ BEGIN
		INSERT INTO contacts VALUES (4, 'd@example.com', 'Di');
		RAISE EXCEPTION 'rollback';
	EXCEPTION WHEN raise_exception THEN NULL;
	END $$`)

	got, _ := read(t, r, 100)
	wantChanges(t, got, []string{
		`upsert {"id":1,"name":"Ann","email":"a@example.com"}`,
		`upsert {"id":2,"name":null,"email":"b@example.com"}`,
		`upsert {"id":1,"name":"Anne","email":"a@example.com"}`,
		`delete {"id":2,"name":null,"email":"b@example.com"}`,
		`upsert {"id":3,"name":"Cy","email":"c@example.com"}`,
		`upsert {"id":3,"name":"Cy","email":"cy@example.com"}`,
	})
}

func TestReader_KeyChange(t *testing.T) {
	t.Parallel()
	pg, tg := setup(t, []string{"tenant", "id"},
		`CREATE TABLE contacts (tenant text, id int, name text, PRIMARY KEY (tenant, id))`,
		`INSERT INTO contacts VALUES ('acme', 1, 'Ann')`)
	if err := Install(context.Background(), pg.DB, tg); err != nil {
		t.Fatalf("Install(): %v", err)
	}
	r := newReader(t, pg, tg)
	exec(t, pg.DB, `UPDATE contacts SET name = 'Anne'`)   // key unchanged: one upsert
	exec(t, pg.DB, `UPDATE contacts SET id = 2`)          // one key column changed
	exec(t, pg.DB, `UPDATE contacts SET tenant = 'beta'`) // the other
	got, _ := read(t, r, 100)
	wantChanges(t, got, []string{
		`upsert {"id":1,"name":"Anne","tenant":"acme"}`,
		`delete {"id":1,"name":"Anne","tenant":"acme"}`,
		`upsert {"id":2,"name":"Anne","tenant":"acme"}`,
		`delete {"id":2,"name":"Anne","tenant":"acme"}`,
		`upsert {"id":2,"name":"Anne","tenant":"beta"}`,
	})
}

func TestReader_ReadAck(t *testing.T) {
	t.Parallel()
	pg, _, r := installed(t)
	ctx := context.Background()
	lag := func(want int64) time.Time {
		t.Helper()
		pending, oldest, err := r.Lag(ctx)
		if err != nil {
			t.Fatalf("Lag(): %v", err)
		}
		if pending != want || (pending == 0) != oldest.IsZero() {
			t.Fatalf("Lag() = %d, %v; want %d pending (and a zero time only when none)", pending, oldest, want)
		}
		return oldest
	}
	lag(0)
	exec(t, pg.DB, `INSERT INTO contacts VALUES (1, 'a@example.com', 'Ann')`)
	exec(t, pg.DB, `INSERT INTO contacts VALUES (2, 'b@example.com', 'Bo')`)
	exec(t, pg.DB, `INSERT INTO contacts VALUES (3, 'c@example.com', 'Cy')`)
	oldest := lag(3)

	first, ids := read(t, r, 2)
	if len(first) != 2 || !strings.Contains(first[0], `"id":1`) || !strings.Contains(first[1], `"id":2`) {
		t.Fatalf("Read(2) = %q, want the changes of rows 1 and 2", first)
	}
	changes, err := r.Read(ctx, 1)
	if err != nil || len(changes) != 1 || !changes[0].ChangedAt.Equal(oldest) {
		t.Fatalf("Read(1) = %+v, %v; want the oldest change, captured at %v (Lag's oldest)", changes, err, oldest)
	}
	// Not acknowledged (a crash before Ack): read again.
	again, againIDs := read(t, r, 2)
	if !slices.Equal(again, first) || !slices.Equal(againIDs, ids) {
		t.Fatalf("Read(2) without Ack = %q %v, want %q %v again", again, againIDs, first, ids)
	}
	if err := r.Ack(ctx, ids); err != nil {
		t.Fatalf("Ack(%v): %v", ids, err)
	}
	if err := r.Ack(ctx, ids); err != nil { // a retried Ack
		t.Fatalf("Ack(%v) again: %v", ids, err)
	}
	if err := r.Ack(ctx, nil); err != nil {
		t.Fatalf("Ack(nil): %v", err)
	}
	lag(1)
	rest, restIDs := read(t, r, 0)
	if len(rest) != 1 || !strings.Contains(rest[0], `"id":3`) {
		t.Fatalf("Read() after Ack = %q, want only row 3's change", rest)
	}
	if err := r.Ack(ctx, restIDs); err != nil {
		t.Fatalf("Ack(%v): %v", restIDs, err)
	}
	lag(0)
	if got, _ := read(t, r, 10); len(got) != 0 {
		t.Fatalf("Read() after acknowledging everything = %q, want none", got)
	}
}

// TestReader_LaterCommitOfLowerID is why the position is the outbox rows
// left, not the last id read: a transaction that took a lower id and
// commits later is read once it commits.
func TestReader_LaterCommitOfLowerID(t *testing.T) {
	t.Parallel()
	pg, _, r := installed(t)
	ctx := context.Background()
	slow, err := pg.DB.BeginTx(ctx, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer slow.Rollback()
	if _, err := slow.Exec(`INSERT INTO contacts VALUES (1, 'a@example.com', 'Ann')`); err != nil {
		t.Fatal(err)
	}
	exec(t, pg.DB, `INSERT INTO contacts VALUES (2, 'b@example.com', 'Bo')`)

	got, ids := read(t, r, 10)
	wantChanges(t, got, []string{`upsert {"id":2,"name":"Bo","email":"b@example.com"}`})
	if err := r.Ack(ctx, ids); err != nil {
		t.Fatal(err)
	}
	if err := slow.Commit(); err != nil {
		t.Fatal(err)
	}
	got, lowIDs := read(t, r, 10)
	wantChanges(t, got, []string{`upsert {"id":1,"name":"Ann","email":"a@example.com"}`})
	if len(lowIDs) == 1 && lowIDs[0] >= ids[0] {
		t.Errorf("the slow transaction's change has id %d, want it below %d (the test shows nothing otherwise)", lowIDs[0], ids[0])
	}
}

func TestReader_Wait(t *testing.T) {
	t.Parallel()
	pg, _, r := installed(t)
	ctx := context.Background()
	// within fails the test unless Wait returns nil within a generous bound.
	within := func(what string, fallback time.Duration, change func()) {
		t.Helper()
		done := make(chan error, 1)
		go func() { done <- r.Wait(ctx, fallback) }()
		if change != nil {
			change()
		}
		select {
		case err := <-done:
			if err != nil {
				t.Fatalf("%s: Wait() = %v", what, err)
			}
		case <-time.After(5 * time.Second):
			t.Fatalf("%s: Wait(%v) has not returned after 5s", what, fallback)
		}
	}
	// The listener connects in the background and wakes Wait once it listens.
	within("listening", time.Minute, nil)
	within("a committed change", time.Minute, func() {
		exec(t, pg.DB, `INSERT INTO contacts SELECT g, 'x' || g, NULL FROM generate_series(1, 50) g`)
	})
	exec(t, pg.DB, `UPDATE contacts SET name = 'n'`)
	time.Sleep(100 * time.Millisecond) // let the notification arrive before Wait
	within("a change committed before Wait", time.Minute, nil)
	within("no change: the fallback", 50*time.Millisecond, nil)

	cctx, cancel := context.WithCancel(ctx)
	cancel()
	if err := r.Wait(cctx, time.Minute); !errors.Is(err, context.Canceled) {
		t.Errorf("Wait() with a cancelled context = %v, want context.Canceled", err)
	}

	polling, err := NewReader(pg.DB, "", Target{Integration: "x", Table: "t", Key: []string{"id"}})
	if err != nil {
		t.Fatal(err)
	}
	defer polling.Close()
	if err := polling.Wait(ctx, 10*time.Millisecond); err != nil {
		t.Errorf("Wait() without a listener = %v, want nil after the fallback", err)
	}
}

func TestRemove(t *testing.T) {
	t.Parallel()
	pg, tg, r := installed(t)
	ctx := context.Background()
	exec(t, pg.DB, `INSERT INTO contacts VALUES (1, 'a@example.com', 'Ann')`)
	for i := range 2 {
		if err := Remove(ctx, pg.DB, tg); err != nil {
			t.Fatalf("Remove() #%d: %v", i+1, err)
		}
	}
	name := objectName(tg.Integration)
	leftovers := map[string]int{
		"trigger":      count(t, pg.DB, `SELECT count(*) FROM pg_trigger WHERE tgrelid = $1::regclass`, tg.Schema+".contacts"),
		"function":     count(t, pg.DB, `SELECT count(*) FROM pg_proc WHERE proname = $1 AND pronamespace = to_regnamespace($2)`, name, tg.OutboxSchema),
		"outbox table": count(t, pg.DB, `SELECT count(*) FROM information_schema.tables WHERE table_schema = $1`, tg.OutboxSchema),
	}
	for what, n := range leftovers {
		if n != 0 {
			t.Errorf("after Remove, %d %s left", n, what)
		}
	}
	if ok, err := Installed(ctx, pg.DB, tg); err != nil || ok {
		t.Errorf("after Remove, Installed() = %v, %v; want false", ok, err)
	}
	// The source table still takes writes.
	exec(t, pg.DB, `INSERT INTO contacts VALUES (2, 'b@example.com', 'Bo')`)
	exec(t, pg.DB, `UPDATE contacts SET name = 'x'`)
	exec(t, pg.DB, `DELETE FROM contacts`)
	// The outbox is gone: reading says so, permanently.
	_, err := r.Read(ctx, 10)
	if !failure.IsType(err, failure.TypeConfig) || !failure.IsPermanent(err) || !strings.Contains(err.Error(), "run Install") {
		t.Errorf("Read() after Remove = %v, want a permanent %s saying to run Install", err, failure.TypeConfig)
	}

	// Nothing installed, or no table at all: nothing to do.
	other := tg
	other.Integration = "never-installed"
	if err := Remove(ctx, pg.DB, other); err != nil {
		t.Errorf("Remove() of what was never installed: %v", err)
	}
	other.Table = "missing"
	if err := Remove(ctx, pg.DB, other); err != nil {
		t.Errorf("Remove() on a missing table: %v", err)
	}
}

func TestInstall_TableProblems(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name  string
		give  []string // statements creating the table
		table string
		key   []string
		want  []string // {s} is the test's schema
	}{
		{name: "missing table", table: "missing", key: []string{"id"},
			want: []string{`table "{s}"."missing" does not exist`}},
		{name: "missing key column", give: []string{contactsDDL}, key: []string{"id", "tenant"},
			want: []string{`key: no column tenant in "{s}"."contacts"`}},
		{name: "nullable, not unique", give: []string{`CREATE TABLE contacts (id int, email text)`}, key: []string{"id"},
			want: []string{`key: column id of "{s}"."contacts" is nullable`, `key: (id) is not unique`}},
		{name: "unique index with a column outside the key", give: []string{contactsDDL}, key: []string{"email"},
			want: []string{`key: (email) is not unique`}},
		{name: "view", give: []string{contactsDDL, `CREATE VIEW contacts_v AS SELECT * FROM contacts`},
			table: "contacts_v", key: []string{"id"}, want: []string{`"{s}"."contacts_v" is not a table`}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			pg, tg := setup(t, tt.key, tt.give...)
			if tt.table != "" {
				tg.Table = tt.table
			}
			err := Install(context.Background(), pg.DB, tg)
			if !failure.IsType(err, failure.TypeConfig) || !failure.IsPermanent(err) {
				t.Fatalf("Install() = %v, want a permanent %s", err, failure.TypeConfig)
			}
			for _, w := range tt.want {
				if w = strings.ReplaceAll(w, "{s}", pg.Name); !strings.Contains(err.Error(), w) {
					t.Errorf("Install() = %q, want it to contain %q", err, w)
				}
			}
			if ok, err := Installed(context.Background(), pg.DB, tg); err != nil || ok {
				t.Errorf("after a failed Install, Installed() = %v, %v; want false", ok, err)
			}
		})
	}
}

// TestInstall_Privileges runs Install as a role that may not create
// triggers or schemas, then as one that may, and writes as an application
// role that has no rights on the outbox.
func TestInstall_Privileges(t *testing.T) {
	t.Parallel()
	pg, tg := setup(t, []string{"id"}, contactsDDL)
	ctx := context.Background()
	worker, app := pg.Name+"_worker", pg.Name+"_app"
	for _, role := range []string{worker, app} {
		exec(t, pg.DB, `CREATE ROLE `+role+` LOGIN`)
		t.Cleanup(func() {
			_, _ = pg.DB.Exec(`DROP OWNED BY ` + role + ` CASCADE`)
			_, _ = pg.DB.Exec(`DROP ROLE ` + role)
		})
		exec(t, pg.DB, `GRANT USAGE ON SCHEMA `+pg.Name+` TO `+role)
	}
	exec(t, pg.DB, `GRANT INSERT, UPDATE, DELETE, SELECT ON contacts TO `+app)
	as := func(role string) *sql.DB {
		u, err := url.Parse(pg.DSN)
		if err != nil {
			t.Fatal(err)
		}
		u.User = url.User(role)
		db, err := sql.Open("postgres", u.String())
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { db.Close() })
		return db
	}
	workerDB := as(worker)

	err := Install(ctx, workerDB, tg)
	if !failure.IsPermanent(err) {
		t.Fatalf("Install() without privileges = %v, want a permanent error", err)
	}
	for _, w := range []string{
		fmt.Sprintf(`GRANT TRIGGER ON "%s"."contacts" TO "%s"`, pg.Name, worker),
		fmt.Sprintf(`GRANT CREATE ON DATABASE "test" TO "%s"`, worker),
		"InstallSQL",
	} {
		if !strings.Contains(err.Error(), w) {
			t.Errorf("Install() = %q, want it to contain %q", err, w)
		}
	}

	// The table's owner installs by hand; the worker's Install then has
	// nothing to do, and needs no privilege for it.
	exec(t, pg.DB, InstallSQL(tg))
	if err := Install(ctx, workerDB, tg); err != nil {
		t.Fatalf("Install() after InstallSQL by the owner: %v", err)
	}
	exec(t, pg.DB, RemoveSQL(tg))

	// RemoveSQL leaves the outbox schema: give it to the worker.
	exec(t, pg.DB, `ALTER SCHEMA `+tg.OutboxSchema+` OWNER TO `+worker)
	exec(t, pg.DB, `GRANT TRIGGER ON contacts TO `+worker)
	if err := Install(ctx, workerDB, tg); err != nil {
		t.Fatalf("Install() with TRIGGER and an outbox schema of its own: %v", err)
	}
	exec(t, as(app), `INSERT INTO contacts VALUES (1, 'a@example.com', 'Ann')`)
	got, _ := read(t, newReader(t, pg, tg), 10)
	wantChanges(t, got, []string{`upsert {"id":1,"name":"Ann","email":"a@example.com"}`})

	// Dropping the trigger needs the table's owner.
	if err := Remove(ctx, workerDB, tg); !failure.IsPermanent(err) || !strings.Contains(err.Error(), "RemoveSQL") {
		t.Errorf("Remove() by a role that does not own the table = %v, want a permanent error naming RemoveSQL", err)
	}
	if ok, err := Installed(ctx, pg.DB, tg); err != nil || !ok {
		t.Errorf("after a failed Remove, Installed() = %v, %v; want true", ok, err)
	}
}

func TestReader_Errors(t *testing.T) {
	t.Parallel()
	if _, err := NewReader(nil, "", Target{}); !failure.IsType(err, failure.TypeConfig) || !failure.IsPermanent(err) {
		t.Errorf("NewReader(invalid Target) = %v, want a permanent %s", err, failure.TypeConfig)
	}
	const dsn = "postgres://u:s3cret@host:notaport/db"
	_, err := NewReader(nil, dsn, Target{Integration: "x", Table: "t", Key: []string{"id"}})
	if !failure.IsType(err, failure.TypeConfig) || strings.Contains(err.Error(), "s3cret") {
		t.Errorf("NewReader(bad DSN) = %v, want a %s without the password", err, failure.TypeConfig)
	}

	db, err := sql.Open("postgres", "postgres://postgres@127.0.0.1:1/test?sslmode=disable&connect_timeout=2")
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	r, err := NewReader(db, "", Target{Integration: "x", Table: "t", Key: []string{"id"}})
	if err != nil {
		t.Fatal(err)
	}
	_, err = r.Read(context.Background(), 10)
	if !failure.IsType(err, failure.TypeSourceUnavailable) || failure.IsPermanent(err) {
		t.Errorf("Read() from an unreachable server = %v, want a retryable %s", err, failure.TypeSourceUnavailable)
	}
}
