package datasync

import (
	"errors"
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
// server (the dev stack creates them; see README).
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
}

// maxPagesPerExecution bounds one execution's history even when the server
// does not suggest continue-as-new yet (about 15 events per page).
const maxPagesPerExecution = 250

func (r *run) pagesPerExecution() int {
	if r.in.PagesPerExecution > 0 {
		return r.in.PagesPerExecution
	}
	return maxPagesPerExecution
}

// earlyThresholdSample is the number of processed records after which the
// invalid share is checked on every page (fail fast); below it the share is
// only judged at the end of the run.
const earlyThresholdSample = 1000

// SyncWorkflow reads an integration's source page by page and applies it to
// the destination through durable steps. See package doc.
func SyncWorkflow(ctx workflow.Context, in Input) (Result, error) {
	if in.Integration == "" {
		return Result{}, temporal.NewNonRetryableApplicationError(
			`input: "integration" is required, e.g. {"integration":"crm-contacts"}`, failure.TypeConfig, nil)
	}
	r := &run{in: in, log: workflow.GetLogger(ctx)}
	if err := workflow.SetQueryHandler(ctx, QueryProgress, r.report); err != nil {
		return Result{}, err
	}
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

	step          string
	lastProgress  time.Time
	lastError     string
	throttled     string
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

func (r *run) report() (progress.Report, error) {
	cursor := r.st.Checkpoint.Cursor
	if r.st.Checkpoint.Key != "" {
		cursor = fmt.Sprintf("%s / %s", r.st.Checkpoint.Cursor, r.st.Checkpoint.Key)
	}
	if cursor == "" || cursor == " / " {
		cursor = positionString(r.st.Position)
	}
	return progress.Report{
		Integration:    r.in.Integration,
		RunID:          r.st.RunID,
		Status:         r.statusOr(progress.StatusRunning),
		Step:           r.step,
		Cursor:         cursor,
		Counts:         r.st.Counts,
		Destinations:   r.st.Destinations,
		PagesInFlight:  r.inFlight,
		Throttled:      r.throttled,
		LastError:      r.lastError,
		StartedAt:      r.st.StartedAt,
		LastProgressAt: r.lastProgress,
		Done:           r.status != "",
	}, nil
}

func (r *run) statusOr(s string) string {
	if r.status != "" {
		return r.status
	}
	return s
}

func positionString(p cursor.Position) string {
	switch {
	case p.NextURL != "":
		return p.NextURL
	case p.Token != "":
		return "token " + p.Token
	case p.Offset > 0:
		return fmt.Sprintf("offset %d", p.Offset)
	case p.Page > 0:
		return fmt.Sprintf("page %d", p.Page)
	}
	return "start"
}

func (r *run) progressed(ctx workflow.Context, step string) {
	r.step = step
	r.lastProgress = workflow.Now(ctx)
}

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
	r.st.Plan = out.Plan
	r.st.Since = out.Plan.Since
	r.st.Checkpoint = out.Plan.Since
	r.st.Position = out.Plan.Start
	r.log.Info("sync started", "integration", r.in.Integration, "runId", r.st.RunID,
		"incremental", out.Plan.Incremental, "since", out.Plan.Since, "resumed", out.Plan.Resumed)
	return nil
}

// MaxWriterWait bounds how long a run started with wait queues behind
// another run writing its integration.
const MaxWriterWait = 6 * time.Hour

// WhileBusy calls start until it returns anything but a failure.TypeBusy
// refusal. Without wait, that refusal is returned at once; with wait, it is
// waited out on durable timers (2 s, doubling to a minute, MaxWriterWait in
// all), and waiting is told of the refusal before each wait and of nil
// after it. Runs of every workflow that takes the writer lease start so.
func WhileBusy(ctx workflow.Context, wait bool, waiting func(refusal error), start func() error) error {
	delay, waited := 2*time.Second, time.Duration(0)
	for {
		err := start()
		if err == nil || !wait || !failure.IsType(err, failure.TypeBusy) || waited >= MaxWriterWait {
			return err
		}
		waiting(err)
		if err := workflow.Sleep(ctx, delay); err != nil {
			return err
		}
		waiting(nil)
		waited += delay
		delay = min(2*delay, time.Minute)
	}
}

// startRun runs StartRun, queueing behind another writer when the run was
// started with Wait (WhileBusy); the progress query shows whom it waits for.
func (r *run) startRun(ctx workflow.Context, in syncstep.StartRunInput, out *syncstep.StartRunOutput) error {
	actx := workflow.WithActivityOptions(ctx, shortStep)
	return WhileBusy(ctx, r.in.Wait, func(refusal error) {
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

// sweepStep runs a refresh's sweep: one transaction over whole tables, so
// a longer budget than a batch, with heartbeats to notice a lost worker; a
// cancelled run waits for it to commit or roll back before compensating.
var sweepStep = workflow.ActivityOptions{
	StartToCloseTimeout: 30 * time.Minute,
	HeartbeatTimeout:    30 * time.Second,
	WaitForCancellation: true,
	RetryPolicy: &temporal.RetryPolicy{
		InitialInterval:    time.Second,
		BackoffCoefficient: 2,
		MaximumInterval:    time.Minute,
		MaximumAttempts:    8,
	},
}

// sweep ends a refresh that read the whole source: SweepRefresh deletes the
// destination rows the run did not see, as the run's last batch (so an
// atomic run's compensation undoes it with the others). A refresh stopped
// by MaxPages did not see the whole source and deletes nothing.
func (r *run) sweep(ctx workflow.Context) {
	if r.in.MaxPages > 0 && r.st.Counts.Pages >= r.in.MaxPages {
		r.log.Warn("refresh stopped at maxPages, maybe before the end of the source: no row is deleted",
			"pages", r.st.Counts.Pages, "maxPages", r.in.MaxPages)
		return
	}
	r.st.Seq++
	seq := r.st.Seq
	r.st.ApplyStarted = seq
	r.st.ApplyStep = len(r.steps()) - 1
	r.progressed(ctx, syncstep.SweepRefreshName)
	out, err := syncstep.SweepRefresh.Run(workflow.WithActivityOptions(ctx, sweepStep), syncstep.SweepRefreshInput{
		Integration: r.in.Integration,
		RunID:       r.st.RunID,
		Seq:         seq,
		Atomic:      r.st.Plan.Atomic,
		Counts:      r.st.Counts,
		Next:        r.st.Position,
		Definition:  r.st.Plan.Definition,
	})
	if err != nil {
		r.failUnlessCancelled(ctx, syncstep.SweepRefreshName, err)
		return
	}
	r.st.Counts.Deleted += out.Deleted
	if len(r.st.Plan.Steps) > 0 {
		for _, sw := range out.Steps {
			if r.st.Destinations == nil {
				r.st.Destinations = map[string]progress.Counts{}
			}
			r.st.Destinations[sw.Name] = r.st.Destinations[sw.Name].Add(progress.Counts{Deleted: sw.Deleted})
		}
	}
	r.applyNext = seq + 1
	r.log.Info("refresh swept", "integration", r.in.Integration, "deleted", out.Deleted)
}

// pipeline fetches pages in order and overlaps validate/transform/apply of
// up to PagesInFlight pages with the next fetches. Applies run strictly in
// page order, so each batch's checkpoint covers everything before it.
func (r *run) pipeline(ctx workflow.Context) {
	window := r.st.Plan.PagesInFlight
	if window < 1 {
		window = 1
	}
	running := 0
	for !r.done && r.err == nil {
		if err := workflow.Await(ctx, func() bool { return r.inFlight < window || r.err != nil }); err != nil {
			break // cancelled
		}
		if r.err != nil {
			break
		}
		if r.in.MaxPages > 0 && r.st.Counts.Pages >= r.in.MaxPages {
			r.done = true
			break
		}
		if r.pagesThisExec >= r.pagesPerExecution() || workflow.GetInfo(ctx).GetContinueAsNewSuggested() {
			break
		}
		out, err := r.fetch(ctx)
		if err != nil {
			if ctx.Err() == nil {
				r.fail(syncstep.FetchPageName, pageError(r.st.NextPage-1, err))
			}
			break
		}
		r.pagesThisExec++
		r.st.Counts.Pages++
		r.st.Counts.Fetched += out.Count
		pageSince := r.st.Since
		r.advance(out)
		if out.NotModified {
			r.st.Counts.Unchanged += out.Count
			r.st.Counts.NotModified++
			r.progressed(ctx, fmt.Sprintf("page %d not modified", out.Ref.Page))
			continue
		}
		if out.Count == 0 {
			continue
		}
		r.st.Seq++
		seq := r.st.Seq
		r.inFlight++
		running++
		workflow.Go(ctx, func(gctx workflow.Context) {
			defer func() { running--; r.inFlight-- }()
			r.process(gctx, out, pageSince, seq)
		})
	}
	_ = workflow.Await(ctx, func() bool { return running == 0 })
	if running > 0 {
		// Cancelled while steps were in flight: let them observe the
		// cancellation before compensation starts.
		dctx, _ := workflow.NewDisconnectedContext(ctx)
		_ = workflow.Await(dctx, func() bool { return running == 0 })
	}
}

// fetch reads the next page at the run's position.
func (r *run) fetch(ctx workflow.Context) (syncstep.FetchPageOutput, error) {
	page := r.st.NextPage
	r.st.NextPage++
	r.progressed(ctx, fmt.Sprintf("%s %d", syncstep.FetchPageName, page))
	ref := syncstep.PageRef{RunID: r.st.RunID, Page: page}
	actx := workflow.WithActivityOptions(ctx, fetchStep)
	var f syncstep.Future[syncstep.FetchPageOutput]
	switch {
	case r.in.Repair != "":
		f = syncstep.FetchRepairPage.Start(actx, syncstep.FetchRepairInput{
			Integration: r.in.Integration,
			Ref:         ref,
			Reconcile:   r.in.Repair,
			AfterOrd:    int64(r.st.Position.Offset),
			Limit:       r.st.Plan.BatchSize,
			Definition:  r.st.Plan.Definition,
		})
	case r.in.Replay:
		f = syncstep.FetchQuarantinedPage.Start(actx, syncstep.FetchQuarantinedInput{
			Integration: r.in.Integration,
			Ref:         ref,
			AfterID:     int64(r.st.Position.Offset),
			UpTo:        r.st.Plan.ReplayUpTo,
			Limit:       r.st.Plan.BatchSize,
			Definition:  r.st.Plan.Definition,
		})
	default:
		f = syncstep.FetchPage.Start(actx, syncstep.FetchPageInput{
			Integration: r.in.Integration,
			Ref:         ref,
			Position:    r.st.Position,
			Since:       r.st.Since,
			Limit:       r.st.Plan.BatchSize,
			Definition:  r.st.Plan.Definition,
		})
	}
	out, err := f.Get(ctx)
	if err != nil {
		var appErr *temporal.ApplicationError
		if errors.As(err, &appErr) && appErr.Type() == failure.TypeSourceThrottled {
			r.throttled = appErr.Error()
		}
		return out, err
	}
	return out, nil
}

// advance moves the read position past a fetched page. Incremental reads
// restart from the first page "since" the page's last (cursor, key), which
// is robust to records moving while the run reads; when a whole page shares
// one cursor value they page forward within it.
func (r *run) advance(out syncstep.FetchPageOutput) {
	if out.Done {
		r.done = true
	}
	if r.st.Plan.Incremental && out.Advanced && !out.NotModified {
		if out.Done {
			return
		}
		r.st.Since = out.Last
		r.st.Position = cursor.Position{}
		return
	}
	r.st.Position = out.Next
}

// process validates, transforms and applies one page.
func (r *run) process(ctx workflow.Context, page syncstep.FetchPageOutput, since cursor.Checkpoint, seq int) {
	lctx := workflow.WithLocalActivityOptions(ctx, localStep)
	in := syncstep.BatchInput{Integration: r.in.Integration, Ref: page.Ref, Since: since, Definition: r.st.Plan.Definition}

	v, err := syncstep.ValidateBatch.RunLocal(lctx, in)
	if err != nil {
		r.failUnlessCancelled(ctx, syncstep.ValidateBatchName, pageError(page.Ref.Page, err))
		return
	}
	r.st.Counts.Skipped += v.Skipped
	r.st.Counts.Checked += v.Valid + v.Invalid
	r.st.Counts.Invalid += v.Invalid
	if r.thresholdPassed() {
		return
	}
	t, err := syncstep.TransformBatch.RunLocal(lctx, in)
	if err != nil {
		r.failUnlessCancelled(ctx, syncstep.TransformBatchName, pageError(page.Ref.Page, err))
		return
	}
	r.st.Counts.Invalid += t.Invalid
	r.st.Counts.Valid += t.Transformed
	if r.thresholdPassed() {
		return
	}

	if err := workflow.Await(ctx, func() bool { return r.applyNext == seq || r.err != nil }); err != nil || r.err != nil {
		return
	}
	checkpoint := r.st.Checkpoint
	if page.Advanced {
		checkpoint = page.Last
	}
	// Every destination applies the batch in turn (one, or the steps of a
	// saga); a row one refuses is not sent to the next.
	var skip []int
	for i, name := range r.steps() {
		step := syncstep.ApplyBatchName
		if name != "" {
			step = fmt.Sprintf("%s %s", syncstep.ApplyBatchName, name)
		}
		r.progressed(ctx, fmt.Sprintf("%s %d", step, page.Ref.Page))
		r.st.ApplyStarted = seq
		r.st.ApplyStep = i
		a, err := r.applyWaitingOutCircuit(ctx, name, syncstep.ApplyInput{
			BatchInput: in,
			Seq:        seq,
			Atomic:     r.st.Plan.Atomic,
			Checkpoint: checkpoint,
			Next:       page.Next,
			Memo:       page.Memo,
			CacheKey:   page.CacheKey,
			Counts:     r.st.Counts,
			Replay:     r.in.Replay,
			Kind:       r.applyKind(),
			// A replay marks the quarantine entries it applied.
			QuarantineIDs: page.QuarantineIDs,
			Step:          i,
			Skip:          skip,
		})
		if err != nil {
			r.failUnlessCancelled(ctx, step, pageError(page.Ref.Page, err))
			return
		}
		if i == 0 {
			r.st.Counts.Inserted += a.Inserted
			r.st.Counts.Updated += a.Updated
			r.st.Counts.Unchanged += a.Unchanged
			r.st.Counts.Stale += a.Stale
			r.st.Counts.Duplicates += a.Duplicates
		}
		r.st.Counts.Invalid += a.Rejected
		r.st.Counts.Valid -= a.Rejected
		if name != "" {
			if r.st.Destinations == nil {
				r.st.Destinations = map[string]progress.Counts{}
			}
			r.st.Destinations[name] = r.st.Destinations[name].Add(progress.Counts{
				Inserted: a.Inserted, Updated: a.Updated, Unchanged: a.Unchanged, Stale: a.Stale,
				Duplicates: a.Duplicates, Invalid: a.Rejected,
			})
		}
		skip = a.Refused
	}
	r.st.Checkpoint = checkpoint
	r.applyNext = seq + 1
	r.progressed(ctx, fmt.Sprintf("applied page %d", page.Ref.Page))
}

// steps names the destination steps of a batch: [""] for one destination.
func (r *run) steps() []string {
	if len(r.st.Plan.Steps) == 0 {
		return []string{""}
	}
	return r.st.Plan.Steps
}

// maxCircuitWait bounds how long one batch waits for a destination's
// circuit breaker to close before the run fails.
const maxCircuitWait = time.Hour

// applyWaitingOutCircuit runs one ApplyBatch. When the destination's
// circuit breaker is open, the activity fails at once (CircuitOpen is not
// retried by the activity's policy) and the workflow waits on a durable
// timer for the time the breaker said is left, then tries again: a long
// outage costs timers in the history, not attempts, and survives worker
// restarts. The progress query shows the wait.
func (r *run) applyWaitingOutCircuit(ctx workflow.Context, name string, in syncstep.ApplyInput) (syncstep.ApplyOutput, error) {
	var waited time.Duration
	for {
		a, err := syncstep.ApplyBatch.Run(workflow.WithActivityOptions(ctx, applyStep), in)
		var appErr *temporal.ApplicationError
		if err == nil || ctx.Err() != nil || !errors.As(err, &appErr) || appErr.Type() != failure.TypeCircuitOpen {
			if err == nil && waited > 0 {
				r.throttled = ""
				r.log.Info("destination circuit closed; batch applied", "destination", name, "seq", in.Seq, "waited", waited)
			}
			return a, err
		}
		wait := min(max(appErr.NextRetryDelay(), time.Second), 5*time.Minute)
		if waited+wait > maxCircuitWait {
			return a, err
		}
		dest := "destination"
		if name != "" {
			dest = "destination " + name
		}
		r.throttled = fmt.Sprintf("%s: circuit breaker open, waiting %s before batch %d is tried again (%s)",
			dest, wait, in.Seq, appErr.Error())
		r.log.Warn("destination circuit open; waiting", "destination", name, "seq", in.Seq, "wait", wait)
		if err := workflow.Sleep(ctx, wait); err != nil {
			return a, err
		}
		waited += wait
	}
}

// thresholdPassed fails the run early once enough records were processed
// and the invalid share is over the integration's threshold.
func (r *run) thresholdPassed() bool {
	c := r.st.Counts
	if c.Checked < earlyThresholdSample || c.InvalidShare() <= r.st.Plan.InvalidThreshold {
		return false
	}
	r.fail("threshold", thresholdError(c, r.st.Plan.InvalidThreshold))
	return true
}

func thresholdError(c progress.Counts, threshold float64) error {
	return temporal.NewNonRetryableApplicationError(fmt.Sprintf(
		"%d of %d records invalid (%.1f%%), over the integration's threshold of %.1f%%; they are in quarantine",
		c.Invalid, c.Checked, 100*c.InvalidShare(), 100*threshold), failure.TypeInvalidThreshold, nil, c)
}

// fail records the first permanent failure; later ones are logged only.
func (r *run) fail(step string, err error) {
	if r.err != nil {
		r.log.Warn("further failure after the run failed", "step", step, "error", err)
		return
	}
	r.errStep = step
	r.err = stepError(step, 0, err)
	r.lastError = r.err.Error()
}

// failUnlessCancelled records a step's failure unless the run is being
// cancelled (then the activity's error is only the cancellation echoing back).
func (r *run) failUnlessCancelled(ctx workflow.Context, step string, err error) {
	if ctx.Err() != nil {
		return
	}
	r.fail(step, err)
}

// Change IDs of workflow.GetVersion: histories recorded before a change
// replay the old way.
const (
	// versionBeginCompensation: compensation starts with BeginCompensation.
	versionBeginCompensation = "begin-compensation"
	// versionFinishFailedStart: a run whose StartRun failed records its end.
	versionFinishFailedStart = "finish-failed-start"
)

// undo compensates a failed or cancelled atomic run. It reports whether
// anything was undone, and the batches left to restore by hand.
func (r *run) undo(ctx workflow.Context) (undone bool, left []string) {
	if workflow.GetVersion(ctx, versionBeginCompensation, workflow.DefaultVersion, 1) == workflow.DefaultVersion {
		if r.st.ApplyStarted == 0 {
			return false, nil
		}
		return true, r.compensate(ctx, r.st.ApplyStarted)
	}
	// Fence the run and put its checkpoint back before restoring a row.
	r.progressed(ctx, syncstep.BeginCompensationName)
	begin, err := syncstep.BeginCompensation.Run(workflow.WithActivityOptions(ctx, shortStep),
		syncstep.BeginCompensationInput{Integration: r.in.Integration, Kind: r.kind(), RunID: r.st.RunID,
			Definition: r.st.Plan.Definition})
	if err != nil {
		// Undo what this execution applied anyway; FinishRun puts the
		// checkpoint back once every batch is restored.
		r.log.Error("compensation could not fence the run; undoing this execution's batches", "error", err)
	}
	// Batches an execution before a reset applied count too.
	last := max(r.st.ApplyStarted, begin.LastBatch)
	if last == 0 {
		return false, nil
	}
	return true, r.compensate(ctx, last)
}

// compensation is one (batch, destination) to undo.
type compensation struct {
	seq, step int
}

func (c compensation) String(names []string) string {
	if names[c.step] == "" {
		return fmt.Sprint(c.seq)
	}
	return fmt.Sprintf("%d/%s", c.seq, names[c.step])
}

// compensate undoes applied batches from last down to 1, each in every
// destination from the last step to the first, and returns what is left
// to restore by hand ("seq" or "seq/destination"). It stops at the first
// (batch, destination) it cannot restore: restoring earlier batches over it
// would make their images wrong.
func (r *run) compensate(ctx workflow.Context, last int) []string {
	cctx := workflow.WithActivityOptions(ctx, compensateStep)
	names := r.steps()
	var todo []compensation
	for seq := last; seq >= 1; seq-- {
		top := len(names) - 1
		if seq == r.st.ApplyStarted && last == r.st.ApplyStarted {
			top = min(top, r.st.ApplyStep) // later steps never started
		}
		for step := top; step >= 0; step-- {
			todo = append(todo, compensation{seq: seq, step: step})
		}
	}
	for i, c := range todo {
		r.progressed(ctx, fmt.Sprintf("%s %s", syncstep.CompensateBatchName, c.String(names)))
		_, err := syncstep.CompensateBatch.Run(cctx, syncstep.CompensateInput{
			Integration: r.in.Integration, RunID: r.st.RunID, Seq: c.seq, Step: c.step,
			Definition: r.st.Plan.Definition,
		})
		if err != nil {
			r.log.Error("compensation failed", "batch", c.String(names), "error", err)
			left := make([]string, 0, len(todo)-i)
			for _, l := range todo[i:] {
				left = append(left, l.String(names))
			}
			r.compensationError = err
			return left
		}
	}
	return nil
}

func (r *run) finish(ctx workflow.Context, errMsg string) error {
	errType := ""
	var appErr *temporal.ApplicationError
	if errors.As(r.err, &appErr) {
		errType = appErr.Type()
	}
	_ = workflow.UpsertTypedSearchAttributes(ctx, StatusAttr.ValueSet(r.status))
	_, err := syncstep.FinishRun.Run(workflow.WithActivityOptions(ctx, shortStep), syncstep.FinishRunInput{
		Integration: r.in.Integration,
		Kind:        r.kind(),
		RunID:       r.st.RunID,
		Status:      r.status,
		Counts:      r.st.Counts,
		To:          r.st.Checkpoint,
		Error:       errMsg,
		ErrorType:   errType,
		Definition:  r.st.Plan.Definition,
		Owner:       r.in.Repair,
	})
	return err
}

// pageError adds the page number to a step's failure.
func pageError(page int, err error) error {
	return &pagedError{page: page, err: err}
}

type pagedError struct {
	page int
	err  error
}

func (e *pagedError) Error() string { return fmt.Sprintf("page %d: %v", e.page, e.err) }
func (e *pagedError) Unwrap() error { return e.err }

// stepError turns a step's failure into the workflow's failure: a
// non-retryable application error whose message names the step and page and
// carries the source's or database's own message, with the same type.
func stepError(step string, _ int, err error) error {
	var appErr *temporal.ApplicationError
	if errors.As(err, &appErr) && step == "threshold" {
		return err
	}
	typ := "StepFailed"
	msg := err.Error()
	if errors.As(err, &appErr) {
		typ = appErr.Type()
		msg = appErr.Error()
	}
	var pe *pagedError
	if errors.As(err, &pe) {
		return temporal.NewNonRetryableApplicationError(fmt.Sprintf("%s failed on page %d: %s", step, pe.page, msg), typ, err)
	}
	return temporal.NewNonRetryableApplicationError(fmt.Sprintf("%s failed: %s", step, msg), typ, err)
}
