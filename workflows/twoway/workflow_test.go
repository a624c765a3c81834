package twoway

import (
	"context"
	"errors"
	"strings"
	"testing"
	"time"

	"go.temporal.io/sdk/activity"
	"go.temporal.io/sdk/testsuite"
	"go.temporal.io/sdk/worker"
	"go.temporal.io/sdk/workflow"

	"github.com/tetherflow/tether/activities/syncstep"
	"github.com/tetherflow/tether/workflows/internal/replaytest"
)

// updateResult collects an Update's outcome in the test environment.
type updateResult struct {
	rejected, failed error
	accepted         bool
	result           syncstep.ResolveResult
}

// callbacks are the test environment's callbacks that fill u.
func (u *updateResult) callbacks() *testsuite.TestUpdateCallback {
	return &testsuite.TestUpdateCallback{
		OnReject: func(err error) { u.rejected = err },
		OnAccept: func() { u.accepted = true },
		OnComplete: func(v any, err error) {
			u.failed = err
			if r, ok := v.(syncstep.ResolveResult); ok {
				u.result = r
			}
		},
	}
}

func newEnv(t *testing.T, cycle func(context.Context, syncstep.TwoWayInput) (syncstep.TwoWayCycle, error)) *testsuite.TestWorkflowEnvironment {
	t.Helper()
	var s testsuite.WorkflowTestSuite
	env := s.NewTestWorkflowEnvironment()
	env.RegisterWorkflowWithOptions(TwoWayWorkflow, workflow.RegisterOptions{Name: WorkflowType})
	env.RegisterActivityWithOptions(cycle, activity.RegisterOptions{Name: syncstep.TwoWaySync.Name()})
	return env
}

func progressOf(t *testing.T, env *testsuite.TestWorkflowEnvironment) Progress {
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

// Cycles run on the integration's timer, or at once on sync-now; the
// progress query adds up their counts and shows what waits.
func TestTwoWayWorkflow_CyclesOnTheTimerOrWhenWoken(t *testing.T) {
	env := newEnv(t, func(context.Context, syncstep.TwoWayInput) (syncstep.TwoWayCycle, error) {
		return syncstep.TwoWayCycle{Counts: syncstep.TwoWayCounts{ReadA: 2, WritesB: 1}, Every: time.Hour,
			Parked: []syncstep.ParkedConflict{{ID: 7, Fields: []string{"name"}}}, Sides: [2]string{"app", "billing"}}, nil
	})
	env.RegisterDelayedCallback(func() { env.SignalWorkflow(SignalSyncNow, nil) }, time.Minute)
	env.RegisterDelayedCallback(func() {
		p := progressOf(t, env)
		if p.Cycles != 2 || p.Counts.ReadA != 4 || p.Counts.WritesB != 2 || len(p.Parked) != 1 || p.Sides[1] != "billing" {
			t.Errorf("progress after a wake-up: %+v; want 2 cycles, the counts added up, conflict 7 waiting", p)
		}
	}, 2*time.Minute)
	env.RegisterDelayedCallback(func() {
		if p := progressOf(t, env); p.Cycles != 3 {
			t.Errorf("after the timer: %d cycles, want 3", p.Cycles)
		}
		env.CancelWorkflow()
	}, 62*time.Minute)
	env.ExecuteWorkflow(TwoWayWorkflow, syncstep.TwoWayInput{Integration: "crm"})
	if err := env.GetWorkflowError(); err == nil || !strings.Contains(err.Error(), "canceled") {
		t.Errorf("workflow ended with %v, want cancelled", err)
	}
}

// A cycle that fails is shown in the progress, and the next one runs.
func TestTwoWayWorkflow_AFailedCycleIsShownAndTheNextRuns(t *testing.T) {
	calls := 0
	env := newEnv(t, func(context.Context, syncstep.TwoWayInput) (syncstep.TwoWayCycle, error) {
		calls++
		if calls <= 3 { // every attempt of the first cycle
			return syncstep.TwoWayCycle{}, errors.New("billing API unreachable")
		}
		return syncstep.TwoWayCycle{Every: time.Minute}, nil
	})
	env.SetTestTimeout(time.Minute)
	env.RegisterDelayedCallback(func() {
		if p := progressOf(t, env); !strings.Contains(p.LastError, "billing API unreachable") {
			t.Errorf("progress: %+v, want the failure", p)
		}
	}, 5*time.Second) // after the three attempts (1 s, 2 s apart), before the next cycle (10 s)
	env.RegisterDelayedCallback(func() {
		if p := progressOf(t, env); p.LastError != "" || p.Cycles < 2 {
			t.Errorf("progress: %+v, want a later good cycle", p)
		}
		env.CancelWorkflow()
	}, 20*time.Minute)
	env.ExecuteWorkflow(TwoWayWorkflow, syncstep.TwoWayInput{Integration: "crm"})
}

// The resolve Update is validated before anything runs: an unknown
// conflict, or a choice that is not valid, is refused; a valid one runs
// the step with the Update's id and the conflict leaves the waiting list.
func TestTwoWayWorkflow_ResolveIsValidatedThenApplied(t *testing.T) {
	env := newEnv(t, func(context.Context, syncstep.TwoWayInput) (syncstep.TwoWayCycle, error) {
		return syncstep.TwoWayCycle{Every: time.Hour, Fields: []string{"email", "name"},
			Parked: []syncstep.ParkedConflict{{ID: 7, Fields: []string{"name"}}}}, nil
	})
	var asked syncstep.ResolveInput
	env.RegisterActivityWithOptions(func(_ context.Context, in syncstep.ResolveInput) (syncstep.ResolveResult, error) {
		asked = in
		return syncstep.ResolveResult{Conflict: in.Conflict, Resolution: "manual: b", ResolvedBy: "erin"}, nil
	}, activity.RegisterOptions{Name: syncstep.ResolveConflict.Name()})
	var unknown, badField, good updateResult
	env.RegisterDelayedCallback(func() {
		env.UpdateWorkflow(UpdateResolve, "u-1", unknown.callbacks(), syncstep.ResolveInput{Conflict: 99, Choose: "a"})
		env.UpdateWorkflow(UpdateResolve, "u-2", badField.callbacks(), syncstep.ResolveInput{Conflict: 7, Choose: "values", Values: map[string]any{"nmae": "x"}})
		env.UpdateWorkflow(UpdateResolve, "u-3", good.callbacks(), syncstep.ResolveInput{Conflict: 7, Choose: "b"})
	}, time.Minute)
	env.RegisterDelayedCallback(func() {
		if p := progressOf(t, env); len(p.Parked) != 0 || p.Counts.ManuallyResolved != 1 {
			t.Errorf("progress after the resolution: %+v", p)
		}
		env.CancelWorkflow()
	}, 2*time.Minute)
	env.ExecuteWorkflow(TwoWayWorkflow, syncstep.TwoWayInput{Integration: "crm"})
	if unknown.rejected == nil || !strings.Contains(unknown.rejected.Error(), "conflict 99 is not waiting") {
		t.Errorf("an unknown conflict: %+v", unknown)
	}
	if badField.rejected == nil || !strings.Contains(badField.rejected.Error(), "values.nmae: not a shared field") {
		t.Errorf("an unknown field: %+v", badField)
	}
	if !good.accepted || good.failed != nil || good.result.Resolution != "manual: b" {
		t.Errorf("a valid resolution: %+v", good)
	}
	if asked.Integration != "crm" || asked.UpdateID != "u-3" || asked.Choose != "b" {
		t.Errorf("the step was asked %+v", asked)
	}
}

// TestTwoWayWorkflow_ReplaysRecordedHistories replays a real run's history
// (recorded by tests/integration with
// -run TestTwoWay_ManualResolutionThroughATemporalCLIUpdate
// -record-histories=$PWD/workflows/twoway/testdata/histories): cycles,
// sync-now signals and resolve Updates. A change that makes the workflow
// non-deterministic for running histories fails here: put it behind
// workflow.GetVersion.
func TestTwoWayWorkflow_ReplaysRecordedHistories(t *testing.T) {
	replaytest.Replay(t, 1, "a two-way run with cycles, wake-ups and resolutions", func(r worker.WorkflowReplayer) {
		r.RegisterWorkflowWithOptions(TwoWayWorkflow, workflow.RegisterOptions{Name: WorkflowType})
	})
}
