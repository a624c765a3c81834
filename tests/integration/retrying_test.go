package integration

import (
	"context"
	"errors"
	"net/http"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/tetherflow/tether/activities/lib/progress"
	"github.com/tetherflow/tether/starters/sandbox"
	"github.com/tetherflow/tether/workflows/datasync"
)

// refusingTransport fails every request with a refused connection while
// down is set.
type refusingTransport struct {
	next http.RoundTripper
	down atomic.Bool
}

func (r *refusingTransport) RoundTrip(req *http.Request) (*http.Response, error) {
	if r.down.Load() {
		return nil, errors.New("dial tcp 127.0.0.1:8081: connect: connection refused (injected by the test)")
	}
	return r.next.RoundTrip(req)
}

// TestProgress_ShowsAStepBeingRetried: while FetchPage is retried against
// a source that refuses connections, the progress query shows the step,
// its page, the attempt that failed, its error and when the next try is;
// once the source is back the run completes and the progress query shows
// no retry.
func TestProgress_ShowsAStepBeingRetried(t *testing.T) {
	source := &refusingTransport{}
	source.down.Store(true)
	s := newStack(t, stackOptions{
		sandbox:   sandbox.Options{Seed: 3, Contacts: 300},
		transport: func(rt http.RoundTripper) http.RoundTripper { source.next = rt; return source },
	})
	run := s.start(datasync.Input{Integration: "crm-contacts"})
	ctx := context.Background()
	report := func() progress.Report {
		t.Helper()
		v, err := s.client.QueryWorkflow(ctx, run.GetID(), "", datasync.QueryProgress)
		if err != nil {
			t.Fatalf("progress query: %v", err)
		}
		var rep progress.Report
		if err := v.Get(&rep); err != nil {
			t.Fatal(err)
		}
		return rep
	}
	var seen progress.Retry
	for deadline := time.Now().Add(2 * time.Minute); ; time.Sleep(250 * time.Millisecond) {
		if rep := report(); len(rep.Retrying) > 0 {
			seen = rep.Retrying[0]
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("the progress query never showed the fetch being retried: %+v", report())
		}
	}
	if seen.Step != "FetchPage" || seen.Page != 1 || seen.Attempt < 1 || !seen.NextAt.After(seen.At) ||
		!strings.Contains(seen.Error, "connection refused (injected by the test)") {
		t.Errorf("retry shown %+v; want FetchPage page 1, the attempt, the refused connection and the next try's time", seen)
	}
	source.down.Store(false)
	res, err := s.wait(run)
	if err != nil || res.Status != progress.StatusCompleted || res.Counts.Fetched != 300 {
		t.Fatalf("run after the source came back: %+v, %v", res, err)
	}
	if rep := report(); len(rep.Retrying) != 0 {
		t.Errorf("a completed run still shows retries: %+v", rep.Retrying)
	}
}
