package datasync

import (
	"fmt"

	"go.temporal.io/sdk/temporal"
	"go.temporal.io/sdk/workflow"

	"github.com/tetherflow/tether/activities/lib/cursor"
	"github.com/tetherflow/tether/activities/lib/progress"
	"github.com/tetherflow/tether/activities/syncstep"
	"github.com/tetherflow/tether/workflows/steps"
)

// start registers the run (first execution) or restores the carried state.
func (r *run) start(ctx workflow.Context) error {
	info := workflow.GetInfo(ctx)
	if r.in.State != nil {
		r.st = *r.in.State
		r.st.Executions++
		r.applyNext = r.st.Seq + 1
		r.progressed(ctx, "resumed after continue-as-new")
		return nil
	}
	r.st = State{RunID: info.WorkflowExecution.ID + "/" + info.FirstRunID, StartedAt: workflow.Now(ctx), NextPage: 1, Executions: 1}
	r.applyNext = 1
	_ = workflow.UpsertTypedSearchAttributes(ctx,
		IntegrationAttr.ValueSet(r.in.Integration), StatusAttr.ValueSet(progress.StatusRunning))
	r.progressed(ctx, syncstep.StartRunName)
	var out syncstep.StartRunOutput
	err := r.startRun(ctx, syncstep.StartRunInput{
		Integration: r.in.Integration,
		RunID:       r.st.RunID,
		WorkflowID:  info.WorkflowExecution.ID,
		Kind:        r.kind(),
		Full:        r.in.Full || r.in.Refresh,
		Trigger:     r.in.Trigger,
		Owner:       r.in.Repair,
	}, &out)
	if err != nil {
		r.status = progress.StatusFailed
		r.err = stepError(syncstep.StartRunName, 0, err)
		cause := r.err
		if ctx.Err() != nil {
			r.status = progress.StatusCancelled
			r.err = nil
			cause = temporal.NewCanceledError("sync cancelled while starting")
		}
		_ = workflow.UpsertTypedSearchAttributes(ctx, StatusAttr.ValueSet(r.status))
		if workflow.GetVersion(ctx, versionFinishFailedStart, workflow.DefaultVersion, 1) == 1 {
			// StartRun may have recorded the run before it failed or was
			// cancelled: record how it ended (a no-op when it did not).
			dctx, _ := workflow.NewDisconnectedContext(ctx)
			if ferr := r.finish(dctx, cause.Error()); ferr != nil {
				r.log.Error("recording the run's end failed", "error", ferr)
			}
		}
		return cause
	}
	if out.StartedBy != "" && workflow.GetVersion(ctx, versionAuditMemo, workflow.DefaultVersion, 1) == 1 {
		// Who started (reset, replayed) the run, on the run in the Web UI.
		_ = workflow.UpsertMemo(ctx, map[string]any{MemoStartedBy: out.StartedBy, MemoAct: out.Act})
	}
	r.st.Plan = out.Plan
	// A reset execution of the run goes on from its recorded counts.
	r.st.Counts = out.Counts
	r.st.Since = out.Plan.Since
	r.st.Checkpoint = out.Plan.Since
	r.st.Position = out.Plan.Start
	// A full read resumed mid-way: the source's total counts records this
	// run will not read.
	r.st.ReadResumed = !out.Plan.Incremental && out.Plan.Start != (cursor.Position{})
	r.log.Info("sync started", "integration", r.in.Integration, "runId", r.st.RunID,
		"incremental", out.Plan.Incremental, "since", out.Plan.Since, "resumed", out.Plan.Resumed)
	return nil
}

// startRun runs StartRun, queueing behind another writer when the run was
// started with Wait (steps.WhileBusy); the progress query shows whom it waits for.
func (r *run) startRun(ctx workflow.Context, in syncstep.StartRunInput, out *syncstep.StartRunOutput) error {
	actx := steps.WithSummary(ctx, shortStep, fmt.Sprintf("%s · %s (%s)", syncstep.StartRunName, r.in.Integration, r.kind()))
	return steps.WhileBusy(ctx, r.in.Wait, func(refusal error) {
		if refusal == nil {
			r.throttled = ""
			return
		}
		r.throttled = "waiting for another run to finish: " + refusal.Error()
		r.progressed(ctx, "waiting for the integration's writer")
	}, func() error {
		var err error
		*out, err = syncstep.StartRun.Run(actx, in)
		return err
	})
}
