package chaos

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/tetherflow/tether/activities/integration"
	"github.com/tetherflow/tether/activities/syncstep"
	"github.com/tetherflow/tether/starters/devstack"
	"github.com/tetherflow/tether/workers/webhook"
	"github.com/tetherflow/tether/workflows/events"
)

const (
	hookSource    = "crm"
	hookSecretEnv = "CHAOS_HOOK_SECRET"
	hookSecret    = "chaos-webhook-secret"
	// hookVersions is the versions sent of each valid entity.
	hookVersions = 10
	// hookRestarts is the SIGKILLs (and restarts) of a worker while the
	// events are sent.
	hookRestarts = 2
)

// hookEvent is one distinct event.
type hookEvent struct {
	delivery string
	id       int64
	version  int
	valid    bool
	body     []byte
}

// hookVersion is version v's updated_at.
func hookVersion(v int) time.Time {
	return time.Date(2026, 3, 1, 0, 0, 0, 0, time.UTC).Add(time.Duration(v) * time.Minute)
}

// makeHookEvents makes n valid events, hookVersions of each of n/10
// entities, and n/100 invalid ones (a score that is not an integer), each
// of an entity of its own; then the deliveries: every event, 10% of them
// twice, shuffled.
func (w *world) makeHookEvents(n int) (distinct []hookEvent, sends []int, keys, invalid []int64) {
	k := max(1, n/hookVersions)
	for i := range n {
		id, v := int64(i%k+1), i/k+1
		distinct = append(distinct, w.hookEvent(len(distinct), id, v, true))
	}
	for i := range max(1, n/100) {
		distinct = append(distinct, w.hookEvent(len(distinct), int64(k+1+i), 1, false))
		invalid = append(invalid, int64(k+1+i))
	}
	for i := range k {
		keys = append(keys, int64(i+1))
	}
	for i := range distinct {
		sends = append(sends, i)
	}
	for _, i := range w.rng.Perm(len(distinct))[:len(distinct)/10] {
		sends = append(sends, i)
	}
	w.rng.Shuffle(len(sends), func(i, j int) { sends[i], sends[j] = sends[j], sends[i] })
	return distinct, sends, keys, invalid
}

func (w *world) hookEvent(seq int, id int64, v int, valid bool) hookEvent {
	var score any = v % 100
	if !valid {
		score = "not-a-number"
	}
	body, _ := json.Marshal(map[string]any{
		"type": "contact.updated",
		"data": map[string]any{
			"id": id, "uuid": fmt.Sprintf("00000000-0000-4000-8000-%012d", id),
			"first_name": "Ada", "last_name": fmt.Sprintf("V%d", v), "email": fmt.Sprintf("c%d@example.com", id),
			"status": "lead", "score": score, "created_at": "2026-01-01T00:00:00Z", "updated_at": hookVersion(v).Format(time.RFC3339),
		},
	})
	return hookEvent{delivery: fmt.Sprintf("chaos-%s-%d", w.id, seq), id: id, version: v, valid: valid, body: body}
}

// hookSender posts signed deliveries to the receivers, moving to the next
// receiver when one does not answer or answers 5xx/429.
type hookSender struct {
	urls   []string
	client *http.Client
	// refused are deliveries answered 4xx (not 429), or never accepted.
	refused  atomic.Int64
	attempts atomic.Int64
	failed   atomic.Int64 // attempts without a 2xx
	mu       sync.Mutex
	errs     map[string]int
}

func newHookSender(urls []string) *hookSender {
	tr := &http.Transport{DialContext: (&net.Dialer{Timeout: 2 * time.Second}).DialContext, MaxIdleConnsPerHost: 32}
	return &hookSender{urls: urls, client: &http.Client{Transport: tr, Timeout: 20 * time.Second}, errs: map[string]int{}}
}

// deliver posts one delivery until a receiver accepts it (2xx: accepted
// or duplicate), signing each attempt anew, for at most 3 minutes.
func (s *hookSender) deliver(ctx context.Context, ev hookEvent, first int) {
	deadline := time.Now().Add(3 * time.Minute)
	for attempt := 0; time.Now().Before(deadline) && ctx.Err() == nil; attempt++ {
		u := s.urls[(first+attempt)%len(s.urls)]
		s.attempts.Add(1)
		req, _ := http.NewRequestWithContext(ctx, http.MethodPost, u, bytes.NewReader(ev.body))
		req.Header.Set("Content-Type", "application/json")
		req.Header.Set(webhook.DefaultDeliveryHeader, ev.delivery)
		req.Header.Set(webhook.DefaultSignatureHeader, webhook.Sign("v1", time.Now(), ev.body, hookSecret))
		resp, err := s.client.Do(req)
		wait := 100 * time.Millisecond
		why := ""
		if err != nil {
			why = "no answer"
		} else {
			_, _ = io.Copy(io.Discard, resp.Body)
			resp.Body.Close()
			switch code := resp.StatusCode; {
			case code >= 200 && code < 300:
				return
			case code == http.StatusTooManyRequests || code >= 500:
				why = strconv.Itoa(code)
				if ra, err := strconv.Atoi(resp.Header.Get("Retry-After")); err == nil && ra > 0 {
					wait = min(time.Duration(ra)*time.Second, 2*time.Second)
				}
			default:
				s.note(strconv.Itoa(code) + " (refused)")
				s.refused.Add(1)
				return
			}
		}
		s.failed.Add(1)
		s.note(why)
		select {
		case <-ctx.Done():
		case <-time.After(wait):
		}
	}
	s.note("never accepted")
	s.refused.Add(1)
}

func (s *hookSender) note(why string) {
	s.mu.Lock()
	s.errs[why]++
	s.mu.Unlock()
}

// runWebhooks sends c.Events signed contact events (and 1% invalid ones),
// 10% of them twice, in shuffled order, to the receivers of two worker
// processes, SIGKILLing and restarting a worker twice while it sends; then
// waits for the destination to settle and checks it: every entity at its
// newest version, each event applied once, the invalid ones in
// quarantine.
func runWebhooks(ctx context.Context, e *Env, c Config) Result {
	const workers = 2
	ports := make([]int, workers)
	for i := range ports {
		p, err := devstack.FreePort()
		if err != nil {
			return Result{Err: err}
		}
		ports[i] = p
	}
	wc := c
	wc.Records = 10 // the sandbox is not read
	var w *world
	o := worldOptions{workers: workers, extraEnv: []string{hookSecretEnv + "=" + hookSecret},
		configFile: func(i int) (string, error) {
			f := filepath.Join(w.dir, fmt.Sprintf("worker-config-%d.yaml", i))
			body := fmt.Sprintf(`webhooks:
  listen: 127.0.0.1:%d
  sources:
    - name: %s
      integration: %s
      secrets_env: [%s]
      key_path: data.id
      version_path: data.updated_at
      record_path: data
      type_path: type
      delete_types: [contact.deleted]
      rate_limit: {per_second: 10000, burst: 10000}
`, ports[i], hookSource, w.integ, hookSecretEnv)
			return f, os.WriteFile(f, []byte(body), 0o644)
		}}
	var err error
	if w, err = newWorld(ctx, e, wc, "webhooks", o); err != nil {
		return Result{Err: err}
	}
	defer w.close()
	defer w.endShards()
	if err := w.startWorkers(ctx, workers); err != nil {
		return Result{Err: err}
	}
	var urls []string
	for _, p := range ports {
		addr := fmt.Sprintf("127.0.0.1:%d", p)
		wctx, cancel := context.WithTimeout(ctx, time.Minute)
		err := devstack.WaitPort(wctx, addr, nil)
		cancel()
		if err != nil {
			return Result{Err: fmt.Errorf("webhook receiver: %w (logs in %s)", err, w.dir)}
		}
		urls = append(urls, "http://"+addr+webhook.Path(hookSource))
	}

	distinct, sends, keys, invalid := w.makeHookEvents(c.Events)
	s := newHookSender(urls)
	t0 := time.Now()
	var sent atomic.Int64
	jobs := make(chan int)
	var wg sync.WaitGroup
	for range 16 {
		wg.Go(func() {
			for j := range jobs {
				s.deliver(ctx, distinct[sends[j]], j)
				sent.Add(1)
			}
		})
	}
	p := newPlan(hookRestarts, time.Second, w.rng)
	var restartErr error
	func() {
		defer close(jobs)
		for j := range sends {
			if p.due(float64(sent.Load())/float64(len(sends))) && restartErr == nil {
				restartErr = w.killAndRestart(p.done % workers)
				p.landed()
			}
			select {
			case jobs <- j:
			case <-ctx.Done():
				return
			}
		}
	}()
	wg.Wait()
	if restartErr != nil {
		return Result{Err: restartErr, Dur: time.Since(t0)}
	}

	// The newest version of each valid entity.
	newest := map[int64]int{}
	for _, ev := range distinct {
		if ev.valid {
			newest[ev.id] = max(newest[ev.id], ev.version)
		}
	}
	sendDur := time.Since(t0)
	settle := time.Now().Add(3 * time.Minute)
	var ch Check
	var counts syncstep.EventCounts
	var pending int
	var recorded map[string]bool
	for {
		ch, err = w.checkHooks(ctx, newest, keys, invalid)
		if err == nil {
			recorded, err = w.recordedDeliveries(ctx)
		}
		if err != nil {
			return Result{Err: err, Dur: time.Since(t0)}
		}
		counts, pending = w.shardCounts(ctx)
		if (ch.Lost+ch.Older == 0 && ch.QuarantineOK && pending == 0 && len(recorded) >= len(distinct)) || time.Now().After(settle) || ctx.Err() != nil {
			break
		}
		time.Sleep(time.Second)
	}
	dur := time.Since(t0)
	notes := []string{fmt.Sprintf("%d distinct events (%d invalid) over %d entities, %d deliveries sent in %.1f s, %d attempts (%d refused or unanswered: %v); shards' counts %+v, %d pending",
		len(distinct), len(invalid), len(keys), len(sends), sendDur.Seconds(), s.attempts.Load(), s.failed.Load(), s.errs, counts, pending)}
	// Each event applied once: every delivery is in the ledger of applied
	// deliveries (written in the transaction that applies it; its primary
	// key holds it once), no entity inserted twice, and no more events
	// processed than were sent.
	missing := 0
	for _, ev := range distinct {
		if !recorded[ev.delivery] {
			missing++
		}
	}
	if missing > 0 {
		notes = append(notes, fmt.Sprintf("%d deliveries missing from tether_event_deliveries", missing))
		ch.Lost += missing
	}
	if extra := len(recorded) - (len(distinct) - missing); extra > 0 {
		notes = append(notes, fmt.Sprintf("%d unknown deliveries in tether_event_deliveries", extra))
		ch.Differing += extra
	}
	processed := counts.Inserted + counts.Updated + counts.Deleted + counts.Unchanged + counts.Stale + counts.Superseded + counts.Quarantined
	if processed > len(distinct) {
		ch.Dup += processed - len(distinct)
		notes = append(notes, fmt.Sprintf("%d events processed more than once", processed-len(distinct)))
	}
	if counts.Inserted > len(keys) {
		notes = append(notes, fmt.Sprintf("%d inserts for %d entities", counts.Inserted, len(keys)))
		ch.Dup += counts.Inserted - len(keys)
	}
	if n := s.refused.Load(); n > 0 {
		ch.Lost += int(n)
		notes = append(notes, fmt.Sprintf("%d deliveries never accepted", n))
	}
	r := Result{Injected: p.done, Faults: fmt.Sprintf("%d SIGKILLs of %d workers while %d deliveries (%d redelivered) were sent shuffled", p.done, workers, len(sends), len(sends)-len(distinct)),
		Check: ch, Dur: dur, Notes: notes}
	if !r.OK() {
		r.Notes = append(r.Notes, "logs in "+w.dir)
	}
	return r
}

// checkHooks compares the destination with the newest valid version of
// each entity, and the quarantine with the invalid entities.
func (w *world) checkHooks(ctx context.Context, newest map[int64]int, keys, invalid []int64) (Check, error) {
	c := Check{Expected: len(keys)}
	type row struct {
		n        int
		email    string
		min, max time.Time
	}
	got := map[int64]row{}
	rows, err := w.e.Admin.QueryContext(ctx, fmt.Sprintf(`SELECT id, count(*), max(email), min(updated_at), max(updated_at) FROM %s.%s GROUP BY id`, w.schema, table))
	if err != nil {
		if strings.Contains(err.Error(), "does not exist") {
			c.Lost = len(keys)
			return c, nil
		}
		return c, err
	}
	for rows.Next() {
		var id int64
		var r row
		if err := rows.Scan(&id, &r.n, &r.email, &r.min, &r.max); err != nil {
			rows.Close()
			return c, err
		}
		got[id] = r
	}
	rows.Close()
	if err := rows.Err(); err != nil {
		return c, err
	}
	for _, id := range keys {
		r, ok := got[id]
		if !ok {
			c.Lost++
			continue
		}
		c.Dup += r.n - 1
		want := hookVersion(newest[id])
		switch {
		case r.min.Before(want):
			c.Older++
		case !r.max.Equal(want) || r.email != fmt.Sprintf("c%d@example.com", id):
			c.Differing++
		}
	}
	for id, r := range got {
		if _, ok := newest[id]; !ok {
			c.Differing += r.n
		}
	}
	var want []string
	for _, id := range invalid {
		want = append(want, strconv.FormatInt(id, 10))
	}
	c.QuarantineOK, c.Quarantine, err = w.checkQuarantine(ctx, want)
	return c, err
}

// recordedDeliveries is the ledger of applied deliveries of the source.
func (w *world) recordedDeliveries(ctx context.Context) (map[string]bool, error) {
	out := map[string]bool{}
	rows, err := w.e.Admin.QueryContext(ctx, fmt.Sprintf(`SELECT delivery_id FROM %s.tether_event_deliveries WHERE source = $1`, w.schema), hookSource)
	if err != nil {
		if strings.Contains(err.Error(), "does not exist") {
			return out, nil
		}
		return nil, err
	}
	defer rows.Close()
	for rows.Next() {
		var id string
		if err := rows.Scan(&id); err != nil {
			return nil, err
		}
		out[id] = true
	}
	return out, rows.Err()
}

// shardCounts sums the progress of the integration's event shards.
func (w *world) shardCounts(ctx context.Context) (syncstep.EventCounts, int) {
	var sum syncstep.EventCounts
	pending := 0
	for shard := range integration.DefaultEventShards {
		v, err := w.client.QueryWorkflow(ctx, events.WorkflowID(w.integ, shard), "", events.QueryProgress)
		if err != nil {
			continue // a shard that never ran
		}
		var p events.Progress
		if v.Get(&p) == nil {
			sum = sum.Add(p.Counts)
			pending += p.Pending
		}
	}
	return sum, pending
}

// endShards terminates the integration's event shards (they wait for
// events for minutes; the integration is not used again).
func (w *world) endShards() {
	for shard := range integration.DefaultEventShards {
		_ = w.client.TerminateWorkflow(context.Background(), events.WorkflowID(w.integ, shard), "", "chaos scenario over")
	}
}
