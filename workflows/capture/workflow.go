// Package capture holds CaptureWorkflow, which runs PostgreSQL change
// capture for one integration: id "<integration>/capture".
//
// It runs the CaptureChanges activity again and again; each run installs
// the capture if needed (trigger-maintained outbox, LISTEN/NOTIFY), applies
// the changes as they commit for a minute, heartbeating its lag, and
// returns its figures, which the progress query shows. A worker that dies
// mid-run is noticed by the heartbeat timeout and the activity runs again
// on another worker from the oldest change not yet applied. A failure is
// retried with a growing delay for as long as it takes (the progress query
// says why); changes wait in the outbox meanwhile.
//
// The worker starts the workflow for every integration with
// events.capture, and signals "remove" to the capture of an integration
// that no longer has it: the workflow then drops the trigger, function
// and outbox (RemoveCapture) and completes. Cancelling it only stops the
// capture: changes keep accumulating in the outbox until it runs again.
package capture

import (
	"fmt"
	"time"

	"go.temporal.io/sdk/temporal"
	"go.temporal.io/sdk/workflow"

	"github.com/tetherflow/tether/activities/syncstep"
	"github.com/tetherflow/tether/workflows/datasync"
	"github.com/tetherflow/tether/workflows/steps"
)

// WorkflowType is the registered name of the capture workflow.
const WorkflowType = "CaptureWorkflow"

// QueryProgress returns a Progress.
const QueryProgress = "progress"

// SignalRemove asks the workflow to remove the capture and end.
const SignalRemove = "remove"

// WorkflowID is the id of an integration's capture workflow.
func WorkflowID(integration string) string { return integration + "/capture" }

// Input starts a capture. Integration is required.
type Input struct {
	Integration string `json:"integration"`
	// RunFor is how long one CaptureChanges runs (default 1 minute).
	RunFor time.Duration `json:"runFor,omitempty"`
	// State is set only by continue-as-new.
	State *State `json:"state,omitempty"`
}

// State is what the workflow carries across continue-as-new.
type State struct {
	Counts     syncstep.EventCounts `json:"counts"`
	Batches    int                  `json:"batches"`
	Definition string               `json:"definition,omitempty"`
	StartedAt  time.Time            `json:"startedAt"`
	Executions int                  `json:"executions"`
}

// Progress is what the progress query returns.
type Progress struct {
	Integration string               `json:"integration"`
	Status      string               `json:"status"` // capturing, retrying, removing, removed
	Counts      syncstep.EventCounts `json:"counts"`
	Batches     int                  `json:"batches"`
	// Pending and Oldest describe the outbox when the last CaptureChanges
	// returned: changes waiting, and the time of the oldest.
	Pending       int64     `json:"pending"`
	Oldest        time.Time `json:"oldest,omitzero"`
	LastAppliedAt time.Time `json:"lastAppliedAt,omitzero"`
	LastError     string    `json:"lastError,omitempty"`
	Executions    int       `json:"executions"`
}

// runsPerExecution bounds one execution's history.
const runsPerExecution = 100

// CaptureWorkflow runs an integration's change capture. See package doc.
func CaptureWorkflow(ctx workflow.Context, in Input) error {
	if in.Integration == "" {
		return temporal.NewNonRetryableApplicationError(`input: "integration" is required`, "ConfigError", nil)
	}
	c := &captureRun{in: in, p: Progress{Integration: in.Integration, Status: "capturing"}}
	if in.State != nil {
		c.st = *in.State
	} else {
		c.st.StartedAt = workflow.Now(ctx)
		_ = workflow.UpsertTypedSearchAttributes(ctx, datasync.IntegrationAttr.ValueSet(in.Integration))
	}
	c.st.Executions++
	if err := workflow.SetQueryHandler(ctx, QueryProgress, c.progress); err != nil {
		return err
	}
	removing := false
	workflow.Go(ctx, func(gctx workflow.Context) {
		workflow.GetSignalChannel(gctx, SignalRemove).Receive(gctx, nil)
		removing = true
	})
	runFor := in.RunFor
	if runFor <= 0 {
		runFor = time.Minute
	}
	// The activity is cancelled when a removal is asked for.
	actx, cancelRun := workflow.WithCancel(ctx)
	workflow.Go(ctx, func(gctx workflow.Context) {
		_ = workflow.Await(gctx, func() bool { return removing })
		cancelRun()
	})
	opts := workflow.ActivityOptions{
		StartToCloseTimeout: runFor + 2*time.Minute,
		// Short: a removal (or cancellation) reaches the activity with its
		// next heartbeat, and a dead worker's run is retried after it.
		HeartbeatTimeout:    10 * time.Second,
		WaitForCancellation: true,
		RetryPolicy:         &temporal.RetryPolicy{InitialInterval: time.Second, BackoffCoefficient: 2, MaximumInterval: 30 * time.Second},
	}
	delay := time.Second
	for runs := 0; !removing; runs++ {
		if runs >= runsPerExecution || workflow.GetInfo(ctx).GetContinueAsNewSuggested() {
			next := in
			st := c.st
			next.State = &st
			return workflow.NewContinueAsNewError(ctx, CaptureWorkflow, next)
		}
		summary := fmt.Sprintf("%s %d · changes of %s for up to %s", syncstep.CaptureChangesName, runs+1, in.Integration, runFor)
		out, err := syncstep.CaptureChanges.Run(steps.WithSummary(actx, opts, summary), syncstep.CaptureInput{
			Integration: in.Integration, RunFor: runFor, WorkflowID: workflow.GetInfo(ctx).WorkflowExecution.ID,
		})
		if err == nil {
			c.record(ctx, in.Integration, out)
		}
		switch {
		case removing:
		case ctx.Err() != nil:
			return ctx.Err()
		case err != nil:
			c.p.Status, c.p.LastError = "retrying", err.Error()
			workflow.GetLogger(ctx).Warn("change capture failed; retrying", "integration", in.Integration, "retryIn", delay, "error", err)
			_, _ = workflow.AwaitWithTimeout(ctx, delay, func() bool { return removing })
			delay = min(2*delay, 5*time.Minute)
		default:
			c.p.Status, c.p.LastError, delay = "capturing", "", time.Second
		}
	}
	c.p.Status = "removing"
	rctx := steps.WithSummary(ctx, workflow.ActivityOptions{
		StartToCloseTimeout: time.Minute,
		RetryPolicy:         &temporal.RetryPolicy{InitialInterval: time.Second, MaximumInterval: 30 * time.Second, MaximumAttempts: 20},
	}, syncstep.RemoveCaptureName+" · drop the slot and publication of "+in.Integration)
	if _, err := syncstep.RemoveCapture.Run(rctx, syncstep.CaptureInput{
		Integration: in.Integration, Definition: c.st.Definition,
	}); err != nil {
		c.p.LastError = err.Error()
		return err
	}
	c.p.Status = "removed"
	return nil
}

type captureRun struct {
	in Input
	st State
	p  Progress
}

// record adds what one CaptureChanges did.
// record adds what one CaptureChanges did, and says it in the workflow's
// current details (Web UI).
func (c *captureRun) record(ctx workflow.Context, integration string, out syncstep.CaptureOutput) {
	c.st.Counts = c.st.Counts.Add(out.Counts)
	c.st.Batches += out.Batches
	if out.Definition != "" {
		c.st.Definition = out.Definition
	}
	c.p.Pending, c.p.Oldest = out.Pending, out.Oldest
	if !out.LastAppliedAt.IsZero() {
		c.p.LastAppliedAt = out.LastAppliedAt
	}
	n := c.st.Counts
	workflow.SetCurrentDetails(ctx, fmt.Sprintf("**%s** change capture: %d changes waiting in the outbox\n\nreceived %d · inserted %d · updated %d · deleted %d · unchanged %d · stale %d",
		integration, c.p.Pending, n.Received, n.Inserted, n.Updated, n.Deleted, n.Unchanged, n.Stale))
}

func (c *captureRun) progress() (Progress, error) {
	p := c.p
	p.Counts, p.Batches, p.Executions = c.st.Counts, c.st.Batches, c.st.Executions
	return p, nil
}
