// Package run holds the activities that begin and end a sync run:
// StartRun registers the run, takes the integration's writer lease and
// returns the run's plan (where to read from, the policies, the version of
// the integration the run is pinned to); FinishRun records how the run
// ended, moves or restores the integration's state accordingly, and gives
// the lease back.
package run

import (
	"context"
	"database/sql"
	"errors"

	"go.temporal.io/sdk/activity"
	"go.temporal.io/sdk/worker"

	"github.com/tetherflow/tether/activities/catalog"
	"github.com/tetherflow/tether/activities/connector"
	"github.com/tetherflow/tether/activities/lib/cursor"
	"github.com/tetherflow/tether/activities/lib/progress"
	"github.com/tetherflow/tether/activities/pages"
	"github.com/tetherflow/tether/activities/store"
	"github.com/tetherflow/tether/activities/syncstep"
)

// Activities begin and end runs. Its fields are what they use.
type Activities struct {
	Catalog *catalog.Catalog
	Store   *store.Store
	Lease   *Lease
	// Pages are forgotten once a run ends.
	Pages *pages.Pages
	// History, when set, tells who started, reset, replayed or cancelled
	// a run, for the audit (tether_audit) and the run's memo.
	History History
}

// Register puts the activities of a on a worker, each under the name
// workflows call it by (package syncstep).
func Register(r worker.ActivityRegistry, a *Activities) {
	r.RegisterActivityWithOptions(a.StartRun, activity.RegisterOptions{Name: syncstep.StartRun.Name()})
	r.RegisterActivityWithOptions(a.FinishRun, activity.RegisterOptions{Name: syncstep.FinishRun.Name()})
}

// StartRun registers the run, makes sure the destination tables exist, and
// returns the run's plan: where to start reading and the policies to apply.
func (a *Activities) StartRun(ctx context.Context, in syncstep.StartRunInput) (syncstep.StartRunOutput, error) {
	out, err := a.start(ctx, in)
	if err != nil {
		return out, err
	}
	// A reset execution goes on from the run's counts as of its last
	// committed batch, where its checkpoint is.
	if out.Counts, err = a.Store.CommittedCounts(ctx, in.RunID); err != nil {
		return syncstep.StartRunOutput{}, err
	}
	if out.StartedBy, out.Act, err = a.auditStart(ctx, in); err != nil {
		return syncstep.StartRunOutput{}, err
	}
	return out, nil
}

// start is StartRun but for the counts.
func (a *Activities) start(ctx context.Context, in syncstep.StartRunInput) (syncstep.StartRunOutput, error) {
	c, err := a.Catalog.Get(in.Integration, "") // a new run uses the current definition
	if err != nil {
		return syncstep.StartRunOutput{}, err
	}
	if err := c.Prepare(ctx); err != nil {
		return syncstep.StartRunOutput{}, err
	}
	cp, found, err := a.Store.LoadCheckpoint(ctx, nil, in.Integration)
	if err != nil {
		return syncstep.StartRunOutput{}, err
	}
	if in.Kind != store.KindRecords {
		// A run of records moves no checkpoint: any number run at once.
		if err := a.Lease.Acquire(ctx, in); err != nil {
			return syncstep.StartRunOutput{}, err
		}
	}
	def := c.Def
	plan := syncstep.Plan{
		Integration:      def.Name,
		Version:          def.Version,
		BatchSize:        def.BatchSize,
		PagesInFlight:    def.PagesInFlight,
		Atomic:           def.Atomic,
		InvalidThreshold: def.InvalidThreshold,
		ShortRead:        def.ShortRead,
		Steps:            c.StepNames(),
		Definition:       c.Fingerprint,
	}
	run := store.Run{RunID: in.RunID, Integration: in.Integration, WorkflowID: in.WorkflowID, Kind: in.Kind, Status: progress.StatusRunning}
	if in.Kind == store.KindRecords {
		// The workflow hands its records over (StageRecords).
		if err := a.Store.BeginRun(ctx, run); err != nil {
			return syncstep.StartRunOutput{}, err
		}
		return syncstep.StartRunOutput{Plan: plan}, nil
	}
	if in.Kind == store.KindReplay || in.Kind == store.KindRepair {
		// Neither reads the source: a replay reads pending quarantined
		// records up to the newest now, a repair the records its
		// reconciliation found missing or changed. Any invalid record
		// stops neither (it is quarantined again).
		plan.InvalidThreshold = 1
		if in.Kind == store.KindReplay {
			if plan.ReplayUpTo, err = a.Store.MaxQuarantineID(ctx, in.Integration); err != nil {
				return syncstep.StartRunOutput{}, err
			}
		}
		if err := a.Store.BeginRun(ctx, run); err != nil {
			return syncstep.StartRunOutput{}, err
		}
		return syncstep.StartRunOutput{Plan: plan}, nil
	}
	plan.Incremental = def.CursorField != ""
	plan.FollowPages = plan.Incremental && c.Source != nil && c.Source.Capabilities().FollowsPages
	switch {
	case plan.Incremental && found && !in.Full && !cp.Checkpoint.IsZero():
		plan.Since = cp.Checkpoint
		plan.Resumed = true
	case plan.Incremental:
		plan.Since = cursor.Checkpoint{Cursor: def.InitialCursor}
	case found && !in.Full && cp.Position != (cursor.Position{}):
		plan.Start = cp.Position
		plan.Resumed = true
	}
	if in.Kind == store.KindRefresh {
		// A refresh must see every record: no page may come back 304 Not
		// Modified, or SweepRefresh would take its rows for deleted.
		if err := a.Store.ForgetMemos(ctx, in.Integration); err != nil {
			return syncstep.StartRunOutput{}, err
		}
	}
	run.From, run.Position = plan.Since, plan.Start
	if err := a.Store.BeginRun(ctx, run); err != nil {
		return syncstep.StartRunOutput{}, err
	}
	return syncstep.StartRunOutput{Plan: plan}, nil
}

// FinishRun records the run's end. A completed run clears the mid-read
// position (the next run starts from the checkpoint); a compensated run puts
// the checkpoint back where the run found it and forgets the page validators
// it remembered, since the pages they describe were rolled back.
func (a *Activities) FinishRun(ctx context.Context, in syncstep.FinishRunInput) error {
	c, err := a.Catalog.Get(in.Integration, in.Definition)
	if err != nil && (in.Status == progress.StatusCompleted || in.Status == progress.StatusCompensated) {
		return err
	}
	// A run that failed, or was cancelled, is recorded even when its
	// definition is gone (c, nil, is not used then).
	ownLease := in.Owner == "" || in.Owner == in.RunID
	err = a.Store.FinishRun(ctx, in.RunID, in.Status, in.Counts, in.To, in.Error, in.ErrorType)
	if errors.Is(err, sql.ErrNoRows) {
		// The run failed before StartRun recorded it: nothing to finish,
		// but the writer lease it may have taken goes back.
		activity.GetLogger(ctx).Warn("finishing a run that was never recorded", "runId", in.RunID, "status", in.Status)
		if ownLease {
			return a.Lease.Release(ctx, in.Integration, in.RunID)
		}
		return nil
	}
	if err != nil {
		return err
	}
	if err := a.settle(ctx, in); err != nil {
		return err
	}
	if err := a.auditFinish(ctx, in); err != nil {
		return err
	}
	// A failed or cancelled run keeps its staged pages and images, so a
	// reset from the Web UI can continue it; they go once a later run of
	// the integration completes.
	if in.Status == progress.StatusCompleted || in.Status == progress.StatusCompensated {
		if err := a.forget(ctx, c, in); err != nil {
			return err
		}
	}
	if in.Status == progress.StatusCompleted {
		if err := a.Store.ForgetEarlierRuns(ctx, in.Integration, in.RunID); err != nil {
			return err
		}
	}
	if ownLease {
		if err := a.Lease.Release(ctx, in.Integration, in.RunID); err != nil {
			return err
		}
	}
	a.Pages.DropRun(in.RunID)
	return nil
}

// settle moves the integration's state as the run's end says.
func (a *Activities) settle(ctx context.Context, in syncstep.FinishRunInput) error {
	switch {
	case in.Status == progress.StatusCompensated:
		// BeginCompensation did this already; runs recorded before it
		// existed rely on this.
		run, err := a.Store.GetRun(ctx, in.RunID)
		if err != nil {
			return err
		}
		return a.Store.RollBack(ctx, in.Integration, in.Kind, run)
	case in.Kind == store.KindReplay || in.Kind == store.KindRepair || in.Kind == store.KindRecords:
		return nil // these never move the integration's checkpoint or memos
	case in.Status == progress.StatusCompleted:
		return a.Store.ClearPosition(ctx, in.Integration)
	}
	return nil
}

// forget drops what a run that ended for good kept: the destinations'
// images, a refresh's seen keys (and an earlier failed refresh's, once a
// run completes), and its staged pages.
func (a *Activities) forget(ctx context.Context, c *catalog.Integration, in syncstep.FinishRunInput) error {
	seen := []string{in.RunID}
	if in.Status == progress.StatusCompleted {
		earlier, err := a.Store.EndedRefreshRuns(ctx, in.Integration, in.RunID)
		if err != nil {
			return err
		}
		seen = append(seen, earlier...)
	}
	for _, st := range c.Steps {
		if err := st.Sink.Forget(ctx, in.RunID); err != nil {
			return err
		}
		if sw, ok := st.Sink.(connector.Sweeper); ok {
			if err := sw.ForgetSeen(ctx, seen...); err != nil {
				return err
			}
		}
	}
	return a.Store.ForgetRun(ctx, in.RunID)
}
