package store

import (
	"context"
	"database/sql"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/tetherflow/tether/activities/lib/cursor"
	"github.com/tetherflow/tether/activities/lib/failure"
	"github.com/tetherflow/tether/activities/lib/postgres"
	"github.com/tetherflow/tether/activities/lib/progress"
)

// Run kinds, as stored in the runs table.
const (
	// KindSync is a run that reads the source.
	KindSync = "sync"
	// KindReplay is a run that re-applies quarantined records.
	KindReplay = "replay"
	// KindRefresh re-reads the whole source, then removes the destination
	// rows it did not see.
	KindRefresh = "refresh"
	// KindRepair applies the differences a reconciliation found.
	KindRepair = "repair"
	// KindRecords applies records a workflow of your own hands to tether's
	// steps (package workflows/steps): it reads no source, takes no writer
	// lease and moves no checkpoint, so any number run at once.
	KindRecords = "records"
)

// Run is one sync or replay run, across continue-as-new.
type Run struct {
	RunID       string
	Integration string
	WorkflowID  string
	// Kind is KindSync or KindReplay; empty means KindSync.
	Kind string
	// Status is one of the progress.Status* values; empty means Running.
	Status string
	// StartedAt is when the run first began; zero means now.
	StartedAt time.Time
	// FinishedAt is zero while the run has not finished.
	FinishedAt time.Time
	// Counts are the run's counters so far.
	Counts progress.Counts
	// From is the checkpoint the run started after; To the last one it committed.
	From, To cursor.Checkpoint
	// Position is the next page to read, as of the last committed batch.
	Position cursor.Position
	// Error and ErrorType describe why a run failed (empty otherwise).
	Error, ErrorType string
}

// runColumns are the columns scanRun reads, in order.
const runColumns = `run_id, integration, workflow_id, kind, status, started_at, finished_at,
	counts, checkpoint_from, checkpoint_to, position, coalesce(error, ''), coalesce(error_type, '')`

// BeginRun records that a run started. Beginning a run that is already
// recorded (an activity retry, or the run continuing as new) sets its status
// back to r.Status and clears its finish and error, keeping its original
// start time, counts, checkpoints and position.
func (s *Store) BeginRun(ctx context.Context, r Run) error {
	if r.Kind == "" {
		r.Kind = KindSync
	}
	if r.Status == "" {
		r.Status = progress.StatusRunning
	}
	var started sql.NullTime
	if !r.StartedAt.IsZero() {
		started = sql.NullTime{Time: r.StartedAt, Valid: true}
	}
	counts, err := json.Marshal(r.Counts)
	if err != nil {
		return failure.Permanent(failure.TypeSinkSQL, fmt.Errorf("begin run %q: encode counts: %w", r.RunID, err))
	}
	from, err := checkpointJSON(r.From)
	if err != nil {
		return err
	}
	to, err := checkpointJSON(r.To)
	if err != nil {
		return err
	}
	pos, err := positionJSON(r.Position)
	if err != nil {
		return err
	}
	_, err = s.DB.ExecContext(ctx, `
INSERT INTO tether_runs (run_id, integration, workflow_id, kind, status, started_at,
	counts, checkpoint_from, checkpoint_to, position)
VALUES ($1, $2, $3, $4, $5, coalesce($6, now()), $7, $8, $9, $10)
ON CONFLICT (run_id) DO UPDATE SET
	status = EXCLUDED.status,
	workflow_id = coalesce(nullif(EXCLUDED.workflow_id, ''), tether_runs.workflow_id),
	finished_at = NULL,
	error = NULL,
	error_type = NULL,
	updated_at = now()`,
		r.RunID, r.Integration, r.WorkflowID, r.Kind, r.Status, started,
		string(counts), from, to, pos)
	return postgres.Classify(err, fmt.Sprintf("begin run %q", r.RunID))
}

// UpdateRun records a run's progress: its counters, the last checkpoint it
// committed and the next page to read, and marks it Running again (a failed
// run reset from the Web UI resumes). Pass the batch's transaction as q so
// the runs table never shows progress that did not commit. A zero to keeps
// the checkpoint already recorded.
//
// It is also the batch's fence: once a run is being compensated (or was),
// UpdateRun fails with a non-retryable failure.TypeRunFenced error, so a
// late attempt of an apply can never commit behind the compensation.
func (s *Store) UpdateRun(ctx context.Context, q Querier, runID string, c progress.Counts, to cursor.Checkpoint, pos cursor.Position) error {
	what := fmt.Sprintf("update run %q", runID)
	counts, err := json.Marshal(c)
	if err != nil {
		return failure.Permanent(failure.TypeSinkSQL, fmt.Errorf("%s: encode counts: %w", what, err))
	}
	toJSON, err := optionalCheckpointJSON(to)
	if err != nil {
		return err
	}
	posJSON, err := positionJSON(pos)
	if err != nil {
		return err
	}
	var status string
	err = s.on(q).QueryRowContext(ctx, `
WITH prev AS (SELECT status FROM tether_runs WHERE run_id = $1 FOR UPDATE),
upd AS (
    UPDATE tether_runs SET counts = $2, committed = $2, checkpoint_to = coalesce($3, checkpoint_to), position = $4,
        status = 'Running', finished_at = NULL, error = NULL, error_type = NULL, updated_at = now()
    WHERE run_id = $1 AND status NOT IN ('Compensating', 'Compensated')
)
SELECT status FROM prev`, runID, string(counts), toJSON, posJSON).Scan(&status)
	if errors.Is(err, sql.ErrNoRows) {
		return fmt.Errorf("%s: no such run: %w", what, sql.ErrNoRows)
	}
	if err != nil {
		return postgres.Classify(err, what)
	}
	if status == progress.StatusCompensating || status == progress.StatusCompensated {
		return failure.Permanent(failure.TypeRunFenced, fmt.Errorf(
			"%s: the run is %s, so this batch is not applied; start a new run instead of resetting this one",
			what, strings.ToLower(status)), runID)
	}
	return nil
}

// BeginCompensation marks a run Compensating, which fences out every later
// apply of it (see UpdateRun), and returns the run as recorded. Calling it
// again is harmless.
func (s *Store) BeginCompensation(ctx context.Context, runID string) (Run, error) {
	what := fmt.Sprintf("begin compensating run %q", runID)
	r, err := scanRun(s.DB.QueryRowContext(ctx, `
UPDATE tether_runs SET status = CASE WHEN status = 'Compensated' THEN status ELSE 'Compensating' END, updated_at = now()
WHERE run_id = $1
RETURNING `+runColumns, runID))
	if errors.Is(err, sql.ErrNoRows) {
		return Run{}, fmt.Errorf("%s: no such run: %w", what, err)
	}
	if err != nil {
		return Run{}, postgres.Classify(err, what)
	}
	return r, nil
}

// FinishRun records how a run ended: its final status, counters and
// checkpoint, and for a failed run the error and its type. A zero to keeps
// the checkpoint already recorded; a repeated call keeps the first finish
// time.
func (s *Store) FinishRun(ctx context.Context, runID, status string, c progress.Counts, to cursor.Checkpoint, errMsg, errType string) error {
	what := fmt.Sprintf("finish run %q", runID)
	counts, err := json.Marshal(c)
	if err != nil {
		return failure.Permanent(failure.TypeSinkSQL, fmt.Errorf("%s: encode counts: %w", what, err))
	}
	toJSON, err := optionalCheckpointJSON(to)
	if err != nil {
		return err
	}
	res, err := s.DB.ExecContext(ctx, `
UPDATE tether_runs SET status = $2, counts = $3, checkpoint_to = coalesce($4, checkpoint_to),
	error = $5, error_type = $6, finished_at = coalesce(finished_at, now()), updated_at = now()
WHERE run_id = $1`, runID, status, string(counts), toJSON, nullText(errMsg), nullText(errType))
	return mustAffect(res, err, what)
}

// mustAffect classifies err, and reports a statement that matched no run as
// an error wrapping sql.ErrNoRows.
func mustAffect(res sql.Result, err error, what string) error {
	if err != nil {
		return postgres.Classify(err, what)
	}
	n, err := res.RowsAffected()
	if err != nil {
		return postgres.Classify(err, what)
	}
	if n == 0 {
		return fmt.Errorf("%s: no such run: %w", what, sql.ErrNoRows)
	}
	return nil
}

// CommittedCounts returns a run's counts as of its last committed batch
// (zero when none committed, or the run is not recorded).
func (s *Store) CommittedCounts(ctx context.Context, runID string) (progress.Counts, error) {
	var raw []byte
	err := s.DB.QueryRowContext(ctx, `SELECT committed FROM tether_runs WHERE run_id = $1`, runID).Scan(&raw)
	if errors.Is(err, sql.ErrNoRows) {
		return progress.Counts{}, nil
	}
	if err != nil {
		return progress.Counts{}, postgres.Classify(err, fmt.Sprintf("read the committed counts of run %q", runID))
	}
	var c progress.Counts
	if err := json.Unmarshal(raw, &c); err != nil {
		return progress.Counts{}, failure.Permanent(failure.TypeSinkSQL, fmt.Errorf("run %q: committed counts: %w", runID, err))
	}
	return c, nil
}

// GetRun returns one run. A run that is not recorded gives an error wrapping
// sql.ErrNoRows.
func (s *Store) GetRun(ctx context.Context, runID string) (Run, error) {
	r, err := scanRun(s.DB.QueryRowContext(ctx, `SELECT `+runColumns+` FROM tether_runs WHERE run_id = $1`, runID))
	if errors.Is(err, sql.ErrNoRows) {
		return Run{}, fmt.Errorf("get run %q: no such run: %w", runID, err)
	}
	if err != nil {
		return Run{}, postgres.Classify(err, fmt.Sprintf("get run %q", runID))
	}
	return r, nil
}

// ListRuns returns an integration's runs (every integration's when
// integration is empty), newest first, at most limit of them (all when
// limit <= 0).
func (s *Store) ListRuns(ctx context.Context, integration string, limit int) ([]Run, error) {
	what := fmt.Sprintf("list runs of %q", integration)
	var lim sql.NullInt64
	if limit > 0 {
		lim = sql.NullInt64{Int64: int64(limit), Valid: true}
	}
	rows, err := s.DB.QueryContext(ctx, `SELECT `+runColumns+` FROM tether_runs
WHERE $1 = '' OR integration = $1
ORDER BY started_at DESC, run_id DESC
LIMIT $2`, integration, lim)
	if err != nil {
		return nil, postgres.Classify(err, what)
	}
	defer rows.Close()
	var runs []Run
	for rows.Next() {
		r, err := scanRun(rows)
		if err != nil {
			return nil, postgres.Classify(err, what)
		}
		runs = append(runs, r)
	}
	if err := rows.Err(); err != nil {
		return nil, postgres.Classify(err, what)
	}
	return runs, nil
}

// scanner is *sql.Row or *sql.Rows.
type scanner interface{ Scan(dest ...any) error }

// scanRun reads runColumns.
func scanRun(sc scanner) (Run, error) {
	var (
		r                     Run
		finished              sql.NullTime
		counts, from, to, pos []byte
	)
	if err := sc.Scan(&r.RunID, &r.Integration, &r.WorkflowID, &r.Kind, &r.Status, &r.StartedAt, &finished,
		&counts, &from, &to, &pos, &r.Error, &r.ErrorType); err != nil {
		return Run{}, err
	}
	r.FinishedAt = finished.Time
	for _, f := range []struct {
		b    []byte
		v    any
		what string
	}{{counts, &r.Counts, "counts"}, {from, &r.From, "checkpoint_from"}, {to, &r.To, "checkpoint_to"}, {pos, &r.Position, "position"}} {
		if err := decodeJSON(f.b, f.v, fmt.Sprintf("run %q %s", r.RunID, f.what)); err != nil {
			return Run{}, err
		}
	}
	return r, nil
}

// RollBack puts back the integration state a compensated run moved: the
// checkpoint and page memos of a sync or refresh run (to where the run
// found them), the replay marks of a replay run; a repair moved neither.
// It is idempotent.
func (s *Store) RollBack(ctx context.Context, integration, kind string, run Run) error {
	switch kind {
	case KindReplay:
		return s.UnmarkReplayed(ctx, run.RunID)
	case KindRepair, KindRecords:
		return nil // it moved no checkpoint
	}
	if err := s.RestoreCheckpoint(ctx, nil, integration, CheckpointState{Checkpoint: run.From, RunID: run.RunID}); err != nil {
		return err
	}
	return s.ForgetMemos(ctx, integration)
}

// DeploymentID returns the id of the deployment the database holds: made
// once, when the state tables were created (migration 15).
func (s *Store) DeploymentID(ctx context.Context) (string, error) {
	var id string
	err := s.DB.QueryRowContext(ctx, `SELECT id FROM tether_deployment`).Scan(&id)
	return id, postgres.Classify(err, "read the deployment id")
}
