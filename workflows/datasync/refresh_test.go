package datasync

import (
	"context"
	"errors"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	"go.temporal.io/sdk/activity"
	"go.temporal.io/sdk/converter"
	"go.temporal.io/sdk/temporal"
	"go.temporal.io/sdk/testsuite"
	"go.temporal.io/sdk/workflow"

	"github.com/tetherflow/tether/activities/lib/failure"
	"github.com/tetherflow/tether/activities/lib/progress"
	"github.com/tetherflow/tether/activities/syncstep"
)

// fakeSweep stands in for SweepRefresh: it records its calls and deletes
// `deleted` rows (in the first destination).
type fakeSweep struct {
	mu      sync.Mutex
	deleted int
	fail    error
	delay   time.Duration
	calls   []syncstep.SweepRefreshInput
}

func (s *fakeSweep) sweep(ctx context.Context, in syncstep.SweepRefreshInput) (syncstep.SweepRefreshOutput, error) {
	s.mu.Lock()
	s.calls = append(s.calls, in)
	s.mu.Unlock()
	if s.delay > 0 {
		select {
		case <-time.After(s.delay):
		case <-ctx.Done():
			return syncstep.SweepRefreshOutput{}, ctx.Err()
		}
	}
	if s.fail != nil {
		return syncstep.SweepRefreshOutput{}, s.fail
	}
	return syncstep.SweepRefreshOutput{Deleted: s.deleted, Steps: []syncstep.SweptStep{{Step: 0, Name: "db", Deleted: s.deleted}}}, nil
}

// sweeps returns the calls so far.
func (s *fakeSweep) sweeps() []syncstep.SweepRefreshInput {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]syncstep.SweepRefreshInput(nil), s.calls...)
}

func newRefreshEnv(t *testing.T, f *fakeSteps, sw *fakeSweep) *testsuite.TestWorkflowEnvironment {
	t.Helper()
	var s testsuite.WorkflowTestSuite
	env := s.NewTestWorkflowEnvironment()
	env.RegisterWorkflowWithOptions(SyncWorkflow, workflow.RegisterOptions{Name: WorkflowType})
	reg := func(fn any, name string) {
		env.RegisterActivityWithOptions(fn, activity.RegisterOptions{Name: name})
	}
	reg(f.startRun, syncstep.StartRunName)
	reg(f.fetchPage, syncstep.FetchPageName)
	reg(f.validateBatch, syncstep.ValidateBatchName)
	reg(f.transformBatch, syncstep.TransformBatchName)
	// Later destinations of a saga apply nothing here: f records the
	// first one's batches.
	reg(func(ctx context.Context, in syncstep.ApplyInput) (syncstep.ApplyOutput, error) {
		if in.Step > 0 {
			return syncstep.ApplyOutput{}, nil
		}
		return f.applyBatch(ctx, in)
	}, syncstep.ApplyBatchName)
	reg(f.compensateBatch, syncstep.CompensateBatchName)
	reg(f.beginCompensation, syncstep.BeginCompensationName)
	reg(f.finishRun, syncstep.FinishRunName)
	reg(sw.sweep, syncstep.SweepRefreshName)
	return env
}

func TestSyncWorkflow_RefreshSweepsAfterTheLastBatch(t *testing.T) {
	f := &fakeSteps{pages: 4, perPage: 10, plan: syncstep.Plan{PagesInFlight: 3, InvalidThreshold: 0.05, Definition: "fp-1"}}
	sw := &fakeSweep{deleted: 7}
	env := newRefreshEnv(t, f, sw)
	env.ExecuteWorkflow(SyncWorkflow, Input{Integration: "crm-companies", Refresh: true})
	require.NoError(t, env.GetWorkflowError())

	require.Equal(t, []int{1, 2, 3, 4}, f.applied)
	for _, in := range f.applyInputs {
		require.Equal(t, "refresh", in.Kind, "every batch of a refresh records the keys it writes")
	}
	require.Len(t, sw.sweeps(), 1, "one sweep, after the last batch")
	call := sw.sweeps()[0]
	require.Equal(t, 5, call.Seq, "the sweep is the batch after the last one")
	require.Equal(t, "fp-1", call.Definition)
	require.False(t, call.Atomic)
	require.Equal(t, 4, call.Counts.Pages)
	require.Equal(t, 40, call.Counts.Inserted, "the sweep sees the counts of every batch")
	require.NotEmpty(t, call.RunID)

	var res Result
	require.NoError(t, env.GetWorkflowResult(&res))
	require.Equal(t, progress.StatusCompleted, res.Status)
	require.Equal(t, 7, res.Counts.Deleted)
	require.Equal(t, 40, res.Counts.Inserted)
	require.Equal(t, 5, res.Batches)
	require.Len(t, f.finished, 1)
	require.Equal(t, "refresh", f.finished[0].Kind)
	require.Equal(t, 7, f.finished[0].Counts.Deleted, "the run's record counts the deletions")
}

func TestSyncWorkflow_RefreshCountsDeletionsPerDestination(t *testing.T) {
	f := &fakeSteps{pages: 2, perPage: 10, plan: syncstep.Plan{PagesInFlight: 1, InvalidThreshold: 0.05, Steps: []string{"db", "api"}}}
	sw := &fakeSweep{deleted: 3}
	env := newRefreshEnv(t, f, sw)
	env.ExecuteWorkflow(SyncWorkflow, Input{Integration: "contacts-everywhere", Refresh: true})
	require.NoError(t, env.GetWorkflowError())
	require.Len(t, sw.sweeps(), 1)
	require.Equal(t, 3, sw.sweeps()[0].Seq)

	v, err := env.QueryWorkflow(QueryProgress)
	require.NoError(t, err)
	var rep progress.Report
	require.NoError(t, v.Get(&rep))
	require.Equal(t, 3, rep.Counts.Deleted)
	require.Equal(t, 3, rep.Destinations["db"].Deleted)
	require.Equal(t, 0, rep.Destinations["api"].Deleted, "HTTP destinations are not swept")
}

func TestSyncWorkflow_RefreshDoesNotSweep(t *testing.T) {
	tests := []struct {
		name       string
		steps      func() *fakeSteps
		in         Input
		wantErr    string // error type; "" for a completed run
		wantStatus string
	}{
		{
			name:       "a plain sync",
			steps:      func() *fakeSteps { return &fakeSteps{pages: 3, perPage: 10} },
			in:         Input{Integration: "crm-companies", Full: true},
			wantStatus: progress.StatusCompleted,
		},
		{
			name:       "a refresh stopped by maxPages",
			steps:      func() *fakeSteps { return &fakeSteps{pages: 10, perPage: 10} },
			in:         Input{Integration: "crm-companies", Refresh: true, MaxPages: 3},
			wantStatus: progress.StatusCompleted,
		},
		{
			name:       "a refresh over the invalid threshold",
			steps:      func() *fakeSteps { return &fakeSteps{pages: 3, perPage: 10, invalidPer: 2} },
			in:         Input{Integration: "crm-companies", Refresh: true},
			wantErr:    failure.TypeInvalidThreshold,
			wantStatus: progress.StatusFailed,
		},
		{
			name:       "a refresh whose read fails",
			steps:      func() *fakeSteps { return &fakeSteps{pages: 3, perPage: 10, failFetchAt: 2} },
			in:         Input{Integration: "crm-companies", Refresh: true},
			wantErr:    failure.TypeSourceAuth,
			wantStatus: progress.StatusFailed,
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			f := tt.steps()
			f.plan = syncstep.Plan{PagesInFlight: 2, InvalidThreshold: 0.05}
			sw := &fakeSweep{deleted: 5}
			env := newRefreshEnv(t, f, sw)
			env.ExecuteWorkflow(SyncWorkflow, tt.in)
			err := env.GetWorkflowError()
			if tt.wantErr == "" {
				require.NoError(t, err)
			} else {
				require.Equal(t, tt.wantErr, appErrorType(err), "got %v", err)
			}
			require.Empty(t, sw.sweeps(), "nothing may be deleted")
			require.Len(t, f.finished, 1)
			require.Equal(t, tt.wantStatus, f.finished[0].Status)
			require.Zero(t, f.finished[0].Counts.Deleted)
		})
	}
}

// An atomic refresh whose sweep fails is compensated from the sweep down to
// the first batch: the rows the sweep may have deleted come back too.
func TestSyncWorkflow_AtomicRefreshSweepFailureCompensatesEverything(t *testing.T) {
	f := &fakeSteps{pages: 3, perPage: 10, plan: syncstep.Plan{PagesInFlight: 2, Atomic: true, InvalidThreshold: 0.05}}
	sw := &fakeSweep{fail: failure.Permanent(failure.TypeSinkSQL, errors.New(`sweep "crm_companies": pq: permission denied (SQLSTATE 42501)`))}
	env := newRefreshEnv(t, f, sw)
	env.ExecuteWorkflow(SyncWorkflow, Input{Integration: "crm-companies", Refresh: true})
	err := env.GetWorkflowError()
	require.Error(t, err)
	require.Equal(t, failure.TypeSinkSQL, appErrorType(err))
	require.Contains(t, err.Error(), "SweepRefresh failed")
	require.Contains(t, err.Error(), "SQLSTATE 42501")
	require.Equal(t, []int{4, 3, 2, 1}, f.compensated)
	require.Equal(t, progress.StatusCompensated, f.finished[0].Status)
	require.Equal(t, "refresh", f.began[0].Kind)
}

func TestSyncWorkflow_AtomicRefreshCancelledDuringTheSweepIsCompensated(t *testing.T) {
	f := &fakeSteps{pages: 3, perPage: 10, plan: syncstep.Plan{PagesInFlight: 1, Atomic: true, InvalidThreshold: 0.05}}
	sw := &fakeSweep{deleted: 2, delay: 10 * time.Second}
	env := newRefreshEnv(t, f, sw)
	env.RegisterDelayedCallback(env.CancelWorkflow, time.Second)
	env.ExecuteWorkflow(SyncWorkflow, Input{Integration: "crm-companies", Refresh: true})
	err := env.GetWorkflowError()
	var canceled *temporal.CanceledError
	require.True(t, errors.As(err, &canceled), "got %v", err)
	require.Len(t, sw.sweeps(), 1, "cancelled while sweeping")
	require.Equal(t, []int{4, 3, 2, 1}, f.compensated)
	require.Equal(t, progress.StatusCompensated, f.finished[0].Status)
}

// A refresh that continues as new sweeps once, in its last execution,
// after every batch of every execution.
func TestSyncWorkflow_RefreshSweepsOnceAfterContinueAsNew(t *testing.T) {
	f := &fakeSteps{pages: 7, perPage: 10, plan: syncstep.Plan{PagesInFlight: 2, InvalidThreshold: 0.05}}
	sw := &fakeSweep{deleted: 4}
	in := Input{Integration: "crm-companies", Refresh: true, PagesPerExecution: 3}
	var res Result
	for exec := 1; ; exec++ {
		require.LessOrEqual(t, exec, 3, "the run should end in 3 executions")
		env := newRefreshEnv(t, f, sw)
		env.ExecuteWorkflow(SyncWorkflow, in)
		err := env.GetWorkflowError()
		var can *workflow.ContinueAsNewError
		if errors.As(err, &can) {
			require.Empty(t, sw.sweeps(), "no sweep before the last execution")
			in = Input{}
			require.NoError(t, converter.GetDefaultDataConverter().FromPayloads(can.Input, &in))
			require.True(t, in.Refresh)
			continue
		}
		require.NoError(t, err)
		require.NoError(t, env.GetWorkflowResult(&res))
		break
	}
	require.Len(t, f.applied, 7)
	require.Len(t, sw.sweeps(), 1)
	require.Equal(t, 8, sw.sweeps()[0].Seq)
	require.Equal(t, 7, sw.sweeps()[0].Counts.Pages)
	require.Equal(t, 4, res.Counts.Deleted)
	require.Equal(t, 3, res.Executions)
}
