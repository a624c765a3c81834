// Package compensate is the sync's compensation (the saga's undo): when an
// atomic run fails for good or is cancelled, BeginCompensation fences the
// run against late applies and puts its checkpoint back, and
// CompensateBatch restores one applied batch in one destination from the
// images its sink kept, batch by batch and destination by destination in
// reverse order, until the destinations are as they were before the run.
package compensate

import (
	"context"
	"database/sql"
	"fmt"

	"go.temporal.io/sdk/activity"
	"go.temporal.io/sdk/worker"

	"github.com/tetherflow/tether/activities/catalog"
	"github.com/tetherflow/tether/activities/lib/heartbeat"
	"github.com/tetherflow/tether/activities/lib/postgres"
	"github.com/tetherflow/tether/activities/store"
	"github.com/tetherflow/tether/activities/syncstep"
)

// Activities is the compensation step. Its fields are what it uses.
type Activities struct {
	Catalog *catalog.Catalog
	Store   *store.Store
	// DB is where a restore's transaction runs (transactional sinks).
	DB *sql.DB
}

// Register puts the activities of a on a worker, each under the name
// workflows call it by (package syncstep).
func Register(r worker.ActivityRegistry, a *Activities) {
	r.RegisterActivityWithOptions(a.BeginCompensation, activity.RegisterOptions{Name: syncstep.BeginCompensation.Name()})
	r.RegisterActivityWithOptions(a.CompensateBatch, activity.RegisterOptions{Name: syncstep.CompensateBatch.Name()})
}

// BeginCompensation starts undoing a failed or cancelled atomic run. It
// marks the run Compensating, which fences out any late apply of it, and
// puts back what the run moved before a single row is restored: the
// checkpoint returns to where the run found it and the page validators it
// remembered are forgotten (a sync run), or the quarantine entries it
// marked replayed are pending again (a replay run). So if compensation
// stops half-way, the next run re-reads everything the run read; nothing is
// skipped. It returns the last batch with images to undo.
func (a *Activities) BeginCompensation(ctx context.Context, in syncstep.BeginCompensationInput) (syncstep.BeginCompensationOutput, error) {
	c, err := a.Catalog.Get(in.Integration, in.Definition)
	if err != nil {
		return syncstep.BeginCompensationOutput{}, err
	}
	run, err := a.Store.BeginCompensation(ctx, in.RunID)
	if err != nil {
		return syncstep.BeginCompensationOutput{}, err
	}
	if err := a.Store.RollBack(ctx, in.Integration, in.Kind, run); err != nil {
		return syncstep.BeginCompensationOutput{}, err
	}
	last := 0
	for _, st := range c.Steps {
		seq, err := st.Sink.LastImaged(ctx, in.RunID)
		if err != nil {
			return syncstep.BeginCompensationOutput{}, err
		}
		last = max(last, seq)
	}
	return syncstep.BeginCompensationOutput{LastBatch: last}, nil
}

// CompensateBatch restores the images of one applied batch of an atomic
// run in one destination (in.Step). It is idempotent.
func (a *Activities) CompensateBatch(ctx context.Context, in syncstep.CompensateInput) (syncstep.CompensateOutput, error) {
	stop := heartbeat.Keep(ctx, fmt.Sprintf("restoring batch %d", in.Seq))
	defer stop()
	c, err := a.Catalog.Get(in.Integration, in.Definition)
	if err != nil {
		return syncstep.CompensateOutput{}, err
	}
	st, err := c.StepAt(in.Step)
	if err != nil {
		return syncstep.CompensateOutput{}, err
	}
	w := postgres.NewLazyTx(a.DB, fmt.Sprintf("compensation of batch %d", in.Seq))
	defer w.Rollback()
	n, err := st.Sink.Restore(ctx, w, in.RunID, in.Seq)
	if err != nil {
		return syncstep.CompensateOutput{}, err // classified; the workflow names the batch
	}
	if err := w.Commit(); err != nil {
		return syncstep.CompensateOutput{}, err
	}
	activity.GetLogger(ctx).Info("batch compensated", "runId", in.RunID, "seq", in.Seq, "destination", st.Dest.Name, "restored", n)
	return syncstep.CompensateOutput{Restored: n}, nil
}
