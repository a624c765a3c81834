package steps

import (
	"encoding/json"
	"errors"
	"fmt"

	"go.temporal.io/sdk/temporal"
	"go.temporal.io/sdk/workflow"

	"github.com/tetherflow/tether/activities/lib/cursor"
	"github.com/tetherflow/tether/activities/lib/failure"
	"github.com/tetherflow/tether/activities/lib/progress"
	"github.com/tetherflow/tether/activities/syncstep"
)

// Run kinds, as the runs table records them.
const (
	kindSync    = "sync"
	kindRecords = "records"
)

// Options say how a run works.
type Options struct {
	// Records makes a run of records the workflow hands over (Stage): no
	// source is read, no writer lease taken, no checkpoint moved. Without
	// it, the run reads the integration's source (Fetch) from its
	// checkpoint under the integration's writer lease.
	Records bool
	// Full reads the whole source, ignoring the checkpoint (source runs).
	Full bool
	// Wait queues a source run behind another run writing the
	// integration instead of failing at once with IntegrationBusy.
	Wait bool
	// Trigger says who started the run (shown by `tether runs` and to a
	// run refused the writer lease).
	Trigger string
}

// Run is one run of an integration's steps inside a workflow. Its state is
// the workflow's, rebuilt from history on replay.
type Run struct {
	opts Options
	kind string
	// ID is the run's id in tether's runs table and quarantine:
	// "<workflow id>/<first run id>".
	ID   string
	plan syncstep.Plan

	nextPage   int // the page number the next Fetch or Stage gets
	position   cursor.Position
	since      cursor.Checkpoint
	checkpoint cursor.Checkpoint
	done       bool
	counts     progress.Counts

	seq       int // batches begun
	lastSeq   int // the batch whose steps were last applied
	lastStep  int // its last step applied
	fetched   int // a source run's pages with records so far
	nextApply int // the fetch index of the page a source run applies next
	status    string
}

// Page is a page on its way through the steps: a reference to its staged
// records (never the records) and what the steps said of it.
type Page struct {
	// Fetched is what fetching or staging it returned.
	Fetched syncstep.FetchPageOutput
	// Validated, Transformed and Applied are what the steps returned (the
	// last applied destination's for Applied).
	Validated   *syncstep.ValidateOutput
	Transformed *syncstep.TransformOutput
	Applied     *syncstep.ApplyOutput

	since    cursor.Checkpoint
	index    int   // a source run's pages with records, in fetch order (from 1)
	seq      int   // the batch number, from its first apply
	nextStep int   // the destination step to apply next
	skip     []int // rows earlier steps refused
}

// valid is the number of the page's records that passed validation, as
// far as known.
func (p *Page) valid() int {
	if p.Validated != nil {
		return p.Validated.Valid
	}
	return p.Fetched.Count
}

// rows is the number of rows the page's records became, as far as known.
func (p *Page) rows() int {
	if p.Transformed != nil {
		return p.Transformed.Transformed
	}
	return p.valid()
}

// Start registers a run of the named integration and pins its current
// definition: every step of the run uses that version. A source run takes
// the integration's writer lease, or fails with failure.TypeBusy (waits
// with Options.Wait).
func Start(ctx workflow.Context, integration string, o Options) (*Run, error) {
	if integration == "" {
		return nil, temporal.NewNonRetryableApplicationError("steps.Start: no integration named", failure.TypeConfig, nil)
	}
	info := workflow.GetInfo(ctx)
	r := &Run{opts: o, kind: kindSync, ID: info.WorkflowExecution.ID + "/" + info.FirstRunID, nextPage: 1, nextApply: 1}
	if o.Records {
		r.kind = kindRecords
	}
	in := syncstep.StartRunInput{Integration: integration, RunID: r.ID, WorkflowID: info.WorkflowExecution.ID,
		Kind: r.kind, Full: o.Full, Trigger: o.Trigger}
	actx := WithSummary(ctx, defaults.Bookkeeping, syncstep.StartRunName+" · "+integration)
	var out syncstep.StartRunOutput
	err := WhileBusy(ctx, o.Wait && !o.Records, func(error) {}, func() error {
		var err error
		out, err = syncstep.StartRun.Run(actx, in)
		return err
	})
	if err != nil {
		return nil, fmt.Errorf("start run of %q: %w", integration, err)
	}
	r.plan = out.Plan
	r.position, r.since, r.checkpoint = out.Plan.Start, out.Plan.Since, out.Plan.Since
	r.counts = out.Counts // a reset execution goes on from the run's committed counts
	return r, nil
}

// Plan is what the run works with: its pinned definition, batch size,
// destinations (Steps, for a saga) and where it starts reading.
func (r *Run) Plan() syncstep.Plan { return r.plan }

// Counts are the run's counters so far.
func (r *Run) Counts() progress.Counts { return r.counts }

// Done reports whether the source has no more pages (source runs).
func (r *Run) Done() bool { return r.done }

// Fetch reads the next page of the source at the run's position, stages
// its records and returns its reference. After the last page Done is true.
func (r *Run) Fetch(ctx workflow.Context) (*Page, error) {
	if r.kind == kindRecords {
		return nil, r.misuse("Fetch reads the source; a run of records stages the workflow's own records (Stage)")
	}
	if r.done {
		return nil, r.misuse("Fetch after the last page (Done)")
	}
	n := r.page()
	out, err := syncstep.FetchPage.Run(WithSummary(ctx, defaults.Fetch, fmt.Sprintf("%s %d · %s", syncstep.FetchPageName, n, r.plan.Integration)),
		syncstep.FetchPageInput{Integration: r.plan.Integration, Ref: syncstep.PageRef{RunID: r.ID, Page: n},
			Position: r.position, Since: r.since, Limit: r.plan.BatchSize, Definition: r.plan.Definition})
	if err != nil {
		return nil, fmt.Errorf("fetch page %d: %w", n, err)
	}
	p := &Page{Fetched: out, since: r.since}
	r.counts.Pages++
	r.counts.Fetched += out.Count
	if out.NotModified {
		r.counts.Unchanged += out.Count
		r.counts.NotModified++
	}
	if p.empty() {
		p.nextStep = len(r.steps()) // nothing to apply
	} else {
		r.fetched++
		p.index = r.fetched
	}
	r.done = out.Done
	if r.plan.Incremental && out.Advanced && !out.NotModified {
		r.since, r.position = out.Last, cursor.Position{}
	} else {
		r.position = out.Next
	}
	return p, nil
}

// empty reports whether the page has no records to apply (none, or a
// page the source answered Not Modified).
func (p *Page) empty() bool { return p.Fetched.NotModified || p.Fetched.Count == 0 }

// Stage hands records the workflow has (from its input, a signal or an
// update; each marshalled to JSON) to the steps as one page. Only a run
// started with Options.Records stages records.
func (r *Run) Stage(ctx workflow.Context, records ...any) (*Page, error) {
	if r.kind != kindRecords {
		return nil, r.misuse("Stage hands records over; a source run reads them (Fetch)")
	}
	raw := make([]json.RawMessage, len(records))
	for i, rec := range records {
		b, err := json.Marshal(rec)
		if err != nil {
			return nil, temporal.NewNonRetryableApplicationError(fmt.Sprintf("stage record %d: not JSON: %v", i, err), failure.TypeConfig, nil)
		}
		raw[i] = b
	}
	n := r.page()
	out, err := syncstep.StageRecords.Run(WithSummary(ctx, defaults.Bookkeeping, fmt.Sprintf("%s · %d records for %s", syncstep.StageRecordsName, len(raw), r.plan.Integration)),
		syncstep.StageRecordsInput{Integration: r.plan.Integration, Ref: syncstep.PageRef{RunID: r.ID, Page: n}, Records: raw,
			Definition: r.plan.Definition})
	if err != nil {
		return nil, fmt.Errorf("stage page %d: %w", n, err)
	}
	r.counts.Pages++
	r.counts.Fetched += out.Count
	return &Page{Fetched: out}, nil
}

func (r *Run) page() int {
	n := r.nextPage
	r.nextPage++
	return n
}

// Validate checks the page's records against the integration's JSON
// Schema and key; invalid records are quarantined with every reason.
func (r *Run) Validate(ctx workflow.Context, p *Page) (syncstep.ValidateOutput, error) {
	out, err := syncstep.ValidateBatch.RunLocal(WithLocalSummary(ctx, defaults.Local, fmt.Sprintf("%s %d · %d records", syncstep.ValidateBatchName, p.Fetched.Ref.Page, p.Fetched.Count)), r.batch(p))
	if err != nil {
		return out, fmt.Errorf("validate page %d: %w", p.Fetched.Ref.Page, err)
	}
	p.Validated = &out
	r.counts.Skipped += out.Skipped
	r.counts.Checked += out.Valid + out.Invalid
	r.counts.Invalid += out.Invalid
	return out, nil
}

// Transform maps the page's valid records to rows; records the mapping
// refuses are quarantined, naming the field.
func (r *Run) Transform(ctx workflow.Context, p *Page) (syncstep.TransformOutput, error) {
	out, err := syncstep.TransformBatch.RunLocal(WithLocalSummary(ctx, defaults.Local, fmt.Sprintf("%s %d · %d valid records", syncstep.TransformBatchName, p.Fetched.Ref.Page, p.valid())), r.batch(p))
	if err != nil {
		return out, fmt.Errorf("transform page %d: %w", p.Fetched.Ref.Page, err)
	}
	p.Transformed = &out
	r.counts.Invalid += out.Invalid
	r.counts.Valid += out.Transformed
	return out, nil
}

func (r *Run) batch(p *Page) syncstep.BatchInput {
	return syncstep.BatchInput{Integration: r.plan.Integration, Ref: p.Fetched.Ref, Since: p.since, Definition: r.plan.Definition}
}

// Apply writes the page to every destination it has not been applied to
// yet, in the integration's order, and returns the last one's outcome.
func (r *Run) Apply(ctx workflow.Context, p *Page) (syncstep.ApplyOutput, error) {
	var out syncstep.ApplyOutput
	if p.empty() {
		return out, nil
	}
	for p.nextStep < len(r.steps()) {
		var err error
		if out, err = r.ApplyStep(ctx, p, r.steps()[p.nextStep]); err != nil {
			return out, err
		}
	}
	return out, nil
}

// ApplyStep writes the page to the named destination, which must be its
// next one in the integration's order ("" for an integration with one
// destination); a page without records writes nothing. Rows a destination refuses are quarantined and not sent
// to the later ones. The page's last destination also saves the
// checkpoint (source runs).
func (r *Run) ApplyStep(ctx workflow.Context, p *Page, destination string) (syncstep.ApplyOutput, error) {
	names := r.steps()
	if p.empty() {
		return syncstep.ApplyOutput{}, nil // no records: nothing to write
	}
	if p.nextStep >= len(names) {
		return syncstep.ApplyOutput{}, r.misuse(fmt.Sprintf("page %d is applied to every destination already", p.Fetched.Ref.Page))
	}
	if want := names[p.nextStep]; destination != want {
		return syncstep.ApplyOutput{}, r.misuse(fmt.Sprintf("page %d goes to destination %q next (the integration's order is %q), not %q",
			p.Fetched.Ref.Page, want, names, destination))
	}
	if p.seq == 0 {
		if r.kind == kindSync && p.index != r.nextApply {
			return syncstep.ApplyOutput{}, r.misuse("apply a source run's pages in the order fetched, each to every destination, before the next")
		}
		r.seq++
		p.seq = r.seq
	}
	in := r.applyInput(p)
	what := fmt.Sprintf("apply page %d", p.Fetched.Ref.Page)
	if destination != "" {
		what += " to " + destination
	}
	r.lastSeq, r.lastStep = p.seq, p.nextStep
	summary := fmt.Sprintf("%s %d · %d rows", syncstep.ApplyBatchName, p.Fetched.Ref.Page, p.rows()-len(in.Skip))
	if destination != "" {
		summary += " to " + destination
	}
	out, err := syncstep.ApplyBatch.Run(WithSummary(ctx, defaults.Apply, summary), in)
	if err != nil {
		return out, fmt.Errorf("%s: %w", what, err)
	}
	r.applied(p, out)
	return out, nil
}

func (r *Run) applyInput(p *Page) syncstep.ApplyInput {
	in := syncstep.ApplyInput{BatchInput: r.batch(p), Seq: p.seq, Atomic: r.plan.Atomic, Counts: r.counts,
		Step: p.nextStep, Skip: p.skip}
	if r.kind == kindRecords {
		in.Kind = kindRecords
		return in
	}
	in.Checkpoint, in.Next = r.checkpoint, p.Fetched.Next
	if p.Fetched.Advanced {
		in.Checkpoint = p.Fetched.Last
	}
	in.Memo, in.CacheKey = p.Fetched.Memo, p.Fetched.CacheKey
	return in
}

// applied counts a destination's outcome and moves the page on.
func (r *Run) applied(p *Page, out syncstep.ApplyOutput) {
	if p.nextStep == 0 {
		r.counts.Inserted += out.Inserted
		r.counts.Updated += out.Updated
		r.counts.Unchanged += out.Unchanged
		r.counts.Stale += out.Stale
		r.counts.Duplicates += out.Duplicates
	}
	r.counts.Invalid += out.Rejected
	r.counts.Valid -= out.Rejected
	p.Applied, p.skip = &out, out.Refused
	p.nextStep++
	if p.nextStep == len(r.steps()) && r.kind == kindSync {
		if p.Fetched.Advanced {
			r.checkpoint = p.Fetched.Last
		}
		r.nextApply++
	}
}

// steps names the destinations: [""] for one.
func (r *Run) steps() []string {
	if len(r.plan.Steps) == 0 {
		return []string{""}
	}
	return r.plan.Steps
}

// misuse is the error of a call the run cannot take.
func (r *Run) misuse(what string) error {
	return temporal.NewNonRetryableApplicationError(fmt.Sprintf("run %s of %q: %s", r.ID, r.plan.Integration, what), failure.TypeConfig, nil)
}

// Result is how a run ended.
type Result struct {
	RunID  string          `json:"runId"`
	Status string          `json:"status"`
	Counts progress.Counts `json:"counts"`
	// Batches counts the pages applied (to at least one destination).
	Batches int `json:"batches"`
}

// Finish records how the run ended: Compensated after Compensate, else
// from the workflow's outcome err: nil is Completed, a cancellation
// Cancelled, any other error Failed. It runs even when the workflow is
// being cancelled, and returns err (nil when the run completed).
func (r *Run) Finish(ctx workflow.Context, err error) (Result, error) {
	switch {
	case r.status == progress.StatusCompensated:
	case err == nil:
		r.status = progress.StatusCompleted
	case temporal.IsCanceledError(err) || errors.Is(ctx.Err(), workflow.ErrCanceled):
		r.status = progress.StatusCancelled
	default:
		r.status = progress.StatusFailed
	}
	in := syncstep.FinishRunInput{Integration: r.plan.Integration, Kind: r.kind, RunID: r.ID, Status: r.status,
		Counts: r.counts, To: r.checkpoint, Definition: r.plan.Definition}
	if err != nil {
		in.Error = err.Error()
		var appErr *temporal.ApplicationError
		if errors.As(err, &appErr) {
			in.ErrorType = appErr.Type()
		}
	}
	dctx, _ := workflow.NewDisconnectedContext(ctx)
	if _, ferr := syncstep.FinishRun.Run(WithSummary(dctx, defaults.Bookkeeping, syncstep.FinishRunName+" · "+r.status), in); ferr != nil {
		return r.result(), errors.Join(err, fmt.Errorf("record the end of run %s: %w", r.ID, ferr))
	}
	return r.result(), err
}

func (r *Run) result() Result {
	return Result{RunID: r.ID, Status: r.status, Counts: r.counts, Batches: r.seq}
}

// Integration names the run's integration.
func (r *Run) Integration() string { return r.plan.Integration }

// Compensate undoes every batch the run applied, in every destination,
// last first, from the images an atomic integration keeps: the
// destinations are as they were before the run (objects a run created in
// an API are deleted, those it changed get their previous version back).
// It fences the run first, so no late apply of it commits, and runs in a
// disconnected context, so it also runs while the workflow is being
// cancelled. Finish then records the run Compensated. It stops at the
// first batch it cannot restore (restoring earlier ones over it would make
// their images wrong) and says what is left.
func (r *Run) Compensate(ctx workflow.Context) error {
	if !r.plan.Atomic {
		return r.misuse("the integration is not atomic: its batches keep no images to restore (set atomic: true)")
	}
	dctx, _ := workflow.NewDisconnectedContext(ctx)
	begin, err := syncstep.BeginCompensation.Run(WithSummary(dctx, defaults.Bookkeeping, syncstep.BeginCompensationName+" · "+r.plan.Integration),
		syncstep.BeginCompensationInput{Integration: r.plan.Integration, Kind: r.kind, RunID: r.ID, Definition: r.plan.Definition})
	if err != nil {
		return fmt.Errorf("begin compensation of run %s: %w", r.ID, err)
	}
	last := max(r.lastSeq, begin.LastBatch)
	names := r.steps()
	for seq := last; seq >= 1; seq-- {
		top := len(names) - 1
		if seq == r.lastSeq && last == r.lastSeq {
			top = r.lastStep // later destinations never saw it
		}
		for step := top; step >= 0; step-- {
			what := fmt.Sprintf("undo batch %d", seq)
			if names[step] != "" {
				what += " in " + names[step]
			}
			summary := fmt.Sprintf("%s %d · restore", syncstep.CompensateBatchName, seq)
			if names[step] != "" {
				summary += " in " + names[step]
			}
			_, err := syncstep.CompensateBatch.Run(WithSummary(dctx, defaults.Compensate, summary), syncstep.CompensateInput{
				Integration: r.plan.Integration, RunID: r.ID, Seq: seq, Step: step, Definition: r.plan.Definition})
			if err != nil {
				return fmt.Errorf("%s of run %s: %w; batches %d down to 1 are left to restore by hand", what, r.ID, err, seq)
			}
		}
	}
	r.status = progress.StatusCompensated
	return nil
}
