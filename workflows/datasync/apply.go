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
	"github.com/tetherflow/tether/workflows/steps"
)

// applyBatch applies one page's batch, in page order, up to checkpoint.
// Every destination applies the batch in turn (one, or the steps of a
// saga); a row one refuses is not sent to the next. It reports false when
// a step failed.
func (r *run) applyBatch(ctx workflow.Context, page syncstep.FetchPageOutput, in syncstep.BatchInput, seq, rows int, checkpoint cursor.Checkpoint) bool {
	var skip []int
	for i, name := range r.steps() {
		step := syncstep.ApplyBatchName
		summary := fmt.Sprintf("%s %d · %d rows", syncstep.ApplyBatchName, page.Ref.Page, rows-len(skip))
		if name != "" {
			step = fmt.Sprintf("%s %s", syncstep.ApplyBatchName, name)
			summary += " to " + name
		}
		r.progressed(ctx, fmt.Sprintf("%s %d", step, page.Ref.Page))
		r.st.ApplyStarted = seq
		r.st.ApplyStep = i
		a, err := r.applyWaitingOutCircuit(steps.WithSummary(ctx, applyStep, summary), name, syncstep.ApplyInput{
			BatchInput: in,
			Seq:        seq,
			Atomic:     r.st.Plan.Atomic,
			Checkpoint: checkpoint,
			Next:       page.Next,
			Memo:       page.Memo,
			CacheKey:   page.CacheKey,
			Counts:     r.countsThrough(page.Ref.Page),
			Replay:     r.in.Replay,
			Kind:       r.applyKind(),
			// A replay marks the quarantine entries it applied.
			QuarantineIDs: page.QuarantineIDs,
			Step:          i,
			Skip:          skip,
		})
		if err != nil {
			r.failUnlessCancelled(ctx, step, pageError(page.Ref.Page, r.sourceAt[page.Ref.Page], err))
			return false
		}
		r.countApplied(i, name, a)
		skip = a.Refused
	}
	return true
}

// count adds what reading, validating or transforming page found to the
// run's counts, and remembers it as the page's until a batch at or after
// the page commits (countsThrough).
func (r *run) count(page int, c progress.Counts) {
	r.st.Counts = r.st.Counts.Add(c)
	if r.ahead == nil {
		r.ahead = map[int]progress.Counts{}
	}
	r.ahead[page] = r.ahead[page].Add(c)
}

// countsThrough is the run's counts as of the batch of page: without what
// the pages after it, read or checked ahead of their apply, found. Stored
// with the batch, they are exactly what the batch's checkpoint covers, so
// an execution reset after it goes on from them without counting a record
// twice. The pages up to page are then covered.
func (r *run) countsThrough(page int) progress.Counts {
	c := r.st.Counts
	for p, pc := range r.ahead {
		if p > page {
			c = c.Sub(pc)
		}
	}
	for p := range r.ahead {
		if p <= page {
			delete(r.ahead, p)
		}
	}
	return c
}

// countApplied adds what destination step i (name) did to the run's counts:
// the first destination's writes stand for the run's, every step's
// refusals turn valid records invalid.
func (r *run) countApplied(i int, name string, a syncstep.ApplyOutput) {
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

// applyWaitingOutCircuit runs one ApplyBatch (ctx carries its activity
// options). When the destination's
// circuit breaker is open, the activity fails at once (CircuitOpen is not
// retried by the activity's policy) and the workflow waits on a durable
// timer for the time the breaker said is left, then tries again: a long
// outage costs timers in the history, not attempts, and survives worker
// restarts. The progress query shows the wait.
func (r *run) applyWaitingOutCircuit(ctx workflow.Context, name string, in syncstep.ApplyInput) (syncstep.ApplyOutput, error) {
	var waited time.Duration
	for {
		a, err := syncstep.ApplyBatch.Run(ctx, in)
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

// earlyThresholdSample is the number of processed records after which the
// invalid share is checked on every page (fail fast); below it the share is
// only judged at the end of the run.
const earlyThresholdSample = 1000

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
		"%d of %d records invalid (%.1f%%), over the integration's threshold of %.1f%%; they are in quarantine. Next: %s",
		c.Invalid, c.Checked, 100*c.InvalidShare(), 100*threshold, failure.NextStep(failure.TypeInvalidThreshold)), failure.TypeInvalidThreshold, nil, c)
}
