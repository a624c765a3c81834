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
	env.RegisterActivityWithOptions(func(_ context.Context, in syncstep.EraseInput) ([]string, error) {
		if in.Integration == "crm" {
			return []string{"billing"}, nil
		}
		return nil, nil
	}, activity.RegisterOptions{Name: syncstep.EraseRelated.Name()})
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
	in := syncstep.EraseInput{Integration: "crm", Key: "42", Only: true}
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

// The integrations that read the same source are erased too, each place
// named by its integration, and asked with the integration the erasure
// is for; with only, they are not.
func TestEraseWorkflow_ErasesTheIntegrationsReadingTheSameSource(t *testing.T) {
	var asked []syncstep.EraseInput
	rep, err := run(t, func(_ context.Context, in syncstep.EraseInput) ([]syncstep.Erased, error) {
		asked = append(asked, in)
		return []syncstep.Erased{{Place: "destination " + in.Integration, Deleted: 1}}, nil
	}, syncstep.EraseInput{Integration: "crm", Key: "42"})
	if err != nil || !rep.Complete || len(rep.Related) != 1 || rep.Related[0] != "billing" || len(rep.Places) != 4 {
		t.Fatalf("report %+v, %v: want crm's and billing's places", rep, err)
	}
	if rep.Places[0].Integration != "" || rep.Places[2].Integration != "billing" || rep.Places[2].Place != "destination billing" || rep.Places[3].Integration != "billing" {
		t.Errorf("places %+v: want billing's named by it", rep.Places)
	}
	if len(asked) != 2 || asked[1] != (syncstep.EraseInput{Integration: "billing", Key: "42", Of: "crm"}) {
		t.Errorf("destinations asked for %+v", asked)
	}
}
