package capture

import (
	"go.temporal.io/sdk/worker"
	"go.temporal.io/sdk/workflow"
)

// Register puts CaptureWorkflow on a worker under its WorkflowType.
func Register(r worker.WorkflowRegistry) {
	r.RegisterWorkflowWithOptions(CaptureWorkflow, workflow.RegisterOptions{Name: WorkflowType})
}
