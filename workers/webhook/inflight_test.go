package webhook

import (
	"context"
	"net/http"
	"sync"
	"testing"
)

// heldAccepter holds every Accept until released.
type heldAccepter struct {
	started chan struct{}
	release chan struct{}
}

func (b *heldAccepter) Accept(ctx context.Context, _ Event) error {
	b.started <- struct{}{}
	select {
	case <-b.release:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

func TestReceiver_RefusesBeyondMaxInFlightAtOnce(t *testing.T) {
	acc := &heldAccepter{started: make(chan struct{}, 8), release: make(chan struct{})}
	h := &harness{acc: &fakeAccepter{}, clock: &fakeClock{t: t0}, logs: &syncBuffer{}}
	rcv, err := New([]Source{crmSource()}, testRegistry(t), acc, WithClock(h.clock.now), WithMaxInFlight(2))
	if err != nil {
		t.Fatal(err)
	}
	h.srv = newServer(t, rcv)

	// Two deliveries hold the two slots.
	var wg sync.WaitGroup
	statuses := make([]int, 2)
	for i := range 2 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			statuses[i] = h.send(t, request{}).status
		}()
	}
	<-acc.started
	<-acc.started
	// A third is refused at once, having recorded nothing.
	r := h.send(t, request{delivery: "third"})
	if r.status != http.StatusServiceUnavailable || r.header.Get("Retry-After") != "1" {
		t.Fatalf("third delivery while two are being recorded: %d, Retry-After %q, %s", r.status, r.header.Get("Retry-After"), r.raw)
	}
	if msg, _ := r.body["error"].(string); msg == "" {
		t.Errorf("503 without a reason: %s", r.raw)
	}
	close(acc.release)
	wg.Wait()
	for i, s := range statuses {
		if s != http.StatusAccepted {
			t.Errorf("held delivery %d: %d, want 202", i, s)
		}
	}
	// The slots are free again.
	acc.release = make(chan struct{})
	close(acc.release)
	if r := h.send(t, request{delivery: "third"}); r.status != http.StatusAccepted {
		t.Errorf("redelivery once the slots are free: %d %s", r.status, r.raw)
	}
}
