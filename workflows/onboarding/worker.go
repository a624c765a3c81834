package onboarding

import (
	"go.temporal.io/sdk/worker"
	"go.temporal.io/sdk/workflow"
)

// Register puts OnboardCustomer on a worker: the one line that adds it is
// app.New(cfg, app.WithWorkflows(onboarding.Register)). Its activities are
// tether's steps, which every worker registers.
func Register(r worker.Registry) {
	r.RegisterWorkflowWithOptions(OnboardCustomer, workflow.RegisterOptions{Name: WorkflowType})
}
