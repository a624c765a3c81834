package integration

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"sort"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"go.temporal.io/sdk/client"

	"github.com/tetherflow/tether/activities/connector"
	"github.com/tetherflow/tether/activities/connector/httpside"
	"github.com/tetherflow/tether/activities/integration"
	"github.com/tetherflow/tether/activities/lib/schema"
	"github.com/tetherflow/tether/activities/store"
	"github.com/tetherflow/tether/activities/syncstep"
	"github.com/tetherflow/tether/activities/twoway"
	"github.com/tetherflow/tether/schemas"
	"github.com/tetherflow/tether/starters/cli"
	"github.com/tetherflow/tether/starters/sandbox"
	"github.com/tetherflow/tether/workers/app"
	"github.com/tetherflow/tether/workers/config"
	"github.com/tetherflow/tether/workers/webhook"
	twowaywf "github.com/tetherflow/tether/workflows/twoway"
)

// twoWayPair is a stack running one two-way integration between the
// PostgreSQL table accounts (side a, "app") and the sandbox's billing
// customers (side b, "billing"), matched by email.
type twoWayPair struct {
	*stack
	name string
	run  client.WorkflowRun
}

func newTwoWayPair(t *testing.T, policy twoway.Policy) *twoWayPair {
	t.Helper()
	return newTwoWayPairWith(t, policy, sandbox.Options{Contacts: 10})
}

// newTwoWayPairWith is newTwoWayPair with the sandbox's options sb, and
// the definition changed by edit.
func newTwoWayPairWith(t *testing.T, policy twoway.Policy, sb sandbox.Options, edit ...func(*twoway.Definition)) *twoWayPair {
	t.Helper()
	return newTwoWayPairOn(t, nil, policy, sb, edit...)
}

// newTwoWayPairOn is newTwoWayPairWith on a worker whose connector
// registry connectors adds to.
func newTwoWayPairOn(t *testing.T, connectors func(*connector.Registry), policy twoway.Policy, sb sandbox.Options, edit ...func(*twoway.Definition)) *twoWayPair {
	t.Helper()
	name := uniqueName("accounts-billing")
	s := newStack(t, stackOptions{sandbox: sb, connectors: connectors, twoWay: func(url string) []twoway.Definition {
		d := []twoway.Definition{{
			Name: name,
			A: twoway.SideSpec{Name: "app", Postgres: &twoway.PostgresSide{Table: "accounts", Key: "id", UpdatedAt: "updated_at", DeletedAt: "deleted_at",
				Fields: map[string]string{"email": "email", "name": "name", "plan": "plan"}}},
			B: twoway.SideSpec{Name: "billing", HTTP: &twoway.HTTPSide{BaseURL: url, Path: "/v1/customers",
				Fields: map[string]string{"email": "email", "name": "name", "plan": "plan"}}},
			Match:  []string{"email"},
			Policy: policy,
			Every:  time.Hour, // the test drives the cycles with sync-now
		}}
		for _, e := range edit {
			e(&d[0])
		}
		return d
	}, noWorker: true})
	mustExec(t, s, `CREATE TABLE accounts (id text PRIMARY KEY, email text NOT NULL, name text, plan text,
		updated_at timestamptz NOT NULL DEFAULT clock_timestamp(), deleted_at timestamptz)`)
	s.startWorker()
	return &twoWayPair{stack: s, name: name}
}

// start starts the integration's workflow and waits for its first cycle.
func (p *twoWayPair) start() syncstep.TwoWayCycle {
	p.t.Helper()
	// As a worker does at start; a second start finds it running.
	for range 2 {
		if err := app.StartTwoWay(context.Background(), p.client, p.taskQueue, p.twoWay, slog.New(slog.DiscardHandler)); err != nil {
			p.t.Fatal(err)
		}
	}
	run := p.client.GetWorkflow(context.Background(), twowaywf.WorkflowID(p.name), "")
	p.run = run
	p.t.Cleanup(func() { _ = p.client.CancelWorkflow(context.Background(), run.GetID(), "") })
	return p.waitCycles(1)
}

func (p *twoWayPair) progress() twowaywf.Progress {
	p.t.Helper()
	v, err := p.client.QueryWorkflow(context.Background(), p.run.GetID(), "", twowaywf.QueryProgress)
	if err != nil {
		p.t.Fatal(err)
	}
	var pr twowaywf.Progress
	if err := v.Get(&pr); err != nil {
		p.t.Fatal(err)
	}
	return pr
}

// waitCycles waits until n cycles ran, and returns the counts so far.
func (p *twoWayPair) waitCycles(n int) syncstep.TwoWayCycle {
	p.t.Helper()
	var pr twowaywf.Progress
	for deadline := time.Now().Add(30 * time.Second); ; time.Sleep(20 * time.Millisecond) {
		v, err := p.client.QueryWorkflow(context.Background(), p.run.GetID(), "", twowaywf.QueryProgress)
		if err == nil && v.Get(&pr) == nil && pr.Cycles >= n {
			break
		}
		if time.Now().After(deadline) {
			why := ""
			if d, err := p.client.DescribeWorkflowExecution(context.Background(), p.run.GetID(), ""); err == nil {
				for _, a := range d.GetPendingActivities() {
					why += fmt.Sprintf("\n%s attempt %d: %s", a.GetActivityType().GetName(), a.GetAttempt(), a.GetLastFailure().GetMessage())
				}
			}
			p.t.Fatalf("cycle %d did not end within 30s%s", n, why)
		}
	}
	if pr.LastError != "" {
		p.t.Fatalf("cycle %d failed: %s", n, pr.LastError)
	}
	return syncstep.TwoWayCycle{Counts: pr.Counts, Parked: pr.Parked}
}

// cycle runs one more cycle now and returns what it did.
func (p *twoWayPair) cycle() syncstep.TwoWayCounts {
	p.t.Helper()
	before := p.progress()
	if err := p.client.SignalWorkflow(context.Background(), p.run.GetID(), "", twowaywf.SignalSyncNow, nil); err != nil {
		p.t.Fatal(err)
	}
	after := p.waitCycles(before.Cycles + 1).Counts
	return diffCounts(after, before.Counts)
}

func diffCounts(a, b syncstep.TwoWayCounts) syncstep.TwoWayCounts {
	neg := b
	for _, f := range []*int{&neg.ReadA, &neg.ReadB, &neg.Unchanged, &neg.UnchangedA, &neg.WritesA, &neg.WritesB, &neg.Created, &neg.Linked, &neg.Deleted,
		&neg.Conflicts, &neg.Resolved, &neg.Parked, &neg.ManuallyResolved, &neg.Deferred} {
		*f = -*f
	}
	a.Add(neg)
	return a
}

// app is the accounts table, by email: name and plan.
func (p *twoWayPair) app() map[string]string {
	p.t.Helper()
	rows, err := p.schema.DB.Query(`SELECT email, coalesce(name, ''), coalesce(plan, ''), deleted_at IS NOT NULL FROM accounts`)
	if err != nil {
		p.t.Fatal(err)
	}
	defer rows.Close()
	out := map[string]string{}
	for rows.Next() {
		var email, name, plan string
		var deleted bool
		if err := rows.Scan(&email, &name, &plan, &deleted); err != nil {
			p.t.Fatal(err)
		}
		if !deleted {
			out[email] = name + "/" + plan
		}
	}
	return out
}

// billing is the sandbox's customers, by email: name and plan.
func (p *twoWayPair) billing() map[string]string {
	out := map[string]string{}
	for _, c := range p.sandbox.Customers() {
		out[c.Email] = c.Name + "/" + c.Plan
	}
	return out
}

func (p *twoWayPair) billingID(email string) string {
	for _, c := range p.sandbox.Customers() {
		if c.Email == email {
			return c.ID
		}
	}
	p.t.Fatalf("no customer %s", email)
	return ""
}

// patchBilling edits a customer through the API, as a person in the
// billing system would.
func (p *twoWayPair) patchBilling(email string, fields map[string]any) {
	p.t.Helper()
	body, _ := json.Marshal(fields)
	req, _ := http.NewRequest(http.MethodPatch, p.url+"/v1/customers/"+p.billingID(email), bytes.NewReader(body))
	req.Header.Set("Content-Type", "application/json")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		p.t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != 200 {
		p.t.Fatalf("PATCH customer %s: %d", email, resp.StatusCode)
	}
}

func (p *twoWayPair) deleteBilling(email string) {
	p.t.Helper()
	req, _ := http.NewRequest(http.MethodDelete, p.url+"/v1/customers/"+p.billingID(email), nil)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		p.t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != 204 {
		p.t.Fatalf("DELETE customer %s: %d", email, resp.StatusCode)
	}
}

// editApp edits an account, as the application would (updated_at moves).
func (p *twoWayPair) editApp(email, set string) {
	p.t.Helper()
	mustExec(p.t, p.stack, `UPDATE accounts SET `+set+`, updated_at = clock_timestamp() WHERE email = $1`, email)
}

func show(m map[string]string) string {
	var out []string
	for k, v := range m {
		out = append(out, k+"="+v)
	}
	sort.Strings(out)
	return strings.Join(out, " ")
}

// TestTwoWay_EditsFlowBothWaysOnceAndAQuietPairStaysQuiet: at the first
// cycle, records made on one side are created on the other, those made
// on both before the first sync are linked by email (not created twice),
// and one both made differently is resolved by last writer wins. Then an
// edit on either side reaches the other once, and the cycles after are
// quiet: our own writes coming back are no change, nothing is written.
func TestTwoWay_EditsFlowBothWaysOnceAndAQuietPairStaysQuiet(t *testing.T) {
	p := newTwoWayPair(t, twoway.Policy{Kind: twoway.LastWriterWins})
	mustExec(t, p.stack, `INSERT INTO accounts (id, email, name, plan) VALUES
		('acc-1', 'ada@example.com', 'Ada', 'free'), ('acc-2', 'carol@example.com', 'Carol', 'pro'), ('acc-3', 'dave@example.com', 'Dave A', 'free')`)
	time.Sleep(5 * time.Millisecond) // billing's dave is the later edit
	if _, err := p.sandbox.SeedCustomers(
		sandbox.Customer{Email: "bob@example.com", Name: "Bob", Plan: "starter"},
		sandbox.Customer{Email: "carol@example.com", Name: "Carol", Plan: "pro"},
		sandbox.Customer{Email: "dave@example.com", Name: "Dave B", Plan: "enterprise"}); err != nil {
		t.Fatal(err)
	}
	first := p.start().Counts
	want := "ada@example.com=Ada/free bob@example.com=Bob/starter carol@example.com=Carol/pro dave@example.com=Dave B/enterprise"
	if got := show(p.app()); got != want {
		t.Errorf("app after the first cycle: %s\nwant %s", got, want)
	}
	if got := show(p.billing()); got != want {
		t.Errorf("billing after the first cycle: %s\nwant %s", got, want)
	}
	// ada created on billing, bob on app; carol linked; dave resolved and
	// written to app.
	if first.Created != 2 || first.Linked != 1 || first.Conflicts != 1 || first.Resolved != 1 || first.WritesA != 2 || first.WritesB != 1 {
		t.Errorf("first cycle: %+v; want 2 created, 1 linked, 1 conflict resolved, 2 writes to app and 1 to billing", first)
	}
	if n := p.count(`SELECT count(*) FROM tether_conflicts WHERE integration = $1 AND status = 'resolved' AND resolution = 'last_writer_wins: b'
		AND a->>'name' = 'Dave A' AND b->>'name' = 'Dave B' AND result->>'name' = 'Dave B'`, p.name); n != 1 {
		t.Errorf("dave's conflict is not recorded with both versions and the result (%d rows)", n)
	}

	// Our own writes come back in the feeds: no change, nothing written.
	for i := range 2 {
		if c := p.cycle(); c.WritesA+c.WritesB != 0 || c.Conflicts != 0 {
			t.Errorf("quiet cycle %d wrote: %+v", i+1, c)
		}
	}

	p.editApp("ada@example.com", "name = 'Ada Lovelace'")
	p.patchBilling("bob@example.com", map[string]any{"plan": "pro"})
	c := p.cycle()
	if c.WritesA != 1 || c.WritesB != 1 || c.Conflicts != 0 {
		t.Errorf("edit cycle: %+v; want one write each way", c)
	}
	want = "ada@example.com=Ada Lovelace/free bob@example.com=Bob/pro carol@example.com=Carol/pro dave@example.com=Dave B/enterprise"
	if got, gotB := show(p.app()), show(p.billing()); got != want || gotB != want {
		t.Errorf("after the edits:\napp     %s\nbilling %s\nwant    %s", got, gotB, want)
	}
	if c := p.cycle(); c.WritesA+c.WritesB != 0 {
		t.Errorf("the edits echoed: %+v", c)
	}
}

// TestTwoWay_ConflictsUnderEachPolicy: the same record edited on both
// sides between two cycles ends as each policy says, on both sides, and
// the conflict is recorded.
func TestTwoWay_ConflictsUnderEachPolicy(t *testing.T) {
	for _, tc := range []struct {
		name     string
		policy   twoway.Policy
		want     string
		disjoint bool // billing edits only the plan: no field both changed
	}{
		{"merge: edits to different fields both survive", twoway.Policy{Kind: twoway.Merge, Fallback: twoway.Manual}, "Eve A/pro", true},
		{"last writer wins", twoway.Policy{Kind: twoway.LastWriterWins}, "Eve B/pro", false},
		{"field owner: name from app, plan from billing", twoway.Policy{Kind: twoway.FieldOwner,
			Owners: map[string]twoway.Side{"name": twoway.A, "plan": twoway.B}, Fallback: twoway.LastWriterWins}, "Eve A/pro", false},
		{"merge, app wins the same field", twoway.Policy{Kind: twoway.Merge, Fallback: "a"}, "Eve A/pro", false},
		{"custom resolver", twoway.Policy{Kind: twoway.Custom, Resolver: func(c twoway.Conflict) (twoway.Record, error) {
			r := twoway.Record{}
			for k, v := range c.B {
				r[k] = v
			}
			r["name"] = fmt.Sprint(c.A["name"], " & ", c.B["name"])
			return r, nil
		}}, "Eve A & Eve B/pro", false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			p := newTwoWayPair(t, tc.policy)
			mustExec(t, p.stack, `INSERT INTO accounts (id, email, name, plan) VALUES ('acc-1', 'eve@example.com', 'Eve', 'free')`)
			p.start()
			// app renames her; billing renames her too, later, and moves her
			// to pro.
			p.editApp("eve@example.com", "name = 'Eve A'")
			time.Sleep(5 * time.Millisecond)
			if tc.disjoint {
				p.patchBilling("eve@example.com", map[string]any{"plan": "pro"})
			} else {
				p.patchBilling("eve@example.com", map[string]any{"name": "Eve B", "plan": "pro"})
			}
			c := p.cycle()
			if c.Conflicts != 1 || c.Resolved != 1 {
				t.Errorf("cycle: %+v, want one conflict resolved", c)
			}
			want := "eve@example.com=" + tc.want
			if got, gotB := show(p.app()), show(p.billing()); got != want || gotB != want {
				t.Errorf("app %s, billing %s; want both %s", got, gotB, want)
			}
			if c := p.cycle(); c.WritesA+c.WritesB != 0 {
				t.Errorf("the resolution echoed: %+v", c)
			}
		})
	}
}

// TestTwoWay_ManualResolutionThroughATemporalCLIUpdate: under the manual
// policy a record edited on both sides is parked (nothing written, the
// other records keep flowing), the conflicts query shows it, a choice
// that is not valid is refused before anything is applied, and the
// resolve Update sent with the Temporal CLI writes the chosen record to
// both sides and records who resolved it.
func TestTwoWay_ManualResolutionThroughATemporalCLIUpdate(t *testing.T) {
	p := newTwoWayPair(t, twoway.Policy{Kind: twoway.Manual})
	mustExec(t, p.stack, `INSERT INTO accounts (id, email, name, plan) VALUES ('acc-1', 'eve@example.com', 'Eve', 'free'), ('acc-2', 'finn@example.com', 'Finn', 'free')`)
	p.start()
	p.editApp("eve@example.com", "name = 'Eve A'")
	p.patchBilling("eve@example.com", map[string]any{"name": "Eve B"})
	p.editApp("finn@example.com", "plan = 'pro'")
	c := p.cycle()
	if c.Parked != 1 || c.WritesB != 1 {
		t.Errorf("cycle: %+v, want eve parked and finn's edit written", c)
	}
	if got := p.billing()["finn@example.com"]; got != "Finn/pro" {
		t.Errorf("finn on billing: %s, want his edit while eve waits", got)
	}
	if a, b := p.app()["eve@example.com"], p.billing()["eve@example.com"]; a != "Eve A/free" || b != "Eve B/free" {
		t.Errorf("a parked record was written: app %s, billing %s", a, b)
	}
	parked := p.progress().Parked
	if len(parked) != 1 || strings.Join(parked[0].Fields, ",") != "name" {
		t.Fatalf("parked: %+v", parked)
	}
	id := parked[0].ID

	update := func(input string) (string, error) {
		out, err := exec.Command(temporalCLI, "workflow", "update", "execute", "--address", devServer.FrontendHostPort(),
			"--workflow-id", p.run.GetID(), "--name", twowaywf.UpdateResolve, "--input", input).CombinedOutput()
		return string(out), err
	}
	if out, err := update(fmt.Sprintf(`{"conflict":%d,"choose":"values","values":{"nmae":"Eve"}}`, id)); err == nil || !strings.Contains(out, "values.nmae: not a shared field") {
		t.Errorf("a bad choice: %v\n%s", err, out)
	}
	if out, err := update(`{"conflict":999999,"choose":"a"}`); err == nil || !strings.Contains(out, "is not waiting for a person") {
		t.Errorf("an unknown conflict: %v\n%s", err, out)
	}
	// "by" names a resolver for clients without an identity; the CLI
	// sends one, which is what is recorded.
	out, err := update(fmt.Sprintf(`{"conflict":%d,"choose":"values","values":{"email":"eve@example.com","name":"Eve Both","plan":"free"},"by":"mallory"}`, id))
	if err != nil {
		t.Fatalf("temporal workflow update execute: %v\n%s", err, out)
	}
	if a, b := p.app()["eve@example.com"], p.billing()["eve@example.com"]; a != "Eve Both/free" || b != "Eve Both/free" {
		t.Errorf("after the resolution: app %s, billing %s; want Eve Both/free on both", a, b)
	}
	list, err := p.store.ListConflicts(context.Background(), store.ConflictFilter{Integration: p.name, ID: id})
	if err != nil || len(list) != 1 || list[0].Status != store.ConflictResolved || list[0].Resolution != "manual: edited values" ||
		list[0].ResolvedBy == "" || list[0].ResolvedBy == store.UnknownActor || strings.Contains(list[0].ResolvedBy, "mallory") {
		t.Errorf("the conflict after the resolution: %+v, %v; want it resolved by the CLI's identity", list, err)
	}
	if len(p.progress().Parked) != 0 {
		t.Errorf("still parked: %+v", p.progress().Parked)
	}
	if c := p.cycle(); c.WritesA+c.WritesB != 0 {
		t.Errorf("the resolution echoed: %+v", c)
	}

	// The same with the tether CLI: a merge, app winning the field both
	// changed, as erin.
	p.editApp("finn@example.com", "name = 'Finn A', plan = 'enterprise'")
	p.patchBilling("finn@example.com", map[string]any{"name": "Finn B"})
	if c := p.cycle(); c.Parked != 1 {
		t.Fatalf("cycle: %+v, want finn parked", c)
	}
	tether := func(args ...string) string {
		t.Helper()
		var out bytes.Buffer
		args = append(args, "--address", devServer.FrontendHostPort(), "--database-url", p.schema.DSN)
		if code := cli.Run(context.Background(), args, &out, &out); code != 0 {
			t.Fatalf("tether %s: exit %d\n%s", strings.Join(args, " "), code, out.String())
		}
		return out.String()
	}
	listed := tether("conflicts", "--integration", p.name)
	finn := p.progress().Parked
	if len(finn) != 1 || !strings.Contains(listed, fmt.Sprint(finn[0].ID)) || !strings.Contains(listed, "parked") {
		t.Fatalf("tether conflicts:\n%s(parked %+v)", listed, finn)
	}
	id = finn[0].ID
	if one := tether("conflicts", fmt.Sprint(id)); !regexp.MustCompile(`name\s+"Finn"\s+"Finn A"\s+"Finn B"\s+both changed`).MatchString(one) ||
		!regexp.MustCompile(`plan\s+"pro"\s+"enterprise"\s+"pro"`).MatchString(one) {
		t.Errorf("tether conflicts %d:\n%s", id, one)
	}
	t.Setenv("TETHER_IDENTITY", "erin@example.com")
	if out := tether("conflicts", "resolve", fmt.Sprint(id), "--choose", "merge", "--prefer", "a"); !strings.Contains(out, "resolved (manual: merge, a on the fields both changed) by erin@example.com") {
		t.Errorf("tether conflicts resolve:\n%s", out)
	}
	if a, b := p.app()["finn@example.com"], p.billing()["finn@example.com"]; a != "Finn A/enterprise" || b != a {
		t.Errorf("after the merge: app %s, billing %s; want Finn A/enterprise on both", a, b)
	}
	entries, err := p.store.ListAudit(context.Background(), store.AuditFilter{Integration: p.name, Actor: "erin@example.com"})
	if err != nil || len(entries) != 1 || entries[0].Action != store.AuditResolve {
		t.Errorf("the resolution in the audit: %+v, %v", entries, err)
	}
	p.record(p.run.GetID()) // replay test data (workflows/twoway)
}

// TestTwoWay_DeletesAsDeclared: a delete propagates (a soft delete in the
// app's table, a DELETE of the customer), and, declared a conflict, a
// delete against a later edit keeps the edit under last writer wins.
func TestTwoWay_DeletesAsDeclared(t *testing.T) {
	t.Run("propagate", func(t *testing.T) {
		p := newTwoWayPair(t, twoway.Policy{Kind: twoway.LastWriterWins})
		mustExec(t, p.stack, `INSERT INTO accounts (id, email, name, plan) VALUES ('acc-1', 'gus@example.com', 'Gus', 'free'), ('acc-2', 'hal@example.com', 'Hal', 'free')`)
		p.start()
		p.deleteBilling("gus@example.com")
		p.editApp("hal@example.com", "deleted_at = clock_timestamp()")
		if c := p.cycle(); c.Deleted != 2 {
			t.Errorf("cycle: %+v, want two deletes carried", c)
		}
		if a, b := show(p.app()), show(p.billing()); a != "" || b != "" {
			t.Errorf("after the deletes: app %q, billing %q", a, b)
		}
		if c := p.cycle(); c.WritesA+c.WritesB != 0 {
			t.Errorf("the deletes echoed: %+v", c)
		}
	})
	t.Run("a delete against a later edit is a conflict", func(t *testing.T) {
		p := newTwoWayPair(t, twoway.Policy{Kind: twoway.LastWriterWins, Deletes: twoway.DeleteConflicts})
		mustExec(t, p.stack, `INSERT INTO accounts (id, email, name, plan) VALUES ('acc-1', 'ivy@example.com', 'Ivy', 'free')`)
		p.start()
		p.deleteBilling("ivy@example.com")
		time.Sleep(5 * time.Millisecond)
		p.editApp("ivy@example.com", "plan = 'pro'")
		if c := p.cycle(); c.Conflicts != 1 {
			list, _ := p.store.ListConflicts(context.Background(), store.ConflictFilter{Integration: p.name})
			t.Errorf("cycle: %+v, want the delete against the edit as a conflict (%+v)", c, list)
		}
		if a, b := show(p.app()), show(p.billing()); a != "ivy@example.com=Ivy/pro" || b != a {
			t.Errorf("app %q, billing %q; want the edit kept on both", a, b)
		}
	})
}

// TestTwoWay_ExactThroughFailingWritesAndLostAnswers: while the billing
// API fails writes now and then and loses the answer of others it has
// committed (the step's retries send them again), 30 accounts and then
// edits on both sides converge to the same records on both sides: no
// customer created twice, no edit lost, nothing left waiting, and each
// edit written once to the API.
func TestTwoWay_ExactThroughFailingWritesAndLostAnswers(t *testing.T) {
	p := newTwoWayPair(t, twoway.Policy{Kind: twoway.LastWriterWins})
	for i := range 30 {
		mustExec(t, p.stack, `INSERT INTO accounts (id, email, name, plan) VALUES ($1, $2, $3, 'free')`,
			fmt.Sprintf("acc-%d", i), fmt.Sprintf("u%d@example.com", i), fmt.Sprintf("User %d", i))
	}
	p.sandbox.SetFaults(sandbox.Faults{Writes: sandbox.WriteFaults{FailEvery: 7, FailStatus: 503, LostResponseEvery: 5}})
	settle := func(what string) {
		t.Helper()
		for i := 0; ; i++ {
			if c := p.cycle(); c.WritesA+c.WritesB+c.Deferred == 0 && i > 0 {
				return
			}
			if i == 10 {
				t.Fatalf("%s: not quiet after 10 cycles", what)
			}
		}
	}
	p.start()
	settle("the first load")
	if a, b := show(p.app()), show(p.billing()); a != b || len(p.sandbox.Customers()) != 30 {
		t.Fatalf("after the first load (%d customers):\napp     %s\nbilling %s", len(p.sandbox.Customers()), a, b)
	}
	faults := p.sandbox.Faults()
	p.sandbox.SetFaults(sandbox.Faults{}) // the people's own edits go through
	for i := range 10 {
		p.editApp(fmt.Sprintf("u%d@example.com", i), fmt.Sprintf("name = 'App %d'", i))
		p.patchBilling(fmt.Sprintf("u%d@example.com", 10+i), map[string]any{"plan": "pro"})
	}
	before := p.sandbox.WriteStats()
	p.sandbox.SetFaults(faults)
	settle("the edits")
	a, b := p.app(), p.billing()
	if show(a) != show(b) {
		t.Fatalf("after the edits:\napp     %s\nbilling %s", show(a), show(b))
	}
	for i := range 10 {
		if a[fmt.Sprintf("u%d@example.com", i)] != fmt.Sprintf("App %d/free", i) || a[fmt.Sprintf("u%d@example.com", 10+i)] != fmt.Sprintf("User %d/pro", 10+i) {
			t.Fatalf("an edit was lost: %s", show(a))
		}
	}
	if n := p.count(`SELECT count(*) FROM tether_conflicts WHERE integration = $1 AND status = 'parked'`, p.name); n != 0 {
		t.Errorf("%d records wait for a person", n)
	}
	// The API's committed PATCHes: the app's ten edits, once each (an
	// answer lost and sent again is refused by its If-Match, not applied
	// twice).
	after := p.sandbox.WriteStats()
	applied := after.ByMethod["PATCH"][200] - before.ByMethod["PATCH"][200] + after.LostResponses - before.LostResponses
	if after.LostResponses == before.LostResponses || after.Injected == before.Injected {
		t.Errorf("no fault hit the edits' writes (stats before %+v, after %+v)", before, after)
	}
	if applied != 10 {
		t.Errorf("%d PATCHes applied for the app's 10 edits (stats before %+v, after %+v)", applied, before, after)
	}
}

// TestTwoWay_EditStormConverges: 100 edits on each side, to different
// records, made while cycles run, converge to the same records on both
// sides, each edit written once to the other side (no echo, nothing
// written twice).
func TestTwoWay_EditStormConverges(t *testing.T) {
	p := newTwoWayPair(t, twoway.Policy{Kind: twoway.LastWriterWins})
	for i := range 200 {
		mustExec(t, p.stack, `INSERT INTO accounts (id, email, name, plan) VALUES ($1, $2, $3, 'free')`,
			fmt.Sprintf("acc-%d", i), fmt.Sprintf("s%d@example.com", i), fmt.Sprintf("User %d", i))
	}
	p.start()
	base := p.progress().Counts
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { // cycles keep running while people edit
		defer close(done)
		for ctx.Err() == nil {
			_ = p.client.SignalWorkflow(context.Background(), p.run.GetID(), "", twowaywf.SignalSyncNow, nil)
			time.Sleep(20 * time.Millisecond)
		}
	}()
	for i := range 100 {
		p.editApp(fmt.Sprintf("s%d@example.com", i), fmt.Sprintf("name = 'App %d'", i))
		p.patchBilling(fmt.Sprintf("s%d@example.com", 100+i), map[string]any{"plan": "pro"})
	}
	cancel()
	<-done
	for i := 0; ; i++ { // settle
		if c := p.cycle(); c.WritesA+c.WritesB+c.Deferred == 0 && i > 0 {
			break
		}
		if i == 10 {
			t.Fatal("not quiet after 10 cycles")
		}
	}
	a, b := p.app(), p.billing()
	if show(a) != show(b) {
		t.Fatalf("the sides differ:\napp     %s\nbilling %s", show(a), show(b))
	}
	for i := range 100 {
		if a[fmt.Sprintf("s%d@example.com", i)] != fmt.Sprintf("App %d/free", i) || a[fmt.Sprintf("s%d@example.com", 100+i)] != fmt.Sprintf("User %d/pro", 100+i) {
			t.Fatalf("an edit was lost: %s", show(a))
		}
	}
	got := diffCounts(p.progress().Counts, base)
	if got.WritesA != 100 || got.WritesB != 100 || got.Conflicts != 0 {
		t.Errorf("writes for 200 edits: %+v; want 100 each way, once each, no conflict", got)
	}
}

// TestTwoWay_WorkerProcessKilledMidCycle: a worker process runs the
// two-way integration declared in an integration file (kind: two-way),
// starting its workflow itself; it is killed (SIGKILL) while the first
// cycle creates 1,500 customers, and a second worker finishes the cycle:
// every account is on billing exactly once, nothing waits for a person,
// and the cycles after write nothing.
func TestTwoWay_WorkerProcessKilledMidCycle(t *testing.T) {
	s := newStack(t, stackOptions{sandbox: sandbox.Options{Contacts: 10, Faults: sandbox.Faults{
		Writes: sandbox.WriteFaults{Latency: 2 * time.Millisecond}}}, noWorker: true})
	mustExec(t, s, `CREATE TABLE accounts (id text PRIMARY KEY, email text NOT NULL, name text, plan text,
		updated_at timestamptz NOT NULL DEFAULT clock_timestamp(), deleted_at timestamptz)`)
	mustExec(t, s, `INSERT INTO accounts (id, email, name, plan)
		SELECT 'acc-' || i, 'k' || i || '@example.com', 'User ' || i, 'free' FROM generate_series(1, 1500) AS i`)
	name := uniqueName("accounts-billing")
	dir := t.TempDir()
	file := fmt.Sprintf(`kind: two-way
name: %s
a:
  name: app
  postgres: {table: accounts, key: id, updated_at: updated_at, deleted_at: deleted_at, fields: {email: email, name: name, plan: plan}}
b:
  name: billing
  http: {base_url: %s, path: /v1/customers, fields: {email: email, name: name, plan: plan}}
match: [email]
conflicts: {policy: last_writer_wins}
every: 1s
`, name, s.url)
	if err := os.WriteFile(filepath.Join(dir, name+".yaml"), []byte(file), 0o644); err != nil {
		t.Fatal(err)
	}
	var out bytes.Buffer
	if code := cli.Run(context.Background(), []string{"validate", dir}, &out, &out); code != 0 || !strings.Contains(out.String(), "ok ") {
		t.Fatalf("tether validate: exit %d\n%s", code, out.String())
	}
	bin := workerBinary(t)
	logDir := t.TempDir()
	env := s.workerEnv("TETHER_INTEGRATIONS_DIR="+dir, "TETHER_WORKER_GRACEFUL_STOP=1s")
	w1 := s.startWorkerProcess("worker-1", logDir, env, bin)
	for deadline := time.Now().Add(time.Minute); len(s.sandbox.Customers()) < 300; time.Sleep(20 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatalf("no customers created within a minute; worker log:\n%s", w1.logTail(30))
		}
	}
	w1.Kill()
	killedAt := len(s.sandbox.Customers())
	if killedAt >= 1500 {
		t.Fatalf("the cycle ended before the kill (%d customers); the test needs a kill mid-cycle", killedAt)
	}
	w2 := s.startWorkerProcess("worker-2", logDir, env, bin)
	p := &twoWayPair{stack: s, name: name, run: s.client.GetWorkflow(context.Background(), twowaywf.WorkflowID(name), "")}
	eventually(t, 2*time.Minute, "every account on billing", func() bool { return len(s.sandbox.Customers()) >= 1500 })
	for i := 0; ; i++ { // then quiet
		if c := p.cycle(); c.WritesA+c.WritesB+c.Deferred == 0 && i > 0 {
			break
		}
		if i == 10 {
			t.Fatalf("not quiet after 10 cycles; worker log:\n%s", w2.logTail(30))
		}
	}
	if n := len(s.sandbox.Customers()); n != 1500 {
		t.Errorf("%d customers for 1,500 accounts (killed at %d)", n, killedAt)
	}
	if a, b := show(p.app()), show(p.billing()); a != b {
		t.Errorf("the sides differ after the kill")
	}
	if n := s.count(`SELECT count(*) FROM tether_conflicts WHERE status = 'parked'`); n != 0 {
		t.Errorf("%d records wait for a person", n)
	}
	if n := s.count(`SELECT count(*) FROM tether_twoway_pairs WHERE integration = $1 AND a_key IS NOT NULL AND b_key IS NOT NULL`, name); n != 1500 {
		t.Errorf("%d pairs linked, want 1500", n)
	}
}

// TestTwoWay_WebhooksWakeTheCycle: the billing API's signed change
// webhooks, received by tether's webhook receiver for a source of the
// two-way integration, start a cycle at once: an edit reaches the app
// within seconds though the integration's timer is an hour.
func TestTwoWay_WebhooksWakeTheCycle(t *testing.T) {
	var receiver atomic.Pointer[http.Handler]
	front := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if h := receiver.Load(); h != nil {
			(*h).ServeHTTP(w, r)
			return
		}
		http.Error(w, "not ready", http.StatusServiceUnavailable)
	}))
	t.Cleanup(front.Close)
	p := newTwoWayPairWith(t, twoway.Policy{Kind: twoway.LastWriterWins},
		sandbox.Options{Contacts: 10, Webhooks: sandbox.Webhooks{URL: front.URL + webhook.Path("billing"), Secret: hookSecret}})
	src := webhook.Source{Name: "billing", Secrets: []string{hookSecret}, KeyPath: "data.id", Integration: p.name}
	routes, sources, err := app.WebhookRoutes([]config.WebhookSource{{Source: src}}, nil, p.twoWay)
	if err != nil {
		t.Fatal(err)
	}
	if !routes["billing"].TwoWay {
		t.Fatalf("routes %+v: want the source to wake the two-way integration", routes)
	}
	rcv, err := webhook.New(sources, nil, webhook.NewTemporalAccepter(p.client, p.taskQueue, routes, p.store))
	if err != nil {
		t.Fatal(err)
	}
	var h http.Handler = rcv
	receiver.Store(&h)

	mustExec(t, p.stack, `INSERT INTO accounts (id, email, name, plan) VALUES ('acc-1', 'jo@example.com', 'Jo', 'free')`)
	p.start()
	eventually(t, 10*time.Second, "the customer created by the first cycle", func() bool { return len(p.sandbox.Customers()) == 1 })
	cycles := p.progress().Cycles
	p.patchBilling("jo@example.com", map[string]any{"name": "Jo B"})
	eventually(t, 15*time.Second, "billing's edit in the app, woken by its webhook", func() bool { return p.app()["jo@example.com"] == "Jo B/free" })
	if pr := p.progress(); pr.Cycles <= cycles {
		t.Errorf("no cycle ran after the webhook (%d before, %d after)", cycles, pr.Cycles)
	}
}

// TestTwoWay_APIToAPI: two HTTP APIs as the sides (two billing systems):
// customers of each are created on the other, an edit on either reaches
// the other once, and the cycles after are quiet.
func TestTwoWay_APIToAPI(t *testing.T) {
	other, err := sandbox.New(sandbox.Options{Contacts: 10})
	if err != nil {
		t.Fatal(err)
	}
	ots := httptest.NewServer(other.Handler())
	t.Cleanup(ots.Close)
	name := uniqueName("billing-billing")
	fields := map[string]string{"email": "email", "name": "name", "plan": "plan"}
	s := newStack(t, stackOptions{sandbox: sandbox.Options{Contacts: 10}, twoWay: func(url string) []twoway.Definition {
		return []twoway.Definition{{
			Name:   name,
			A:      twoway.SideSpec{Name: "eu", HTTP: &twoway.HTTPSide{BaseURL: url, Path: "/v1/customers", Fields: fields}},
			B:      twoway.SideSpec{Name: "us", HTTP: &twoway.HTTPSide{BaseURL: ots.URL, Path: "/v1/customers", Fields: fields}},
			Match:  []string{"email"},
			Policy: twoway.Policy{Kind: twoway.LastWriterWins},
			Every:  time.Hour,
		}}
	}})
	if _, err := s.sandbox.SeedCustomers(sandbox.Customer{Email: "ann@example.com", Name: "Ann", Plan: "free"}); err != nil {
		t.Fatal(err)
	}
	if _, err := other.SeedCustomers(sandbox.Customer{Email: "ben@example.com", Name: "Ben", Plan: "pro"}); err != nil {
		t.Fatal(err)
	}
	p := &twoWayPair{stack: s, name: name}
	p.start()
	byEmail := func(sb *sandbox.Server) map[string]string {
		out := map[string]string{}
		for _, c := range sb.Customers() {
			out[c.Email] = c.Name + "/" + c.Plan
		}
		return out
	}
	want := "ann@example.com=Ann/free ben@example.com=Ben/pro"
	if eu, us := show(byEmail(s.sandbox)), show(byEmail(other)); eu != want || us != want {
		t.Fatalf("after the first cycle: eu %s, us %s; want both %s", eu, us, want)
	}
	p.patchBilling("ann@example.com", map[string]any{"plan": "starter"}) // on eu
	if c := p.cycle(); c.WritesB != 1 || c.WritesA != 0 {
		t.Errorf("cycle: %+v, want one write to us", c)
	}
	if got := byEmail(other)["ann@example.com"]; got != "Ann/starter" {
		t.Errorf("ann on us: %s", got)
	}
	if c := p.cycle(); c.WritesA+c.WritesB != 0 {
		t.Errorf("the edit echoed: %+v", c)
	}
}

// TestTwoWay_TableChangesWakeTheCycle: with notify on the PostgreSQL side,
// the trigger tether installs wakes the cycle when the table changes: a
// new account is on billing within seconds though the timer is an hour.
func TestTwoWay_TableChangesWakeTheCycle(t *testing.T) {
	p := newTwoWayPairWith(t, twoway.Policy{Kind: twoway.LastWriterWins}, sandbox.Options{Contacts: 10},
		func(d *twoway.Definition) { d.A.Postgres.Notify = true })
	p.start()
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() {
		done <- twoway.Watch(ctx, p.schema.DB, p.schema.DSN, p.twoWay, app.WakeTwoWay(p.client, slog.New(slog.DiscardHandler)), slog.New(slog.DiscardHandler))
	}()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("Watch: %v", err)
		}
	})
	eventually(t, 10*time.Second, "the trigger installed", func() bool {
		return p.count(`SELECT count(*) FROM pg_trigger WHERE tgname = $1`, twoway.NotifyChannel(p.name, twoway.PostgresSide{Table: "accounts"})) == 1
	})
	mustExec(t, p.stack, `INSERT INTO accounts (id, email, name, plan) VALUES ('acc-9', 'kai@example.com', 'Kai', 'pro')`)
	eventually(t, 15*time.Second, "the new account on billing, woken by the table's notification", func() bool {
		return p.billing()["kai@example.com"] == "Kai/pro"
	})
}

// TestTwoWay_TablesWithTombstones: two PostgreSQL tables as the sides,
// deletes as tombstones: a row soft-deleted on one side is kept on the
// other with its deleted_at set, and an edit flows as usual.
func TestTwoWay_TablesWithTombstones(t *testing.T) {
	name := uniqueName("accounts-mirror")
	fields := map[string]string{"email": "email", "name": "name", "plan": "plan"}
	side := func(table string) *twoway.PostgresSide {
		return &twoway.PostgresSide{Table: table, Key: "id", UpdatedAt: "updated_at", DeletedAt: "deleted_at", Fields: fields}
	}
	s := newStack(t, stackOptions{noWorker: true, twoWay: func(string) []twoway.Definition {
		return []twoway.Definition{{Name: name,
			A: twoway.SideSpec{Name: "main", Postgres: side("accounts")}, B: twoway.SideSpec{Name: "mirror", Postgres: side("accounts_mirror")},
			Match: []string{"email"}, Policy: twoway.Policy{Kind: twoway.LastWriterWins, Deletes: twoway.Tombstone}, Every: time.Hour}}
	}})
	for _, table := range []string{"accounts", "accounts_mirror"} {
		mustExec(t, s, `CREATE TABLE `+table+` (id text PRIMARY KEY, email text NOT NULL, name text, plan text,
			updated_at timestamptz NOT NULL DEFAULT clock_timestamp(), deleted_at timestamptz)`)
	}
	s.startWorker()
	mustExec(t, s, `INSERT INTO accounts (id, email, name, plan) VALUES ('acc-1', 'lea@example.com', 'Lea', 'free'), ('acc-2', 'max@example.com', 'Max', 'free')`)
	p := &twoWayPair{stack: s, name: name}
	p.start()
	if n := s.count(`SELECT count(*) FROM accounts_mirror WHERE deleted_at IS NULL`); n != 2 {
		t.Fatalf("%d rows in the mirror after the first cycle, want 2", n)
	}
	mustExec(t, s, `UPDATE accounts SET deleted_at = clock_timestamp(), updated_at = clock_timestamp() WHERE email = 'lea@example.com'`)
	mustExec(t, s, `UPDATE accounts_mirror SET plan = 'pro', updated_at = clock_timestamp() WHERE email = 'max@example.com'`)
	if c := p.cycle(); c.Deleted != 1 || c.WritesA != 1 {
		t.Errorf("cycle: %+v, want lea's tombstone on the mirror and max's edit on main", c)
	}
	if n := s.count(`SELECT count(*) FROM accounts_mirror WHERE email = 'lea@example.com' AND deleted_at IS NOT NULL`); n != 1 {
		t.Errorf("lea is not a tombstone in the mirror (%d rows)", n)
	}
	if n := s.count(`SELECT count(*) FROM accounts WHERE email = 'max@example.com' AND plan = 'pro'`); n != 1 {
		t.Errorf("max's edit did not reach main")
	}
	if c := p.cycle(); c.WritesA+c.WritesB != 0 {
		t.Errorf("the tombstone echoed: %+v", c)
	}
}

// TestTwoWay_ABacklogIsReadOverSeveralCycles: with a cycle reading at
// most a page or so of a side's changes, 1,200 new accounts reach billing
// over several cycles, each once, and the cycles after are quiet.
func TestTwoWay_ABacklogIsReadOverSeveralCycles(t *testing.T) {
	p := newTwoWayPair(t, twoway.Policy{Kind: twoway.LastWriterWins})
	p.acts.TwoWay.MaxChanges = 100 // a table side reads 500 a page
	mustExec(t, p.stack, `INSERT INTO accounts (id, email, name, plan)
		SELECT 'acc-' || i, 'b' || i || '@example.com', 'User ' || i, 'free' FROM generate_series(1, 1200) AS i`)
	first := p.start().Counts
	if first.ReadA >= 1200 || first.Created == 0 {
		t.Fatalf("first cycle: %+v; want part of the backlog", first)
	}
	for i := 0; len(p.sandbox.Customers()) < 1200; i++ {
		if i == 10 {
			t.Fatalf("%d customers after 10 cycles", len(p.sandbox.Customers()))
		}
		p.cycle()
	}
	if c := p.cycle(); c.WritesA+c.WritesB != 0 {
		t.Errorf("not quiet after the backlog: %+v", c)
	}
	if a, b := show(p.app()), show(p.billing()); a != b || len(p.sandbox.Customers()) != 1200 {
		t.Errorf("after the backlog: %d customers, sides equal %v", len(p.sandbox.Customers()), a == b)
	}
}

// TestTwoWay_CastsBetweenTheSides: the app keeps balances in integer
// cents, billing as an amount: the cents cast converts both ways, an edit
// on either side arrives converted, nothing echoes, and an amount billing
// holds with three decimals (no whole number of cents) waits for a person
// instead of being written.
func TestTwoWay_CastsBetweenTheSides(t *testing.T) {
	p := newTwoWayPairWith(t, twoway.Policy{Kind: twoway.LastWriterWins}, sandbox.Options{Contacts: 10}, func(d *twoway.Definition) {
		d.A.Postgres.Fields["balance"] = "balance_cents"
		d.A.Casts = map[string]string{"balance": "cents"}
		d.B.HTTP.Fields["balance"] = "balance"
	})
	mustExec(t, p.stack, `ALTER TABLE accounts ADD COLUMN balance_cents bigint`)
	mustExec(t, p.stack, `INSERT INTO accounts (id, email, name, plan, balance_cents) VALUES ('acc-1', 'nia@example.com', 'Nia', 'free', 1234)`)
	p.start()
	balance := func() any {
		for _, c := range p.sandbox.Customers() {
			if c.Email == "nia@example.com" {
				var v any
				_ = json.Unmarshal(c.Extra["balance"], &v)
				return v
			}
		}
		return nil
	}
	if b := balance(); b != 12.34 {
		t.Fatalf("billing's balance %v, want 12.34 from 1234 cents", b)
	}
	p.patchBilling("nia@example.com", map[string]any{"balance": 20.5})
	if c := p.cycle(); c.WritesA != 1 {
		t.Errorf("cycle: %+v, want billing's edit written to the app", c)
	}
	if n := p.count(`SELECT count(*) FROM accounts WHERE balance_cents = 2050`); n != 1 {
		t.Errorf("the app's balance is not 2050 cents")
	}
	if c := p.cycle(); c.WritesA+c.WritesB != 0 {
		t.Errorf("the converted edit echoed: %+v", c)
	}
	p.patchBilling("nia@example.com", map[string]any{"balance": 1.005})
	if c := p.cycle(); c.Parked != 1 || c.WritesA != 0 {
		t.Errorf("cycle: %+v, want an amount of three decimals parked, not written", c)
	}
	if n := p.count(`SELECT count(*) FROM tether_conflicts WHERE status = 'parked' AND resolution LIKE '%more than two decimals%'`); n != 1 {
		t.Errorf("the parked record does not say why")
	}
}

// countedSide is a side of a kind registered in Go: the sandbox's
// customers through the HTTP side, counting the writes that reach it.
type countedSide struct {
	connector.Side
	puts *atomic.Int64
}

func (c countedSide) Put(ctx context.Context, key string, rec connector.Row, expect, idem string) (connector.Written, error) {
	c.puts.Add(1)
	return c.Side.Put(ctx, key, rec, expect, idem)
}

// TestTwoWay_ASideOfAKindRegisteredInGo: a side of a kind the worker's
// connector registry was given in Go (app.WithConnectors, here
// BuildOptions.Connectors) is opened by that kind, with its own
// configuration, and carries the edits like a shipped one; a kind no
// connector opens stops the worker before it starts, naming the kind.
func TestTwoWay_ASideOfAKindRegisteredInGo(t *testing.T) {
	var puts atomic.Int64
	register := func(r *connector.Registry) {
		r.RegisterSide("billing-api", func(spec connector.SideSpec) (connector.Side, error) {
			s, err := httpside.Factory(nil)(spec)
			if err != nil {
				return nil, err
			}
			return countedSide{Side: s, puts: &puts}, nil
		})
	}
	p := newTwoWayPairOn(t, register, twoway.Policy{Kind: twoway.LastWriterWins}, sandbox.Options{Contacts: 10}, func(d *twoway.Definition) {
		d.B = twoway.SideSpec{Name: "billing", Kind: "billing-api", Config: *d.B.HTTP, Shared: []string{"email", "name", "plan"}}
	})
	mustExec(t, p.stack, `INSERT INTO accounts (id, email, name, plan) VALUES ('acc-1', 'ada@example.com', 'Ada', 'free')`)
	p.start()
	p.editApp("ada@example.com", "plan = 'pro'")
	p.cycle()
	want := "ada@example.com=Ada/pro"
	if got, gotB := show(p.app()), show(p.billing()); got != want || gotB != want {
		t.Errorf("app %s, billing %s; want both %s", got, gotB, want)
	}
	if n := puts.Load(); n != 2 {
		t.Errorf("%d writes reached the registered side, want 2 (the create and the edit)", n)
	}

	def, err := p.twoWay.Get(p.name)
	if err != nil {
		t.Fatal(err)
	}
	reg, err := twoway.NewRegistry(twoway.Definition{Name: "unknown-kind", A: def.A,
		B: twoway.SideSpec{Name: "crm", Kind: "crm-api", Shared: []string{"email", "name", "plan"}}, Policy: def.Policy})
	if err != nil {
		t.Fatal(err)
	}
	none, err := integration.NewRegistry()
	if err != nil {
		t.Fatal(err)
	}
	sch, err := schema.NewRegistry(schemas.FS())
	if err != nil {
		t.Fatal(err)
	}
	_, err = app.Build(app.BuildOptions{DB: p.schema.DB, Store: p.store, Integrations: none, Schemas: sch, TwoWay: reg, Connectors: register})
	if err == nil || !strings.Contains(err.Error(), `"crm-api"`) || !strings.Contains(err.Error(), "side crm") {
		t.Fatalf("a worker with an unregistered side kind: %v; want an error naming the kind and the side", err)
	}
}

// TestTwoWay_AComputedFieldBetweenTheSides: the app keeps a first and a
// last name, billing one name; the shared name is made of the two and
// split back, both ways, with no echo; a name that would not come back
// the same (a leading space) is parked with the reason, not written back
// and forth.
func TestTwoWay_AComputedFieldBetweenTheSides(t *testing.T) {
	p := newTwoWayPairWith(t, twoway.Policy{Kind: twoway.LastWriterWins}, sandbox.Options{Contacts: 10}, func(d *twoway.Definition) {
		d.A.Postgres.Fields = map[string]string{"email": "email", "first": "first_name", "last": "last_name", "plan": "plan"}
		d.A.Computed = map[string]twoway.Computed{"name": {Compute: "join", From: []string{"first", "last"}}}
	})
	mustExec(t, p.stack, `ALTER TABLE accounts ADD first_name text, ADD last_name text`)
	mustExec(t, p.stack, `INSERT INTO accounts (id, email, first_name, last_name, plan) VALUES ('acc-1', 'ada@example.com', 'Ada', 'Lovelace', 'free')`)
	if _, err := p.sandbox.SeedCustomers(sandbox.Customer{Email: "mae@example.com", Name: "Mary Ann Evans", Plan: "pro"}); err != nil {
		t.Fatal(err)
	}
	p.start()
	names := func() string {
		rows, err := p.schema.DB.Query(`SELECT email, coalesce(first_name, '-'), coalesce(last_name, '-') FROM accounts ORDER BY email`)
		if err != nil {
			t.Fatal(err)
		}
		defer rows.Close()
		var out []string
		for rows.Next() {
			var e, f, l string
			if err := rows.Scan(&e, &f, &l); err != nil {
				t.Fatal(err)
			}
			out = append(out, e+"="+f+"|"+l)
		}
		return strings.Join(out, " ")
	}
	billingNames := func() string {
		var out []string
		for _, c := range p.sandbox.Customers() {
			out = append(out, c.Email+"="+c.Name)
		}
		sort.Strings(out)
		return strings.Join(out, " ")
	}
	if got, want := names(), "ada@example.com=Ada|Lovelace mae@example.com=Mary|Ann Evans"; got != want {
		t.Errorf("app after the first cycle: %s, want %s", got, want)
	}
	if got, want := billingNames(), "ada@example.com=Ada Lovelace mae@example.com=Mary Ann Evans"; got != want {
		t.Errorf("billing after the first cycle: %s, want %s", got, want)
	}
	if c := p.cycle(); c.WritesA+c.WritesB != 0 {
		t.Errorf("a quiet cycle wrote: %+v", c)
	}
	// An edit of one part on the app changes the shared name on billing.
	mustExec(t, p.stack, `UPDATE accounts SET last_name = 'King', updated_at = clock_timestamp() WHERE email = 'ada@example.com'`)
	p.patchBilling("mae@example.com", map[string]any{"name": "George Eliot"})
	if c := p.cycle(); c.WritesA != 1 || c.WritesB != 1 {
		t.Errorf("edit cycle: %+v, want one write each way", c)
	}
	if got, want := names(), "ada@example.com=Ada|King mae@example.com=George|Eliot"; got != want {
		t.Errorf("app after the edits: %s, want %s", got, want)
	}
	if got, want := billingNames(), "ada@example.com=Ada King mae@example.com=George Eliot"; got != want {
		t.Errorf("billing after the edits: %s, want %s", got, want)
	}
	if c := p.cycle(); c.WritesA+c.WritesB != 0 {
		t.Errorf("the edits echoed: %+v", c)
	}
	// A name the parts cannot make again waits for a person.
	p.patchBilling("mae@example.com", map[string]any{"name": " George"})
	c := p.cycle()
	if c.WritesA != 0 || c.Parked != 1 {
		t.Errorf("cycle with an unsplittable name: %+v, want nothing written and one parked", c)
	}
	if n := p.count(`SELECT count(*) FROM tether_conflicts WHERE integration = $1 AND status = 'parked' AND resolution LIKE '%field name%does not come back unchanged%'`, p.name); n != 1 {
		t.Errorf("the parked record's reason is not recorded (%d rows)", n)
	}
	if got, want := names(), "ada@example.com=Ada|King mae@example.com=George|Eliot"; got != want {
		t.Errorf("app after the unsplittable name: %s, want %s", got, want)
	}
}
