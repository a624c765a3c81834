package steps_test

import (
	"encoding/json"
	"time"

	"go.temporal.io/sdk/workflow"

	"github.com/tetherflow/tether/workflows/steps"
)

// README: your own integration as workflow code (begin)

// Approval is your workflow's input: one record to apply once approved.
type Approval struct {
	Record json.RawMessage `json:"record"`
}

// ApplyWhenApproved stages the record and checks it at once, then writes it
// to crm-contacts' destinations only if a person approves it within a day:
// temporal workflow update execute --name approve --input true ...
func ApplyWhenApproved(ctx workflow.Context, in Approval) (steps.Result, error) {
	var approved, decided bool
	if err := workflow.SetUpdateHandler(ctx, "approve", func(ctx workflow.Context, ok bool) error {
		approved, decided = ok, true
		return nil
	}); err != nil {
		return steps.Result{}, err
	}
	run, err := steps.Start(ctx, "crm-contacts", steps.Options{Records: true})
	if err != nil {
		return steps.Result{}, err
	}
	page, err := run.Stage(ctx, in.Record)
	if err == nil {
		_, err = run.Validate(ctx, page) // invalid: quarantined with its reasons
	}
	if err == nil {
		_, err = run.Transform(ctx, page)
	}
	if err == nil {
		_, err = workflow.AwaitWithTimeout(ctx, 24*time.Hour, func() bool { return decided })
	}
	if err == nil && approved {
		_, err = run.Apply(ctx, page) // idempotent, exactly once with the run's state
	}
	return run.Finish(ctx, err)
}

// README: your own integration as workflow code (end)

// ExampleStart registers ApplyWhenApproved with a worker in one line:
//
//	app.New(cfg, app.WithWorkflows(func(r worker.Registry) { r.RegisterWorkflow(ApplyWhenApproved) }))
func ExampleStart() {
	_ = ApplyWhenApproved
}
