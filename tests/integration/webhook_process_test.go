package integration

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"go.temporal.io/sdk/client"
	"go.temporal.io/sdk/converter"

	"github.com/tetherflow/tether/activities/integration"
	"github.com/tetherflow/tether/activities/syncstep"
	"github.com/tetherflow/tether/workers/config"
	"github.com/tetherflow/tether/workers/webhook"
	"github.com/tetherflow/tether/workflows/events"
)

// freePort is a loopback port nothing listens on right now.
func freePort(t *testing.T) int {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	return ln.Addr().(*net.TCPAddr).Port
}

// webhookConfig is a worker config file serving the CRM's webhooks on
// listen for integrationName, its secrets in the variables secretVars.
func webhookConfig(t *testing.T, listen, integrationName string, secretVars ...string) string {
	t.Helper()
	body := fmt.Sprintf(`webhooks:
  listen: %s
  sources:
    - name: crm
      integration: %s
      secrets_env: [%s]
      key_path: data.id
      version_path: data.updated_at
      record_path: data
      type_path: type
      delete_types: [contact.deleted]
`, listen, integrationName, strings.Join(secretVars, ", "))
	p := filepath.Join(t.TempDir(), "worker.yaml")
	if err := os.WriteFile(p, []byte(body), 0o644); err != nil {
		t.Fatal(err)
	}
	return p
}

// waitPolling waits until the worker process logs that it polls.
func waitPolling(t *testing.T, w *workerProcess) {
	t.Helper()
	for deadline := time.Now().Add(60 * time.Second); ; time.Sleep(100 * time.Millisecond) {
		b, _ := os.ReadFile(w.logFile)
		if bytes.Contains(b, []byte("worker polling")) {
			return
		}
		if exited, err := w.Exited(); exited || time.Now().After(deadline) {
			t.Fatalf("the worker is not polling within 60s (exited %v: %v); log:\n%s", exited, err, b)
		}
	}
}

// TestWebhooks_WorkerProcessAppliesSignedWebhooks: the shipped worker,
// configured with a file that names its webhook source and the variables
// holding the source's secrets, serves the receiver and applies what it
// accepts to an integration from TETHER_INTEGRATIONS_DIR.
func TestWebhooks_WorkerProcessAppliesSignedWebhooks(t *testing.T) {
	s := newStack(t, stackOptions{noWorker: true})
	name := uniqueName("hook-proc")
	dir, logDir := t.TempDir(), t.TempDir()
	writeIntegrationFile(t, dir, name, "events:\n  shards: 4\n")
	listen := fmt.Sprintf("127.0.0.1:%d", freePort(t))
	cfg := webhookConfig(t, listen, name, "TEST_CRM_HOOK_SECRET", "TEST_CRM_HOOK_SECRET_PREVIOUS")
	env := s.workerEnv("TETHER_CONFIG="+cfg, "TETHER_INTEGRATIONS_DIR="+dir, "TETHER_METRICS_LISTEN=",
		"TETHER_SCHEDULES_OWNER="+name, "TEST_CRM_HOOK_SECRET="+hookSecret, "TEST_CRM_HOOK_SECRET_PREVIOUS="+hookOldSecret)
	w := s.startWorkerProcess("worker", logDir, env, workerBinary(t))
	waitPolling(t, w)
	if b, _ := os.ReadFile(w.logFile); !bytes.Contains(b, []byte("webhook receiver serving")) || bytes.Contains(b, []byte(hookSecret)) {
		t.Fatalf("the worker's log does not say the receiver serves, or prints a secret:\n%s", b)
	}
	h := &hooks{s: s, url: "http://" + listen, source: webhook.Source{Name: "crm"}, shards: 4}

	h.mustAccept("proc-1", contactEvent(1, 1, "contact.created"))
	h.mustAccept("proc-2", contactEvent(2, 1, "contact.created"))
	h.mustAccept("proc-3", contactEvent(1, 3, "contact.updated"))
	h.mustAccept("proc-4", contactEvent(1, 2, "contact.updated")) // older than proc-3: stale
	if code, _, answer := h.send("proc-5", contactEvent(3, 1, "contact.created"), hookOldSecret, time.Now()); code != http.StatusAccepted {
		t.Fatalf("signed with the previous secret (secrets_env[1]): %d %s, want 202", code, answer)
	}
	if code, _, _ := h.send("proc-6", contactEvent(4, 1, "contact.created"), "not-the-secret", time.Now()); code != http.StatusUnauthorized {
		t.Fatalf("signed with a wrong secret: %d, want 401", code)
	}
	eventually(t, 60*time.Second, "the first deliveries applied", func() bool {
		return s.count(`SELECT count(*) FROM tether_event_deliveries WHERE integration = $1`, name) == 5
	})
	h.mustAccept("proc-7", contactEvent(2, 2, "contact.deleted"))
	eventually(t, 60*time.Second, "contact 2 deleted", func() bool {
		return s.count(`SELECT count(*) FROM tether_event_deliveries WHERE integration = $1`, name) == 6
	})
	if code, _, answer := h.send("proc-3", contactEvent(1, 3, "contact.updated"), hookSecret, time.Now()); code != http.StatusOK || !strings.Contains(answer, `"duplicate"`) {
		t.Errorf("redelivery of an applied event: %d %s, want 200 duplicate", code, answer)
	}

	rows := s.tableRows("crm_contacts_yaml")
	got := map[int64]string{}
	for id, r := range rows {
		got[id], _ = r["full_name"].(string)
	}
	// The integration file's mapping made full_name from the record.
	if want := map[int64]string{1: "Ada V3", 3: "Ada V1"}; fmt.Sprint(got) != fmt.Sprint(want) {
		t.Errorf("crm_contacts_yaml full names = %v, want %v", got, want)
	}
	// Counts depend on how the events fell into batches, but every event
	// is counted once, the deletion deleted, and version 2 of contact 1
	// (after version 3) is stale either way.
	p := h.progress(name)
	c := p.Counts
	if c.Received != 6 || c.Deleted != 1 || c.Stale < 1 || p.LastError != "" ||
		c.Inserted+c.Updated+c.Deleted+c.Unchanged+c.Stale+c.Superseded+c.Duplicates+c.Quarantined != c.Received {
		t.Errorf("progress of the shards: %+v", p)
	}
}

// TestWebhooks_WorkerProcessRefusesBadWebhookSources: a worker whose
// webhook source cannot work stops at start, before it polls, and says
// which source and why.
func TestWebhooks_WorkerProcessRefusesBadWebhookSources(t *testing.T) {
	s := newStack(t, stackOptions{noWorker: true})
	bin := workerBinary(t)
	unknown := uniqueName("no-such-integration")
	tests := []struct {
		name string
		cfg  func(listen string) string
		env  []string
		want []string
	}{
		{
			name: "unknown integration",
			cfg:  func(listen string) string { return webhookConfig(t, listen, unknown, "TEST_CRM_HOOK_SECRET") },
			env:  []string{"TEST_CRM_HOOK_SECRET=" + hookSecret},
			want: []string{"webhooks.sources[0] (crm): integration:", `unknown integration "` + unknown + `"`, "crm-contacts"},
		},
		{
			name: "secret variable not set",
			cfg: func(listen string) string {
				return webhookConfig(t, listen, "crm-contacts", "TEST_CRM_HOOK_SECRET_UNSET")
			},
			want: []string{"webhooks.sources[0] (crm): secrets_env: environment variable TEST_CRM_HOOK_SECRET_UNSET is not set"},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			listen := fmt.Sprintf("127.0.0.1:%d", freePort(t))
			env := s.workerEnv(append([]string{"TETHER_CONFIG=" + tt.cfg(listen), "TETHER_METRICS_LISTEN=",
				"TETHER_SCHEDULES_OWNER=" + uniqueName("owner")}, tt.env...)...)
			w := s.startWorkerProcess("worker", t.TempDir(), env, bin)
			select {
			case <-w.Done():
			case <-time.After(60 * time.Second):
				t.Fatalf("the worker kept running; log:\n%s", w.logTail(40))
			}
			b, _ := os.ReadFile(w.logFile)
			if _, err := w.Exited(); err == nil {
				t.Errorf("the worker exited with status 0; log:\n%s", b)
			}
			for _, want := range tt.want {
				if !bytes.Contains(b, []byte(want)) {
					t.Errorf("the worker's log does not say %q:\n%s", want, b)
				}
			}
			if bytes.Contains(b, []byte("worker polling")) || bytes.Contains(b, []byte(hookSecret)) {
				t.Errorf("the worker polled, or printed a secret:\n%s", b)
			}
			if c, err := net.DialTimeout("tcp", listen, time.Second); err == nil {
				c.Close()
				t.Errorf("something still serves %s", listen)
			}
		})
	}
}

// oneShard is crm-contacts under a name of its own with a single events
// workflow, so all of a test's events go through one history.
func oneShard(name *string) func(config.Connection) []integration.Definition {
	defs := eventContacts(name)
	return func(crm config.Connection) []integration.Definition {
		ds := defs(crm)
		ds[0].Events.Shards = 1
		return ds
	}
}

// stepEvent is contactEvent as the receiver hands it to the events
// workflow.
func stepEvent(t *testing.T, delivery string, id, v int) syncstep.Event {
	t.Helper()
	var body struct {
		Data json.RawMessage `json:"data"`
	}
	if err := json.Unmarshal(contactEvent(id, v, "contact.updated"), &body); err != nil {
		t.Fatal(err)
	}
	var data struct {
		UpdatedAt string `json:"updated_at"`
	}
	if err := json.Unmarshal(body.Data, &data); err != nil {
		t.Fatal(err)
	}
	return syncstep.Event{Source: "crm", DeliveryID: delivery, Key: fmt.Sprint(id), Version: data.UpdatedAt,
		Record: body.Data, ReceivedAt: time.Now().UTC()}
}

// queryShard runs the progress query of a shard's latest run.
func queryShard(t *testing.T, s *stack, id string) events.Progress {
	t.Helper()
	resp, err := s.client.QueryWorkflow(context.Background(), id, "", events.QueryProgress)
	if err != nil {
		t.Fatalf("query %s: %v", id, err)
	}
	var p events.Progress
	if err := resp.Get(&p); err != nil {
		t.Fatal(err)
	}
	return p
}

// TestWebhooks_EventsWorkflowRunsForReplay runs a shard through what its
// history must replay: events signalled through the receiver, a batch
// whose apply fails (the destination table is gone for a while) and is
// retried with the events that arrived meanwhile, a redelivery dropped
// while pending, completion once idle; then a run started with carried
// state, as continue-as-new starts one. With -record-histories it writes
// both histories (workflows/events replays them):
//
//	go test ./tests/integration -run TestWebhooks_EventsWorkflowRunsForReplay \
//	    -record-histories=$PWD/workflows/events/testdata/histories
func TestWebhooks_EventsWorkflowRunsForReplay(t *testing.T) {
	var name string
	s := newStack(t, stackOptions{defs: oneShard(&name)})
	h := newHooks(s, crmHookSource(name))
	ctx := context.Background()
	id := events.WorkflowID(name, 0)
	deliveries := func() int {
		return s.count(`SELECT count(*) FROM tether_event_deliveries WHERE integration = $1`, name)
	}

	// The shard is started with a short idle time; the receiver's
	// signal-with-start then signals the running workflow.
	run, err := s.client.ExecuteWorkflow(ctx, client.StartWorkflowOptions{ID: id, TaskQueue: s.taskQueue},
		events.WorkflowType, events.Input{Integration: name, IdleTimeout: 3 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	h.mustAccept("rp-1", contactEvent(1, 1, "contact.created"))
	eventually(t, 30*time.Second, "the first event applied", func() bool { return deliveries() == 1 })

	// The destination goes away: the next batch fails and is retried.
	if _, err := s.schema.DB.Exec(`ALTER TABLE crm_contacts RENAME TO crm_contacts_away`); err != nil {
		t.Fatal(err)
	}
	h.mustAccept("rp-2", contactEvent(2, 1, "contact.created"))
	var blocked events.Progress
	eventually(t, 30*time.Second, "the failed apply reported", func() bool {
		blocked = queryShard(t, s, id)
		return blocked.LastError != ""
	})
	h.mustAccept("rp-3", contactEvent(1, 3, "contact.updated"))
	h.mustAccept("rp-4", contactEvent(1, 2, "contact.updated"))
	h.mustAccept("rp-5", contactEvent(2, 2, "contact.deleted"))
	if code, _, _ := h.send("rp-2", contactEvent(2, 1, "contact.created"), hookSecret, time.Now()); code != http.StatusAccepted {
		t.Fatalf("redelivery of a pending event: %d, want 202 (it is not applied yet)", code)
	}
	if deliveries() != 1 {
		t.Fatal("events were applied while the destination was away")
	}
	if _, err := s.schema.DB.Exec(`ALTER TABLE crm_contacts_away RENAME TO crm_contacts`); err != nil {
		t.Fatal(err)
	}
	wctx, cancel := context.WithTimeout(ctx, 2*time.Minute)
	defer cancel()
	if err := run.Get(wctx, nil); err != nil {
		t.Fatalf("the shard did not complete once idle: %v", err)
	}
	if !strings.Contains(blocked.LastError, "crm_contacts") || blocked.Pending == 0 {
		t.Errorf("progress while the destination was away: %+v; want the error naming the table and the events pending", blocked)
	}
	if n := deliveries(); n != 5 {
		t.Fatalf("%d deliveries applied, want 5", n)
	}
	if names := s.lastNames("crm_contacts"); fmt.Sprint(names) != fmt.Sprint(map[int64]string{1: "V3"}) {
		t.Errorf("crm_contacts = %v, want contact 1 at V3 and contact 2 deleted", names)
	}
	p := queryShard(t, s, id)
	if p.Counts.Received != 5 || p.DroppedRedeliveries != 1 || p.Pending != 0 || p.LastError != "" || p.Batches < 3 {
		t.Errorf("progress after the retry: %+v; want 5 received in 3 or more batches (one failed), 1 redelivery dropped", p)
	}
	s.record(id)

	// A run started with carried state applies the carried events first
	// and drops a redelivery of an event the previous run applied.
	carried := events.State{
		Pending: []syncstep.Event{stepEvent(t, "rp-6", 3, 1), stepEvent(t, "rp-7", 1, 4)},
		Recent:  []string{"crm\x00rp-1", "crm\x00rp-3"}, Counts: p.Counts, Batches: p.Batches, Executions: p.Executions,
		StartedAt: time.Now().UTC(),
	}
	run, err = s.client.ExecuteWorkflow(ctx, client.StartWorkflowOptions{ID: id, TaskQueue: s.taskQueue},
		events.WorkflowType, events.Input{Integration: name, IdleTimeout: 3 * time.Second, State: &carried})
	if err != nil {
		t.Fatal(err)
	}
	if err := s.client.SignalWorkflow(ctx, id, run.GetRunID(), events.SignalEvent, stepEvent(t, "rp-3", 1, 3)); err != nil {
		t.Fatal(err)
	}
	if err := run.Get(wctx, nil); err != nil {
		t.Fatalf("the continued shard did not complete: %v", err)
	}
	if names := s.lastNames("crm_contacts"); fmt.Sprint(names) != fmt.Sprint(map[int64]string{1: "V4", 3: "V1"}) {
		t.Errorf("crm_contacts after the carried events = %v, want contact 1 at V4 and contact 3 at V1", names)
	}
	p = queryShard(t, s, id)
	if p.Executions != 2 || p.Counts.Received != 7 || p.DroppedRedeliveries != 1 || p.Batches <= carried.Batches {
		t.Errorf("progress of the continued run: %+v; want execution 2, 7 received, 1 redelivery dropped", p)
	}
	s.record(id)
}

// TestWebhooks_EqualVersionsInOtherNotationsLastArrivalWins: two events
// of an entity at the same version, written in different time zones,
// applied in one batch: as for any equal versions, the later to arrive
// wins and the earlier is superseded (not stale), as it would if they
// were applied in separate batches (the version guard lets an equal
// version through).
func TestWebhooks_EqualVersionsInOtherNotationsLastArrivalWins(t *testing.T) {
	var name string
	s := newStack(t, stackOptions{defs: oneShard(&name), noWorker: true})
	h := newHooks(s, crmHookSource(name))
	first := contactEvent(5, 120, "contact.updated") // updated_at 2026-11-23T12:00:00Z, last_name V120
	later := bytes.Replace(first, []byte(`"2026-11-23T12:00:00Z"`), []byte(`"2026-11-23T14:00:00+02:00"`), 1)
	later = bytes.Replace(later, []byte(`"V120"`), []byte(`"Later"`), 1)
	if bytes.Equal(first, later) || !bytes.Contains(later, []byte("Later")) || !bytes.Contains(later, []byte("+02:00")) {
		t.Fatalf("the second body was not rewritten: %s", later)
	}
	h.mustAccept("eq-1", first)
	h.mustAccept("eq-2", later)
	s.startWorker() // both are pending when the shard first runs: one batch
	eventually(t, 30*time.Second, "both events applied", func() bool {
		return s.count(`SELECT count(*) FROM tether_event_deliveries WHERE integration = $1`, name) == 2
	})
	if got := s.lastNames("crm_contacts")[5]; got != "Later" {
		t.Errorf("contact 5 is at %q after two events of equal version; want the later one (Later)", got)
	}
	if p := queryShard(t, s, events.WorkflowID(name, 0)); p.Counts.Superseded != 1 || p.Counts.Stale != 0 {
		t.Errorf("counts %+v; want the earlier event superseded, none stale", p.Counts)
	}
}

// TestWebhooks_DeliveriesArrivingTogetherAreRecordedInGroups: many senders
// at once, one shard. The receiver answers each delivery once its group's
// signal-with-start is in the shard's history; the history then holds
// fewer signals than deliveries, every delivery in exactly one of them,
// and every delivery is applied, each entity at its newest version.
func TestWebhooks_DeliveriesArrivingTogetherAreRecordedInGroups(t *testing.T) {
	var name string
	s := newStack(t, stackOptions{defs: oneShard(&name)})
	src := crmHookSource(name)
	src.RateLimit = webhook.RateLimit{PerSecond: 10000, Burst: 10000}
	h := newHooks(s, src)
	// Enough deliveries that the shard usually continues as new on the
	// way (at 500 history events).
	const senders, each, entities = 24, 60, 40
	errs := make(chan string, senders*each)
	done := make(chan struct{})
	for g := range senders {
		go func() {
			defer func() { done <- struct{}{} }()
			for i := range each {
				n := g*each + i
				// Entity n%entities at version n/entities+1: every entity
				// gets 6 versions from different senders.
				code, _, answer := h.send(fmt.Sprintf("grp-%d", n), contactEvent(n%entities+1, n/entities+1, "contact.updated"), hookSecret, time.Now())
				if code != http.StatusAccepted {
					errs <- fmt.Sprintf("grp-%d: %d %s", n, code, answer)
				}
			}
		}()
	}
	for range senders {
		<-done
	}
	close(errs)
	for e := range errs {
		t.Error(e)
	}
	deliveries := func() int {
		return s.count(`SELECT count(*) FROM tether_event_deliveries WHERE integration = $1`, name)
	}
	eventually(t, 60*time.Second, "every delivery applied", func() bool { return deliveries() == senders*each })
	names := s.lastNames("crm_contacts")
	for id := 1; id <= entities; id++ {
		if want := fmt.Sprintf("V%d", senders*each/entities); names[int64(id)] != want {
			t.Errorf("contact %d at %q, want %s (its newest version)", id, names[int64(id)], want)
		}
	}

	// What the shard's histories hold, over every run it continued as new
	// into (newest first): every delivery once, in groups.
	id := events.WorkflowID(name, 0)
	d, err := s.client.DescribeWorkflowExecution(context.Background(), id, "")
	if err != nil {
		t.Fatal(err)
	}
	signals, grouped, runs := 0, map[string]int{}, 0
	for runID := d.GetWorkflowExecutionInfo().GetExecution().GetRunId(); runID != ""; runs++ {
		iter := s.client.GetWorkflowHistory(context.Background(), id, runID, false, 0)
		runID = ""
		for iter.HasNext() {
			ev, err := iter.Next()
			if err != nil {
				t.Fatal(err)
			}
			if st := ev.GetWorkflowExecutionStartedEventAttributes(); st != nil {
				runID = st.GetContinuedExecutionRunId() // the run before, if any
			}
			a := ev.GetWorkflowExecutionSignaledEventAttributes()
			if a == nil {
				continue
			}
			if a.GetSignalName() != events.SignalEvents {
				t.Fatalf("signal %q in the history, want only %q", a.GetSignalName(), events.SignalEvents)
			}
			var group []syncstep.Event
			if err := converter.GetDefaultDataConverter().FromPayloads(a.GetInput(), &group); err != nil {
				t.Fatal(err)
			}
			signals++
			for _, e := range group {
				grouped[e.DeliveryID]++
			}
		}
	}
	if len(grouped) != senders*each {
		t.Errorf("%d distinct deliveries in the history's signals, want %d", len(grouped), senders*each)
	}
	for id, n := range grouped {
		if n != 1 {
			t.Errorf("delivery %s in %d signals, want 1", id, n)
		}
	}
	if signals >= senders*each {
		t.Errorf("%d signals for %d deliveries from %d senders at once: none was grouped", signals, senders*each, senders)
	}
	t.Logf("%d deliveries from %d concurrent senders recorded with %d signals in %d run(s)", senders*each, senders, signals, runs)
}
