package datasync

import (
	"errors"
	"fmt"

	"go.temporal.io/sdk/temporal"
	"go.temporal.io/sdk/workflow"

	"github.com/tetherflow/tether/activities/lib/failure"
)

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

// pageError adds the page to a step's failure: the run's page number, and
// where the source was asked (at, as the source sees it: "page 3",
// "offset 2000", a next link, "since <cursor>").
func pageError(page int, at string, err error) error {
	return &pagedError{page: page, at: at, err: err}
}

type pagedError struct {
	page int
	at   string
	err  error
}

func (e *pagedError) Error() string { return fmt.Sprintf("page %d: %v", e.page, e.err) }
func (e *pagedError) Unwrap() error { return e.err }

// stepError turns a step's failure into the workflow's failure: a
// non-retryable application error with the same type, whose message is one
// readable line: the step, the page (the run's number and where the source
// was asked), the cause as the source, destination or database said it
// (without the chain of wrappers around it), and what to do next. The
// whole chain stays attached as the cause.
func stepError(step string, _ int, err error) error {
	var appErr *temporal.ApplicationError
	if errors.As(err, &appErr) && step == "threshold" {
		return err
	}
	typ := "StepFailed"
	msg := err.Error()
	if errors.As(err, &appErr) {
		typ = appErr.Type()
		msg = rootMessage(err)
	}
	where := ""
	var pe *pagedError
	if errors.As(err, &pe) {
		where = fmt.Sprintf(" on page %d", pe.page)
		if pe.at != "" {
			where += " (source " + pe.at + ")"
		}
	}
	line := fmt.Sprintf("%s failed%s: %s", step, where, msg)
	if next := failure.NextStep(typ); next != "" {
		line += ". Next: " + next
	}
	return temporal.NewNonRetryableApplicationError(line, typ, err)
}

// rootMessage is the message of the innermost application error in err's
// chain: what the source, destination or database said, without the
// "(type: ..., retryable: ...)" and activity wrappers around it.
func rootMessage(err error) string {
	msg := err.Error()
	for e := err; e != nil; e = errors.Unwrap(e) {
		if appErr, ok := e.(*temporal.ApplicationError); ok {
			msg = appErr.Message()
		}
	}
	return msg
}
