package store

import (
	"context"
	"database/sql"
	"errors"
	"sync"
	"testing"
	"time"

	"github.com/tetherflow/tether/activities/connector"
	"github.com/tetherflow/tether/activities/lib/cursor"
	"github.com/tetherflow/tether/activities/lib/failure"
	"github.com/tetherflow/tether/activities/lib/progress"
	"github.com/tetherflow/tether/tests/pgtest"
)

// newStore returns a Store on a fresh, migrated schema.
func newStore(t *testing.T) *Store { return newStoreB(t) }

// newStoreB is newStore for tests and benchmarks.
func newStoreB(t testing.TB) *Store {
	t.Helper()
	sc := pgtest.New(t)
	if err := Migrate(t.Context(), sc.DB); err != nil {
		t.Fatalf("Migrate: %v", err)
	}
	return New(sc.DB)
}

func TestMigrate(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name string
		run  func(ctx context.Context, db *sql.DB) error
	}{
		{"twice in a row", func(ctx context.Context, db *sql.DB) error {
			if err := Migrate(ctx, db); err != nil {
				return err
			}
			return Migrate(ctx, db)
		}},
		{"four workers at once", func(ctx context.Context, db *sql.DB) error {
			var wg sync.WaitGroup
			errs := make([]error, 4)
			start := make(chan struct{})
			for i := range errs {
				wg.Go(func() {
					<-start
					errs[i] = Migrate(ctx, db)
				})
			}
			close(start)
			wg.Wait()
			return errors.Join(errs...)
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			sc := pgtest.New(t)
			if err := tt.run(t.Context(), sc.DB); err != nil {
				t.Fatalf("Migrate: %v", err)
			}
			var rows, versions, latest int
			if err := sc.DB.QueryRow(`SELECT count(*), count(DISTINCT version), max(version) FROM tether_schema_migrations`).
				Scan(&rows, &versions, &latest); err != nil {
				t.Fatal(err)
			}
			want := len(migrations())
			if rows != want || versions != want || latest != migrations()[want-1].version {
				t.Errorf("tether_schema_migrations: %d rows, %d versions, latest %d; want %d, %d, %d",
					rows, versions, latest, want, want, migrations()[want-1].version)
			}
			var persistence string
			if err := sc.DB.QueryRow(`SELECT relpersistence FROM pg_class WHERE oid = 'tether_staged_pages'::regclass`).
				Scan(&persistence); err != nil {
				t.Fatal(err)
			}
			if persistence != "u" {
				t.Errorf("tether_staged_pages persistence = %q, want unlogged (u)", persistence)
			}
			for _, table := range []string{"tether_runs", "tether_checkpoints", "tether_quarantine", "tether_page_memos", "tether_applied_batches"} {
				var schema string
				if err := sc.DB.QueryRow(`SELECT relnamespace::regnamespace::text FROM pg_class WHERE oid = $1::regclass`, table).
					Scan(&schema); err != nil {
					t.Fatalf("%s: %v", table, err)
				}
				if schema != sc.Name {
					t.Errorf("%s is in schema %q, want %q", table, schema, sc.Name)
				}
			}
		})
	}
}

func TestStore_RunLifecycle(t *testing.T) {
	t.Parallel()
	s := newStore(t)
	ctx := t.Context()
	started := time.Date(2026, 5, 1, 10, 0, 0, 0, time.UTC)
	from := cursor.Checkpoint{Cursor: "2026-04-30T00:00:00Z", Key: "41"}

	if err := s.BeginRun(ctx, Run{RunID: "r1", Integration: "crm", WorkflowID: "crm-sync-manual", StartedAt: started, From: from}); err != nil {
		t.Fatalf("BeginRun: %v", err)
	}
	counts := progress.Counts{Pages: 2, Fetched: 200, Valid: 199, Invalid: 1, Inserted: 150, Updated: 49}
	to := cursor.Checkpoint{Cursor: "2026-05-01T09:00:00Z", Key: "99"}
	pos := cursor.Position{Page: 3}
	tx, err := s.DB.BeginTx(ctx, nil)
	if err != nil {
		t.Fatal(err)
	}
	if err := s.UpdateRun(ctx, tx, "r1", counts, to, pos); err != nil {
		t.Fatalf("UpdateRun: %v", err)
	}
	if err := tx.Commit(); err != nil {
		t.Fatal(err)
	}
	// The workflow continues as new: StartRun begins the same run again.
	if err := s.BeginRun(ctx, Run{RunID: "r1", Integration: "crm", WorkflowID: "crm-sync-manual", StartedAt: started.Add(time.Hour)}); err != nil {
		t.Fatalf("BeginRun again: %v", err)
	}
	got, err := s.GetRun(ctx, "r1")
	if err != nil {
		t.Fatalf("GetRun: %v", err)
	}
	want := Run{RunID: "r1", Integration: "crm", WorkflowID: "crm-sync-manual", Kind: KindSync, Status: progress.StatusRunning,
		StartedAt: started, Counts: counts, From: from, To: to, Position: pos}
	assertRun(t, got, want)

	final := counts.Add(progress.Counts{Pages: 1, Fetched: 10, Valid: 10, Inserted: 10})
	// A zero checkpoint keeps the one recorded.
	if err := s.FinishRun(ctx, "r1", progress.StatusFailed, final, cursor.Checkpoint{}, "apply batch 3: pq: deadlock\x00", "SinkUnavailable"); err != nil {
		t.Fatalf("FinishRun: %v", err)
	}
	got, err = s.GetRun(ctx, "r1")
	if err != nil {
		t.Fatalf("GetRun: %v", err)
	}
	if got.FinishedAt.IsZero() {
		t.Error("FinishedAt is zero after FinishRun")
	}
	want.Status, want.Counts, want.Error, want.ErrorType = progress.StatusFailed, final, "apply batch 3: pq: deadlock\uFFFD", "SinkUnavailable"
	want.FinishedAt = got.FinishedAt
	assertRun(t, got, want)

	// A retried run begins again: running, no finish, no error.
	if err := s.BeginRun(ctx, Run{RunID: "r1", Integration: "crm"}); err != nil {
		t.Fatalf("BeginRun after finish: %v", err)
	}
	if got, err = s.GetRun(ctx, "r1"); err != nil {
		t.Fatal(err)
	}
	if got.Status != progress.StatusRunning || !got.FinishedAt.IsZero() || got.Error != "" || !got.StartedAt.Equal(started) {
		t.Errorf("after BeginRun again: status %q, finished %v, error %q, started %v; want Running, zero, empty, %v",
			got.Status, got.FinishedAt, got.Error, got.StartedAt, started)
	}

	if err := s.BeginRun(ctx, Run{RunID: "r2", Integration: "crm", Kind: KindReplay, StartedAt: started.Add(2 * time.Hour)}); err != nil {
		t.Fatal(err)
	}
	if err := s.BeginRun(ctx, Run{RunID: "o1", Integration: "other", StartedAt: started.Add(3 * time.Hour)}); err != nil {
		t.Fatal(err)
	}
	listTests := []struct {
		give  string
		limit int
		want  []string
	}{
		{"crm", 0, []string{"r2", "r1"}},
		{"crm", 1, []string{"r2"}},
		{"", 0, []string{"o1", "r2", "r1"}},
		{"nobody", 10, nil},
	}
	for _, tt := range listTests {
		runs, err := s.ListRuns(ctx, tt.give, tt.limit)
		if err != nil {
			t.Fatalf("ListRuns(%q, %d): %v", tt.give, tt.limit, err)
		}
		var ids []string
		for _, r := range runs {
			ids = append(ids, r.RunID)
		}
		if !equal(ids, tt.want) {
			t.Errorf("ListRuns(%q, %d) = %v, want %v", tt.give, tt.limit, ids, tt.want)
		}
	}

	for name, err := range map[string]error{
		"GetRun":    func() error { _, err := s.GetRun(ctx, "nope"); return err }(),
		"UpdateRun": s.UpdateRun(ctx, nil, "nope", progress.Counts{}, cursor.Checkpoint{}, cursor.Position{}),
		"FinishRun": s.FinishRun(ctx, "nope", progress.StatusCompleted, progress.Counts{}, cursor.Checkpoint{}, "", ""),
	} {
		if !errors.Is(err, sql.ErrNoRows) {
			t.Errorf("%s of a missing run: error %v, want one wrapping sql.ErrNoRows", name, err)
		}
	}
}

// assertRun compares runs, times by instant.
func assertRun(t *testing.T, got, want Run) {
	t.Helper()
	if !got.StartedAt.Equal(want.StartedAt) || !got.FinishedAt.Equal(want.FinishedAt) {
		t.Errorf("run times: started %v finished %v, want %v %v", got.StartedAt, got.FinishedAt, want.StartedAt, want.FinishedAt)
	}
	got.StartedAt, got.FinishedAt, want.StartedAt, want.FinishedAt = time.Time{}, time.Time{}, time.Time{}, time.Time{}
	if got != want {
		t.Errorf("run:\n got %+v\nwant %+v", got, want)
	}
}

func equal(a, b []string) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if a[i] != b[i] {
			return false
		}
	}
	return true
}

func TestStore_Checkpoint(t *testing.T) {
	t.Parallel()
	s := newStore(t)
	ctx := t.Context()
	first := CheckpointState{Checkpoint: cursor.Checkpoint{Cursor: "2026-05-01T00:00:00Z", Key: "7"}, Position: cursor.Position{Page: 4}, RunID: "r1", Seq: 3}

	if _, ok, err := s.LoadCheckpoint(ctx, nil, "crm"); err != nil || ok {
		t.Fatalf("LoadCheckpoint before any save = %v, %v; want not found", ok, err)
	}

	// Saved in a batch transaction that rolls back: nothing is left.
	tx, err := s.DB.BeginTx(ctx, nil)
	if err != nil {
		t.Fatal(err)
	}
	if err := s.SaveCheckpoint(ctx, tx, "crm", first); err != nil {
		t.Fatalf("SaveCheckpoint: %v", err)
	}
	if st, ok, err := s.LoadCheckpoint(ctx, tx, "crm"); err != nil || !ok || st.Checkpoint != first.Checkpoint {
		t.Fatalf("LoadCheckpoint inside the tx = %+v, %v, %v; want the saved state", st, ok, err)
	}
	if err := tx.Rollback(); err != nil {
		t.Fatal(err)
	}
	if st, ok, err := s.LoadCheckpoint(ctx, nil, "crm"); err != nil || ok {
		t.Fatalf("LoadCheckpoint after rollback = %+v, %v, %v; want not found", st, ok, err)
	}

	steps := []struct {
		name string
		do   func() error
		want CheckpointState
	}{
		{"save", func() error { return s.SaveCheckpoint(ctx, nil, "crm", first) }, first},
		{"an older batch of the same run is ignored", func() error {
			return s.SaveCheckpoint(ctx, nil, "crm", CheckpointState{Checkpoint: cursor.Checkpoint{Cursor: "2026-04-01T00:00:00Z", Key: "1"}, Position: cursor.Position{Page: 2}, RunID: "r1", Seq: 1})
		}, first},
		{"the run finished", func() error { return s.ClearPosition(ctx, "crm") },
			CheckpointState{Checkpoint: first.Checkpoint, RunID: "r1", Seq: 3}},
		{"a new run starts its batches at 1", func() error {
			return s.SaveCheckpoint(ctx, nil, "crm", CheckpointState{Checkpoint: cursor.Checkpoint{Cursor: "2026-05-02T00:00:00Z", Key: "8"}, Position: cursor.Position{Token: "abc"}, RunID: "r2", Seq: 1})
		}, CheckpointState{Checkpoint: cursor.Checkpoint{Cursor: "2026-05-02T00:00:00Z", Key: "8"}, Position: cursor.Position{Token: "abc"}, RunID: "r2", Seq: 1}},
	}
	for _, tt := range steps {
		if err := tt.do(); err != nil {
			t.Fatalf("%s: %v", tt.name, err)
		}
		got, ok, err := s.LoadCheckpoint(ctx, nil, "crm")
		if err != nil || !ok {
			t.Fatalf("%s: LoadCheckpoint = %v, %v", tt.name, ok, err)
		}
		if got.UpdatedAt.IsZero() {
			t.Errorf("%s: UpdatedAt is zero", tt.name)
		}
		got.UpdatedAt = time.Time{}
		if got != tt.want {
			t.Errorf("%s: checkpoint\n got %+v\nwant %+v", tt.name, got, tt.want)
		}
	}
}

func TestStore_Memos(t *testing.T) {
	t.Parallel()
	s := newStore(t)
	ctx := t.Context()
	var ms connector.MemoStore = s
	if _, ok, err := ms.Recall(ctx, "crm", "https://api.example/items?page=1"); err != nil || ok {
		t.Fatalf("Recall before Remember = %v, %v; want not found", ok, err)
	}
	memos := []cursor.Memo{
		{ETag: `W/"abc"`, Next: cursor.Position{Page: 2}, RecordCount: 100},
		{ETag: `"def"`, Done: true, RecordCount: 7},
	}
	for _, m := range memos {
		if err := s.Remember(ctx, nil, "crm", "https://api.example/items?page=1", m); err != nil {
			t.Fatalf("Remember: %v", err)
		}
		got, ok, err := ms.Recall(ctx, "crm", "https://api.example/items?page=1")
		if err != nil || !ok || got != m {
			t.Errorf("Recall = %+v, %v, %v; want %+v", got, ok, err, m)
		}
	}
	if _, ok, err := ms.Recall(ctx, "other", "https://api.example/items?page=1"); err != nil || ok {
		t.Errorf("Recall of another integration = %v, %v; want not found", ok, err)
	}
}

// TestStore_CompensationFence: a reset of a failed run resumes it (Running
// again); once a run is being compensated no batch of it may commit.
func TestStore_CompensationFence(t *testing.T) {
	t.Parallel()
	s := newStore(t)
	ctx := t.Context()
	from := cursor.Checkpoint{Cursor: "2026-01-01T00:00:00Z", Key: "1"}
	if err := s.BeginRun(ctx, Run{RunID: "r1", Integration: "crm", From: from}); err != nil {
		t.Fatal(err)
	}
	if err := s.FinishRun(ctx, "r1", progress.StatusFailed, progress.Counts{Pages: 1}, cursor.Checkpoint{}, "boom", "X"); err != nil {
		t.Fatal(err)
	}
	// A reset execution applies another batch: the run is Running again.
	if err := s.UpdateRun(ctx, nil, "r1", progress.Counts{Pages: 2}, cursor.Checkpoint{}, cursor.Position{}); err != nil {
		t.Fatalf("UpdateRun of a failed run: %v", err)
	}
	if r, err := s.GetRun(ctx, "r1"); err != nil || r.Status != progress.StatusRunning || r.Error != "" || !r.FinishedAt.IsZero() {
		t.Fatalf("after UpdateRun: %+v, %v; want Running without error or finish", r, err)
	}
	r, err := s.BeginCompensation(ctx, "r1")
	if err != nil || r.Status != progress.StatusCompensating || r.From != from {
		t.Fatalf("BeginCompensation = %+v, %v; want Compensating with From %v", r, err, from)
	}
	err = s.UpdateRun(ctx, nil, "r1", progress.Counts{Pages: 3}, cursor.Checkpoint{}, cursor.Position{})
	if !failure.IsType(err, failure.TypeRunFenced) || !failure.IsPermanent(err) {
		t.Fatalf("UpdateRun while compensating = %v; want a non-retryable %s", err, failure.TypeRunFenced)
	}
	if r, _ := s.GetRun(ctx, "r1"); r.Counts.Pages != 2 {
		t.Errorf("a fenced UpdateRun changed the counts to %+v", r.Counts)
	}
	if err := s.FinishRun(ctx, "r1", progress.StatusCompensated, progress.Counts{Pages: 2}, cursor.Checkpoint{}, "", ""); err != nil {
		t.Fatal(err)
	}
	if r, err := s.BeginCompensation(ctx, "r1"); err != nil || r.Status != progress.StatusCompensated {
		t.Errorf("BeginCompensation of a compensated run = %+v, %v; want it left Compensated", r, err)
	}
	if err := s.UpdateRun(ctx, nil, "r1", progress.Counts{}, cursor.Checkpoint{}, cursor.Position{}); !failure.IsType(err, failure.TypeRunFenced) {
		t.Errorf("UpdateRun of a compensated run = %v; want %s", err, failure.TypeRunFenced)
	}
	if _, err := s.BeginCompensation(ctx, "nope"); !errors.Is(err, sql.ErrNoRows) {
		t.Errorf("BeginCompensation(unknown run) = %v; want sql.ErrNoRows", err)
	}
}
