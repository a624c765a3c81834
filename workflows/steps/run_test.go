package steps_test

import (
	"context"
	"errors"
	"slices"
	"strings"
	"testing"
	"time"

	"go.temporal.io/sdk/activity"
	"go.temporal.io/sdk/testsuite"
	"go.temporal.io/sdk/workflow"

	"github.com/tetherflow/tether/activities/lib/cursor"
	"github.com/tetherflow/tether/activities/lib/progress"
	"github.com/tetherflow/tether/activities/syncstep"
	"github.com/tetherflow/tether/workflows/steps"
)

// fakeSteps stand in for tether's activities: a source of three pages of
// two records, a saga of two destinations.
type fakeSteps struct {
	plan        syncstep.Plan
	fetched     []syncstep.FetchPageInput
	applied     []syncstep.ApplyInput
	compensated []syncstep.CompensateInput
	finished    []syncstep.FinishRunInput
}

func newFakes() *fakeSteps {
	return &fakeSteps{plan: syncstep.Plan{Integration: "people", BatchSize: 2, Atomic: true, Incremental: true,
		Steps: []string{"api", "table"}, Definition: "v1-test", Since: cursor.Checkpoint{Cursor: "0"}}}
}

func (f *fakeSteps) register(env *testsuite.TestWorkflowEnvironment) {
	reg := func(fn any, a interface{ Name() string }) {
		env.RegisterActivityWithOptions(fn, activity.RegisterOptions{Name: a.Name()})
	}
	reg(func(_ context.Context, in syncstep.StartRunInput) (syncstep.StartRunOutput, error) {
		p := f.plan
		p.Integration = in.Integration
		return syncstep.StartRunOutput{Plan: p}, nil
	}, syncstep.StartRun)
	reg(func(_ context.Context, in syncstep.FetchPageInput) (syncstep.FetchPageOutput, error) {
		f.fetched = append(f.fetched, in)
		n := len(f.fetched)
		last := cursor.Checkpoint{Cursor: string(rune('0' + 2*n)), Key: "k"}
		return syncstep.FetchPageOutput{Ref: in.Ref, Count: 2, Done: n == 3, Last: last, Advanced: true}, nil
	}, syncstep.FetchPage)
	reg(func(_ context.Context, in syncstep.StageRecordsInput) (syncstep.FetchPageOutput, error) {
		return syncstep.FetchPageOutput{Ref: in.Ref, Count: len(in.Records), Done: true}, nil
	}, syncstep.StageRecords)
	reg(func(context.Context, syncstep.BatchInput) (syncstep.ValidateOutput, error) {
		return syncstep.ValidateOutput{Valid: 2}, nil
	}, syncstep.ValidateBatch)
	reg(func(context.Context, syncstep.BatchInput) (syncstep.TransformOutput, error) {
		return syncstep.TransformOutput{Transformed: 2}, nil
	}, syncstep.TransformBatch)
	reg(func(_ context.Context, in syncstep.ApplyInput) (syncstep.ApplyOutput, error) {
		f.applied = append(f.applied, in)
		out := syncstep.ApplyOutput{Inserted: 2}
		if in.Step == 0 {
			out.Refused = []int{1} // the API refuses the second row
			out.Rejected, out.Inserted = 1, 1
		}
		return out, nil
	}, syncstep.ApplyBatch)
	reg(func(context.Context, syncstep.BeginCompensationInput) (syncstep.BeginCompensationOutput, error) {
		return syncstep.BeginCompensationOutput{}, nil
	}, syncstep.BeginCompensation)
	reg(func(_ context.Context, in syncstep.CompensateInput) (syncstep.CompensateOutput, error) {
		f.compensated = append(f.compensated, in)
		return syncstep.CompensateOutput{}, nil
	}, syncstep.CompensateBatch)
	reg(func(_ context.Context, in syncstep.FinishRunInput) error {
		f.finished = append(f.finished, in)
		return nil
	}, syncstep.FinishRun)
}

// execute runs wf, a workflow of the test, with the fakes.
func execute(t *testing.T, f *fakeSteps, wf func(workflow.Context) (steps.Result, error)) (steps.Result, error) {
	t.Helper()
	env := (&testsuite.WorkflowTestSuite{}).NewTestWorkflowEnvironment()
	f.register(env)
	env.RegisterWorkflowWithOptions(wf, workflow.RegisterOptions{Name: "test"})
	env.ExecuteWorkflow("test")
	var res steps.Result
	err := env.GetWorkflowError()
	if err == nil {
		if gerr := env.GetWorkflowResult(&res); gerr != nil {
			t.Fatal(gerr)
		}
	}
	return res, err
}

// syncAll reads the whole source through every step, as the sync workflow
// does.
func syncAll(ctx workflow.Context) (res steps.Result, err error) {
	run, err := steps.Start(ctx, "people", steps.Options{Trigger: "test"})
	if err != nil {
		return steps.Result{}, err
	}
	defer func() { res, err = run.Finish(ctx, err) }()
	for !run.Done() {
		p, err := run.Fetch(ctx)
		if err != nil {
			return steps.Result{}, err
		}
		if _, err := run.Validate(ctx, p); err != nil {
			return steps.Result{}, err
		}
		if _, err := run.Transform(ctx, p); err != nil {
			return steps.Result{}, err
		}
		if _, err := run.Apply(ctx, p); err != nil {
			return steps.Result{}, err
		}
	}
	return steps.Result{}, nil
}

func TestRun_SourceRunAppliesEveryPageInOrderWithItsCheckpoint(t *testing.T) {
	f := newFakes()
	res, err := execute(t, f, syncAll)
	if err != nil {
		t.Fatal(err)
	}
	if len(f.fetched) != 3 {
		t.Fatalf("%d pages fetched, want 3", len(f.fetched))
	}
	// Each page is read "since" the previous one's last record.
	if f.fetched[1].Since.Cursor != "2" || f.fetched[2].Since.Cursor != "4" {
		t.Errorf("pages read since %v and %v, want 2 and 4", f.fetched[1].Since, f.fetched[2].Since)
	}
	if len(f.applied) != 6 {
		t.Fatalf("%d applies, want every page to both destinations", len(f.applied))
	}
	for i, a := range f.applied {
		seq, step := i/2+1, i%2
		if a.Seq != seq || a.Step != step || a.Kind != "" {
			t.Errorf("apply %d: batch %d step %d kind %q, want batch %d step %d of a sync", i, a.Seq, a.Step, a.Kind, seq, step)
		}
		if want := string(rune('0' + 2*seq)); a.Checkpoint.Cursor != want {
			t.Errorf("apply %d saves checkpoint %v, want the page's last (%s)", i, a.Checkpoint, want)
		}
		// The row the API refused is not sent to the table.
		if step == 1 && !slices.Equal(a.Skip, []int{1}) {
			t.Errorf("apply %d skips %v, want the refused row [1]", i, a.Skip)
		}
	}
	c := res.Counts
	if res.Status != progress.StatusCompleted || c.Pages != 3 || c.Fetched != 6 || c.Inserted != 3 || c.Invalid != 3 || res.Batches != 3 {
		t.Errorf("result %+v", res)
	}
	if len(f.finished) != 1 || f.finished[0].Status != progress.StatusCompleted || f.finished[0].To.Cursor != "6" {
		t.Errorf("finished %+v, want completed at checkpoint 6", f.finished)
	}
}

func TestRun_CompensateUndoesEveryAppliedBatchLastFirst(t *testing.T) {
	f := newFakes()
	res, err := execute(t, f, func(ctx workflow.Context) (res steps.Result, err error) {
		run, err := steps.Start(ctx, "people", steps.Options{Records: true})
		if err != nil {
			return steps.Result{}, err
		}
		defer func() { res, err = run.Finish(ctx, err) }()
		for i := range 2 {
			p, err := run.Stage(ctx, map[string]any{"id": i})
			if err != nil {
				return steps.Result{}, err
			}
			if _, err := run.ApplyStep(ctx, p, "api"); err != nil {
				return steps.Result{}, err
			}
			if i == 0 {
				if _, err := run.ApplyStep(ctx, p, "table"); err != nil {
					return steps.Result{}, err
				}
			}
		}
		return steps.Result{}, run.Compensate(ctx)
	})
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	for _, c := range f.compensated {
		got = append(got, string(rune('0'+c.Seq))+"/"+string(rune('0'+c.Step)))
	}
	// Batch 2 reached the API only; batch 1 both destinations.
	if !slices.Equal(got, []string{"2/0", "1/1", "1/0"}) {
		t.Errorf("compensated %v, want 2/0 1/1 1/0", got)
	}
	for _, a := range f.applied {
		if a.Kind != "records" || !a.Checkpoint.IsZero() {
			t.Errorf("a run of records applied %+v: want kind records and no checkpoint", a)
		}
	}
	if res.Status != progress.StatusCompensated || f.finished[0].Status != progress.StatusCompensated {
		t.Errorf("run ended %s (recorded %s), want %s", res.Status, f.finished[0].Status, progress.StatusCompensated)
	}
}

func TestRun_MisuseIsRefusedSayingWhat(t *testing.T) {
	tests := []struct {
		name string
		wf   func(ctx workflow.Context, run *steps.Run) error
		want string
	}{
		{"fetch in a run of records", func(ctx workflow.Context, run *steps.Run) error {
			_, err := run.Fetch(ctx)
			return err
		}, "a run of records stages the workflow's own records"},
		{"destination out of order", func(ctx workflow.Context, run *steps.Run) error {
			p, err := run.Stage(ctx, map[string]any{"id": 1})
			if err != nil {
				return err
			}
			_, err = run.ApplyStep(ctx, p, "table")
			return err
		}, `goes to destination "api" next`},
		{"applied twice", func(ctx workflow.Context, run *steps.Run) error {
			p, err := run.Stage(ctx, map[string]any{"id": 1})
			if err != nil {
				return err
			}
			if _, err := run.Apply(ctx, p); err != nil {
				return err
			}
			_, err = run.ApplyStep(ctx, p, "api")
			return err
		}, "applied to every destination already"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			f := newFakes()
			_, err := execute(t, f, func(ctx workflow.Context) (steps.Result, error) {
				run, err := steps.Start(ctx, "people", steps.Options{Records: true})
				if err != nil {
					return steps.Result{}, err
				}
				return run.Finish(ctx, tt.wf(ctx, run))
			})
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Errorf("error %v, want it to say %q", err, tt.want)
			}
			if len(f.finished) != 1 || f.finished[0].Status != progress.StatusFailed {
				t.Errorf("finished %+v, want the run recorded failed", f.finished)
			}
		})
	}
}

func TestRun_SourceRunPagesApplyInFetchOrder(t *testing.T) {
	f := newFakes()
	_, err := execute(t, f, func(ctx workflow.Context) (steps.Result, error) {
		run, err := steps.Start(ctx, "people", steps.Options{})
		if err != nil {
			return steps.Result{}, err
		}
		if _, err := run.Fetch(ctx); err != nil {
			return steps.Result{}, err
		}
		second, err := run.Fetch(ctx)
		if err != nil {
			return steps.Result{}, err
		}
		_, err = run.Apply(ctx, second)
		return run.Finish(ctx, err)
	})
	if err == nil || !strings.Contains(err.Error(), "in the order fetched") {
		t.Errorf("applying page 2 before page 1: %v, want it refused", err)
	}
	if len(f.applied) != 0 {
		t.Errorf("applied %+v", f.applied)
	}
}

func TestSaga_CompensatesLastFirstAndReportsEveryFailure(t *testing.T) {
	var order []string
	_, err := execute(t, newFakes(), func(ctx workflow.Context) (steps.Result, error) {
		var saga steps.Saga
		for _, name := range []string{"a", "b", "c"} {
			saga.Add("undo "+name, func(workflow.Context) error {
				order = append(order, name)
				if name == "b" {
					return errors.New("b is gone")
				}
				return nil
			})
		}
		err := saga.Compensate(ctx)
		if again := saga.Compensate(ctx); again != nil || len(order) != 3 {
			return steps.Result{}, errors.New("a second Compensate ran compensations again")
		}
		return steps.Result{}, err
	})
	if !slices.Equal(order, []string{"c", "b", "a"}) {
		t.Errorf("compensated %v, want c b a", order)
	}
	if err == nil || !strings.Contains(err.Error(), `compensation "undo b": b is gone`) {
		t.Errorf("error %v, want the failed compensation named", err)
	}
}

// TestApplyWhenApproved: the README's example applies an approved record
// and only stages and checks a rejected one.
func TestApplyWhenApproved(t *testing.T) {
	for _, approve := range []bool{true, false} {
		f := newFakes()
		f.plan.Steps = nil
		env := (&testsuite.WorkflowTestSuite{}).NewTestWorkflowEnvironment()
		f.register(env)
		env.RegisterDelayedCallback(func() {
			env.UpdateWorkflow("approve", "u", &testsuite.TestUpdateCallback{
				OnReject: func(err error) { t.Error(err) }, OnAccept: func() {}, OnComplete: func(any, error) {}}, approve)
		}, time.Hour)
		env.ExecuteWorkflow(ApplyWhenApproved, Approval{Record: []byte(`{"id": 1}`)})
		var res steps.Result
		if err := env.GetWorkflowResult(&res); err != nil {
			t.Fatal(err)
		}
		if applied := len(f.applied) == 1; applied != approve || res.Status != progress.StatusCompleted {
			t.Errorf("approved %v: applied %v, status %s", approve, applied, res.Status)
		}
	}
}
