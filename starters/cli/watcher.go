package cli

import (
	"context"
	"errors"
	"fmt"
	"io"
	"strings"
	"time"

	"go.temporal.io/api/enums/v1"
	"go.temporal.io/api/serviceerror"
	"go.temporal.io/api/workflowservice/v1"
	"go.temporal.io/sdk/client"
	"go.temporal.io/sdk/converter"
	"go.temporal.io/sdk/temporal"
	"google.golang.org/grpc/codes"

	"github.com/tetherflow/tether/activities/lib/progress"
	"github.com/tetherflow/tether/workflows/datasync"
)

// ErrStoppedWatching is what Watch returns when its context is cancelled
// (Ctrl-C): watching stopped, the run goes on.
var ErrStoppedWatching = errors.New("stopped watching; the run goes on")

// lostContactAfter is how long Watch retries Temporal before it gives up
// watching (the run is not affected).
const lostContactAfter = 5 * time.Minute

// callTimeout bounds one call to Temporal, so an outage shows on the bar
// at once.
const callTimeout = 3 * time.Second

// StatusUnknown is the status Watch reports for a run it lost sight of.
const StatusUnknown = "Unknown"

// Watch shows a progress bar for a sync run until it closes, then returns
// its result: for a run that failed, what it did (its progress when it
// ended) with the failure as the error. A transient error talking to
// Temporal (a restarting server, a busy one) is retried and shown on the
// bar, never taken for the run's failure; after lostContactAfter of them
// Watch gives up with status Unknown. When ctx is cancelled (Ctrl-C) it
// returns ErrStoppedWatching. total, when known, is the number of records
// expected (0 = unknown).
func Watch(ctx context.Context, c client.Client, out io.Writer, workflowID string, total int) (datasync.Result, error) {
	w := &watcher{c: c, out: out, id: workflowID, total: total, tty: isTerminal(out), start: time.Now()}
	return w.run(ctx)
}

// watcher is one Watch.
type watcher struct {
	c     client.Client
	out   io.Writer
	id    string
	total int
	tty   bool
	start time.Time

	last        progress.Report // the last progress the run reported
	integration string          // from the run's search attributes
	retrying    string          // a step's retry, from the pending activities
	trouble     error           // the last transient error talking to Temporal
	troubleAt   time.Time       // when the current spell of errors began
	lastPrint   time.Time
}

func (w *watcher) run(ctx context.Context) (datasync.Result, error) {
	tick := time.NewTicker(250 * time.Millisecond)
	defer tick.Stop()
	for {
		dctx, cancel := context.WithTimeout(ctx, callTimeout)
		desc, err := w.c.DescribeWorkflowExecution(dctx, w.id, "")
		cancel()
		switch {
		case ctx.Err() != nil:
			return w.stopped()
		case err != nil && !transient(err):
			return datasync.Result{}, fmt.Errorf("describe %s: %w", w.id, err)
		case err != nil:
			if lost := w.troubled(err); lost != nil {
				return w.result(StatusUnknown), lost
			}
		default:
			w.troubled(nil)
			if st := desc.GetWorkflowExecutionInfo().GetStatus(); st != enums.WORKFLOW_EXECUTION_STATUS_RUNNING {
				if res, err, ok := w.closed(ctx, st); ok {
					return res, err
				}
				break
			}
			w.observe(ctx, desc)
		}
		w.draw(false)
		select {
		case <-ctx.Done():
			return w.stopped()
		case <-tick.C:
		}
	}
}

// observe reads a running run's progress and its steps' retries.
func (w *watcher) observe(ctx context.Context, desc *workflowservice.DescribeWorkflowExecutionResponse) {
	w.searchAttributes(desc)
	w.retrying = ""
	for _, a := range desc.GetPendingActivities() {
		if a.GetAttempt() < 2 {
			continue
		}
		next := ""
		if t := a.GetNextAttemptScheduleTime(); t != nil {
			next = fmt.Sprintf(", next in %s", time.Until(t.AsTime()).Round(time.Second))
		}
		w.retrying = fmt.Sprintf("%s attempt %d%s: %s", a.GetActivityType().GetName(), a.GetAttempt(), next,
			truncate(a.GetLastFailure().GetMessage(), 120))
	}
	qctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	// A busy run may not answer every query: the last report stands.
	if v, err := w.c.QueryWorkflow(qctx, w.id, "", datasync.QueryProgress); err == nil {
		var r progress.Report
		if v.Get(&r) == nil {
			w.last = r
		}
	}
}

// searchAttributes takes the run's integration from its IntegrationName.
func (w *watcher) searchAttributes(desc *workflowservice.DescribeWorkflowExecutionResponse) {
	p := desc.GetWorkflowExecutionInfo().GetSearchAttributes().GetIndexedFields()[datasync.IntegrationAttr.GetName()]
	var name string
	if p != nil && converter.GetDefaultDataConverter().FromPayload(p, &name) == nil && name != "" {
		w.integration = name
	}
}

// closed returns a closed run's result: its own, or for a run that
// failed, its progress when it ended. ok is false when Temporal could not
// be asked (transiently): the caller tries again.
func (w *watcher) closed(ctx context.Context, st enums.WorkflowExecutionStatus) (res datasync.Result, err error, ok bool) {
	// An empty run id follows continue-as-new to the run's last execution.
	err = w.c.GetWorkflow(ctx, w.id, "").Get(ctx, &res)
	var wfErr *temporal.WorkflowExecutionError
	switch {
	case err == nil:
		w.last.Integration, w.last.Counts, w.last.Status = firstNonEmpty(res.Integration, w.integration), res.Counts, res.Status
	case !errors.As(err, &wfErr) && transient(err):
		return res, nil, false
	default:
		// Failed, cancelled, terminated or timed out: the result is not
		// delivered, the run's progress is (a worker replays it to answer).
		qctx, cancel := context.WithTimeout(ctx, 10*time.Second)
		defer cancel()
		if v, qerr := w.c.QueryWorkflow(qctx, w.id, "", datasync.QueryProgress); qerr == nil {
			var r progress.Report
			if v.Get(&r) == nil {
				w.last = r
			}
		}
		if w.last.Status == "" || w.last.Status == progress.StatusRunning {
			w.last.Status = closedStatus(st)
		}
		res = w.result(w.last.Status)
		err = runError(err)
	}
	w.last.Done, w.last.Step = true, "done"
	w.draw(true)
	return res, err, true
}

// result is what is known of the run, with status.
func (w *watcher) result(status string) datasync.Result {
	return datasync.Result{Integration: firstNonEmpty(w.last.Integration, w.integration), RunID: w.last.RunID, Status: status, Counts: w.last.Counts}
}

// stopped ends a watch cancelled by its context.
func (w *watcher) stopped() (datasync.Result, error) {
	if w.tty {
		fmt.Fprintln(w.out)
	}
	return w.result(progress.StatusRunning), ErrStoppedWatching
}

// troubled records a transient error talking to Temporal (nil: none). It
// returns an error once they have lasted lostContactAfter.
func (w *watcher) troubled(err error) error {
	if err == nil {
		w.trouble, w.troubleAt = nil, time.Time{}
		return nil
	}
	if w.trouble == nil {
		w.troubleAt = time.Now()
	}
	w.trouble = err
	if time.Since(w.troubleAt) > lostContactAfter {
		return fmt.Errorf("lost contact with Temporal for %s (%v): the run may still be going; watch it again with tether watch %s", lostContactAfter, err, w.id)
	}
	return nil
}

// draw prints the bar: over itself on a terminal, every 2 s otherwise, and
// always the final one.
func (w *watcher) draw(final bool) {
	line := Bar(w.last, w.total, 30, time.Since(w.start))
	if w.last.Integration == "" && w.integration != "" {
		r := w.last
		r.Integration = w.integration
		line = Bar(r, w.total, 30, time.Since(w.start))
	}
	switch {
	case w.trouble != nil && !final:
		line += " · Temporal unreachable, retrying: " + truncate(w.trouble.Error(), 80)
	case w.retrying != "" && !final:
		line += " · " + w.retrying
	}
	switch {
	case w.tty && final:
		fmt.Fprintf(w.out, "\r\033[K%s\n", truncate(line, 200))
	case w.tty:
		fmt.Fprintf(w.out, "\r\033[K%s", truncate(line, 200))
	case final || time.Since(w.lastPrint) > 2*time.Second:
		fmt.Fprintln(w.out, line)
		w.lastPrint = time.Now()
	}
}

// closedStatus names a closed workflow's status.
func closedStatus(st enums.WorkflowExecutionStatus) string {
	switch st {
	case enums.WORKFLOW_EXECUTION_STATUS_COMPLETED:
		return progress.StatusCompleted
	case enums.WORKFLOW_EXECUTION_STATUS_CANCELED:
		return progress.StatusCancelled
	case enums.WORKFLOW_EXECUTION_STATUS_TERMINATED:
		return "Terminated"
	case enums.WORKFLOW_EXECUTION_STATUS_TIMED_OUT:
		return "TimedOut"
	}
	return progress.StatusFailed
}

// transient reports whether an error talking to Temporal may pass: the
// server restarting or busy, a call timing out.
func transient(err error) bool {
	if errors.Is(err, context.DeadlineExceeded) {
		return true
	}
	var unavailable *serviceerror.Unavailable
	var exhausted *serviceerror.ResourceExhausted
	var deadline *serviceerror.DeadlineExceeded
	if errors.As(err, &unavailable) || errors.As(err, &exhausted) || errors.As(err, &deadline) {
		return true
	}
	switch serviceerror.ToStatus(err).Code() {
	case codes.Unavailable, codes.ResourceExhausted, codes.DeadlineExceeded, codes.Aborted:
		return true
	}
	return strings.Contains(err.Error(), "connection refused")
}

// RunError is a run's failure as one readable line: the run's own message,
// which names the step, the page (as the run counts it and as the source
// sees it), the cause and what to do next, without the SDK's wrappers.
// Unwrap gives the whole chain (Full prints it).
type RunError struct {
	Line string
	Err  error
}

func (e *RunError) Error() string { return e.Line }
func (e *RunError) Unwrap() error { return e.Err }

// Full is the whole chain of the failure, for --verbose.
func (e *RunError) Full() string { return e.Err.Error() }

// runError makes a run's failure (a *temporal.WorkflowExecutionError, as
// WorkflowRun.Get returns it) readable; other errors are returned as they
// are.
func runError(err error) error {
	var wfErr *temporal.WorkflowExecutionError
	if !errors.As(err, &wfErr) {
		return err
	}
	var line string
	cause := errors.Unwrap(wfErr)
	var appErr *temporal.ApplicationError
	var canceled *temporal.CanceledError
	var terminated *temporal.TerminatedError
	var timeout *temporal.TimeoutError
	switch {
	case errors.As(cause, &appErr):
		line = appErr.Message()
		if t := appErr.Type(); t != "" && !strings.Contains(line, t) {
			line += " [" + t + "]"
		}
	case errors.As(cause, &canceled):
		line = "the run was cancelled"
	case errors.As(cause, &terminated):
		line = "the run was terminated: " + terminated.Error()
	case errors.As(cause, &timeout):
		line = "the run timed out (" + timeout.TimeoutType().String() + ")"
	default:
		line = fmt.Sprint(cause)
	}
	return &RunError{Line: line, Err: err}
}
