package store

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"time"

	"github.com/tetherflow/tether/activities/lib/postgres"
)

// Writer is the run allowed to write an integration: one at a time,
// whatever started it (a schedule, the CLI, a webhook).
type Writer struct {
	Integration string
	// RunID is the run holding the lease (a reconciliation's repair run
	// writes under its reconciliation's lease).
	RunID      string
	WorkflowID string
	Kind       string
	Trigger    string
	AcquiredAt time.Time
}

// Liveness says whether the run holding a lease still runs. It is asked
// only when the lease is held by another run that the runs table does not
// show as finished (a workflow terminated from the Web UI never records its
// end); an error counts as alive.
type Liveness func(ctx context.Context, holder Writer) (bool, error)

// AcquireWriter makes w.RunID the integration's writer. It returns
// acquired=false and the current holder when another run holds the lease
// and is still running; a lease left by a run that ended (recorded as
// finished, or found dead by alive) is taken over. Acquiring a lease the run
// already holds succeeds (an activity retry, continue-as-new).
func (s *Store) AcquireWriter(ctx context.Context, w Writer, alive Liveness) (holder Writer, acquired bool, err error) {
	what := fmt.Sprintf("acquire the writer lease of %q for run %q", w.Integration, w.RunID)
	for attempt := 0; attempt < 3; attempt++ {
		var got string
		err := s.DB.QueryRowContext(ctx, `
INSERT INTO tether_writers (integration, run_id, workflow_id, kind, trigger)
VALUES ($1, $2, $3, $4, $5)
ON CONFLICT (integration) DO UPDATE SET run_id = tether_writers.run_id
    WHERE tether_writers.run_id = EXCLUDED.run_id
RETURNING run_id`, w.Integration, w.RunID, w.WorkflowID, w.Kind, w.Trigger).Scan(&got)
		if err == nil {
			return w, true, nil
		}
		if !errors.Is(err, sql.ErrNoRows) {
			return Writer{}, false, postgres.Classify(err, what)
		}
		holder, err := s.writer(ctx, w.Integration)
		if errors.Is(err, sql.ErrNoRows) {
			continue // released in between: try again
		}
		if err != nil {
			return Writer{}, false, postgres.Classify(err, what)
		}
		live, err := s.holderAlive(ctx, holder, alive)
		if err != nil {
			return Writer{}, false, err
		}
		if live {
			return holder, false, nil
		}
		// Take over a dead run's lease, unless someone else did first.
		res, err := s.DB.ExecContext(ctx, `
UPDATE tether_writers SET run_id = $3, workflow_id = $4, kind = $5, trigger = $6, acquired_at = now()
WHERE integration = $1 AND run_id = $2`, w.Integration, holder.RunID, w.RunID, w.WorkflowID, w.Kind, w.Trigger)
		if err != nil {
			return Writer{}, false, postgres.Classify(err, what)
		}
		if n, _ := res.RowsAffected(); n == 1 {
			return holder, true, nil
		}
	}
	return Writer{}, false, postgres.Classify(errors.New("the lease kept changing hands"), what)
}

// holderAlive: a run recorded as finished is dead; otherwise ask alive.
func (s *Store) holderAlive(ctx context.Context, holder Writer, alive Liveness) (bool, error) {
	var finished bool
	err := s.DB.QueryRowContext(ctx,
		`SELECT finished_at IS NOT NULL FROM tether_runs WHERE run_id = $1`, holder.RunID).Scan(&finished)
	switch {
	case err == nil && finished:
		return false, nil
	case err != nil && !errors.Is(err, sql.ErrNoRows):
		return false, postgres.Classify(err, fmt.Sprintf("read run %q holding the writer lease of %q", holder.RunID, holder.Integration))
	}
	if alive == nil {
		return true, nil
	}
	live, err := alive(ctx, holder)
	if err != nil {
		return true, nil
	}
	return live, nil
}

func (s *Store) writer(ctx context.Context, integration string) (Writer, error) {
	var w Writer
	err := s.DB.QueryRowContext(ctx, `
SELECT integration, run_id, workflow_id, kind, trigger, acquired_at FROM tether_writers WHERE integration = $1`,
		integration).Scan(&w.Integration, &w.RunID, &w.WorkflowID, &w.Kind, &w.Trigger, &w.AcquiredAt)
	return w, err
}

// CurrentWriter returns the run holding the integration's lease, if any.
func (s *Store) CurrentWriter(ctx context.Context, integration string) (Writer, bool, error) {
	w, err := s.writer(ctx, integration)
	if errors.Is(err, sql.ErrNoRows) {
		return Writer{}, false, nil
	}
	if err != nil {
		return Writer{}, false, postgres.Classify(err, fmt.Sprintf("read the writer lease of %q", integration))
	}
	return w, true, nil
}

// ReleaseWriter ends runID's lease of the integration (a no-op when it does
// not hold it).
func (s *Store) ReleaseWriter(ctx context.Context, integration, runID string) error {
	_, err := s.DB.ExecContext(ctx, `DELETE FROM tether_writers WHERE integration = $1 AND run_id = $2`, integration, runID)
	return postgres.Classify(err, fmt.Sprintf("release the writer lease of %q held by run %q", integration, runID))
}
