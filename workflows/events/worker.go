package events

import (
	"go.temporal.io/sdk/worker"
	"go.temporal.io/sdk/workflow"
)

// Register puts EventsWorkflow on a worker under its WorkflowType.
func Register(r worker.WorkflowRegistry) {
	r.RegisterWorkflowWithOptions(EventsWorkflow, workflow.RegisterOptions{Name: WorkflowType})
}
