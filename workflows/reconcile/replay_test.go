package reconcile

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"go.temporal.io/sdk/client"
	"go.temporal.io/sdk/worker"
	"go.temporal.io/sdk/workflow"

	"github.com/tetherflow/tether/workflows/datasync"
	"github.com/tetherflow/tether/workflows/internal/replaytest"
)

// TestReconcileWorkflow_ReplaysRecordedHistories replays histories of real
// reconciliations and their repair runs (recorded by tests/integration with
// -run TestReconcile -record-histories=$PWD/workflows/reconcile/testdata/histories).
// A change that makes either workflow non-deterministic for running
// histories fails here: put it behind workflow.GetVersion.
func TestReconcileWorkflow_ReplaysRecordedHistories(t *testing.T) {
	for _, f := range replaytest.Files(t, 3, "no drift, drift repaired, dry run") {
		t.Run(filepath.Base(f), func(t *testing.T) {
			r := worker.NewWorkflowReplayer()
			r.RegisterWorkflowWithOptions(ReconcileWorkflow, workflow.RegisterOptions{Name: WorkflowType})
			r.RegisterWorkflowWithOptions(datasync.SyncWorkflow, workflow.RegisterOptions{Name: datasync.WorkflowType})
			fh, err := os.Open(f)
			if err != nil {
				t.Fatal(err)
			}
			defer fh.Close()
			h, err := client.HistoryFromJSON(fh, client.HistoryJSONOptions{})
			if err != nil {
				t.Fatal(err)
			}
			// The repair run's id derives from the reconciliation's own
			// workflow id, which a history does not hold: take it from the
			// child it started.
			var opts worker.ReplayWorkflowHistoryOptions
			for _, ev := range h.GetEvents() {
				if a := ev.GetStartChildWorkflowExecutionInitiatedEventAttributes(); a != nil {
					opts.OriginalExecution.ID = strings.TrimSuffix(a.GetWorkflowId(), "/repair")
				}
			}
			if err := r.ReplayWorkflowHistoryWithOptions(nil, h, opts); err != nil {
				t.Fatalf("replay %s: %v", f, err)
			}
		})
	}
}
