package main

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"net/http"
	"strconv"
	"sync"
	"time"

	"github.com/tetherflow/tether/workers/webhook"
	"github.com/tetherflow/tether/workflows/events"
)

// version is event seq's version (updated_at): a second per sequence
// number, so every event is newer than every event sent before it.
func version(seq int) time.Time {
	return time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC).Add(time.Duration(seq) * time.Second)
}

// maxAttempts bounds the deliveries of one event.
const maxAttempts = 20

// spec is one event to send: the same for every contender.
type spec struct {
	seq      int
	id       int64
	version  time.Time
	marker   string // the record's last_name: joins the event to its commit
	delivery string
	body     []byte
}

// makeSpecs makes n events for the rate with index ri: entities drawn at
// random (seeded) among its own entities, each event a newer version.
func makeSpecs(ri, n, entities int) []spec {
	r := rand.New(rand.NewPCG(uint64(ri)+1, 42))
	base := int64(ri+1) * 100000
	out := make([]spec, n)
	for i := range out {
		seq := ri*1_000_000 + i + 1
		out[i] = newSpec(seq, base+int64(r.IntN(entities))+1)
	}
	return out
}

// warmUpSpecs is one event for each of four entities of their own in
// every shard, so every shard's workflow runs before the measures.
func warmUpSpecs(shards int) []spec {
	per := make([]int, max(1, shards))
	var out []spec
	for id := int64(99_000_001); len(out) < 4*len(per); id++ {
		sh := events.Shard(strconv.FormatInt(id, 10), shards)
		if per[sh] == 4 {
			continue
		}
		per[sh]++
		out = append(out, newSpec(99_000_000+len(out)+1, id))
	}
	return out
}

func newSpec(seq int, id int64) spec {
	v := version(seq)
	marker := fmt.Sprintf("E%d", seq)
	body, _ := json.Marshal(map[string]any{
		"type": "contact.updated",
		"data": map[string]any{
			"id": id, "uuid": fmt.Sprintf("00000000-0000-4000-8000-%012d", id),
			"first_name": "Ada", "last_name": marker, "email": fmt.Sprintf("c%d@example.com", id),
			"status": "lead", "score": seq % 100, "created_at": "2025-01-01T00:00:00Z", "updated_at": v.Format(time.RFC3339),
		},
	})
	return spec{seq: seq, id: id, version: v, marker: marker, delivery: fmt.Sprintf("eb-%d", seq), body: body}
}

// sent is what happened to one event.
type sent struct {
	sched    time.Time // when the schedule said to send it
	start    time.Time // the first request's start
	done     time.Time // the last answer's end
	attempts int
	non2xx   int      // answers other than 2xx, and transport errors
	status   int      // the last answer (0: transport error)
	errs     []string // why each refused attempt was refused
	accepted bool
}

// sender posts signed events at a fixed rate, open loop.
type sender struct {
	url         string
	client      *http.Client
	concurrency int
}

func newSender(url string, concurrency int) *sender {
	tr := &http.Transport{
		DialContext:         (&net.Dialer{Timeout: 5 * time.Second}).DialContext,
		MaxIdleConns:        concurrency,
		MaxIdleConnsPerHost: concurrency,
		IdleConnTimeout:     90 * time.Second,
		DisableCompression:  true,
	}
	return &sender{url: url, client: &http.Client{Transport: tr, Timeout: 30 * time.Second}, concurrency: concurrency}
}

// run sends specs at rate (openLoop), then closes idle connections.
func (s *sender) run(ctx context.Context, specs []spec, rate int) []sent {
	out := make([]sent, len(specs))
	openLoop(ctx, len(specs), rate, s.concurrency, func(i int, due time.Time) {
		out[i].sched = due
		s.deliver(ctx, &specs[i], &out[i])
	})
	s.client.CloseIdleConnections()
	return out
}

// openLoop runs do(i, due) for i from 0 to n-1, item i due at start +
// i/rate. A ticker wakes the scheduler, which starts every item that is
// due, each in its own goroutine (at most concurrency at once), so a slow
// item does not delay the next; only the bound can (schedule slip). It
// returns when every item started has finished, or ctx is done.
func openLoop(ctx context.Context, n, rate, concurrency int, do func(i int, due time.Time)) {
	interval := time.Second / time.Duration(rate)
	sem := make(chan struct{}, concurrency)
	var wg sync.WaitGroup
	defer wg.Wait()
	tick := time.NewTicker(min(interval, 10*time.Millisecond))
	defer tick.Stop()
	t0 := time.Now()
	next := 0
	for next < n && ctx.Err() == nil {
		now := time.Now()
		for next < n {
			due := t0.Add(time.Duration(next) * interval)
			if due.After(now) {
				break
			}
			select {
			case sem <- struct{}{}:
			case <-ctx.Done():
				return
			}
			i := next
			wg.Go(func() {
				defer func() { <-sem }()
				do(i, due)
			})
			next++
		}
		select {
		case <-tick.C:
		case <-ctx.Done():
		}
	}
}

// deliver posts one event until it is accepted (2xx), like a sender that
// retries: after Retry-After (at most 2s) or 100ms, at most maxAttempts
// times, signing each attempt anew.
func (s *sender) deliver(ctx context.Context, sp *spec, r *sent) {
	for attempt := 1; attempt <= maxAttempts; attempt++ {
		req, err := http.NewRequestWithContext(ctx, http.MethodPost, s.url, bytes.NewReader(sp.body))
		if err != nil {
			r.errs = append(r.errs, err.Error())
			return
		}
		req.Header.Set("Content-Type", "application/json")
		req.Header.Set(webhook.DefaultDeliveryHeader, sp.delivery)
		req.Header.Set(webhook.DefaultSignatureHeader, webhook.Sign("v1", time.Now(), sp.body, hookSecret))
		t := time.Now()
		if attempt == 1 {
			r.start = t
		}
		resp, err := s.client.Do(req)
		wait := 100 * time.Millisecond
		r.status = 0
		if err == nil {
			_, _ = io.Copy(io.Discard, resp.Body)
			resp.Body.Close()
			r.status = resp.StatusCode
			if ra, err := strconv.Atoi(resp.Header.Get("Retry-After")); err == nil && ra > 0 {
				wait = min(time.Duration(ra)*time.Second, 2*time.Second)
			}
		}
		r.done = time.Now()
		r.attempts = attempt
		if r.status >= 200 && r.status < 300 {
			r.accepted = true
			return
		}
		r.non2xx++
		if err != nil {
			r.errs = append(r.errs, err.Error())
		} else {
			r.errs = append(r.errs, fmt.Sprintf("HTTP %d", r.status))
		}
		select {
		case <-time.After(wait):
		case <-ctx.Done():
			return
		}
	}
}
