package onboarding

import (
	"context"
	"encoding/json"
	"errors"
	"strings"
	"testing"
	"time"

	"go.temporal.io/sdk/activity"
	"go.temporal.io/sdk/temporal"
	"go.temporal.io/sdk/testsuite"

	"github.com/tetherflow/tether/activities/lib/progress"
	"github.com/tetherflow/tether/activities/syncstep"
)

// fakes are the steps' activities, recording what the workflow asked.
type fakes struct {
	invalid     int // records ValidateBatch finds invalid
	applied     []syncstep.ApplyInput
	compensated []syncstep.CompensateInput
	finished    []syncstep.FinishRunInput
	started     syncstep.StartRunInput
}

func (f *fakes) register(env *testsuite.TestWorkflowEnvironment) {
	reg := func(fn any, a interface{ Name() string }) {
		env.RegisterActivityWithOptions(fn, activity.RegisterOptions{Name: a.Name()})
	}
	reg(func(_ context.Context, in syncstep.StartRunInput) (syncstep.StartRunOutput, error) {
		f.started = in
		return syncstep.StartRunOutput{Plan: syncstep.Plan{Integration: in.Integration, Atomic: true,
			Steps: []string{"billing", "links"}, Definition: "v1-test"}}, nil
	}, syncstep.StartRun)
	reg(func(_ context.Context, in syncstep.StageRecordsInput) (syncstep.FetchPageOutput, error) {
		return syncstep.FetchPageOutput{Ref: in.Ref, Count: len(in.Records), Done: true}, nil
	}, syncstep.StageRecords)
	reg(func(context.Context, syncstep.BatchInput) (syncstep.ValidateOutput, error) {
		return syncstep.ValidateOutput{Valid: 1 - f.invalid, Invalid: f.invalid}, nil
	}, syncstep.ValidateBatch)
	reg(func(context.Context, syncstep.BatchInput) (syncstep.TransformOutput, error) {
		return syncstep.TransformOutput{Transformed: 1}, nil
	}, syncstep.TransformBatch)
	reg(func(_ context.Context, in syncstep.ApplyInput) (syncstep.ApplyOutput, error) {
		f.applied = append(f.applied, in)
		return syncstep.ApplyOutput{Inserted: 1}, nil
	}, syncstep.ApplyBatch)
	reg(func(context.Context, syncstep.BeginCompensationInput) (syncstep.BeginCompensationOutput, error) {
		return syncstep.BeginCompensationOutput{LastBatch: 1}, nil
	}, syncstep.BeginCompensation)
	reg(func(_ context.Context, in syncstep.CompensateInput) (syncstep.CompensateOutput, error) {
		f.compensated = append(f.compensated, in)
		return syncstep.CompensateOutput{Restored: 1}, nil
	}, syncstep.CompensateBatch)
	reg(func(_ context.Context, in syncstep.FinishRunInput) error {
		f.finished = append(f.finished, in)
		return nil
	}, syncstep.FinishRun)
}

var contact = json.RawMessage(`{"id": 17, "email": "ada@example.com"}`)

// onboard runs OnboardCustomer with the fakes; decide, when set, sends
// its decision after a minute.
func onboard(t *testing.T, f *fakes, in Input, decide *Decision) (*testsuite.TestWorkflowEnvironment, Result, error) {
	t.Helper()
	env := (&testsuite.WorkflowTestSuite{}).NewTestWorkflowEnvironment()
	f.register(env)
	if decide != nil {
		env.RegisterDelayedCallback(func() {
			env.UpdateWorkflow(UpdateApprove, "decision", &testsuite.TestUpdateCallback{
				OnReject:   func(err error) { t.Errorf("decision %+v rejected: %v", decide, err) },
				OnAccept:   func() {},
				OnComplete: func(any, error) {},
			}, *decide)
		}, time.Minute)
	}
	env.ExecuteWorkflow(OnboardCustomer, in)
	if !env.IsWorkflowCompleted() {
		t.Fatal("the workflow did not complete")
	}
	var res Result
	err := env.GetWorkflowError()
	if err == nil {
		if gerr := env.GetWorkflowResult(&res); gerr != nil {
			t.Fatal(gerr)
		}
	}
	return env, res, err
}

// steps lists the destinations applied, in order.
func (f *fakes) steps() []int {
	var out []int
	for _, a := range f.applied {
		out = append(out, a.Step)
	}
	return out
}

func (f *fakes) finishedAs(t *testing.T, want string) {
	t.Helper()
	if len(f.finished) != 1 || f.finished[0].Status != want {
		t.Fatalf("FinishRun calls %+v, want one with status %s", f.finished, want)
	}
}

func TestOnboardCustomer_ApprovedLinksTheContact(t *testing.T) {
	f := &fakes{}
	_, res, err := onboard(t, f, Input{Contact: contact}, &Decision{Approved: true, By: "ana"})
	if err != nil {
		t.Fatal(err)
	}
	if res.Outcome != OutcomeOnboarded || res.Decision == nil || res.Decision.By != "ana" {
		t.Errorf("result %+v, want onboarded by ana", res)
	}
	if got := f.steps(); len(got) != 2 || got[0] != 0 || got[1] != 1 {
		t.Errorf("destinations applied %v, want billing then links", got)
	}
	for _, a := range f.applied {
		if a.Kind != "records" || a.Seq != 1 || !a.Atomic {
			t.Errorf("apply %+v: want batch 1 of an atomic run of kind records", a)
		}
	}
	if f.started.Kind != "records" || f.started.Integration != DefaultIntegration {
		t.Errorf("run started as %+v, want a run of records of %s", f.started, DefaultIntegration)
	}
	if len(f.compensated) != 0 {
		t.Errorf("an approved onboarding compensated %+v", f.compensated)
	}
	f.finishedAs(t, progress.StatusCompleted)
	if res.Run.Status != progress.StatusCompleted || res.Run.Batches != 1 {
		t.Errorf("run %+v, want completed with one batch", res.Run)
	}
}

func TestOnboardCustomer_RejectedDeletesTheCustomer(t *testing.T) {
	f := &fakes{}
	_, res, err := onboard(t, f, Input{Contact: contact}, &Decision{Approved: false, By: "bo", Note: "duplicate"})
	if err != nil {
		t.Fatal(err)
	}
	if res.Outcome != OutcomeRejected {
		t.Errorf("outcome %q, want %q", res.Outcome, OutcomeRejected)
	}
	if got := f.steps(); len(got) != 1 || got[0] != 0 {
		t.Errorf("destinations applied %v, want billing only", got)
	}
	// Links never saw the batch: only billing is undone.
	if len(f.compensated) != 1 || f.compensated[0].Seq != 1 || f.compensated[0].Step != 0 {
		t.Errorf("compensated %+v, want batch 1 in billing", f.compensated)
	}
	f.finishedAs(t, progress.StatusCompensated)
}

func TestOnboardCustomer_UnansweredTimesOutToCompensation(t *testing.T) {
	f := &fakes{}
	_, res, err := onboard(t, f, Input{Contact: contact, ApprovalTimeout: "30m"}, nil)
	if err != nil {
		t.Fatal(err)
	}
	if res.Outcome != OutcomeTimedOut || len(f.compensated) != 1 {
		t.Errorf("result %+v, compensated %+v: want timed out and the customer undone", res, f.compensated)
	}
	f.finishedAs(t, progress.StatusCompensated)
}

func TestOnboardCustomer_InvalidContactIsQuarantinedAndNothingCreated(t *testing.T) {
	f := &fakes{invalid: 1}
	_, _, err := onboard(t, f, Input{Contact: contact}, nil)
	var appErr *temporal.ApplicationError
	if !errors.As(err, &appErr) || appErr.Type() != "InvalidContact" || !strings.Contains(err.Error(), "tether quarantine --integration onboarding") {
		t.Fatalf("error %v, want an InvalidContact error pointing at the quarantine", err)
	}
	if len(f.applied)+len(f.compensated) != 0 {
		t.Errorf("an invalid contact was applied %+v or compensated %+v", f.applied, f.compensated)
	}
	f.finishedAs(t, progress.StatusFailed)
}

func TestOnboardCustomer_BadInputSaysWhat(t *testing.T) {
	f := &fakes{}
	_, _, err := onboard(t, f, Input{ApprovalTimeout: "soon"}, nil)
	if err == nil {
		t.Fatal("an onboarding without a contact started")
	}
	for _, want := range []string{`"contact" is required`, `"approvalTimeout" "soon" is not a positive duration`} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("error %q does not say %q", err, want)
		}
	}
	if f.started.Integration != "" {
		t.Error("a run was started for bad input")
	}
}

func TestOnboardCustomer_DecisionsAreValidated(t *testing.T) {
	f := &fakes{}
	env := (&testsuite.WorkflowTestSuite{}).NewTestWorkflowEnvironment()
	f.register(env)
	var rejected []string
	send := func(d Decision, accepted bool) {
		env.UpdateWorkflow(UpdateApprove, "u-"+d.By, &testsuite.TestUpdateCallback{
			OnReject: func(err error) {
				if accepted {
					t.Errorf("decision %+v rejected: %v", d, err)
				}
				rejected = append(rejected, err.Error())
			},
			OnAccept: func() {
				if !accepted {
					t.Errorf("decision %+v accepted, want rejected", d)
				}
			},
			OnComplete: func(any, error) {},
		}, d)
	}
	env.RegisterDelayedCallback(func() {
		send(Decision{Approved: true}, false)           // names no one
		send(Decision{Approved: true, By: "ana"}, true) // decides
		send(Decision{Approved: false, By: "bo"}, false)
	}, time.Minute)
	env.ExecuteWorkflow(OnboardCustomer, Input{Contact: contact})
	if err := env.GetWorkflowError(); err != nil {
		t.Fatal(err)
	}
	if len(rejected) != 2 || !strings.Contains(rejected[0], "names who made it") || !strings.Contains(rejected[1], "already decided by ana") {
		t.Errorf("rejections %q", rejected)
	}
}
