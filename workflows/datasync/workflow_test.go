package datasync

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	"go.temporal.io/sdk/activity"
	"go.temporal.io/sdk/converter"
	"go.temporal.io/sdk/temporal"
	"go.temporal.io/sdk/testsuite"
	"go.temporal.io/sdk/workflow"

	"github.com/tetherflow/tether/activities/lib/cursor"
	"github.com/tetherflow/tether/activities/lib/failure"
	"github.com/tetherflow/tether/activities/lib/progress"
	"github.com/tetherflow/tether/activities/syncstep"
)

// fakeSteps stands in for the real activities: a source of pages of
// perPage records each, and a destination that records which batches were
// applied and compensated.
type fakeSteps struct {
	mu          sync.Mutex
	pages       int
	perPage     int
	plan        syncstep.Plan
	invalidPer  int // invalid records per page
	failFetchAt int // page that fails permanently (0 = none)
	failApplyAt int // seq whose apply fails permanently
	flakyApply  int // seq whose first apply attempt fails transiently
	fetchDelay  time.Duration
	total       int             // the total every page announces (0 = none)
	baseCounts  progress.Counts // StartRun's committed counts (a reset)
	startDelay  time.Duration
	// imagedBefore is the highest batch an earlier execution of the run
	// left before-images for (a reset); BeginCompensation reports it.
	imagedBefore int
	noBegin      bool // BeginCompensation fails
	began        []syncstep.BeginCompensationInput

	applied     []int
	compensated []int
	finished    []syncstep.FinishRunInput
	fetchSince  []cursor.Checkpoint
	applyCounts []progress.Counts
	applyInputs []syncstep.ApplyInput
	attempts    map[int]int
}

// fetchQuarantined serves quarantine IDs 1..pages*perPage in pages.
func (f *fakeSteps) fetchQuarantined(_ context.Context, in syncstep.FetchQuarantinedInput) (syncstep.FetchPageOutput, error) {
	out := syncstep.FetchPageOutput{Ref: in.Ref}
	for id := in.AfterID + 1; id <= in.UpTo && len(out.QuarantineIDs) < in.Limit; id++ {
		out.QuarantineIDs = append(out.QuarantineIDs, id)
	}
	out.Count = len(out.QuarantineIDs)
	out.Done = out.Count < in.Limit || in.AfterID+int64(out.Count) >= in.UpTo
	out.Next = cursor.Position{Offset: int(in.AfterID) + out.Count}
	return out, nil
}

func (f *fakeSteps) register(env *testsuite.TestWorkflowEnvironment) {
	reg := func(fn any, name string) {
		env.RegisterActivityWithOptions(fn, activity.RegisterOptions{Name: name})
	}
	reg(f.startRun, syncstep.StartRunName)
	reg(f.fetchPage, syncstep.FetchPageName)
	reg(f.fetchQuarantined, syncstep.FetchQuarantinedName)
	reg(f.validateBatch, syncstep.ValidateBatchName)
	reg(f.transformBatch, syncstep.TransformBatchName)
	reg(f.applyBatch, syncstep.ApplyBatchName)
	reg(f.compensateBatch, syncstep.CompensateBatchName)
	reg(f.beginCompensation, syncstep.BeginCompensationName)
	reg(f.finishRun, syncstep.FinishRunName)
}

func (f *fakeSteps) beginCompensation(_ context.Context, in syncstep.BeginCompensationInput) (syncstep.BeginCompensationOutput, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.began = append(f.began, in)
	if f.noBegin {
		return syncstep.BeginCompensationOutput{}, failure.Permanent(failure.TypeSinkUnavailable, errors.New("database is down"))
	}
	last := f.imagedBefore
	if n := len(f.applied); n > last {
		last = n
	}
	return syncstep.BeginCompensationOutput{LastBatch: last}, nil
}

func (f *fakeSteps) startRun(ctx context.Context, in syncstep.StartRunInput) (syncstep.StartRunOutput, error) {
	if f.startDelay > 0 {
		select {
		case <-time.After(f.startDelay):
		case <-ctx.Done():
			return syncstep.StartRunOutput{}, ctx.Err()
		}
	}
	p := f.plan
	p.Integration = in.Integration
	if p.BatchSize == 0 {
		p.BatchSize = f.perPage
	}
	return syncstep.StartRunOutput{Plan: p, Counts: f.baseCounts}, nil
}

func (f *fakeSteps) fetchPage(ctx context.Context, in syncstep.FetchPageInput) (syncstep.FetchPageOutput, error) {
	f.mu.Lock()
	f.fetchSince = append(f.fetchSince, in.Since)
	f.mu.Unlock()
	if f.fetchDelay > 0 {
		select {
		case <-time.After(f.fetchDelay):
		case <-ctx.Done():
			return syncstep.FetchPageOutput{}, ctx.Err()
		}
	}
	page := in.Position.Page
	if page == 0 {
		page = 1
	}
	if f.plan.Incremental {
		page = in.Ref.Page
	}
	if page == f.failFetchAt {
		return syncstep.FetchPageOutput{}, failure.Permanent(failure.TypeSourceAuth,
			fmt.Errorf("GET http://127.0.0.1/v1/contacts?page=%d: 401 Unauthorized", page), 401)
	}
	out := syncstep.FetchPageOutput{Ref: in.Ref, Count: f.perPage, Next: cursor.Position{Page: page + 1}, Done: page >= f.pages, Total: f.total}
	if f.plan.Incremental {
		out.Last = cursor.Checkpoint{Cursor: fmt.Sprintf("2025-01-%02dT00:00:00Z", page), Key: fmt.Sprint(page * f.perPage)}
		out.Advanced = true
	}
	return out, nil
}

func (f *fakeSteps) validateBatch(_ context.Context, in syncstep.BatchInput) (syncstep.ValidateOutput, error) {
	return syncstep.ValidateOutput{Valid: f.perPage - f.invalidPer, Invalid: f.invalidPer}, nil
}

func (f *fakeSteps) transformBatch(_ context.Context, in syncstep.BatchInput) (syncstep.TransformOutput, error) {
	return syncstep.TransformOutput{Transformed: f.perPage - f.invalidPer}, nil
}

func (f *fakeSteps) applyBatch(_ context.Context, in syncstep.ApplyInput) (syncstep.ApplyOutput, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.attempts == nil {
		f.attempts = map[int]int{}
	}
	f.attempts[in.Seq]++
	if in.Seq == f.failApplyAt {
		return syncstep.ApplyOutput{}, failure.Permanent(failure.TypeSinkSQL,
			errors.New(`upsert into "contacts": pq: permission denied for table contacts (SQLSTATE 42501)`))
	}
	if in.Seq == f.flakyApply && f.attempts[in.Seq] == 1 {
		return syncstep.ApplyOutput{}, failure.Transient(failure.TypeSinkUnavailable, errors.New("connection reset"))
	}
	if len(f.applied) > 0 && f.applied[len(f.applied)-1] != in.Seq-1 {
		return syncstep.ApplyOutput{}, fmt.Errorf("apply out of order: %d after %v", in.Seq, f.applied)
	}
	f.applied = append(f.applied, in.Seq)
	f.applyCounts = append(f.applyCounts, in.Counts)
	f.applyInputs = append(f.applyInputs, in)
	return syncstep.ApplyOutput{Inserted: f.perPage - f.invalidPer}, nil
}

func (f *fakeSteps) compensateBatch(_ context.Context, in syncstep.CompensateInput) (syncstep.CompensateOutput, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.compensated = append(f.compensated, in.Seq)
	return syncstep.CompensateOutput{Restored: f.perPage}, nil
}

func (f *fakeSteps) finishRun(_ context.Context, in syncstep.FinishRunInput) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.finished = append(f.finished, in)
	return nil
}

func newEnv(t *testing.T, f *fakeSteps) *testsuite.TestWorkflowEnvironment {
	t.Helper()
	var s testsuite.WorkflowTestSuite
	env := s.NewTestWorkflowEnvironment()
	env.RegisterWorkflowWithOptions(SyncWorkflow, workflow.RegisterOptions{Name: WorkflowType})
	f.register(env)
	return env
}

func appErrorType(err error) string {
	var appErr *temporal.ApplicationError
	if errors.As(err, &appErr) {
		return appErr.Type()
	}
	return ""
}

func TestSyncWorkflow_Completes(t *testing.T) {
	f := &fakeSteps{pages: 5, perPage: 100, plan: syncstep.Plan{PagesInFlight: 3, InvalidThreshold: 0.05}}
	env := newEnv(t, f)
	env.ExecuteWorkflow(SyncWorkflow, Input{Integration: "crm-contacts"})

	require.True(t, env.IsWorkflowCompleted())
	require.NoError(t, env.GetWorkflowError())
	var res Result
	require.NoError(t, env.GetWorkflowResult(&res))
	require.Equal(t, progress.StatusCompleted, res.Status)
	require.Equal(t, 5, res.Counts.Pages)
	require.Equal(t, 500, res.Counts.Fetched)
	require.Equal(t, 500, res.Counts.Inserted)
	require.Equal(t, []int{1, 2, 3, 4, 5}, f.applied, "applies run in page order")
	require.Empty(t, f.compensated)
	require.Len(t, f.finished, 1)
	require.Equal(t, progress.StatusCompleted, f.finished[0].Status)

	report, err := env.QueryWorkflow(QueryProgress)
	require.NoError(t, err)
	var rep progress.Report
	require.NoError(t, report.Get(&rep))
	require.Equal(t, 500, rep.Counts.Inserted)
	require.True(t, rep.Done)
}

func TestSyncWorkflow_RequiresIntegration(t *testing.T) {
	env := newEnv(t, &fakeSteps{})
	env.ExecuteWorkflow(SyncWorkflow, Input{})
	err := env.GetWorkflowError()
	require.Error(t, err)
	require.Equal(t, failure.TypeConfig, appErrorType(err))
	require.Contains(t, err.Error(), `"integration" is required`)
}

func TestSyncWorkflow_PermanentFetchFailure(t *testing.T) {
	tests := []struct {
		name       string
		atomic     bool
		wantStatus string
		wantComp   []int
	}{
		{name: "non-atomic keeps committed batches", atomic: false, wantStatus: progress.StatusFailed},
		{name: "atomic compensates in reverse", atomic: true, wantStatus: progress.StatusCompensated, wantComp: []int{2, 1}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			f := &fakeSteps{pages: 5, perPage: 10, failFetchAt: 3, plan: syncstep.Plan{PagesInFlight: 1, Atomic: tt.atomic, InvalidThreshold: 0.05}}
			env := newEnv(t, f)
			env.ExecuteWorkflow(SyncWorkflow, Input{Integration: "crm-contacts"})
			err := env.GetWorkflowError()
			require.Error(t, err)
			require.Equal(t, failure.TypeSourceAuth, appErrorType(err))
			require.Contains(t, err.Error(), "FetchPage failed on page 3")
			require.Contains(t, err.Error(), "401 Unauthorized")
			require.Equal(t, []int{1, 2}, f.applied)
			require.Equal(t, tt.wantComp, f.compensated)
			require.Len(t, f.finished, 1)
			require.Equal(t, tt.wantStatus, f.finished[0].Status)
			require.Equal(t, failure.TypeSourceAuth, f.finished[0].ErrorType)
		})
	}
}

func TestSyncWorkflow_ApplyFailureCompensatesEarlierBatches(t *testing.T) {
	f := &fakeSteps{pages: 4, perPage: 10, failApplyAt: 3, plan: syncstep.Plan{PagesInFlight: 4, Atomic: true, InvalidThreshold: 0.05}}
	env := newEnv(t, f)
	env.ExecuteWorkflow(SyncWorkflow, Input{Integration: "crm-contacts"})
	err := env.GetWorkflowError()
	require.Error(t, err)
	require.Equal(t, failure.TypeSinkSQL, appErrorType(err))
	require.Contains(t, err.Error(), "ApplyBatch failed on page 3")
	require.Contains(t, err.Error(), "SQLSTATE 42501")
	require.Equal(t, []int{1, 2}, f.applied)
	// Seq 3 is compensated too: its transaction rolled back, so restoring
	// its (empty) before-images is a no-op, and a commit whose completion was
	// lost would be undone.
	require.Equal(t, []int{3, 2, 1}, f.compensated)
}

func TestSyncWorkflow_TransientApplyRetried(t *testing.T) {
	f := &fakeSteps{pages: 3, perPage: 10, flakyApply: 2, plan: syncstep.Plan{PagesInFlight: 2, InvalidThreshold: 0.05}}
	env := newEnv(t, f)
	env.ExecuteWorkflow(SyncWorkflow, Input{Integration: "crm-contacts"})
	require.NoError(t, env.GetWorkflowError())
	require.Equal(t, []int{1, 2, 3}, f.applied)
	require.Equal(t, 2, f.attempts[2])
}

func TestSyncWorkflow_InvalidThreshold(t *testing.T) {
	tests := []struct {
		name       string
		invalidPer int
		wantErr    bool
	}{
		{name: "3% passes", invalidPer: 3},
		{name: "10% fails with counts", invalidPer: 10, wantErr: true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			f := &fakeSteps{pages: 20, perPage: 100, invalidPer: tt.invalidPer, plan: syncstep.Plan{PagesInFlight: 2, InvalidThreshold: 0.05}}
			env := newEnv(t, f)
			env.ExecuteWorkflow(SyncWorkflow, Input{Integration: "crm-contacts"})
			err := env.GetWorkflowError()
			if !tt.wantErr {
				require.NoError(t, err)
				var res Result
				require.NoError(t, env.GetWorkflowResult(&res))
				require.Equal(t, 60, res.Counts.Invalid)
				return
			}
			require.Error(t, err)
			require.Equal(t, failure.TypeInvalidThreshold, appErrorType(err))
			require.Contains(t, err.Error(), "records invalid (10.0%), over the integration's threshold of 5.0%")
			require.Less(t, len(f.applied), 20, "the run stops early")
		})
	}
}

func TestSyncWorkflow_CancelCompensates(t *testing.T) {
	f := &fakeSteps{pages: 50, perPage: 10, fetchDelay: time.Second, plan: syncstep.Plan{PagesInFlight: 1, Atomic: true, InvalidThreshold: 0.05}}
	env := newEnv(t, f)
	env.RegisterDelayedCallback(env.CancelWorkflow, 5500*time.Millisecond)
	env.ExecuteWorkflow(SyncWorkflow, Input{Integration: "crm-contacts"})
	err := env.GetWorkflowError()
	require.Error(t, err)
	var canceled *temporal.CanceledError
	require.True(t, errors.As(err, &canceled), "got %v", err)
	require.NotEmpty(t, f.applied)
	want := make([]int, 0, len(f.applied))
	for i := len(f.applied); i >= 1; i-- {
		want = append(want, i)
	}
	require.Equal(t, want, f.compensated[len(f.compensated)-len(want):])
	require.Equal(t, progress.StatusCompensated, f.finished[len(f.finished)-1].Status)
}

func TestSyncWorkflow_ContinuesAsNew(t *testing.T) {
	f := &fakeSteps{pages: maxPagesPerExecution + 10, perPage: 1, plan: syncstep.Plan{PagesInFlight: 4, InvalidThreshold: 0.05}}
	env := newEnv(t, f)
	env.ExecuteWorkflow(SyncWorkflow, Input{Integration: "crm-contacts"})
	err := env.GetWorkflowError()
	var can *workflow.ContinueAsNewError
	require.True(t, errors.As(err, &can), "got %v", err)
	require.Len(t, f.applied, maxPagesPerExecution, "in-flight pages drain before continuing as new")
	require.Empty(t, f.finished, "the run is not finished yet")

	// The next execution carries the state and finishes the run.
	var next Input
	require.NoError(t, converter.GetDefaultDataConverter().FromPayloads(can.Input, &next))
	require.NotNil(t, next.State)
	require.Equal(t, maxPagesPerExecution, next.State.Seq)
	require.Equal(t, cursor.Position{Page: maxPagesPerExecution + 1}, next.State.Position)

	env2 := newEnv(t, f)
	env2.ExecuteWorkflow(SyncWorkflow, next)
	require.NoError(t, env2.GetWorkflowError())
	var res Result
	require.NoError(t, env2.GetWorkflowResult(&res))
	require.Equal(t, maxPagesPerExecution+10, res.Counts.Pages)
	require.Equal(t, maxPagesPerExecution+10, res.Batches)
	require.Equal(t, 2, res.Executions)
	require.Len(t, f.applied, maxPagesPerExecution+10)
}

func TestSyncWorkflow_IncrementalAdvancesSince(t *testing.T) {
	f := &fakeSteps{pages: 3, perPage: 10, plan: syncstep.Plan{PagesInFlight: 2, Incremental: true, InvalidThreshold: 0.05,
		Since: cursor.Checkpoint{Cursor: "1970-01-01T00:00:00Z"}}}
	env := newEnv(t, f)
	env.ExecuteWorkflow(SyncWorkflow, Input{Integration: "crm-contacts"})
	require.NoError(t, env.GetWorkflowError())
	require.Equal(t, []cursor.Checkpoint{
		{Cursor: "1970-01-01T00:00:00Z"},
		{Cursor: "2025-01-01T00:00:00Z", Key: "10"},
		{Cursor: "2025-01-02T00:00:00Z", Key: "20"},
	}, f.fetchSince)
	var res Result
	require.NoError(t, env.GetWorkflowResult(&res))
	require.Equal(t, cursor.Checkpoint{Cursor: "2025-01-03T00:00:00Z", Key: "30"}, res.To)
}

func TestSyncWorkflow_MaxPages(t *testing.T) {
	f := &fakeSteps{pages: 10, perPage: 5, plan: syncstep.Plan{PagesInFlight: 2, InvalidThreshold: 0.05}}
	env := newEnv(t, f)
	env.ExecuteWorkflow(SyncWorkflow, Input{Integration: "crm-contacts", MaxPages: 3})
	require.NoError(t, env.GetWorkflowError())
	require.Equal(t, []int{1, 2, 3}, f.applied)
}

func TestSyncWorkflow_ReplayRunsQuarantinedRecordsThroughTheSteps(t *testing.T) {
	f := &fakeSteps{perPage: 10, plan: syncstep.Plan{PagesInFlight: 2, InvalidThreshold: 1, ReplayUpTo: 25, BatchSize: 10}}
	env := newEnv(t, f)
	env.ExecuteWorkflow(SyncWorkflow, Input{Integration: "crm-contacts", Replay: true})
	require.NoError(t, env.GetWorkflowError())
	require.Len(t, f.applyInputs, 3)
	var ids []int64
	for _, in := range f.applyInputs {
		require.True(t, in.Replay, "a replay batch must not move the checkpoint")
		ids = append(ids, in.QuarantineIDs...)
	}
	require.Len(t, ids, 25)
	require.Equal(t, int64(1), ids[0])
	require.Equal(t, int64(25), ids[24])
	require.Equal(t, "replay", f.finished[0].Kind)
}

// A reset execution numbers its batches afresh: batches an earlier
// execution applied (before-images up to seq 4) are compensated too, after
// BeginCompensation fenced the run.
func TestSyncWorkflow_CompensatesBatchesOfAnEarlierExecution(t *testing.T) {
	f := &fakeSteps{pages: 5, perPage: 10, failFetchAt: 3, imagedBefore: 4,
		plan: syncstep.Plan{PagesInFlight: 1, Atomic: true, InvalidThreshold: 0.05}}
	env := newEnv(t, f)
	env.ExecuteWorkflow(SyncWorkflow, Input{Integration: "crm-contacts"})
	require.Error(t, env.GetWorkflowError())
	require.Equal(t, []int{1, 2}, f.applied)
	require.Len(t, f.began, 1)
	require.Equal(t, "sync", f.began[0].Kind)
	require.Equal(t, []int{4, 3, 2, 1}, f.compensated)
	require.Equal(t, progress.StatusCompensated, f.finished[0].Status)
}

// When the fence cannot be set, the execution's own batches are still undone.
func TestSyncWorkflow_CompensatesWhenTheFenceFails(t *testing.T) {
	f := &fakeSteps{pages: 5, perPage: 10, failFetchAt: 3, noBegin: true,
		plan: syncstep.Plan{PagesInFlight: 1, Atomic: true, InvalidThreshold: 0.05}}
	env := newEnv(t, f)
	env.ExecuteWorkflow(SyncWorkflow, Input{Integration: "crm-contacts"})
	require.Error(t, env.GetWorkflowError())
	require.Equal(t, []int{2, 1}, f.compensated)
	require.Equal(t, progress.StatusCompensated, f.finished[0].Status)
}

// An atomic run failing before any batch has nothing to undo: Failed.
func TestSyncWorkflow_AtomicFailureBeforeAnyBatch(t *testing.T) {
	f := &fakeSteps{pages: 5, perPage: 10, failFetchAt: 1, plan: syncstep.Plan{PagesInFlight: 1, Atomic: true, InvalidThreshold: 0.05}}
	env := newEnv(t, f)
	env.ExecuteWorkflow(SyncWorkflow, Input{Integration: "crm-contacts"})
	require.Error(t, env.GetWorkflowError())
	require.Len(t, f.began, 1)
	require.Empty(t, f.compensated)
	require.Equal(t, progress.StatusFailed, f.finished[0].Status)
}

// Cancelled while StartRun runs: the run ends Cancelled, not Failed, and
// its end is recorded.
func TestSyncWorkflow_CancelDuringStartRun(t *testing.T) {
	f := &fakeSteps{pages: 5, perPage: 10, startDelay: 10 * time.Second, plan: syncstep.Plan{PagesInFlight: 1, InvalidThreshold: 0.05}}
	env := newEnv(t, f)
	env.RegisterDelayedCallback(env.CancelWorkflow, time.Second)
	env.ExecuteWorkflow(SyncWorkflow, Input{Integration: "crm-contacts"})
	err := env.GetWorkflowError()
	var canceled *temporal.CanceledError
	require.True(t, errors.As(err, &canceled), "got %v", err)
	require.Len(t, f.finished, 1)
	require.Equal(t, progress.StatusCancelled, f.finished[0].Status)
	require.Empty(t, f.applied)
}
