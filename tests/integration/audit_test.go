package integration

import (
	"bytes"
	"context"
	"fmt"
	"net/http"
	"os/exec"
	"slices"
	"strings"
	"testing"
	"time"

	"go.temporal.io/sdk/client"

	"github.com/tetherflow/tether/activities/integration"
	"github.com/tetherflow/tether/activities/store"
	"github.com/tetherflow/tether/starters/cli"
	"github.com/tetherflow/tether/starters/sandbox"
	"github.com/tetherflow/tether/workers/app"
	"github.com/tetherflow/tether/workers/config"
	"github.com/tetherflow/tether/workers/schedules"
	"github.com/tetherflow/tether/workflows/datasync"
)

// TestAudit_WhoStartedReplayedAndCancelledWhat: a sync started with the
// tether CLI as alice, a replay started with the Temporal CLI, a run
// started by dave's client and cancelled by bob's are kept in tether_audit with their
// Temporal identities (once each, however often their steps ran), listed by
// tether audit, and the runs' memos say who started them.
func TestAudit_WhoStartedReplayedAndCancelledWhat(t *testing.T) {
	s := newStack(t, stackOptions{sandbox: sandbox.Options{Seed: 61, Contacts: 3000, Faults: sandbox.Faults{InvalidRate: 0.02}},
		crm: config.Connection{RateLimit: 4}}) // 4 pages a second: a run lasts long enough to cancel
	ctx := context.Background()

	t.Setenv("TETHER_IDENTITY", "alice@example.com")
	var out bytes.Buffer
	if code := cli.Run(ctx, []string{"start", "crm-contacts", "--watch", "--address", devServer.FrontendHostPort(), "--task-queue", s.taskQueue}, &out, &out); code != 0 {
		t.Fatalf("tether start: exit %d\n%s", code, out.String())
	}

	replayID := uniqueName("replay-by-carol")
	cmd := exec.Command(temporalCLI, "workflow", "start", "--address", devServer.FrontendHostPort(), "--task-queue", s.taskQueue, "--type", datasync.WorkflowType, "--workflow-id", replayID,
		"--input", `{"integration":"crm-contacts","replay":true}`)
	if b, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("temporal workflow start: %v\n%s", err, b)
	}
	if _, err := s.wait(s.client.GetWorkflow(ctx, replayID, "")); err != nil {
		t.Logf("replay ended with %v", err)
	}

	bob, dave := dialAs(t, "bob@example.com"), dialAs(t, "dave@example.com")
	long, err := cli.StartSync(ctx, dave, s.taskQueue, datasync.Input{Integration: "crm-contacts", Full: true, Trigger: "test"})
	if err != nil {
		t.Fatal(err)
	}
	eventually(t, time.Minute, "the run under way", func() bool {
		return s.count(`SELECT count(*) FROM tether_runs WHERE workflow_id = $1 AND (counts->>'fetched')::int > 0`, long.GetID()) > 0
	})
	if err := bob.CancelWorkflow(ctx, long.GetID(), ""); err != nil {
		t.Fatal(err)
	}
	if _, err := s.wait(long); err == nil {
		t.Errorf("the cancelled run completed")
	}

	entries, err := s.store.ListAudit(ctx, store.AuditFilter{Integration: "crm-contacts"})
	if err != nil {
		t.Fatal(err)
	}
	got := map[string][]string{}
	for _, e := range entries {
		got[e.Action] = append(got[e.Action], e.Actor)
	}
	want := map[string][]string{
		store.AuditStart:  {"dave@example.com", "alice@example.com"}, // newest first
		store.AuditCancel: {"bob@example.com"},
	}
	for action, actors := range want {
		if strings.Join(got[action], ",") != strings.Join(actors, ",") {
			t.Errorf("%s by %v, want %v (all: %+v)", action, got[action], actors, entries)
		}
	}

	// The Temporal CLI's identity as it sends it (v1.5.1 sends its
	// process's, pid@host@, whatever --identity says).
	replayBy := got[store.AuditReplay]
	if len(replayBy) != 1 || replayBy[0] == "" || replayBy[0] == "unknown" || strings.Contains(replayBy[0], "example.com") {
		t.Errorf("replay by %v, want the Temporal CLI's identity once", replayBy)
	}

	out.Reset()
	if code := cli.Run(ctx, []string{"audit", "--integration", "crm-contacts", "--database-url", s.schema.DSN}, &out, &out); code != 0 {
		t.Fatalf("tether audit: exit %d\n%s", code, out.String())
	}
	for _, want := range []string{"alice@example.com", "dave@example.com", "bob@example.com", "cancel", "replay"} {
		if !strings.Contains(out.String(), want) {
			t.Errorf("tether audit does not show %q:\n%s", want, out.String())
		}
	}

	desc, err := s.client.DescribeWorkflowExecution(ctx, replayID, "")
	if err != nil {
		t.Fatal(err)
	}
	if p := desc.GetWorkflowExecutionInfo().GetMemo().GetFields()[datasync.MemoStartedBy]; p == nil || len(replayBy) == 0 || string(p.GetData()) != `"`+replayBy[0]+`"` {
		t.Errorf("the replay's memo %s = %v, want %v", datasync.MemoStartedBy, p, replayBy)
	}
}

// TestAudit_ResetsToALaterPoint: a failed run reset to a point after its
// start step (which does not run again) through the Temporal API, as the
// Web UI does, is audited as a reset by an unknown actor (the server keeps
// no identity for resets) with its reason; reset again with tether reset
// as erin, it is audited as erin's, with her reason, once the run ends.
func TestAudit_ResetsToALaterPoint(t *testing.T) {
	fault := &pageFault{path: "/v1/contacts", n: 3, status: http.StatusUnauthorized}
	fault.armed.Store(true)
	s := newStack(t, stackOptions{
		sandbox:   sandbox.Options{Seed: 62, Contacts: 3000},
		transport: func(rt http.RoundTripper) http.RoundTripper { fault.next = rt; return fault },
	})
	ctx := context.Background()
	run := s.start(datasync.Input{Integration: "crm-contacts"})
	if _, err := s.wait(run); err == nil {
		t.Fatal("want the run to fail at page 3")
	}
	fault.seen.Store(0) // the reset run fails again at its third page
	byUI := resetToTask(t, s, run.GetID(), run.GetRunID(), 2, "someone@example.com")
	if _, err := s.wait(s.client.GetWorkflow(ctx, run.GetID(), byUI)); err == nil {
		t.Fatal("want the reset run to fail at page 3 again")
	}

	fault.armed.Store(false)
	t.Setenv("TETHER_IDENTITY", "erin@example.com")
	var out bytes.Buffer
	code := cli.Run(ctx, []string{"reset", run.GetID(), "--event-id", fmt.Sprint(nthTaskCompleted(t, s, run.GetID(), byUI, 2)),
		"--reason", "credentials fixed", "--address", devServer.FrontendHostPort(), "--database-url", s.schema.DSN}, &out, &out)
	if code != 0 {
		t.Fatalf("tether reset: exit %d\n%s", code, out.String())
	}
	desc, err := s.client.DescribeWorkflowExecution(ctx, run.GetID(), "")
	if err != nil {
		t.Fatal(err)
	}
	byErin := desc.GetWorkflowExecutionInfo().GetExecution().GetRunId()
	if !strings.Contains(out.String(), "new run id: "+byErin) {
		t.Errorf("tether reset printed:\n%s\nwant the new run id %s", out.String(), byErin)
	}
	if _, err := s.wait(s.client.GetWorkflow(ctx, run.GetID(), byErin)); err != nil {
		t.Fatalf("the run reset by erin: %v", err)
	}
	checkContacts(t, s)

	entries, err := s.store.ListAudit(ctx, store.AuditFilter{Integration: "crm-contacts"})
	if err != nil {
		t.Fatal(err)
	}
	var resets []string
	for _, e := range entries {
		if e.Action == store.AuditReset && e.Target == run.GetID() {
			resets = append(resets, fmt.Sprintf("%s %s %s from %s: %v", e.TargetRun, e.Actor, e.Via, e.Details["baseRun"], e.Details["reason"]))
		}
	}
	want := []string{ // newest first
		fmt.Sprintf("%s erin@example.com tether reset from %s: credentials fixed", byErin, byUI),
		fmt.Sprintf("%s %s  from %s: source fixed", byUI, store.UnknownActor, run.GetRunID()),
	}
	if !slices.Equal(resets, want) {
		t.Errorf("resets audited:\n%s\nwant:\n%s", strings.Join(resets, "\n"), strings.Join(want, "\n"))
	}
}

// TestAudit_ScheduleActsMadeInTemporal: a pause made with the Temporal
// CLI, an unpause and an edit made by clients with their own identities
// are audited once each, by who made them, with the reasons, from the
// schedule's history (as the worker does every half minute).
func TestAudit_ScheduleActsMadeInTemporal(t *testing.T) {
	s := newStack(t, stackOptions{noWorker: true})
	ctx := context.Background()
	name := uniqueName("audited")
	id := schedules.ID(name, integration.ScheduleSync)
	deleteSchedulesAtEnd(t, id)
	mustApply(t, schedules.Options{TaskQueue: s.taskQueue, Owner: uniqueName("owner")},
		scheduledContacts(nowhere, name, integration.Schedule{Kind: integration.ScheduleSync, Every: time.Hour}))

	if b, err := exec.Command(temporalCLI, "schedule", "toggle", "--address", devServer.FrontendHostPort(), "--schedule-id", id,
		"--pause", "--reason", "maintenance window").CombinedOutput(); err != nil {
		t.Fatalf("temporal schedule toggle: %v\n%s", err, b)
	}
	if err := dialAs(t, "frank@example.com").ScheduleClient().GetHandle(ctx, id).Unpause(ctx, client.ScheduleUnpauseOptions{Note: "window over"}); err != nil {
		t.Fatal(err)
	}
	err := dialAs(t, "grace@example.com").ScheduleClient().GetHandle(ctx, id).Update(ctx, client.ScheduleUpdateOptions{
		DoUpdate: func(in client.ScheduleUpdateInput) (*client.ScheduleUpdate, error) {
			in.Description.Schedule.Spec.Jitter = time.Minute
			return &client.ScheduleUpdate{Schedule: &in.Description.Schedule}, nil
		}})
	if err != nil {
		t.Fatal(err)
	}

	for range 2 { // recorded once, however often read
		if err := app.AuditScheduleActs(ctx, devServer.Client(), s.store, []string{id}); err != nil {
			t.Fatal(err)
		}
	}
	entries, err := s.store.ListAudit(ctx, store.AuditFilter{Integration: name})
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	for _, e := range entries {
		got = append(got, fmt.Sprintf("%s %s %v", e.Action, e.Actor, e.Details["reason"]))
	}
	slices.Reverse(got) // oldest first
	if len(got) != 3 || !strings.HasPrefix(got[0], schedules.ActPause+" ") || !strings.HasSuffix(got[0], " maintenance window") ||
		strings.Contains(got[0], "example.com") ||
		got[1] != schedules.ActUnpause+" frank@example.com window over" || got[2] != schedules.ActUpdate+" grace@example.com <nil>" {
		t.Errorf("schedule acts audited: %q, want the Temporal CLI's pause with its reason, frank's unpause and grace's update", got)
	}
}

// dialAs is a client of the dev server that calls as identity.
func dialAs(t *testing.T, identity string) client.Client {
	t.Helper()
	c, err := client.Dial(client.Options{HostPort: devServer.FrontendHostPort(), Identity: identity, Logger: quietLogger()})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(c.Close)
	return c
}
