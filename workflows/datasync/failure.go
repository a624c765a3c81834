package datasync

import (
	"errors"
	"fmt"

	"go.temporal.io/sdk/temporal"
	"go.temporal.io/sdk/workflow"
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
