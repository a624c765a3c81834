package integration

import (
	"context"
	"errors"
	"slices"
	"strings"
	"testing"
	"time"

	"go.temporal.io/api/enums/v1"
	"go.temporal.io/sdk/client"
	"go.temporal.io/sdk/converter"
	"go.temporal.io/sdk/temporal"

	"github.com/tetherflow/tether/activities/integration"
	"github.com/tetherflow/tether/activities/lib/failure"
	"github.com/tetherflow/tether/activities/lib/progress"
	"github.com/tetherflow/tether/activities/syncstep"
	"github.com/tetherflow/tether/starters/sandbox"
	"github.com/tetherflow/tether/workers/config"
	"github.com/tetherflow/tether/workers/integrations"
	"github.com/tetherflow/tether/workflows/datasync"
)

// reloadContacts is crm-contacts in small pages, one at a time, with its
// status written as normalize says: "lower" as shipped, "upper" changed.
func reloadContacts(normalize string) func(config.Connection) []integration.Definition {
	return func(crm config.Connection) []integration.Definition {
		d := integrations.CRMContacts(crm)
		d.BatchSize, d.PagesInFlight = 50, 1
		d.Mapping.Fields = slices.Clone(d.Mapping.Fields)
		for i, f := range d.Mapping.Fields {
			if f.To == "status" {
				d.Mapping.Fields[i].Normalize = []string{normalize}
			}
		}
		return []integration.Definition{d}
	}
}

// reloadStack serves 400 contacts slowly (8 pages, 150ms each), so a run
// is still reading when the test changes the integration.
func reloadStack(t *testing.T) *stack {
	return newStack(t, stackOptions{
		sandbox: sandbox.Options{Seed: 11, Contacts: 400, Faults: sandbox.Faults{Latency: 150 * time.Millisecond}},
		defs:    reloadContacts("lower"),
	})
}

// crm is the stack's CRM settings, as newStack gave them to the
// integrations.
func crm(s *stack) config.Connection { return config.Connection{BaseURL: s.url, Auth: "none"} }

// waitForRows waits until the run applied its first page.
func waitForRows(t *testing.T, s *stack) {
	t.Helper()
	for deadline := time.Now().Add(15 * time.Second); time.Now().Before(deadline); time.Sleep(20 * time.Millisecond) {
		var n int
		if err := s.schema.DB.QueryRow(`SELECT count(*) FROM crm_contacts`).Scan(&n); err == nil && n > 0 {
			if n >= 400 {
				t.Fatal("the run applied every page before the change: slow the sandbox down")
			}
			return
		}
	}
	t.Fatal("the run applied nothing within 15s")
}

// startPlan returns the plan StartRun gave a run, from its history.
func startPlan(t *testing.T, s *stack, run client.WorkflowRun) syncstep.Plan {
	t.Helper()
	iter := s.client.GetWorkflowHistory(context.Background(), run.GetID(), run.GetRunID(), false, enums.HISTORY_EVENT_FILTER_TYPE_ALL_EVENT)
	scheduled := int64(0)
	for iter.HasNext() {
		ev, err := iter.Next()
		if err != nil {
			t.Fatal(err)
		}
		if a := ev.GetActivityTaskScheduledEventAttributes(); a != nil && a.GetActivityType().GetName() == syncstep.StartRunName {
			scheduled = ev.GetEventId()
		}
		if a := ev.GetActivityTaskCompletedEventAttributes(); a != nil && a.GetScheduledEventId() == scheduled {
			var out syncstep.StartRunOutput
			if err := converter.GetDefaultDataConverter().FromPayloads(a.GetResult(), &out); err != nil {
				t.Fatal(err)
			}
			return out.Plan
		}
	}
	t.Fatalf("run %s has no completed StartRun", run.GetID())
	return syncstep.Plan{}
}

// statuses returns the status column of crm_contacts by id.
func statuses(t *testing.T, s *stack) map[int64]string {
	t.Helper()
	out := map[int64]string{}
	for id, row := range s.tableRows("crm_contacts") {
		st, _ := row["status"].(string)
		out[id] = st
	}
	return out
}

// TestReload_NextRunUsesTheNewMappingRunningRunKeepsItsOwn: the
// integration changes (Reload, as when its file changes) while a run
// reads; that run finishes with the mapping it started with, the next run
// uses the new one, and no worker is restarted.
func TestReload_NextRunUsesTheNewMappingRunningRunKeepsItsOwn(t *testing.T) {
	s := reloadStack(t)
	old, _ := s.acts.Catalog.Current("crm-contacts")

	running := s.start(datasync.Input{Integration: "crm-contacts"})
	waitForRows(t, s)
	reg, err := integration.NewRegistry(reloadContacts("upper")(crm(s))...)
	if err != nil {
		t.Fatal(err)
	}
	ch, err := s.acts.Catalog.Reload(reg, nil)
	if err != nil || len(ch.Changed) != 1 {
		t.Fatalf("Reload = %+v, %v", ch, err)
	}
	changed, _ := s.acts.Catalog.Current("crm-contacts")
	if changed == old {
		t.Fatal("the changed mapping has the same fingerprint")
	}

	res, err := s.wait(running)
	if err != nil || res.Status != progress.StatusCompleted {
		t.Fatalf("the run started before the change: %+v, %v", res, err)
	}
	if got := startPlan(t, s, running).Definition; got != old {
		t.Errorf("the run started before the change is pinned to %q, want %q", got, old)
	}
	// Every page, those read after the change too, used the old mapping.
	checkContacts(t, s)

	touched := s.sandbox.Touch("contacts", 25)
	next := s.start(datasync.Input{Integration: "crm-contacts"})
	res, err = s.wait(next)
	if err != nil || res.Counts.Updated != len(touched) {
		t.Fatalf("the next run: %+v, %v; want %d updated", res.Counts, err, len(touched))
	}
	if got := startPlan(t, s, next).Definition; got != changed {
		t.Errorf("the next run is pinned to %q, want the new %q", got, changed)
	}
	want := map[int64]string{}
	for _, c := range s.sandbox.Contacts() {
		want[c.ID] = c.Status
	}
	for _, id := range touched {
		want[id] = strings.ToUpper(want[id])
	}
	for id, got := range statuses(t, s) {
		if got != want[id] {
			t.Errorf("contact %d: status %q, want %q", id, got, want[id])
		}
	}
}

// TestReload_RestartedWorkerFailsARunPinnedToAnotherDefinition: a worker
// restarted with a changed integration does not have the version a running
// run is pinned to: the run fails at once with a configuration error that
// says what to do, its end is recorded, and a new run resumes from the
// checkpoint with the new definition.
func TestReload_RestartedWorkerFailsARunPinnedToAnotherDefinition(t *testing.T) {
	s := reloadStack(t)
	old, _ := s.acts.Catalog.Current("crm-contacts")

	running := s.start(datasync.Input{Integration: "crm-contacts"})
	waitForRows(t, s)
	s.restartWorker(reloadContacts("upper")(crm(s)), nil)
	changed, _ := s.acts.Catalog.Current("crm-contacts")

	_, err := s.wait(running)
	var appErr *temporal.ApplicationError
	if !errors.As(err, &appErr) || appErr.Type() != failure.TypeConfig {
		t.Fatalf("want a %s failure, got %v", failure.TypeConfig, err)
	}
	for _, want := range []string{`integration "crm-contacts"`, "pinned to definition " + old, changed, "Start a new run"} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("the failure does not say %q:\n%v", want, err)
		}
	}
	runs, err := s.store.ListRuns(context.Background(), "crm-contacts", 1)
	if err != nil || len(runs) != 1 || runs[0].Status != progress.StatusFailed {
		t.Errorf("the failed run is recorded as %+v (%v), want failed", runs, err)
	}

	res := s.mustSync(datasync.Input{Integration: "crm-contacts"})
	if res.Status != progress.StatusCompleted || res.Counts.Inserted == 0 {
		t.Errorf("the new run: %+v", res)
	}
	// Each page is mapped by one version or the other; the new run's by
	// the new one.
	status := map[int64]string{}
	for _, c := range s.sandbox.Contacts() {
		status[c.ID] = c.Status
	}
	upper := 0
	for id, got := range statuses(t, s) {
		switch got {
		case status[id]:
		case strings.ToUpper(status[id]):
			upper++
		default:
			t.Errorf("contact %d: status %q, want %q either way", id, got, status[id])
		}
	}
	if upper == 0 {
		t.Error("the new run did not use the new mapping")
	}
}
