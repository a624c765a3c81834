package datasync

import (
	"path/filepath"
	"testing"

	"go.temporal.io/sdk/worker"
	"go.temporal.io/sdk/workflow"
)

// TestSyncWorkflow_ReplaysRecordedHistories replays histories recorded from
// real runs against the real dev server (tests/integration with
// -record-histories=../../workflows/datasync/testdata/histories). A change
// that makes the workflow non-deterministic for running histories fails
// here: put it behind workflow.GetVersion.
func TestSyncWorkflow_ReplaysRecordedHistories(t *testing.T) {
	files, err := filepath.Glob("testdata/histories/*.json")
	if err != nil {
		t.Fatal(err)
	}
	if len(files) < 3 {
		t.Fatalf("want recorded histories in testdata/histories (completed, failed-and-compensated, continued-as-new); found %d", len(files))
	}
	for _, f := range files {
		t.Run(filepath.Base(f), func(t *testing.T) {
			r := worker.NewWorkflowReplayer()
			r.RegisterWorkflowWithOptions(SyncWorkflow, workflow.RegisterOptions{Name: WorkflowType})
			if err := r.ReplayWorkflowHistoryFromJSONFile(nil, f); err != nil {
				t.Fatalf("replay %s: %v", f, err)
			}
		})
	}
}
