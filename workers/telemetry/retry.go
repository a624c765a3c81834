package telemetry

import (
	"context"
	"errors"
	"math"
	"slices"
	"time"

	"go.temporal.io/sdk/activity"
	"go.temporal.io/sdk/temporal"

	"github.com/tetherflow/tether/activities/lib/observe"
	"github.com/tetherflow/tether/activities/lib/progress"
)

// RetryNotice tells the runs of some workflow types when one of their
// steps failed an attempt Temporal will retry, and when a retried step
// succeeds (signal progress.SignalStepRetry), so their progress query can
// show the attempt, the last error and when the next try is. Local
// activities are retried inside the workflow task and are not told.
type RetryNotice struct {
	Client interface {
		SignalWorkflow(ctx context.Context, workflowID, runID, signalName string, arg any) error
	}
	WorkflowTypes []string
}

// noticeTimeout bounds the signal; a notice that fails is dropped (the
// run goes on, only its progress shows less).
const noticeTimeout = 2 * time.Second

// tell sends the run of the step info describes what its attempt's
// outcome means for its progress.
func (n *RetryNotice) tell(info activity.Info, s observe.Scope, err error) {
	if n == nil || n.Client == nil || info.IsLocalActivity || !slices.Contains(n.WorkflowTypes, info.WorkflowType.Name) {
		return
	}
	now := time.Now()
	r := progress.Retry{Step: s.Step, Page: s.Page, Attempt: info.Attempt, At: now}
	switch {
	case err == nil && info.Attempt > 1:
		// recovered: NextAt stays zero
	case err != nil:
		next, ok := nextAttempt(info, err)
		if !ok {
			return
		}
		r.Error, r.NextAt = err.Error(), now.Add(next)
	default:
		return
	}
	ctx, cancel := context.WithTimeout(context.Background(), noticeTimeout)
	defer cancel()
	_ = n.Client.SignalWorkflow(ctx, info.WorkflowExecution.ID, info.WorkflowExecution.RunID, progress.SignalStepRetry, r)
}

// nextAttempt is how long Temporal waits before the next attempt of a step
// that failed with err, and false when there is none (the error is not
// retryable, the attempts are used up, or the step was cancelled).
func nextAttempt(info activity.Info, err error) (time.Duration, bool) {
	if errors.Is(err, context.Canceled) || temporal.IsCanceledError(err) {
		return 0, false
	}
	p := info.RetryPolicy
	if p == nil {
		p = &temporal.RetryPolicy{}
	}
	if p.MaximumAttempts > 0 && info.Attempt >= p.MaximumAttempts {
		return 0, false
	}
	var app *temporal.ApplicationError
	if errors.As(err, &app) {
		if app.NonRetryable() || slices.Contains(p.NonRetryableErrorTypes, app.Type()) {
			return 0, false
		}
		if d := app.NextRetryDelay(); d > 0 {
			return d, true
		}
	}
	initial, coef, most := p.InitialInterval, p.BackoffCoefficient, p.MaximumInterval
	if initial <= 0 {
		initial = time.Second
	}
	if coef < 1 {
		coef = 2
	}
	if most <= 0 {
		most = 100 * initial
	}
	d := time.Duration(float64(initial) * math.Pow(coef, float64(info.Attempt-1)))
	return min(d, most), true
}
