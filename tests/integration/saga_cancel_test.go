package integration

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"go.temporal.io/sdk/temporal"

	"github.com/tetherflow/tether/activities/connector/httpsink"
	"github.com/tetherflow/tether/activities/lib/progress"
	"github.com/tetherflow/tether/starters/sandbox"
	"github.com/tetherflow/tether/workflows/datasync"
)

// notificationGate, while armed, lets the first allow notifications (POST
// /v1/notifications without "reversal_of") through to the API and holds
// the next ones until their request is cancelled: the run's cancellation
// reaching the step that sends them. From then on it lets every request
// through (compensation sends under the same idempotency keys). Reversals
// always pass. It keeps the ids the API gave the notifications it passed.
type notificationGate struct {
	next  http.RoundTripper
	allow int
	armed atomic.Bool
	held  chan struct{} // closed when the first notification is held

	holdOnce sync.Once
	mu       sync.Mutex
	passed   int
	open     bool
	ids      map[string]bool
}

func newNotificationGate(next http.RoundTripper, allow int) *notificationGate {
	return &notificationGate{next: next, allow: allow, held: make(chan struct{}), ids: map[string]bool{}}
}

func (g *notificationGate) RoundTrip(req *http.Request) (*http.Response, error) {
	if !g.armed.Load() || req.Method != http.MethodPost || req.URL.Path != "/v1/notifications" || req.Body == nil {
		return g.next.RoundTrip(req)
	}
	b, err := io.ReadAll(req.Body)
	req.Body.Close()
	if err != nil {
		return nil, err
	}
	req.Body = io.NopCloser(bytes.NewReader(b))
	if bytes.Contains(b, []byte(`"reversal_of"`)) {
		return g.next.RoundTrip(req)
	}
	g.mu.Lock()
	pass := g.open || g.passed < g.allow
	if pass {
		g.passed++
	}
	g.mu.Unlock()
	if !pass {
		g.holdOnce.Do(func() { close(g.held) })
		<-req.Context().Done()
		g.mu.Lock()
		g.open = true
		g.mu.Unlock()
		return nil, req.Context().Err()
	}
	resp, err := g.next.RoundTrip(req)
	if err != nil || resp.StatusCode != http.StatusAccepted {
		return resp, err
	}
	body, err := io.ReadAll(resp.Body)
	resp.Body.Close()
	if err != nil {
		return nil, err
	}
	resp.Body = io.NopCloser(bytes.NewReader(body))
	var answer struct {
		ID string `json:"id"`
	}
	if err := json.Unmarshal(body, &answer); err == nil && answer.ID != "" {
		g.mu.Lock()
		g.ids[answer.ID] = true
		g.mu.Unlock()
	}
	return resp, nil
}

// passedIDs returns the ids of the notifications the gate let through.
func (g *notificationGate) passedIDs() map[string]bool {
	g.mu.Lock()
	defer g.mu.Unlock()
	out := make(map[string]bool, len(g.ids))
	for id := range g.ids {
		out[id] = true
	}
	return out
}

// A customer-onboarding run cancelled while a batch is half-way through
// the notification step (the batches before it applied to all three
// systems; this one created or updated its customers and links and sent
// some of its notifications; later ones not applied) is compensated: every
// system is put back as it was, and the next run applies the changes
// cleanly.
func TestSaga_ThreeDestinations_CancelledMidRunPutsEverySystemBack(t *testing.T) {
	// Notifications let through before the gate holds the step: 150
	// changed contacts and 150 of the 300 added ones, whose pages are of
	// 100 (batch size) or end where updated_at changes.
	const allow = 300
	s := newStack(t, stackOptions{sandbox: sandbox.Options{Seed: 46, Contacts: 300}, noWorker: true})
	gate := newNotificationGate(http.DefaultTransport, allow)
	s.sinkOptions = []httpsink.Option{httpsink.WithTransport(gate)}
	s.startWorker()
	ctx := context.Background()

	// The state before the cancelled run: a first run onboarded every
	// contact; then 150 contacts changed and 300 were added in the CRM, in
	// that order of updated_at: the run updates customers, then creates
	// them.
	if first := s.mustSync(datasync.Input{Integration: "customer-onboarding"}); first.Status != progress.StatusCompleted {
		t.Fatalf("first run: %+v", first)
	}
	if touched := s.sandbox.Touch("contacts", 150); len(touched) != 150 {
		t.Fatalf("touched %d contacts", len(touched))
	}
	s.sandbox.Add("contacts", 300)
	before := snapshotSaga(t, s)
	notes := len(s.sandbox.Notifications())

	gate.armed.Store(true)
	run := s.start(datasync.Input{Integration: "customer-onboarding"})
	ended := make(chan struct{})
	go func() {
		_ = s.client.GetWorkflow(ctx, run.GetID(), run.GetRunID()).Get(ctx, nil)
		close(ended)
	}()
	select {
	case <-gate.held:
	case <-ended:
		t.Fatalf("the run ended before notification %d was sent: %+v", allow+1, queryProgress(t, s, run.GetID()))
	case <-time.After(2 * time.Minute):
		t.Fatalf("notification %d was not sent within 2 minutes: %+v", allow+1, queryProgress(t, s, run.GetID()))
	}
	// Mid-run: the progress query shows batches applied to every step,
	// customers both created and updated among them.
	var report progress.Report
	for deadline := time.Now().Add(time.Minute); ; {
		report = queryProgress(t, s, run.GetID())
		d := report.Destinations
		if d["billing"].Applied() > 0 && d["links"].Applied() > 0 && d["notify"].Applied() > 0 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("the progress query does not show batches applied to every step: %+v", report)
		}
		time.Sleep(50 * time.Millisecond)
	}
	if b := report.Destinations["billing"]; b.Inserted == 0 || b.Updated == 0 {
		t.Fatalf("before the cancel, billing created %d and updated %d customers; the test needs both", b.Inserted, b.Updated)
	}
	if n := report.Destinations["notify"].Applied(); n >= allow {
		t.Fatalf("the batches done notified %d contacts: the held batch sent none of its notifications; the test needs one cancelled half-way", n)
	}
	if b := report.Destinations["billing"]; b.Applied() >= 450 {
		t.Fatalf("every contact reached billing before the cancel (%d); the test needs batches left to apply", b.Applied())
	}
	t.Logf("cancelling at %s: %+v", report.Step, report.Destinations)

	if err := s.client.CancelWorkflow(ctx, run.GetID(), run.GetRunID()); err != nil {
		t.Fatal(err)
	}
	_, err := s.wait(run)
	var canceled *temporal.CanceledError
	if !errors.As(err, &canceled) {
		t.Fatalf("want the run cancelled, got %v", err)
	}
	runID := s.lastRunID("customer-onboarding")
	if rec, err := s.store.GetRun(ctx, runID); err != nil || rec.Status != progress.StatusCompensated {
		t.Fatalf("run %s on record: %+v, %v; want %s", runID, rec, err, progress.StatusCompensated)
	}

	// Customers created are gone and those changed restored, link rows and
	// identity maps as before, the checkpoint where it was.
	diffSaga(t, before, snapshotSaga(t, s))
	// Every notification the run sent got exactly one reversal.
	sent, reversed := notificationsSince(t, s, notes)
	if sent <= allow {
		t.Errorf("%d notifications sent by the run, want more than the %d before the cancel", sent, allow)
	}
	if len(reversed) != sent {
		t.Errorf("%d notifications sent, %d reversed", sent, len(reversed))
	}
	for id, n := range reversed {
		if n != 1 {
			t.Errorf("notification %s reversed %d times", id, n)
		}
	}
	passed := gate.passedIDs()
	for id := range passed {
		if reversed[id] == 0 {
			t.Errorf("notification %s was sent and not reversed", id)
		}
	}
	for id := range reversed {
		if !passed[id] {
			t.Errorf("reversal of %s, which the run never sent", id)
		}
	}
	// Nothing is left for a person to undo.
	if n := s.count(`SELECT count(*) FROM tether_identity_images WHERE run_id = $1`, runID); n != 0 {
		t.Errorf("%d identity images of the cancelled run left behind", n)
	}
	if n := s.count(`SELECT count(*) FROM tether_before_images WHERE run_id = $1`, runID); n != 0 {
		t.Errorf("%d before-images of the cancelled run left behind", n)
	}

	// The next run applies the changes and completes clean.
	gate.armed.Store(false)
	again := s.mustSync(datasync.Input{Integration: "customer-onboarding"})
	if again.Status != progress.StatusCompleted {
		t.Fatalf("rerun: %+v", again)
	}
	if c := again.Counts; c.Inserted != 300 || c.Updated != 150 {
		t.Errorf("rerun: billing created %d and updated %d customers, want the 300 added and 150 changed contacts", c.Inserted, c.Updated)
	}
	checkOnboarded(t, s)
}
