package datasync

import (
	"fmt"
	"time"

	"go.temporal.io/sdk/temporal"
	"go.temporal.io/sdk/workflow"

	"github.com/tetherflow/tether/activities/lib/cursor"
	"github.com/tetherflow/tether/activities/lib/failure"
	"github.com/tetherflow/tether/activities/lib/progress"
	"github.com/tetherflow/tether/activities/syncstep"
)

// WorkflowType is the registered name of the sync workflow, as typed in
// `temporal workflow start --type SyncWorkflow`.
const WorkflowType = "SyncWorkflow"

// QueryProgress is the query that returns a progress.Report.
const QueryProgress = "progress"

// DefaultTaskQueue is the task queue workers poll unless configured otherwise.
const DefaultTaskQueue = "tether-sync"

// Search attributes the workflow keeps up to date, so the Web UI can list
// every run of an integration and filter by status. They must exist on the
// server (the dev stack creates them; see docs/operations.md).
var (
	IntegrationAttr = temporal.NewSearchAttributeKeyKeyword("IntegrationName")
	StatusAttr      = temporal.NewSearchAttributeKeyKeyword("SyncStatus")
)

// Input starts a sync. Only Integration is required, so the Temporal CLI and
// Web UI can start a run with plain JSON: {"integration":"crm-contacts"}.
type Input struct {
	// Integration is the registered integration's name.
	Integration string `json:"integration"`
	// Full ignores the checkpoint and reads the whole source again; writes
	// stay idempotent, so unchanged rows are counted, not rewritten.
	Full bool `json:"full,omitempty"`
	// Replay re-runs the integration's pending quarantined records through
	// validation, transformation and apply (after a schema or mapping fix)
	// instead of reading the source. Records still invalid are quarantined
	// again under the replay run; every replayed entry is marked.
	Replay bool `json:"replay,omitempty"`
	// MaxPages stops the run after this many pages (0 = no limit).
	MaxPages int `json:"maxPages,omitempty"`
	// PagesPerExecution bounds the pages one execution reads before it
	// continues as new (default 250; Temporal's own suggestion also applies).
	PagesPerExecution int `json:"pagesPerExecution,omitempty"`
	// Trigger says who started the run ("cli", "schedule", "webhook"...).
	Trigger string `json:"trigger,omitempty"`
	// Refresh re-reads the whole source and then removes the destination
	// rows it no longer has (a batch refresh, for sources without a usable
	// cursor). It implies Full.
	Refresh bool `json:"refresh,omitempty"`
	// Wait queues the run behind another run writing the same integration
	// (it waits, durably, until that one ends) instead of failing at once.
	Wait bool `json:"wait,omitempty"`
	// Repair names the reconciliation whose missing and changed records
	// this run applies instead of reading the source (set by
	// ReconcileWorkflow for its child run; it writes under that
	// reconciliation's lease).
	Repair string `json:"repair,omitempty"`
	// State is set only by continue-as-new: the run's position carried over.
	State *State `json:"state,omitempty"`
}

// State is what a run carries across continue-as-new.
type State struct {
	RunID      string            `json:"runId"`
	Plan       syncstep.Plan     `json:"plan"`
	Position   cursor.Position   `json:"position"`
	Since      cursor.Checkpoint `json:"since"`
	Checkpoint cursor.Checkpoint `json:"checkpoint"`
	NextPage   int               `json:"nextPage"`
	Seq        int               `json:"seq"`
	// ApplyStarted is the highest batch whose ApplyBatch was started: the
	// batches a compensation must undo.
	ApplyStarted int `json:"applyStarted"`
	// ApplyStep is the last destination step started for batch
	// ApplyStarted (several destinations only).
	ApplyStep int `json:"applyStep,omitempty"`
	// Destinations counts what each destination did, by step name
	// (several destinations only).
	Destinations map[string]progress.Counts `json:"destinations,omitempty"`
	Counts       progress.Counts            `json:"counts"`
	StartedAt    time.Time                  `json:"startedAt"`
	Executions   int                        `json:"executions"`
	// ReadFetched counts the records of the current read: one query to the
	// source, which an incremental run starts afresh "since" each page's
	// last record. ReadResumed is true while the read is one an earlier
	// run began, whose size this run cannot know.
	ReadFetched int  `json:"readFetched,omitempty"`
	ReadResumed bool `json:"readResumed,omitempty"`
	// Warnings are what the run found doubtful but went on with.
	Warnings []string `json:"warnings,omitempty"`
}

// Result is what a finished run returns.
type Result struct {
	Integration string            `json:"integration"`
	RunID       string            `json:"runId"`
	Status      string            `json:"status"`
	Counts      progress.Counts   `json:"counts"`
	From        cursor.Checkpoint `json:"from"`
	To          cursor.Checkpoint `json:"to"`
	Batches     int               `json:"batches"`
	Executions  int               `json:"executions"`
	Warnings    []string          `json:"warnings,omitempty"`
}

// SyncWorkflow reads an integration's source page by page and applies it to
// the destination through durable steps. See package doc.
func SyncWorkflow(ctx workflow.Context, in Input) (Result, error) {
	if in.Integration == "" {
		return Result{}, temporal.NewNonRetryableApplicationError(
			`input: "integration" is required, e.g. {"integration":"crm-contacts"}`, failure.TypeConfig, nil)
	}
	r := &run{in: in, log: workflow.GetLogger(ctx), sourceAt: map[int]string{}}
	if err := workflow.SetQueryHandler(ctx, QueryProgress, r.report); err != nil {
		return Result{}, err
	}
	workflow.Go(ctx, r.followRetries)
	if err := r.start(ctx); err != nil {
		return r.result(), err
	}
	return r.execute(ctx)
}

// run is one execution's state; everything in it is derived from history.
type run struct {
	in  Input
	log interface {
		Info(string, ...interface{})
		Warn(string, ...interface{})
		Error(string, ...interface{})
	}
	st State

	step         string
	lastProgress time.Time
	lastError    string
	// ahead holds the counts of pages read or checked but not yet covered
	// by a committed batch (count, countsThrough).
	ahead map[int]progress.Counts
	// sourceAt says where the source was asked for each page in flight
	// (run.where), for failures.
	sourceAt  map[int]string
	throttled string
	// retrying are the steps being retried, by Retry.Key (followRetries).
	retrying      map[string]progress.Retry
	pagesThisExec int
	inFlight      int // pages fetched and not yet applied (or dropped)
	applyNext     int // the seq allowed to apply next
	done          bool
	err           error // first permanent failure; stops the pipeline
	errStep       string
	status        string
	// compensationError is why compensation stopped.
	compensationError error
}

// applyKind is ApplyInput.Kind: the kinds whose batches differ.
func (r *run) applyKind() string {
	if k := r.kind(); k == "refresh" || k == "repair" {
		return k
	}
	return ""
}

// kind is the run's kind as recorded: "replay" for quarantine replays,
// "repair" for a reconciliation's repairs, "refresh", else "sync".
func (r *run) kind() string {
	switch {
	case r.in.Replay:
		return "replay"
	case r.in.Repair != "":
		return "repair"
	case r.in.Refresh:
		return "refresh"
	}
	return "sync"
}

func (r *run) result() Result {
	return Result{
		Integration: r.in.Integration,
		RunID:       r.st.RunID,
		Status:      r.status,
		Counts:      r.st.Counts,
		From:        r.st.Plan.Since,
		To:          r.st.Checkpoint,
		Batches:     r.applyNext - 1,
		Executions:  r.st.Executions,
		Warnings:    r.st.Warnings,
	}
}

// execute runs the page pipeline, then continues as new, finishes, or
// compensates.
func (r *run) execute(ctx workflow.Context) (Result, error) {
	pctx, cancelPipeline := workflow.WithCancel(ctx)
	r.pipeline(pctx)
	cancelPipeline()

	if r.err == nil && ctx.Err() == nil && !r.done {
		// Drained for continue-as-new.
		st := r.st
		r.log.Info("continuing as new", "pages", st.Counts.Pages, "position", st.Position)
		next := r.in
		next.State = &st
		return r.result(), workflow.NewContinueAsNewError(ctx, SyncWorkflow, next)
	}
	if r.err == nil && ctx.Err() == nil && r.st.Plan.InvalidThreshold >= 0 &&
		r.st.Counts.InvalidShare() > r.st.Plan.InvalidThreshold {
		r.fail("threshold", thresholdError(r.st.Counts, r.st.Plan.InvalidThreshold))
	}
	if r.err == nil && ctx.Err() == nil && r.kind() == "refresh" {
		r.sweep(ctx)
	}

	if r.err == nil && ctx.Err() == nil {
		r.status = progress.StatusCompleted
		r.progressed(ctx, syncstep.FinishRunName)
		// Disconnected: a cancel arriving now must not leave the run's
		// record half-finished.
		dctx, _ := workflow.NewDisconnectedContext(ctx)
		if err := r.finish(dctx, ""); err != nil {
			return r.result(), err
		}
		r.log.Info("sync completed", "integration", r.in.Integration, "counts", r.st.Counts)
		return r.result(), nil
	}

	// Failed for good, or cancelled: compensate in a disconnected context so
	// the saga also completes when the workflow itself was cancelled.
	cancelled := ctx.Err() != nil && r.err == nil
	dctx, _ := workflow.NewDisconnectedContext(ctx)
	cause := r.err
	if cancelled {
		cause = temporal.NewCanceledError("sync cancelled")
	}
	r.status = progress.StatusFailed
	if cancelled {
		r.status = progress.StatusCancelled
	}
	if r.st.Plan.Atomic {
		undone, left := r.undo(dctx)
		switch {
		case len(left) > 0:
			cause = temporal.NewNonRetryableApplicationError(fmt.Sprintf(
				"%v; compensation failed for batches %v of run %s: restore them by hand (PostgreSQL before-images are kept in the destination's before-images table, HTTP ones in tether_identity_images): %v",
				cause, left, r.st.RunID, r.compensationError), failure.TypeCompensation, cause)
		case undone:
			r.status = progress.StatusCompensated
		}
	}
	if err := r.finish(dctx, cause.Error()); err != nil {
		r.log.Error("recording the run's end failed", "error", err)
	}
	return r.result(), cause
}

// Change IDs of workflow.GetVersion: histories recorded before a change
// replay the old way.
const (
	// versionBeginCompensation: compensation starts with BeginCompensation.
	versionBeginCompensation = "begin-compensation"
	// versionFinishFailedStart: a run whose StartRun failed records its end.
	versionFinishFailedStart = "finish-failed-start"
	// versionAuditMemo: the run's memo says who started it.
	versionAuditMemo = "audit-memo"
)

// Memo keys of a run, shown in the Web UI: the Temporal identity that
// started (reset, replayed) it and what it did (start, reset, replay).
const (
	MemoStartedBy = "tether.startedBy"
	MemoAct       = "tether.act"
)
