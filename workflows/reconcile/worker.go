package reconcile

import (
	"go.temporal.io/sdk/worker"
	"go.temporal.io/sdk/workflow"
)

// Register puts ReconcileWorkflow on a worker under its WorkflowType.
func Register(r worker.WorkflowRegistry) {
	r.RegisterWorkflowWithOptions(ReconcileWorkflow, workflow.RegisterOptions{Name: WorkflowType})
}
