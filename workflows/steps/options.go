package steps

import (
	"time"

	"go.temporal.io/sdk/temporal"
	"go.temporal.io/sdk/workflow"

	"github.com/tetherflow/tether/activities/lib/failure"
)

// Activity options of the steps: explicit timeouts and bounded retries.
// Permanent failures are non-retryable application errors the activities
// raise, so these policies only retry what can succeed later.
var (
	// shortOptions: bookkeeping in PostgreSQL (StartRun, FinishRun,
	// StageRecords, BeginCompensation).
	shortOptions = workflow.ActivityOptions{
		StartToCloseTimeout: time.Minute,
		RetryPolicy: &temporal.RetryPolicy{
			InitialInterval: 500 * time.Millisecond, BackoffCoefficient: 2, MaximumInterval: 30 * time.Second, MaximumAttempts: 10,
		},
	}
	// fetchOptions: one page of the source; heartbeats while in flight.
	fetchOptions = workflow.ActivityOptions{
		StartToCloseTimeout: 5 * time.Minute,
		HeartbeatTimeout:    30 * time.Second,
		RetryPolicy: &temporal.RetryPolicy{
			InitialInterval: time.Second, BackoffCoefficient: 2, MaximumInterval: time.Minute, MaximumAttempts: 8,
		},
	}
	// localOptions: validation and transformation, on the worker running
	// the workflow.
	localOptions = workflow.LocalActivityOptions{
		ScheduleToCloseTimeout: 5 * time.Minute,
		StartToCloseTimeout:    time.Minute,
		RetryPolicy: &temporal.RetryPolicy{
			InitialInterval: 500 * time.Millisecond, BackoffCoefficient: 2, MaximumInterval: 30 * time.Second, MaximumAttempts: 10,
		},
	}
	// applyOptions: one destination's batch. A cancelled workflow waits
	// for an apply in flight to commit or roll back before it compensates.
	applyOptions = workflow.ActivityOptions{
		StartToCloseTimeout: 2 * time.Minute,
		WaitForCancellation: true,
		RetryPolicy: &temporal.RetryPolicy{
			InitialInterval: time.Second, BackoffCoefficient: 2, MaximumInterval: time.Minute, MaximumAttempts: 8,
			NonRetryableErrorTypes: []string{failure.TypeCircuitOpen},
		},
	}
	// compensateOptions: restoring one batch; retried harder, since a
	// failed compensation leaves work for a person.
	compensateOptions = workflow.ActivityOptions{
		StartToCloseTimeout: 2 * time.Minute,
		RetryPolicy: &temporal.RetryPolicy{
			InitialInterval: time.Second, BackoffCoefficient: 2, MaximumInterval: time.Minute, MaximumAttempts: 20,
		},
	}
)

// withSummary names the activity in the Web UI's timeline.
func withSummary(ctx workflow.Context, o workflow.ActivityOptions, summary string) workflow.Context {
	o.Summary = summary
	return workflow.WithActivityOptions(ctx, o)
}

// withLocalSummary names a local activity in the Web UI's timeline.
func withLocalSummary(ctx workflow.Context, summary string) workflow.Context {
	o := localOptions
	o.Summary = summary
	return workflow.WithLocalActivityOptions(ctx, o)
}
