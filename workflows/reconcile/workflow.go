// Package reconcile is the reconciliation workflow: a periodic "trust but
// verify" pass that finds every difference between an integration's source
// and its PostgreSQL destination and repairs it.
//
// It compares by key and content without holding either side in memory:
// the source is read once and folded into per-chunk digests (chunk =
// hash of the key), the destination's digests are computed inside
// PostgreSQL, and only the chunks whose digests differ are compared key by
// key (after a second read of the source that keeps only their records).
// Missing and changed records are repaired by a child SyncWorkflow of kind
// repair, so they go through the usual validate, transform and apply steps
// (invalid ones are quarantined, never forced in); extra rows are deleted,
// marked or only reported, by policy. A dry run reports and touches
// nothing. See activities/pipeline/reconcile.go for the steps.
package reconcile

import (
	"fmt"
	"time"

	"go.temporal.io/api/enums/v1"
	"go.temporal.io/sdk/temporal"
	"go.temporal.io/sdk/workflow"

	"github.com/tetherflow/tether/activities/lib/failure"
	"github.com/tetherflow/tether/activities/lib/progress"
	"github.com/tetherflow/tether/activities/syncstep"
	"github.com/tetherflow/tether/workflows/datasync"
	"github.com/tetherflow/tether/workflows/steps"
)

// Phases, as the progress query shows them.
const (
	PhaseBegin    = "begin"
	PhaseDigest   = "digest source"
	PhaseCompare  = "compare digests"
	PhaseDrill    = "read differing chunks"
	PhaseClassify = "compare keys"
	PhaseRepair   = "repair"
	PhaseExtras   = "extras"
	PhaseFinish   = "finish"
)

var (
	shortStep = workflow.ActivityOptions{
		StartToCloseTimeout: time.Minute,
		RetryPolicy: &temporal.RetryPolicy{
			InitialInterval: 500 * time.Millisecond, BackoffCoefficient: 2, MaximumInterval: 30 * time.Second, MaximumAttempts: 10,
		},
	}
	// scanStep reads the whole source: long, heartbeating its position,
	// resumed there by a retry on another worker.
	scanStep = workflow.ActivityOptions{
		StartToCloseTimeout: 4 * time.Hour,
		// The scan heartbeats its position (every digest) every 10 s.
		HeartbeatTimeout: 30 * time.Second,
		RetryPolicy: &temporal.RetryPolicy{
			InitialInterval: time.Second, BackoffCoefficient: 2, MaximumInterval: time.Minute, MaximumAttempts: 8,
		},
	}
	// sqlStep is one comparison or repair statement over the table.
	sqlStep = workflow.ActivityOptions{
		StartToCloseTimeout: 30 * time.Minute,
		HeartbeatTimeout:    steps.HeartbeatTimeout,
		RetryPolicy: &temporal.RetryPolicy{
			InitialInterval: time.Second, BackoffCoefficient: 2, MaximumInterval: time.Minute, MaximumAttempts: 8,
		},
	}
)

// ReconcileWorkflow compares an integration's source with its destination
// and repairs the differences (see package doc).
func ReconcileWorkflow(ctx workflow.Context, in Input) (syncstep.ReconcileReport, error) {
	if in.Integration == "" {
		return syncstep.ReconcileReport{}, temporal.NewNonRetryableApplicationError(
			`input: "integration" is required, e.g. {"integration":"crm-contacts"}`, failure.TypeConfig, nil)
	}
	info := workflow.GetInfo(ctx)
	r := &reconciliation{in: in, rep: syncstep.ReconcileReport{
		Integration: in.Integration,
		ReconcileID: info.WorkflowExecution.ID + "/" + info.FirstRunID,
		Status:      progress.StatusRunning,
		Phase:       PhaseBegin,
		DryRun:      in.DryRun,
	}}
	if err := workflow.SetQueryHandler(ctx, QueryProgress, func() (syncstep.ReconcileReport, error) { return r.rep, nil }); err != nil {
		return r.rep, err
	}
	_ = workflow.UpsertTypedSearchAttributes(ctx,
		datasync.IntegrationAttr.ValueSet(in.Integration), datasync.StatusAttr.ValueSet(progress.StatusRunning))
	err := r.run(ctx)
	return r.finish(ctx, err)
}

type reconciliation struct {
	in    Input
	rep   syncstep.ReconcileReport
	plan  syncstep.ReconcilePlan
	began bool
}

func (r *reconciliation) run(ctx workflow.Context) error {
	log := workflow.GetLogger(ctx)
	if err := r.begin(ctx); err != nil {
		return err
	}
	r.began = true
	r.rep.Extras, r.rep.Chunks, r.rep.Table = r.plan.Extras, r.plan.Chunks, r.plan.Table
	if r.in.DryRun {
		r.rep.Extras = syncstep.ExtrasReport
	}

	r.rep.Phase = PhaseDigest
	scan := syncstep.ReconcileScanInput{Integration: r.in.Integration, ReconcileID: r.rep.ReconcileID,
		Definition: r.plan.Definition, Chunks: r.plan.Chunks, BatchSize: r.plan.BatchSize}
	s1, err := syncstep.ReconcileScan.Run(r.step(ctx, scanStep, fmt.Sprintf("%s · digest the source in %d chunks", syncstep.ReconcileScanName, r.plan.Chunks)), scan)
	if err != nil {
		return err
	}
	r.rep.SourceRead += s1.Read
	r.rep.SourceRecords = s1.Read
	r.rep.Invalid = s1.Invalid

	r.rep.Phase = PhaseCompare
	cmp := syncstep.ReconcileCompareInput{Integration: r.in.Integration, ReconcileID: r.rep.ReconcileID,
		Definition: r.plan.Definition, Chunks: r.plan.Chunks, MarkColumn: r.markColumn()}
	c, err := syncstep.ReconcileCompare.Run(r.step(ctx, sqlStep, fmt.Sprintf("%s · %d source records against table %s", syncstep.ReconcileCompareName, s1.Read, r.plan.Table)), cmp)
	if err != nil {
		return err
	}
	r.rep.DestinationRows = c.DestinationRows
	r.rep.ChunksDiffering = len(c.Differing)
	log.Info("chunk digests compared", "integration", r.in.Integration, "chunks", r.plan.Chunks,
		"differing", len(c.Differing), "sourceRecords", s1.Read, "destinationRows", c.DestinationRows)
	if len(c.Differing) == 0 {
		return nil
	}

	r.rep.Phase = PhaseDrill
	scan.Drill = c.Differing
	s2, err := syncstep.ReconcileScan.Run(r.step(ctx, scanStep, fmt.Sprintf("%s · read the %d differing chunks", syncstep.ReconcileScanName, len(c.Differing))), scan)
	if err != nil {
		return err
	}
	r.rep.SourceRead += s2.Read

	r.rep.Phase = PhaseClassify
	found, err := syncstep.ReconcileClassify.Run(r.step(ctx, sqlStep, fmt.Sprintf("%s · %d chunks: missing, changed or extra", syncstep.ReconcileClassifyName, len(c.Differing))),
		syncstep.ReconcileClassifyInput{ReconcileCompareInput: cmp, Drill: c.Differing})
	if err != nil {
		return err
	}
	r.rep.ReconcileFound = found
	log.Info("differences found", "integration", r.in.Integration, "missing", found.Missing, "changed", found.Changed,
		"extra", found.Extra, "invalid", found.Invalid, "dryRun", r.in.DryRun)
	if r.in.DryRun {
		return nil
	}

	if found.Missing+found.Changed > 0 {
		r.rep.Phase = PhaseRepair
		if err := r.repair(ctx); err != nil {
			return err
		}
	}
	if found.Extra > 0 && (r.plan.Extras == syncstep.ExtrasDelete || r.plan.Extras == syncstep.ExtrasMark) {
		r.rep.Phase = PhaseExtras
		n, err := syncstep.ReconcileExtras.Run(r.step(ctx, sqlStep, fmt.Sprintf("%s · %s %d extra rows", syncstep.ReconcileExtrasName, r.plan.Extras, found.Extra)), syncstep.ReconcileExtrasInput{
			Integration: r.in.Integration, ReconcileID: r.rep.ReconcileID, Definition: r.plan.Definition,
			Policy: r.plan.Extras, MarkColumn: r.plan.MarkColumn,
		})
		if err != nil {
			return err
		}
		r.rep.ExtrasHandled = n
	}
	return nil
}

// step names the activity ctx will run (summary, in the Web UI's
// timeline) and says in the workflow's current details where the
// reconciliation is.
func (r *reconciliation) step(ctx workflow.Context, o workflow.ActivityOptions, summary string) workflow.Context {
	f := r.rep.ReconcileFound
	workflow.SetCurrentDetails(ctx, fmt.Sprintf("**%s** reconciliation, phase %s: %s\n\nsource records %d · destination rows %d · differing chunks %d · missing %d · changed %d · extra %d · repaired %d",
		r.in.Integration, r.rep.Phase, summary, r.rep.SourceRecords, r.rep.DestinationRows, r.rep.ChunksDiffering, f.Missing, f.Changed, f.Extra, r.rep.Repaired))
	return steps.WithSummary(ctx, o, summary)
}

// markColumn is the soft-delete column rows marked deleted are left out by.
func (r *reconciliation) markColumn() string {
	if r.plan.Extras == syncstep.ExtrasMark {
		return r.plan.MarkColumn
	}
	return ""
}

// begin runs ReconcileBegin, queueing behind another writer when Wait
// (steps.WhileBusy).
func (r *reconciliation) begin(ctx workflow.Context) error {
	actx := r.step(ctx, shortStep, fmt.Sprintf("%s · %s", syncstep.ReconcileBeginName, r.in.Integration))
	info := workflow.GetInfo(ctx)
	in := syncstep.ReconcileBeginInput{Integration: r.in.Integration, ReconcileID: r.rep.ReconcileID,
		WorkflowID: info.WorkflowExecution.ID, DryRun: r.in.DryRun, Extras: r.in.Extras, Trigger: r.in.Trigger}
	return steps.WhileBusy(ctx, r.in.Wait, func(refusal error) {
		if refusal != nil {
			r.rep.Phase = "waiting for another run to finish: " + refusal.Error()
		}
	}, func() error {
		plan, err := syncstep.ReconcileBegin.Run(actx, in)
		if err == nil {
			r.plan = plan
		}
		return err
	})
}

// repair applies the missing and changed records through a child sync run
// of kind repair, which writes under this reconciliation's lease.
func (r *reconciliation) repair(ctx workflow.Context) error {
	info := workflow.GetInfo(ctx)
	r.rep.RepairRun = info.WorkflowExecution.ID + "/repair"
	cctx := workflow.WithChildOptions(ctx, workflow.ChildWorkflowOptions{
		WorkflowID: r.rep.RepairRun,
		// A cancelled reconciliation waits for its repair to compensate.
		WaitForCancellation: true,
		ParentClosePolicy:   enums.PARENT_CLOSE_POLICY_REQUEST_CANCEL,
		TypedSearchAttributes: temporal.NewSearchAttributes(
			datasync.IntegrationAttr.ValueSet(r.in.Integration), datasync.StatusAttr.ValueSet(progress.StatusRunning)),
	})
	var res datasync.Result
	err := workflow.ExecuteChildWorkflow(cctx, datasync.WorkflowType, datasync.Input{
		Integration: r.in.Integration, Repair: r.rep.ReconcileID, Trigger: "reconcile",
	}).Get(ctx, &res)
	r.rep.Repaired = res.Counts.Inserted + res.Counts.Updated
	if err != nil {
		return fmt.Errorf("repair run %s: %w", r.rep.RepairRun, err)
	}
	return nil
}

// finish records how the reconciliation ended (in a disconnected context,
// so a cancelled one is recorded too) and releases the writer lease.
func (r *reconciliation) finish(ctx workflow.Context, err error) (syncstep.ReconcileReport, error) {
	cancelled := ctx.Err() != nil
	switch {
	case cancelled:
		r.rep.Status = progress.StatusCancelled
		err = temporal.NewCanceledError("reconciliation cancelled")
	case err != nil:
		r.rep.Status = progress.StatusFailed
		r.rep.Error = err.Error()
	default:
		r.rep.Status = progress.StatusCompleted
	}
	phase := r.rep.Phase
	r.rep.Phase = PhaseFinish
	dctx, _ := workflow.NewDisconnectedContext(ctx)
	_ = workflow.UpsertTypedSearchAttributes(dctx, datasync.StatusAttr.ValueSet(r.rep.Status))
	if r.began || !failure.IsType(err, failure.TypeBusy) {
		if _, ferr := syncstep.ReconcileFinish.Run(r.step(dctx, shortStep, fmt.Sprintf("%s · %s", syncstep.ReconcileFinishName, r.rep.Status)),
			syncstep.ReconcileFinishInput{Integration: r.in.Integration, ReconcileID: r.rep.ReconcileID, Status: r.rep.Status, Report: r.rep}); ferr != nil {
			workflow.GetLogger(ctx).Error("recording the reconciliation's end failed", "error", ferr)
			if err == nil {
				err = ferr
			}
		}
	}
	if err != nil {
		r.rep.Phase = phase
		return r.rep, err
	}
	return r.rep, nil
}
