package erase

import (
	"context"
	"errors"
	"testing"

	"go.temporal.io/sdk/activity"
	"go.temporal.io/sdk/temporal"
	"go.temporal.io/sdk/testsuite"

	"github.com/tetherflow/tether/activities/syncstep"
)

func run(t *testing.T, dests func(context.Context, syncstep.EraseInput) ([]syncstep.Erased, error), in syncstep.EraseInput) (syncstep.EraseReport, error) {
	t.Helper()
	var s testsuite.WorkflowTestSuite
	env := s.NewTestWorkflowEnvironment()
	env.RegisterActivityWithOptions(dests, activity.RegisterOptions{Name: syncstep.EraseDestinations.Name()})
	env.RegisterActivityWithOptions(func(context.Context, syncstep.EraseInput) ([]syncstep.Erased, error) {
		return []syncstep.Erased{{Place: "quarantine", Deleted: 2}}, nil
	}, activity.RegisterOptions{Name: syncstep.EraseState.Name()})
	env.ExecuteWorkflow(EraseWorkflow, in)
	var rep syncstep.EraseReport
	if err := env.GetWorkflowError(); err != nil {
		return rep, err
	}
	return rep, env.GetWorkflowResult(&rep)
}

func TestEraseWorkflow_ReportsEveryPlaceAndGoesOnPastAFailure(t *testing.T) {
	in := syncstep.EraseInput{Integration: "crm", Key: "42"}
	rep, err := run(t, func(context.Context, syncstep.EraseInput) ([]syncstep.Erased, error) {
		return []syncstep.Erased{{Place: "destination postgres", Deleted: 1}}, nil
	}, in)
	if err != nil || !rep.Complete || len(rep.Places) != 2 {
		t.Fatalf("all erased: %+v %v", rep, err)
	}
	rep, err = run(t, func(context.Context, syncstep.EraseInput) ([]syncstep.Erased, error) {
		return nil, temporal.NewNonRetryableApplicationError("permission denied for table crm_contacts", "SinkSQLError", errors.New("42501"))
	}, in)
	if err != nil || rep.Complete || len(rep.Places) != 2 || rep.Places[0].Note == "" || rep.Places[1].Deleted != 2 {
		t.Fatalf("a destination failed for good: %+v %v; want it noted and the state still erased", rep, err)
	}
	if _, err := run(t, nil, syncstep.EraseInput{Integration: "crm"}); err == nil {
		t.Error("an input without a key was accepted")
	}
}
