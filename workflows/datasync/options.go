package datasync

import (
	"time"

	"go.temporal.io/sdk/temporal"
	"go.temporal.io/sdk/workflow"

	"github.com/tetherflow/tether/activities/lib/failure"
)

// Every step has explicit timeouts and a bounded retry policy. Permanent
// failures are non-retryable application errors raised by the activities,
// so these policies only ever retry what can succeed later; throttling
// answers set their own next delay from Retry-After.
var (
	// shortStep: bookkeeping in PostgreSQL (StartRun, FinishRun).
	shortStep = workflow.ActivityOptions{
		StartToCloseTimeout: time.Minute,
		RetryPolicy: &temporal.RetryPolicy{
			InitialInterval:    500 * time.Millisecond,
			BackoffCoefficient: 2,
			MaximumInterval:    30 * time.Second,
			MaximumAttempts:    10,
		},
	}
	// fetchStep: one HTTP page; heartbeats while the request is in flight.
	fetchStep = workflow.ActivityOptions{
		StartToCloseTimeout: 5 * time.Minute,
		HeartbeatTimeout:    30 * time.Second,
		RetryPolicy: &temporal.RetryPolicy{
			InitialInterval:    time.Second,
			BackoffCoefficient: 2,
			MaximumInterval:    time.Minute,
			MaximumAttempts:    8,
		},
	}
	// applyStep: one transactional batch upsert. WaitForCancellation: a
	// cancelled run waits for an apply in flight to commit or roll back
	// before compensation starts, so a late commit cannot slip past it.
	applyStep = workflow.ActivityOptions{
		StartToCloseTimeout: 2 * time.Minute,
		WaitForCancellation: true,
		RetryPolicy: &temporal.RetryPolicy{
			InitialInterval:    time.Second,
			BackoffCoefficient: 2,
			MaximumInterval:    time.Minute,
			MaximumAttempts:    8,
			// An open circuit comes back to the workflow at once: it waits
			// on a durable timer instead of spending attempts (see
			// applyWaitingOutCircuit).
			NonRetryableErrorTypes: []string{failure.TypeCircuitOpen},
		},
	}
	// compensateStep: restoring one batch's before-images; retried harder,
	// since a failed compensation leaves work for a person.
	compensateStep = workflow.ActivityOptions{
		StartToCloseTimeout: 2 * time.Minute,
		RetryPolicy: &temporal.RetryPolicy{
			InitialInterval:    time.Second,
			BackoffCoefficient: 2,
			MaximumInterval:    time.Minute,
			MaximumAttempts:    20,
		},
	}
	// localStep: validation and transformation, pure CPU on the worker that
	// runs the workflow task (local activities: no task-queue round trip).
	// They read staged pages and write quarantine rows, so they get a
	// budget that rides out a PostgreSQL restart like applyStep does.
	localStep = workflow.LocalActivityOptions{
		ScheduleToCloseTimeout: 5 * time.Minute,
		StartToCloseTimeout:    time.Minute,
		RetryPolicy: &temporal.RetryPolicy{
			InitialInterval:    500 * time.Millisecond,
			BackoffCoefficient: 2,
			MaximumInterval:    30 * time.Second,
			MaximumAttempts:    10,
		},
	}
)
