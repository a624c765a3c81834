package reconcile

import (
	"context"
	"errors"
	"sync"
	"testing"

	"github.com/stretchr/testify/require"
	"go.temporal.io/sdk/activity"
	"go.temporal.io/sdk/testsuite"
	"go.temporal.io/sdk/workflow"

	"github.com/tetherflow/tether/activities/lib/failure"
	"github.com/tetherflow/tether/activities/lib/progress"
	"github.com/tetherflow/tether/activities/syncstep"
	"github.com/tetherflow/tether/workflows/datasync"
)

// fakeSteps stands in for the reconciliation's activities and records what
// the workflow asked of them.
type fakeSteps struct {
	mu        sync.Mutex
	busyFor   int // ReconcileBegin answers Busy this many times
	differing []int
	found     syncstep.ReconcileFound
	scans     []syncstep.ReconcileScanInput
	extras    []syncstep.ReconcileExtrasInput
	finished  []syncstep.ReconcileFinishInput
	repairs   []datasync.Input
	begins    int
}

func (f *fakeSteps) begin(_ context.Context, in syncstep.ReconcileBeginInput) (syncstep.ReconcilePlan, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.begins++
	if f.begins <= f.busyFor {
		return syncstep.ReconcilePlan{}, failure.Permanent(failure.TypeBusy, errors.New(`integration "x" is being written by another run`))
	}
	extras := in.Extras
	if extras == "" {
		extras = syncstep.ExtrasReport
	}
	return syncstep.ReconcilePlan{Definition: "fp", Chunks: 64, Extras: extras, BatchSize: 100, Table: "t"}, nil
}

func (f *fakeSteps) scan(_ context.Context, in syncstep.ReconcileScanInput) (syncstep.ReconcileScanOutput, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.scans = append(f.scans, in)
	return syncstep.ReconcileScanOutput{Pages: 3, Read: 250, Valid: 248, Invalid: 2, Staged: 10}, nil
}

func (f *fakeSteps) compare(context.Context, syncstep.ReconcileCompareInput) (syncstep.ReconcileCompareOutput, error) {
	return syncstep.ReconcileCompareOutput{DestinationRows: 247, Differing: f.differing}, nil
}

func (f *fakeSteps) classify(_ context.Context, in syncstep.ReconcileClassifyInput) (syncstep.ReconcileFound, error) {
	return f.found, nil
}

func (f *fakeSteps) handleExtras(_ context.Context, in syncstep.ReconcileExtrasInput) (int, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.extras = append(f.extras, in)
	return f.found.Extra, nil
}

func (f *fakeSteps) finish(_ context.Context, in syncstep.ReconcileFinishInput) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.finished = append(f.finished, in)
	return nil
}

// repair stands in for the child sync run.
func (f *fakeSteps) repair(_ workflow.Context, in datasync.Input) (datasync.Result, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.repairs = append(f.repairs, in)
	return datasync.Result{Status: progress.StatusCompleted, Counts: progress.Counts{Inserted: 2, Updated: 3}}, nil
}

func run(t *testing.T, f *fakeSteps, in Input) (syncstep.ReconcileReport, error) {
	t.Helper()
	var ts testsuite.WorkflowTestSuite
	env := ts.NewTestWorkflowEnvironment()
	reg := func(fn any, name string) { env.RegisterActivityWithOptions(fn, activity.RegisterOptions{Name: name}) }
	reg(f.begin, syncstep.ReconcileBeginName)
	reg(f.scan, syncstep.ReconcileScanName)
	reg(f.compare, syncstep.ReconcileCompareName)
	reg(f.classify, syncstep.ReconcileClassifyName)
	reg(f.handleExtras, syncstep.ReconcileExtrasName)
	reg(f.finish, syncstep.ReconcileFinishName)
	env.RegisterWorkflowWithOptions(f.repair, workflow.RegisterOptions{Name: datasync.WorkflowType})
	env.ExecuteWorkflow(ReconcileWorkflow, in)
	require.True(t, env.IsWorkflowCompleted())
	var rep syncstep.ReconcileReport
	err := env.GetWorkflowError()
	if err == nil {
		require.NoError(t, env.GetWorkflowResult(&rep))
	}
	return rep, err
}

func TestReconcile_NoDriftStopsAfterTheDigests(t *testing.T) {
	f := &fakeSteps{}
	rep, err := run(t, f, Input{Integration: "x", Extras: syncstep.ExtrasDelete})
	require.NoError(t, err)
	require.Len(t, f.scans, 1, "no chunk differs: the source is read once")
	require.Empty(t, f.repairs)
	require.Empty(t, f.extras)
	require.Equal(t, progress.StatusCompleted, rep.Status)
	require.Equal(t, 250, rep.SourceRead)
	require.Equal(t, 247, rep.DestinationRows)
	require.Len(t, f.finished, 1)
	require.Equal(t, progress.StatusCompleted, f.finished[0].Status)
}

func TestReconcile_DriftIsRepairedAndExtrasHandled(t *testing.T) {
	f := &fakeSteps{differing: []int{3, 9}, found: syncstep.ReconcileFound{Missing: 2, Changed: 3, Extra: 4}}
	rep, err := run(t, f, Input{Integration: "x", Extras: syncstep.ExtrasDelete})
	require.NoError(t, err)
	require.Len(t, f.scans, 2)
	require.Equal(t, []int{3, 9}, f.scans[1].Drill, "the second read keeps only the differing chunks")
	require.Len(t, f.repairs, 1)
	require.Equal(t, rep.ReconcileID, f.repairs[0].Repair, "the repair run writes under the reconciliation's lease")
	require.Len(t, f.extras, 1)
	require.Equal(t, syncstep.ExtrasDelete, f.extras[0].Policy)
	require.Equal(t, 5, rep.Repaired)
	require.Equal(t, 4, rep.ExtrasHandled)
	require.Equal(t, 500, rep.SourceRead)
	require.Equal(t, 2, rep.ChunksDiffering)
}

func TestReconcile_DryRunRepairsNothing(t *testing.T) {
	f := &fakeSteps{differing: []int{1}, found: syncstep.ReconcileFound{Missing: 1, Extra: 1}}
	rep, err := run(t, f, Input{Integration: "x", DryRun: true, Extras: syncstep.ExtrasDelete})
	require.NoError(t, err)
	require.Empty(t, f.repairs)
	require.Empty(t, f.extras)
	require.True(t, rep.DryRun)
	require.Equal(t, syncstep.ExtrasReport, rep.Extras)
	require.Equal(t, 1, rep.Missing)
}

func TestReconcile_BusyFailsOrWaits(t *testing.T) {
	f := &fakeSteps{busyFor: 1}
	_, err := run(t, f, Input{Integration: "x"})
	require.True(t, failure.IsType(err, failure.TypeBusy), "without wait a busy integration fails the run: %v", err)
	require.Empty(t, f.scans)

	f = &fakeSteps{busyFor: 3}
	rep, err := run(t, f, Input{Integration: "x", Wait: true})
	require.NoError(t, err)
	require.Equal(t, 4, f.begins, "with wait it asks again until the lease is free")
	require.Equal(t, progress.StatusCompleted, rep.Status)
}

func TestReconcile_IntegrationRequired(t *testing.T) {
	_, err := run(t, &fakeSteps{}, Input{})
	require.ErrorContains(t, err, `"integration" is required`)
}
