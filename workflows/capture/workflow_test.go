package capture

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/stretchr/testify/mock"
	"go.temporal.io/sdk/activity"
	"go.temporal.io/sdk/converter"
	"go.temporal.io/sdk/temporal"
	"go.temporal.io/sdk/testsuite"
	"go.temporal.io/sdk/worker"
	"go.temporal.io/sdk/workflow"

	"github.com/tetherflow/tether/activities/syncstep"
	"github.com/tetherflow/tether/workflows/internal/replaytest"
)

// fakeCapture stands in for the capture activities: each CaptureChanges
// call applies n changes (or fails while failures last); RemoveCapture is
// recorded.
type fakeCapture struct {
	calls, failures int
	removed         []syncstep.CaptureInput
}

func (f *fakeCapture) register(env *testsuite.TestWorkflowEnvironment) {
	capture := func(ctx context.Context, in syncstep.CaptureInput) (syncstep.CaptureOutput, error) {
		f.calls++
		if f.failures > 0 {
			f.failures--
			return syncstep.CaptureOutput{}, temporal.NewNonRetryableApplicationError("source table is gone", "ConfigError", nil)
		}
		return syncstep.CaptureOutput{Definition: "fp-1", Batches: 2, Pending: 3, Oldest: time.Unix(1, 0).UTC(),
			Counts: syncstep.EventCounts{Received: 10, Inserted: 7, Deleted: 3}, LastAppliedAt: time.Unix(2, 0).UTC()}, nil
	}
	env.RegisterActivityWithOptions(capture, activity.RegisterOptions{Name: syncstep.CaptureChangesName})
	env.RegisterActivityWithOptions(func(ctx context.Context, in syncstep.CaptureInput) error {
		f.removed = append(f.removed, in)
		return nil
	}, activity.RegisterOptions{Name: syncstep.RemoveCaptureName})
	// Each run takes its minute of (test) time, as the real one does.
	env.OnActivity(syncstep.CaptureChangesName, mock.Anything, mock.Anything).After(time.Minute).Return(capture)
}

func newEnv(t *testing.T, f *fakeCapture) *testsuite.TestWorkflowEnvironment {
	t.Helper()
	var s testsuite.WorkflowTestSuite
	env := s.NewTestWorkflowEnvironment()
	env.RegisterWorkflowWithOptions(CaptureWorkflow, workflow.RegisterOptions{Name: WorkflowType})
	f.register(env)
	return env
}

func query(t *testing.T, env *testsuite.TestWorkflowEnvironment) Progress {
	t.Helper()
	v, err := env.QueryWorkflow(QueryProgress)
	if err != nil {
		t.Fatal(err)
	}
	var p Progress
	if err := v.Get(&p); err != nil {
		t.Fatal(err)
	}
	return p
}

func TestCaptureWorkflow_CapturesUntilRemovedThenDropsTheCapture(t *testing.T) {
	f := &fakeCapture{}
	env := newEnv(t, f)
	env.RegisterDelayedCallback(func() {
		p := query(t, env)
		if p.Status != "capturing" || p.Counts.Inserted == 0 || p.Pending != 3 || p.Batches == 0 {
			t.Errorf("progress while capturing: %+v", p)
		}
		env.SignalWorkflow(SignalRemove, nil)
	}, 5*time.Minute)
	env.ExecuteWorkflow(WorkflowType, Input{Integration: "orders", RunFor: time.Minute})
	if !env.IsWorkflowCompleted() || env.GetWorkflowError() != nil {
		t.Fatalf("completed %v, error %v", env.IsWorkflowCompleted(), env.GetWorkflowError())
	}
	if f.calls < 2 {
		t.Errorf("CaptureChanges ran %d times, want it started again after each run", f.calls)
	}
	if len(f.removed) != 1 || f.removed[0].Integration != "orders" || f.removed[0].Definition != "fp-1" {
		t.Errorf("RemoveCapture calls %+v, want one for orders pinned to the last definition", f.removed)
	}
	// Each completed run applied 10 changes in 2 batches (the run cut short
	// by the removal reports nothing).
	if p := query(t, env); p.Status != "removed" || p.Batches == 0 || p.Counts.Received != 5*p.Batches || p.Pending != 3 {
		t.Errorf("final progress %+v", p)
	}
}

func TestCaptureWorkflow_RetriesAFailingCaptureAndSaysWhy(t *testing.T) {
	f := &fakeCapture{failures: 3}
	env := newEnv(t, f)
	env.RegisterDelayedCallback(func() {
		if p := query(t, env); p.Status != "retrying" || p.LastError == "" {
			t.Errorf("progress while failing: %+v", p)
		}
	}, 90*time.Second)
	env.RegisterDelayedCallback(func() {
		if p := query(t, env); p.Status != "capturing" || p.LastError != "" {
			t.Errorf("progress after recovering: %+v", p)
		}
		env.SignalWorkflow(SignalRemove, nil)
	}, 20*time.Minute)
	env.ExecuteWorkflow(WorkflowType, Input{Integration: "orders", RunFor: time.Minute})
	if err := env.GetWorkflowError(); err != nil {
		t.Fatalf("a failing capture must not fail the workflow: %v", err)
	}
	if f.calls <= 3 {
		t.Errorf("%d calls: the capture was not retried after its failures", f.calls)
	}
}

func TestCaptureWorkflow_ContinuesAsNewCarryingItsFigures(t *testing.T) {
	f := &fakeCapture{}
	env := newEnv(t, f)
	env.ExecuteWorkflow(WorkflowType, Input{Integration: "orders", RunFor: time.Minute})
	var can *workflow.ContinueAsNewError
	if err := env.GetWorkflowError(); !errors.As(err, &can) {
		t.Fatalf("want continue-as-new after %d runs, got %v", runsPerExecution, err)
	}
	if f.calls != runsPerExecution {
		t.Errorf("%d runs before continuing as new, want %d", f.calls, runsPerExecution)
	}
	var next Input
	if err := converter.GetDefaultDataConverter().FromPayloads(can.Input, &next); err != nil {
		t.Fatalf("decode the next input: %v", err)
	}
	if next.State == nil || next.State.Counts.Received != 10*runsPerExecution || next.State.Definition != "fp-1" {
		t.Errorf("carried state %+v", next.State)
	}
}

func TestCaptureWorkflow_RequiresIntegration(t *testing.T) {
	env := newEnv(t, &fakeCapture{})
	env.ExecuteWorkflow(WorkflowType, Input{})
	if err := env.GetWorkflowError(); err == nil {
		t.Fatal("no error for an input without integration")
	}
}

// TestCaptureWorkflow_ReplaysRecordedHistories replays histories of real
// captures (recorded by tests/integration with -run TestCapture
// -record-histories=$PWD/workflows/capture/testdata/histories).
func TestCaptureWorkflow_ReplaysRecordedHistories(t *testing.T) {
	replaytest.Replay(t, 1, "a capture through a worker kill, takeover and removal", func(r worker.WorkflowReplayer) {
		r.RegisterWorkflowWithOptions(CaptureWorkflow, workflow.RegisterOptions{Name: WorkflowType})
	})
}
