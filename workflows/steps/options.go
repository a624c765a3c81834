package steps

import (
	"time"

	"go.temporal.io/sdk/temporal"
	"go.temporal.io/sdk/workflow"

	"github.com/tetherflow/tether/activities/lib/failure"
)

// ActivityOptions are the activity options of the steps: explicit timeouts and
// bounded retries. Permanent failures are non-retryable application
// errors the activities raise, so these policies only retry what can
// succeed later; throttling answers set their own next delay from
// Retry-After. tether's own workflows use the same values.
type ActivityOptions struct {
	// Bookkeeping: run state in PostgreSQL (StartRun, FinishRun,
	// StageRecords, BeginCompensation).
	Bookkeeping workflow.ActivityOptions
	// Fetch: one page of the source; heartbeats while in flight.
	Fetch workflow.ActivityOptions
	// Local: validation and transformation, on the worker running the
	// workflow (local activities: no task-queue round trip). They read
	// staged pages and write quarantine rows, so their budget rides out a
	// PostgreSQL restart as Apply's does.
	Local workflow.LocalActivityOptions
	// Apply: one destination's batch. WaitForCancellation: a cancelled
	// workflow waits for an apply in flight to commit or roll back before
	// it compensates, so a late commit cannot slip past compensation. An
	// open circuit comes back to the workflow at once, which waits on a
	// durable timer instead of spending attempts.
	Apply workflow.ActivityOptions
	// Compensate: restoring one batch's before-images; retried harder,
	// since a failed compensation leaves work for a person.
	Compensate workflow.ActivityOptions
}

// HeartbeatTimeout is how long the steps that heartbeat (fetch, apply,
// compensate) may go without one: a step on a worker that died moves to a
// live worker after about this long, instead of after its whole
// start-to-close timeout. Workers heartbeat every few seconds
// (heartbeat.Every; the worker's MaxHeartbeatThrottleInterval).
const HeartbeatTimeout = 10 * time.Second

// DefaultActivityOptions returns the steps' activity options, a fresh copy each
// call.
func DefaultActivityOptions() ActivityOptions {
	return ActivityOptions{
		Bookkeeping: workflow.ActivityOptions{
			StartToCloseTimeout: time.Minute,
			RetryPolicy:         retry(500*time.Millisecond, 30*time.Second, 10),
		},
		Fetch: workflow.ActivityOptions{
			StartToCloseTimeout: 5 * time.Minute,
			HeartbeatTimeout:    HeartbeatTimeout,
			RetryPolicy:         retry(time.Second, time.Minute, 8),
		},
		Local: workflow.LocalActivityOptions{
			ScheduleToCloseTimeout: 5 * time.Minute,
			StartToCloseTimeout:    time.Minute,
			RetryPolicy:            retry(500*time.Millisecond, 30*time.Second, 10),
		},
		Apply: workflow.ActivityOptions{
			StartToCloseTimeout: 2 * time.Minute,
			HeartbeatTimeout:    HeartbeatTimeout,
			WaitForCancellation: true,
			RetryPolicy:         retry(time.Second, time.Minute, 8, failure.TypeCircuitOpen),
		},
		Compensate: workflow.ActivityOptions{
			StartToCloseTimeout: 2 * time.Minute,
			HeartbeatTimeout:    HeartbeatTimeout,
			RetryPolicy:         retry(time.Second, time.Minute, 20),
		},
	}
}

// retry is an exponential policy (coefficient 2) with a bounded number of
// attempts.
func retry(initial, max time.Duration, attempts int32, nonRetryable ...string) *temporal.RetryPolicy {
	return &temporal.RetryPolicy{
		InitialInterval: initial, BackoffCoefficient: 2, MaximumInterval: max, MaximumAttempts: attempts,
		NonRetryableErrorTypes: nonRetryable,
	}
}

// defaults are the options the steps run with.
var defaults = DefaultActivityOptions()

// WithSummary returns ctx with activity options o and summary, the line
// the Web UI shows for the activity in the workflow's timeline, e.g.
// "ApplyBatch 12 · 1000 rows to billing".
func WithSummary(ctx workflow.Context, o workflow.ActivityOptions, summary string) workflow.Context {
	o.Summary = summary
	return workflow.WithActivityOptions(ctx, o)
}

// WithLocalSummary is WithSummary for a local activity.
func WithLocalSummary(ctx workflow.Context, o workflow.LocalActivityOptions, summary string) workflow.Context {
	o.Summary = summary
	return workflow.WithLocalActivityOptions(ctx, o)
}
