package integration

import (
	"bytes"
	"context"
	"os/exec"
	"strings"
	"testing"
	"time"

	"go.temporal.io/sdk/client"

	"github.com/tetherflow/tether/activities/store"
	"github.com/tetherflow/tether/starters/cli"
	"github.com/tetherflow/tether/starters/sandbox"
	"github.com/tetherflow/tether/workers/config"
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

	dial := func(identity string) client.Client {
		t.Helper()
		c, err := client.Dial(client.Options{HostPort: devServer.FrontendHostPort(), Identity: identity, Logger: quietLogger()})
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(c.Close)
		return c
	}
	bob, dave := dial("bob@example.com"), dial("dave@example.com")
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
