package onboarding

import (
	"testing"

	"go.temporal.io/sdk/worker"
	"go.temporal.io/sdk/workflow"

	"github.com/tetherflow/tether/workflows/internal/replaytest"
)

// TestOnboardCustomer_ReplaysRecordedHistories replays histories recorded
// from real onboardings against the dev server (tests/integration
// TestOnboarding_* with -record-histories=../../workflows/onboarding/testdata/histories):
// approved from the Temporal CLI, rejected, and unanswered until the
// approval timeout. A change that makes the workflow non-deterministic for
// running onboardings fails here: put it behind workflow.GetVersion.
func TestOnboardCustomer_ReplaysRecordedHistories(t *testing.T) {
	replaytest.Replay(t, 3, "approved, rejected, timed out", func(r worker.WorkflowReplayer) {
		r.RegisterWorkflowWithOptions(OnboardCustomer, workflow.RegisterOptions{Name: WorkflowType})
	})
}
