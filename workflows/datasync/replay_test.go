package datasync

import (
	"testing"

	"go.temporal.io/sdk/worker"
	"go.temporal.io/sdk/workflow"

	"github.com/tetherflow/tether/workflows/internal/replaytest"
)

// TestSyncWorkflow_ReplaysRecordedHistories replays histories recorded from
// real runs against the real dev server (tests/integration with
// -record-histories=../../workflows/datasync/testdata/histories). A change
// that makes the workflow non-deterministic for running histories fails
// here: put it behind workflow.GetVersion.
func TestSyncWorkflow_ReplaysRecordedHistories(t *testing.T) {
	replaytest.Replay(t, 3, "completed, failed-and-compensated, continued-as-new", func(r worker.WorkflowReplayer) {
		r.RegisterWorkflowWithOptions(SyncWorkflow, workflow.RegisterOptions{Name: WorkflowType})
	})
}
