package datasync

import (
	"errors"
	"fmt"

	"go.temporal.io/sdk/temporal"
	"go.temporal.io/sdk/workflow"

	"github.com/tetherflow/tether/activities/lib/cursor"
	"github.com/tetherflow/tether/activities/lib/failure"
	"github.com/tetherflow/tether/activities/lib/progress"
	"github.com/tetherflow/tether/activities/syncstep"
	"github.com/tetherflow/tether/workflows/steps"
)

// maxPagesPerExecution bounds one execution's history even when the server
// does not suggest continue-as-new yet (about 15 events per page).
const maxPagesPerExecution = 250

func (r *run) pagesPerExecution() int {
	if r.in.PagesPerExecution > 0 {
		return r.in.PagesPerExecution
	}
	return maxPagesPerExecution
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
				r.fail(syncstep.FetchPageName, pageError(r.st.NextPage-1, r.sourceAt[r.st.NextPage-1], err))
			}
			break
		}
		r.pagesThisExec++
		r.count(out.Ref.Page, progress.Counts{Pages: 1, Fetched: out.Count})
		pageSince := r.st.Since
		if !r.checkTotal(out) {
			break
		}
		r.advance(out)
		if out.NotModified {
			r.count(out.Ref.Page, progress.Counts{Unchanged: out.Count, NotModified: 1})
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
	r.sourceAt[page] = r.where()
	ref := syncstep.PageRef{RunID: r.st.RunID, Page: page}
	var f syncstep.Future[syncstep.FetchPageOutput]
	switch {
	case r.in.Repair != "":
		actx := steps.WithSummary(ctx, fetchStep, fmt.Sprintf("%s %d · rows %d-%d to repair",
			syncstep.FetchRepairName, page, r.st.Counts.Fetched+1, r.st.Counts.Fetched+r.st.Plan.BatchSize))
		f = syncstep.FetchRepairPage.Start(actx, syncstep.FetchRepairInput{
			Integration: r.in.Integration,
			Ref:         ref,
			Reconcile:   r.in.Repair,
			AfterOrd:    int64(r.st.Position.Offset),
			Limit:       r.st.Plan.BatchSize,
			Definition:  r.st.Plan.Definition,
		})
	case r.in.Replay:
		actx := steps.WithSummary(ctx, fetchStep, fmt.Sprintf("%s %d · quarantined records %d-%d",
			syncstep.FetchQuarantinedName, page, r.st.Counts.Fetched+1, r.st.Counts.Fetched+r.st.Plan.BatchSize))
		f = syncstep.FetchQuarantinedPage.Start(actx, syncstep.FetchQuarantinedInput{
			Integration: r.in.Integration,
			Ref:         ref,
			AfterID:     int64(r.st.Position.Offset),
			UpTo:        r.st.Plan.ReplayUpTo,
			Limit:       r.st.Plan.BatchSize,
			Definition:  r.st.Plan.Definition,
		})
	default:
		f = syncstep.FetchPage.Start(steps.WithSummary(ctx, fetchStep, r.fetchSummary(page)), syncstep.FetchPageInput{
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

// checkTotal counts the page into the current read and, on the read's last
// page, compares the read with the total the source announced (a source
// read only; a replay or repair reads tether's own tables). A read that
// ended short fails the run (short_read: fail, the default) or adds a
// warning (warn); it reports false when the run failed.
func (r *run) checkTotal(out syncstep.FetchPageOutput) bool {
	if r.in.Replay || r.in.Repair != "" {
		return true
	}
	r.st.ReadFetched += out.Count
	if !out.Done || out.Total <= 0 || r.st.ReadResumed || r.st.ReadFetched >= out.Total {
		return true
	}
	msg := fmt.Sprintf("the source announced %d records for the read but it ended after %d: %d were not read",
		out.Total, r.st.ReadFetched, out.Total-r.st.ReadFetched)
	if r.st.Plan.ShortRead == integrationShortReadWarn {
		r.st.Warnings = append(r.st.Warnings, fmt.Sprintf("page %d (source %s): %s", out.Ref.Page, r.sourceAt[out.Ref.Page], msg))
		r.log.Warn("short read: "+msg, "integration", r.in.Integration, "page", out.Ref.Page)
		return true
	}
	r.fail(syncstep.FetchPageName, pageError(out.Ref.Page, r.sourceAt[out.Ref.Page],
		temporal.NewNonRetryableApplicationError(msg, failure.TypeSourceShortRead, nil)))
	return false
}

// integrationShortReadWarn is integration.ShortReadWarn (workflows do not
// import integration definitions).
const integrationShortReadWarn = "warn"

// advance moves the read position past a fetched page. Incremental reads
// restart from the first page "since" the page's last (cursor, key), which
// is robust to records moving while the run reads; when a whole page shares
// one cursor value they page forward within it. A source whose pages stay
// right while records move (Plan.FollowPages) is paged forward to the end
// of the read.
func (r *run) advance(out syncstep.FetchPageOutput) {
	if out.Done {
		r.done = true
	}
	if r.st.Plan.Incremental && !r.st.Plan.FollowPages && out.Advanced && !out.NotModified {
		if out.Done {
			return
		}
		r.st.Since = out.Last
		r.st.Position = cursor.Position{}
		// The next page starts a new read "since" this one's last record.
		r.st.ReadFetched, r.st.ReadResumed = 0, false
		return
	}
	r.st.Position = out.Next
}

// process validates, transforms and applies one page.
func (r *run) process(ctx workflow.Context, page syncstep.FetchPageOutput, since cursor.Checkpoint, seq int) {
	in := syncstep.BatchInput{Integration: r.in.Integration, Ref: page.Ref, Since: since, Definition: r.st.Plan.Definition}
	rows, ok := r.prepare(ctx, page, in)
	if !ok {
		return
	}

	if err := workflow.Await(ctx, func() bool { return r.applyNext == seq || r.err != nil }); err != nil || r.err != nil {
		return
	}
	checkpoint := r.st.Checkpoint
	if page.Advanced {
		checkpoint = page.Last
	}
	if !r.applyBatch(ctx, page, in, seq, rows, checkpoint) {
		return
	}
	r.st.Checkpoint = checkpoint
	r.applyNext = seq + 1
	delete(r.sourceAt, page.Ref.Page)
	r.progressed(ctx, fmt.Sprintf("applied page %d", page.Ref.Page))
}

// prepare validates and transforms one page in local activities, counting
// what they found, and returns the number of rows to apply. It reports
// false when the page must not be applied: a step failed or the invalid
// share passed the threshold.
func (r *run) prepare(ctx workflow.Context, page syncstep.FetchPageOutput, in syncstep.BatchInput) (rows int, ok bool) {
	n := page.Ref.Page
	v, err := syncstep.ValidateBatch.RunLocal(steps.WithLocalSummary(ctx, localStep,
		fmt.Sprintf("%s %d · %d records", syncstep.ValidateBatchName, n, page.Count)), in)
	if err != nil {
		r.failUnlessCancelled(ctx, syncstep.ValidateBatchName, pageError(page.Ref.Page, r.sourceAt[page.Ref.Page], err))
		return 0, false
	}
	r.count(n, progress.Counts{Skipped: v.Skipped, Checked: v.Valid + v.Invalid, Invalid: v.Invalid})
	if r.thresholdPassed() {
		return 0, false
	}
	t, err := syncstep.TransformBatch.RunLocal(steps.WithLocalSummary(ctx, localStep,
		fmt.Sprintf("%s %d · %d valid records", syncstep.TransformBatchName, n, v.Valid)), in)
	if err != nil {
		r.failUnlessCancelled(ctx, syncstep.TransformBatchName, pageError(page.Ref.Page, r.sourceAt[page.Ref.Page], err))
		return 0, false
	}
	r.count(n, progress.Counts{Invalid: t.Invalid, Valid: t.Transformed})
	return t.Transformed, !r.thresholdPassed()
}
