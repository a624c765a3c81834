package integration

import (
	"context"
	"strings"
	"testing"

	sdkpb "go.temporal.io/api/sdk/v1"
	"go.temporal.io/sdk/converter"

	"github.com/tetherflow/tether/activities/lib/progress"
	"github.com/tetherflow/tether/activities/syncstep"
	"github.com/tetherflow/tether/starters/sandbox"
	"github.com/tetherflow/tether/workflows/datasync"
)

// TestHistory_StepsAreNamedInTheWebUI: every activity and local activity
// of a sync carries the summary the Web UI's timeline shows (which page,
// which records, how many rows), and the workflow's current details say
// what the run did.
func TestHistory_StepsAreNamedInTheWebUI(t *testing.T) {
	s := newStack(t, stackOptions{sandbox: sandbox.Options{Seed: 1, Contacts: 2500}})
	run := s.start(datasync.Input{Integration: "crm-contacts"})
	res, err := s.wait(run)
	if err != nil || res.Status != progress.StatusCompleted {
		t.Fatalf("sync: %v (status %q)", err, res.Status)
	}
	ctx := context.Background()
	dc := converter.GetDefaultDataConverter()
	var summaries []string
	iter := s.client.GetWorkflowHistory(ctx, run.GetID(), run.GetRunID(), false, 0)
	for iter.HasNext() {
		ev, err := iter.Next()
		if err != nil {
			t.Fatal(err)
		}
		var summary string
		if p := ev.GetUserMetadata().GetSummary(); p != nil {
			if err := dc.FromPayload(p, &summary); err != nil {
				t.Fatalf("event %d: summary: %v", ev.GetEventId(), err)
			}
			summaries = append(summaries, summary)
		}
		if a := ev.GetActivityTaskScheduledEventAttributes(); a != nil && summary == "" {
			t.Errorf("event %d: activity %s has no summary", ev.GetEventId(), a.GetActivityType().GetName())
		}
	}
	for _, want := range []string{
		syncstep.StartRunName + " · crm-contacts",
		syncstep.FetchPageName + " 1 · records 1-1000",
		syncstep.FetchPageName + " 2 · records 1001-2000",
		syncstep.FetchPageName + " 3 · records 2001-3000",
		syncstep.ValidateBatchName + " 3 · ",
		syncstep.TransformBatchName + " 1 · ",
		syncstep.ApplyBatchName + " 1 · ",
		syncstep.FinishRunName + " · " + progress.StatusCompleted,
	} {
		found := false
		for _, s := range summaries {
			found = found || strings.HasPrefix(s, want)
		}
		if !found {
			t.Errorf("no step summary starting %q; summaries:\n%s", want, strings.Join(summaries, "\n"))
		}
	}

	v, err := s.client.QueryWorkflow(ctx, run.GetID(), run.GetRunID(), "__temporal_workflow_metadata")
	if err != nil {
		t.Fatal(err)
	}
	var md sdkpb.WorkflowMetadata
	if err := v.Get(&md); err != nil {
		t.Fatal(err)
	}
	details := md.GetCurrentDetails()
	for _, want := range []string{"**crm-contacts** sync: " + progress.StatusCompleted, "valid 2500", "applied 2500"} {
		if !strings.Contains(details, want) {
			t.Errorf("current details %q do not say %q", details, want)
		}
	}
}
