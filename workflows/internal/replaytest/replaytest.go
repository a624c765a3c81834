// Package replaytest replays the histories of real runs recorded by
// tests/integration (-record-histories) in a workflow package's
// testdata/histories: a change that makes a workflow non-deterministic for
// running histories fails there, and goes behind workflow.GetVersion.
package replaytest

import (
	"path/filepath"
	"testing"

	"go.temporal.io/sdk/worker"
)

// Files returns the recorded histories of the package under test, failing
// the test when there are fewer than min (what says which are expected).
func Files(t testing.TB, min int, what string) []string {
	t.Helper()
	files, err := filepath.Glob("testdata/histories/*.json")
	if err != nil {
		t.Fatal(err)
	}
	if len(files) < min {
		t.Fatalf("want recorded histories in testdata/histories (%s); found %d", what, len(files))
	}
	return files
}

// Replay replays every recorded history (at least min) with a replayer
// that register sets up, one subtest each.
func Replay(t *testing.T, min int, what string, register func(worker.WorkflowReplayer)) {
	t.Helper()
	for _, f := range Files(t, min, what) {
		t.Run(filepath.Base(f), func(t *testing.T) {
			r := worker.NewWorkflowReplayer()
			register(r)
			if err := r.ReplayWorkflowHistoryFromJSONFile(nil, f); err != nil {
				t.Fatalf("replay %s: %v", f, err)
			}
		})
	}
}
