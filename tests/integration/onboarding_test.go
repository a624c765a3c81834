package integration

import (
	"context"
	"encoding/json"
	"fmt"
	"os/exec"
	"slices"
	"strings"
	"testing"
	"time"

	"go.temporal.io/api/enums/v1"
	"go.temporal.io/sdk/client"

	"github.com/tetherflow/tether/activities/lib/progress"
	"github.com/tetherflow/tether/starters/sandbox"
	"github.com/tetherflow/tether/workflows/onboarding"
)

// validContact returns the n-th schema-valid sandbox contact as the CRM
// serves it.
func validContact(t *testing.T, s *stack, n int) (sandbox.Contact, json.RawMessage) {
	t.Helper()
	invalid := s.sandbox.InvalidContactIDs()
	for _, c := range s.sandbox.Contacts() {
		if slices.Contains(invalid, c.ID) {
			continue
		}
		if n--; n < 0 {
			raw, err := json.Marshal(c)
			if err != nil {
				t.Fatal(err)
			}
			return c, raw
		}
	}
	t.Fatal("not enough valid sandbox contacts")
	return sandbox.Contact{}, nil
}

// customerOf returns the billing customer whose external_ref is the
// contact's id, if there is one.
func customerOf(s *stack, contactID int64) (sandbox.Customer, bool) {
	for _, c := range s.sandbox.Customers() {
		if c.ExternalRef == fmt.Sprint(contactID) {
			return c, true
		}
	}
	return sandbox.Customer{}, false
}

// awaitStage polls the onboarding's status query until it reaches stage.
func awaitStage(t *testing.T, s *stack, id, stage string) onboarding.Status {
	t.Helper()
	ctx := context.Background()
	deadline := time.Now().Add(time.Minute)
	for {
		var st onboarding.Status
		v, err := s.client.QueryWorkflow(ctx, id, "", onboarding.QueryStatus)
		if err == nil && v.Get(&st) == nil && st.Stage == stage {
			return st
		}
		if d, derr := s.client.DescribeWorkflowExecution(ctx, id, ""); derr == nil &&
			d.GetWorkflowExecutionInfo().GetStatus() != enums.WORKFLOW_EXECUTION_STATUS_RUNNING {
			t.Fatalf("onboarding %s ended (%s) before reaching %q: %v", id, d.GetWorkflowExecutionInfo().GetStatus(), stage,
				s.client.GetWorkflow(ctx, id, "").Get(ctx, nil))
		}
		if time.Now().After(deadline) {
			t.Fatalf("onboarding %s did not reach %q within a minute (last %+v, %v)", id, stage, st, err)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// temporalCLIRun runs the Temporal CLI against the test's dev server.
func temporalCLIRun(t *testing.T, args ...string) string {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	args = append(args, "--address", devServer.FrontendHostPort(), "--namespace", "default")
	out, err := exec.CommandContext(ctx, temporalCLI, args...).CombinedOutput()
	if err != nil {
		t.Fatalf("temporal %s: %v\n%s", strings.Join(args, " "), err, out)
	}
	return string(out)
}

func runStatus(t *testing.T, s *stack, runID string) string {
	t.Helper()
	var status string
	if err := s.schema.DB.QueryRow(`SELECT status FROM tether_runs WHERE run_id = $1`, runID).Scan(&status); err != nil {
		t.Fatalf("run %s: %v", runID, err)
	}
	return status
}

// TestOnboarding_ApprovedFromTheCLILinksTheContact: started with the
// Temporal CLI and plain JSON, the onboarding creates the billing customer,
// waits, and once approved with `temporal workflow update execute` links
// the CRM contact to it.
func TestOnboarding_ApprovedFromTheCLILinksTheContact(t *testing.T) {
	s := newStack(t, stackOptions{sandbox: sandbox.Options{Seed: 61, Contacts: 40, Faults: sandbox.Faults{InvalidRate: 0.1}}})
	c, raw := validContact(t, s, 0)
	id := fmt.Sprintf("onboard/%d-%s", c.ID, s.taskQueue)
	input := fmt.Sprintf(`{"contact": %s, "approvalTimeout": "10m"}`, raw)
	temporalCLIRun(t, "workflow", "start", "--type", onboarding.WorkflowType, "--task-queue", s.taskQueue,
		"--workflow-id", id, "--input", input)

	st := awaitStage(t, s, id, "awaiting approval")
	cus, ok := customerOf(s, c.ID)
	if !ok || !strings.EqualFold(cus.Email, strings.TrimSpace(c.Email)) {
		t.Fatalf("while awaiting approval the billing API has no customer for contact %d (%+v)", c.ID, cus)
	}
	if n := s.count(`SELECT count(*) FROM onboarding_links`); n != 0 {
		t.Fatalf("%d link rows before the approval", n)
	}
	out := temporalCLIRun(t, "workflow", "update", "execute", "--workflow-id", id, "--name", onboarding.UpdateApprove,
		"--input", `{"approved": true, "by": "ana"}`)
	if !strings.Contains(out, "ana") {
		t.Errorf("the update's answer does not show the decision:\n%s", out)
	}
	res := awaitOnboarding(t, s, id)
	if res.Outcome != onboarding.OutcomeOnboarded || res.Decision == nil || res.Decision.By != "ana" {
		t.Fatalf("result %+v, want onboarded by ana", res)
	}
	var linked string
	if err := s.schema.DB.QueryRow(`SELECT billing_customer_id FROM onboarding_links WHERE contact_id = $1`, c.ID).Scan(&linked); err != nil || linked != cus.ID {
		t.Errorf("contact %d linked to %q (%v), want customer %s", c.ID, linked, err, cus.ID)
	}
	if got := runStatus(t, s, st.RunID); got != progress.StatusCompleted {
		t.Errorf("run %s is %s, want %s", st.RunID, got, progress.StatusCompleted)
	}
	s.record(id)
}

func awaitOnboarding(t *testing.T, s *stack, id string) onboarding.Result {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	var res onboarding.Result
	if err := s.client.GetWorkflow(ctx, id, "").Get(ctx, &res); err != nil {
		t.Fatalf("onboarding %s: %v", id, err)
	}
	return res
}

// TestOnboarding_RejectedOrUnansweredDeletesTheCustomer: a rejection, or
// no answer before the approval timeout, undoes the billing customer and
// links nothing; a decision without a name is refused.
func TestOnboarding_RejectedOrUnansweredDeletesTheCustomer(t *testing.T) {
	s := newStack(t, stackOptions{sandbox: sandbox.Options{Seed: 62, Contacts: 40}})
	ctx := context.Background()
	start := func(n int, timeout string) (sandbox.Contact, string) {
		t.Helper()
		c, raw := validContact(t, s, n)
		id := fmt.Sprintf("onboard/%d-%s", c.ID, s.taskQueue)
		_, err := s.client.ExecuteWorkflow(ctx, client.StartWorkflowOptions{ID: id, TaskQueue: s.taskQueue}, onboarding.WorkflowType,
			onboarding.Input{Contact: raw, ApprovalTimeout: timeout})
		if err != nil {
			t.Fatal(err)
		}
		return c, id
	}
	rejected, rid := start(0, "10m")
	unanswered, uid := start(1, "3s")
	awaitStage(t, s, rid, "awaiting approval")
	if _, ok := customerOf(s, rejected.ID); !ok {
		t.Fatalf("no billing customer for contact %d while awaiting approval", rejected.ID)
	}
	decide := func(d onboarding.Decision) error {
		h, err := s.client.UpdateWorkflow(ctx, client.UpdateWorkflowOptions{WorkflowID: rid, UpdateName: onboarding.UpdateApprove,
			Args: []any{d}, WaitForStage: client.WorkflowUpdateStageCompleted})
		if err != nil {
			return err
		}
		return h.Get(ctx, nil)
	}
	if err := decide(onboarding.Decision{Approved: false}); err == nil || !strings.Contains(err.Error(), "names who made it") {
		t.Errorf("a decision without a name: %v, want it refused, saying why", err)
	}
	if err := decide(onboarding.Decision{Approved: false, By: "bo", Note: "duplicate account"}); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		c       sandbox.Contact
		id      string
		outcome string
	}{{rejected, rid, onboarding.OutcomeRejected}, {unanswered, uid, onboarding.OutcomeTimedOut}} {
		res := awaitOnboarding(t, s, tc.id)
		if res.Outcome != tc.outcome {
			t.Errorf("%s: outcome %q, want %q", tc.id, res.Outcome, tc.outcome)
		}
		if cus, ok := customerOf(s, tc.c.ID); ok {
			t.Errorf("%s: the billing customer %s of contact %d is still there", tc.id, cus.ID, tc.c.ID)
		}
		if got := runStatus(t, s, res.Run.RunID); got != progress.StatusCompensated {
			t.Errorf("%s: run is %s, want %s", tc.id, got, progress.StatusCompensated)
		}
		s.record(tc.id)
	}
	if n := s.count(`SELECT count(*) FROM onboarding_links`); n != 0 {
		t.Errorf("%d link rows, want none", n)
	}
}

// TestOnboarding_InvalidContactIsQuarantined: a contact the schema refuses
// (here, an email that is not one) fails the onboarding with the reason,
// lands in quarantine, and creates nothing.
func TestOnboarding_InvalidContactIsQuarantined(t *testing.T) {
	s := newStack(t, stackOptions{sandbox: sandbox.Options{Seed: 63, Contacts: 40}})
	ctx := context.Background()
	c, _ := validContact(t, s, 0)
	c.Email = "not an email"
	raw, err := json.Marshal(c)
	if err != nil {
		t.Fatal(err)
	}
	id := fmt.Sprintf("onboard/%d-%s", c.ID, s.taskQueue)
	run, err := s.client.ExecuteWorkflow(ctx, client.StartWorkflowOptions{ID: id, TaskQueue: s.taskQueue}, onboarding.WorkflowType,
		onboarding.Input{Contact: raw})
	if err != nil {
		t.Fatal(err)
	}
	wctx, cancel := context.WithTimeout(ctx, 2*time.Minute)
	defer cancel()
	err = run.Get(wctx, nil)
	if err == nil || !strings.Contains(err.Error(), "quarantined") || !strings.Contains(err.Error(), "InvalidContact") {
		t.Fatalf("onboarding of an invalid contact: %v, want an InvalidContact failure saying it is quarantined", err)
	}
	if keys := s.quarantinedKeys("onboarding"); len(keys) != 1 || keys[0] != fmt.Sprint(c.ID) {
		t.Errorf("quarantine of onboarding holds %v, want contact %d alone", keys, c.ID)
	}
	if _, ok := customerOf(s, c.ID); ok {
		t.Errorf("a billing customer was created for invalid contact %d", c.ID)
	}
}
