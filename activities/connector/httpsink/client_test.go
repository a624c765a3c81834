package httpsink

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/sony/gobreaker/v2"

	"github.com/tetherflow/tether/activities/lib/failure"
	"github.com/tetherflow/tether/activities/lib/httpclient"
	"github.com/tetherflow/tether/activities/lib/httpclient/httpclienttest"
)

func TestSink_ApplyCreatesAndUpdates(t *testing.T) {
	dest := &fakeDest{}
	s, _ := newTestSink(t, dest, testConfig(), nil)
	created := apply(t, s,
		Record{Key: "a", Row: row("a@example.com"), IdempotencyKey: "key-a"},
		Record{Key: "b", Row: row("b@example.com"), IdempotencyKey: "key-b"},
	)
	ids := map[string]string{}
	for _, r := range created.Records {
		if r.Outcome != OutcomeCreated || r.Status != http.StatusCreated || !strings.HasPrefix(r.ExternalID, "cus_") {
			t.Fatalf("create result %+v", r)
		}
		ids[r.Key] = r.ExternalID
	}
	if created.Created != 2 || ids["a"] == ids["b"] {
		t.Fatalf("result %+v", created)
	}

	updated := apply(t, s, Record{Key: "a", Row: map[string]any{"email": "a2@example.com"}, ExternalID: ids["a"]})
	if r := updated.Records[0]; r.Outcome != OutcomeUpdated || r.ExternalID != ids["a"] || r.Status != http.StatusOK || updated.Updated != 1 {
		t.Fatalf("update result %+v", updated)
	}

	reqs := dest.requests()
	if len(reqs) != 3 {
		t.Fatalf("%d requests, want 3", len(reqs))
	}
	for _, c := range reqs[:2] {
		if c.method != http.MethodPost || c.path != "/v1/customers" || c.header.Get("Content-Type") != "application/json" {
			t.Errorf("create request %s %s %v", c.method, c.path, c.header)
		}
	}
	if got := []string{reqs[0].header.Get("Idempotency-Key"), reqs[1].header.Get("Idempotency-Key")}; !slices.Contains(got, "key-a") || !slices.Contains(got, "key-b") {
		t.Errorf("idempotency keys %v, want key-a and key-b", got)
	}
	u := reqs[2]
	if u.method != http.MethodPut || u.path != "/v1/customers/"+ids["a"] || u.body != `{"email":"a2@example.com"}` || u.header.Get("Idempotency-Key") != "" {
		t.Errorf("update request %s %s %s %v", u.method, u.path, u.body, u.header)
	}
	if dest.objects[ids["a"]]["email"] != "a2@example.com" {
		t.Errorf("destination holds %v", dest.objects[ids["a"]])
	}
}

func TestSink_ApplyIdempotencyKeyStableAcrossRetries(t *testing.T) {
	// The first attempt is written and its answer lost (500), the second
	// gets a 503: the inner retries and then a second Apply (Temporal's
	// retry) must send the same key every time, and only one object exists.
	dest := &fakeDest{}
	dest.before = func(w http.ResponseWriter, r *http.Request, call int) bool {
		switch call {
		case 1:
			dest.mu.Lock()
			if dest.objects == nil {
				dest.objects, dest.byKey = map[string]map[string]any{}, map[string]string{}
			}
			var row map[string]any
			_ = json.NewDecoder(strings.NewReader(dest.calls[0].body)).Decode(&row)
			dest.create(r.Header.Get("Idempotency-Key"), row)
			dest.mu.Unlock()
			w.WriteHeader(http.StatusInternalServerError)
			return true
		case 2, 3:
			w.WriteHeader(http.StatusServiceUnavailable)
			return true
		}
		return false
	}
	cfg := testConfig()
	cfg.Retry.Max = 1
	s, _ := newTestSink(t, dest, cfg, nil)
	rec := Record{Key: "a", Row: row("a@example.com"), IdempotencyKey: IdempotencyKey("run-1", "a", row("a@example.com"))}

	_, err := s.Apply(context.Background(), []Record{rec})
	if ae := httpclienttest.AppError(t, err); ae.Type() != failure.TypeSinkUnavailable || ae.NonRetryable() {
		t.Fatalf("first Apply: %v", err)
	}
	res := apply(t, s, rec) // what Temporal's retry does
	if r := res.Records[0]; r.Outcome != OutcomeCreated || r.ExternalID != "cus_1" {
		t.Fatalf("second Apply: %+v", r)
	}
	reqs := dest.requests()
	if len(reqs) != 4 {
		t.Fatalf("%d requests, want 4 (500, 503 | 503, 201)", len(reqs))
	}
	for i, c := range reqs {
		if got := c.header.Get("Idempotency-Key"); got != rec.IdempotencyKey {
			t.Errorf("request %d: Idempotency-Key %q, want %q", i, got, rec.IdempotencyKey)
		}
	}
	if n := dest.objectCount(); n != 1 {
		t.Errorf("destination holds %d objects, want 1", n)
	}
}

func TestIdempotencyKey(t *testing.T) {
	base := IdempotencyKey("run-1", "k", map[string]any{"a": 1, "b": json.Number("2.50"), "c": map[string]any{"x": nil, "y": "z"}})
	same := IdempotencyKey("run-1", "k", map[string]any{"c": map[string]any{"y": "z", "x": nil}, "b": json.Number("2.50"), "a": 1})
	if base != same || len(base) != 64 {
		t.Fatalf("key %q vs %q: not stable over member order", base, same)
	}
	for name, other := range map[string]string{
		"run":     IdempotencyKey("run-2", "k", map[string]any{"a": 1, "b": json.Number("2.50"), "c": map[string]any{"x": nil, "y": "z"}}),
		"key":     IdempotencyKey("run-1", "k2", map[string]any{"a": 1, "b": json.Number("2.50"), "c": map[string]any{"x": nil, "y": "z"}}),
		"content": IdempotencyKey("run-1", "k", map[string]any{"a": 2, "b": json.Number("2.50"), "c": map[string]any{"x": nil, "y": "z"}}),
		"shift":   IdempotencyKey("run-1k", "", map[string]any{"a": 1, "b": json.Number("2.50"), "c": map[string]any{"x": nil, "y": "z"}}),
	} {
		if other == base {
			t.Errorf("another %s gives the same key", name)
		}
	}
}

func TestSink_ApplyConflictsAndRejections(t *testing.T) {
	tests := []struct {
		name        string
		status      int
		update      bool
		wantOutcome Outcome
	}{
		{name: "409 on create", status: http.StatusConflict, wantOutcome: OutcomeConflict},
		{name: "412 on update", status: http.StatusPreconditionFailed, update: true, wantOutcome: OutcomeConflict},
		{name: "404 on update: the record is gone", status: http.StatusNotFound, update: true, wantOutcome: OutcomeConflict},
		{name: "410 on update", status: http.StatusGone, update: true, wantOutcome: OutcomeConflict},
		{name: "422", status: http.StatusUnprocessableEntity, wantOutcome: OutcomeRejected},
		{name: "400 on update", status: http.StatusBadRequest, update: true, wantOutcome: OutcomeRejected},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			dest := &fakeDest{before: func(w http.ResponseWriter, r *http.Request, call int) bool {
				if call == 2 {
					writeJSON(w, tt.status, map[string]any{"error": map[string]any{"message": "email: not an address; token s3cret-bearer"}})
					return true
				}
				return false
			}}
			cfg := testConfig()
			cfg.Auth = httpclient.Auth{Kind: httpclient.AuthBearer, Token: "s3cret-bearer"}
			s, _ := newTestSink(t, dest, cfg, nil)
			rec := Record{Key: "b", Row: row("b@x")}
			if tt.update {
				rec.ExternalID = "cus_9"
			}
			apply(t, s, Record{Key: "a", Row: row("a@x")}) // call 1 succeeds
			res := apply(t, s, rec)
			r := res.Records[0]
			if r.Outcome != tt.wantOutcome || r.Status != tt.status || r.Key != "b" {
				t.Fatalf("result %+v, want %s with status %d", r, tt.wantOutcome, tt.status)
			}
			want := fmt.Sprintf("status %d %s: ", tt.status, http.StatusText(tt.status))
			if !strings.HasPrefix(r.Err, want) || !strings.Contains(r.Err, "email: not an address") || strings.Contains(r.Err, "s3cret-bearer") {
				t.Errorf("Err = %q, want the status and the server's message, without the token", r.Err)
			}
			if tt.update && r.ExternalID != "cus_9" {
				t.Errorf("ExternalID = %q, want the known one", r.ExternalID)
			}
			if dest.count() != 2 {
				t.Errorf("%d requests, want 2: a refusal is not retried", dest.count())
			}
		})
	}
}

func TestSink_ApplyStatusErrors(t *testing.T) {
	tests := []struct {
		status        int
		header        map[string]string
		wantType      string
		wantPermanent bool
		wantDelay     time.Duration
		wantCalls     int // Retry.Max is 2
	}{
		{status: 401, wantType: failure.TypeSinkAuth, wantPermanent: true, wantCalls: 1},
		{status: 403, wantType: failure.TypeSinkAuth, wantPermanent: true, wantCalls: 1},
		{status: 404, wantType: failure.TypeSinkNotFound, wantPermanent: true, wantCalls: 1},
		{status: 405, wantType: failure.TypeSinkHTTP, wantPermanent: true, wantCalls: 1},
		{status: 302, header: map[string]string{"Location": "/v1/other"}, wantType: failure.TypeSinkHTTP, wantPermanent: true, wantCalls: 1},
		{status: 500, wantType: failure.TypeSinkUnavailable, wantCalls: 3},
		{status: 502, wantType: failure.TypeSinkUnavailable, wantCalls: 3},
		{status: 503, wantType: failure.TypeSinkUnavailable, wantCalls: 3},
		{status: 429, wantType: failure.TypeSinkThrottled, wantDelay: time.Second, wantCalls: 1},
		{status: 429, header: map[string]string{"Retry-After": "120"}, wantType: failure.TypeSinkThrottled, wantDelay: 120 * time.Second, wantCalls: 1},
		{status: 503, header: map[string]string{"Retry-After": "60"}, wantType: failure.TypeSinkThrottled, wantDelay: 60 * time.Second, wantCalls: 1},
	}
	for _, tt := range tests {
		t.Run(fmt.Sprint(tt.status, " ", tt.header), func(t *testing.T) {
			clk := httpclienttest.NewClock()
			dest := &fakeDest{before: func(w http.ResponseWriter, r *http.Request, _ int) bool {
				for k, v := range tt.header {
					w.Header().Set(k, v)
				}
				w.WriteHeader(tt.status)
				fmt.Fprintf(w, `{"error":"no luck","echo":"s3cret-bearer %s"}`, strings.Repeat("x", 1000))
				return true
			}}
			cfg := testConfig()
			cfg.Auth = httpclient.Auth{Kind: httpclient.AuthBearer, Token: "s3cret-bearer"}
			s, srv := newTestSink(t, dest, cfg, clk)
			res, err := s.Apply(context.Background(), []Record{{Key: "a", Row: row("a@x")}})
			ae := httpclienttest.AppError(t, err)
			if ae.Type() != tt.wantType || ae.NonRetryable() != tt.wantPermanent || ae.NextRetryDelay() != tt.wantDelay {
				t.Errorf("type %s permanent %v delay %s, want %s %v %s", ae.Type(), ae.NonRetryable(), ae.NextRetryDelay(), tt.wantType, tt.wantPermanent, tt.wantDelay)
			}
			msg := err.Error()
			if !strings.HasPrefix(msg, "POST "+srv.URL+"/v1/customers: status "+fmt.Sprint(tt.status)) {
				t.Errorf("message %q does not name the call and the status", msg)
			}
			if strings.Contains(msg, "s3cret-bearer") || len(msg) > 600 {
				t.Errorf("message leaks the token or quotes the whole body: %q", msg)
			}
			if res.Records[0].Outcome != "" {
				t.Errorf("outcome %q for a record whose call failed", res.Records[0].Outcome)
			}
			if dest.count() != tt.wantCalls {
				t.Errorf("%d requests, want %d", dest.count(), tt.wantCalls)
			}
		})
	}
}

// throttledOnce answers the first request 429 with Retry-After seconds.
func throttledOnce(seconds string) *fakeDest {
	return &fakeDest{before: func(w http.ResponseWriter, r *http.Request, call int) bool {
		if call == 1 {
			w.Header().Set("Retry-After", seconds)
			w.WriteHeader(http.StatusTooManyRequests)
			return true
		}
		return false
	}}
}

func TestSink_ApplyHonoursRetryAfter(t *testing.T) {
	t.Run("short: waited in process", func(t *testing.T) {
		clk := httpclienttest.NewClock()
		dest := throttledOnce("1")
		s, _ := newTestSink(t, dest, testConfig(), clk)
		res := apply(t, s, Record{Key: "a", Row: row("a@x")})
		if res.Created != 1 || dest.count() != 2 {
			t.Fatalf("created %d after %d requests, want 1 after 2", res.Created, dest.count())
		}
		if got := clk.Waits(); !slices.Equal(got, []time.Duration{time.Second}) {
			t.Errorf("waits = %v, want [1s]", got)
		}
	})
	t.Run("long: back to Temporal, and the next call holds", func(t *testing.T) {
		clk := httpclienttest.NewClock()
		dest := throttledOnce("90")
		s, _ := newTestSink(t, dest, testConfig(), clk)
		for i := range 2 {
			_, err := s.Apply(context.Background(), []Record{{Key: "a", Row: row("a@x")}})
			ae := httpclienttest.AppError(t, err)
			if ae.Type() != failure.TypeSinkThrottled || ae.NextRetryDelay() != 90*time.Second {
				t.Errorf("Apply %d: type %s delay %s, want throttled 90s: %v", i, ae.Type(), ae.NextRetryDelay(), err)
			}
		}
		if dest.count() != 1 {
			t.Errorf("%d requests, want 1: the second Apply must wait without calling", dest.count())
		}
		if err := clk.Sleep(context.Background(), 90*time.Second); err != nil {
			t.Fatal(err)
		}
		if res := apply(t, s, Record{Key: "a", Row: row("a@x")}); res.Created != 1 {
			t.Errorf("after the wait: %+v", res)
		}
	})
}

func TestSink_ApplyRateLimit(t *testing.T) {
	clk := httpclienttest.NewClock()
	dest := &fakeDest{}
	cfg := testConfig()
	cfg.RateLimit = httpclient.RateLimit{RequestsPerSecond: 10, Burst: 2}
	cfg.MaxInFlight = 1
	s, _ := newTestSink(t, dest, cfg, clk)
	var recs []Record
	for i := range 6 {
		recs = append(recs, Record{Key: fmt.Sprint(i), Row: row(fmt.Sprintf("u%d@x", i))})
	}
	if res := apply(t, s, recs...); res.Created != 6 {
		t.Fatalf("result %+v", res)
	}
	// A burst of 2, then one request every 100ms.
	want := []time.Duration{100 * time.Millisecond, 100 * time.Millisecond, 100 * time.Millisecond, 100 * time.Millisecond}
	if got := clk.Waits(); !slices.Equal(got, want) {
		t.Errorf("pacer waits = %v, want %v", got, want)
	}
	if dest.count() != 6 {
		t.Errorf("%d requests, want 6", dest.count())
	}
}

func TestSink_ApplyMaxInFlight(t *testing.T) {
	var inFlight, peak atomic.Int32
	dest := &fakeDest{delay: 10 * time.Millisecond}
	counting := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		n := inFlight.Add(1)
		defer inFlight.Add(-1)
		for {
			p := peak.Load()
			if n <= p || peak.CompareAndSwap(p, n) {
				break
			}
		}
		dest.ServeHTTP(w, r)
	})
	cfg := testConfig()
	cfg.MaxInFlight = 3
	s, _ := newTestSink(t, counting, cfg, nil)
	// Two Applies at once share the Client's three slots.
	var wg sync.WaitGroup
	for a := range 2 {
		wg.Go(func() {
			var recs []Record
			for i := range 15 {
				recs = append(recs, Record{Key: fmt.Sprint(a, "-", i), Row: row(fmt.Sprintf("u%d-%d@x", a, i))})
			}
			if res, err := s.Apply(context.Background(), recs); err != nil || res.Created != 15 {
				t.Errorf("Apply %d: %+v, %v", a, res, err)
			}
		})
	}
	wg.Wait()
	if p := peak.Load(); p > 3 || p < 2 {
		t.Errorf("peak of %d requests in flight, want at most 3 (and more than 1)", p)
	}
	if dest.count() != 30 {
		t.Errorf("%d requests, want 30", dest.count())
	}
}

func TestSink_CircuitBreaker(t *testing.T) {
	var healthy atomic.Bool
	dest := failingUntil(&healthy)
	cfg := testConfig()
	cfg.Retry.Max = -1
	cfg.MaxInFlight = 1
	cfg.CircuitBreaker = CircuitBreaker{FailureRate: 0.5, MinRequests: 4, Window: time.Minute, OpenFor: time.Second}
	s, _ := newTestSink(t, dest, cfg, nil)
	ctx := context.Background()

	// Four failed calls in the window: the circuit opens.
	for i := range 4 {
		_, err := s.Apply(ctx, []Record{{Key: fmt.Sprint(i), Row: row("a@x")}})
		if !failure.IsType(err, failure.TypeSinkUnavailable) {
			t.Fatalf("call %d: %v, want unavailable", i, err)
		}
	}
	if st := s.breaker.State(); st != gobreaker.StateOpen {
		t.Fatalf("breaker %s after 4 failures, want open", st)
	}

	// Open: fails fast, without calling the destination, saying how long to wait.
	healthy.Store(true)
	calls := dest.count()
	_, err := s.Apply(ctx, []Record{{Key: "x", Row: row("x@x")}, {Key: "y", Row: row("y@x")}})
	ae := httpclienttest.AppError(t, err)
	if ae.Type() != failure.TypeCircuitOpen || ae.NonRetryable() || ae.NextRetryDelay() <= 0 || ae.NextRetryDelay() > time.Second {
		t.Errorf("open circuit: type %s delay %s: %v", ae.Type(), ae.NextRetryDelay(), err)
	}
	if dest.count() != calls {
		t.Errorf("%d calls reached the destination through an open circuit", dest.count()-calls)
	}

	// After open_for: half-open, one probe succeeds and closes the circuit.
	deadline := time.Now().Add(5 * time.Second)
	for s.breaker.State() == gobreaker.StateOpen && time.Now().Before(deadline) {
		time.Sleep(20 * time.Millisecond)
	}
	if st := s.breaker.State(); st != gobreaker.StateHalfOpen {
		t.Fatalf("breaker %s after open_for, want half-open", st)
	}
	if res := apply(t, s, Record{Key: "probe", Row: row("p@x")}); res.Created != 1 {
		t.Fatalf("probe: %+v", res)
	}
	if st := s.breaker.State(); st != gobreaker.StateClosed {
		t.Fatalf("breaker %s after a successful probe, want closed", st)
	}
	if res := apply(t, s, Record{Key: "x", Row: row("x@x")}, Record{Key: "y", Row: row("y@x")}); res.Created != 2 {
		t.Errorf("closed again: %+v", res)
	}
}

func TestSink_CircuitBreakerIgnoresRefusalsAndThrottling(t *testing.T) {
	dest := &fakeDest{before: func(w http.ResponseWriter, r *http.Request, call int) bool {
		if call%2 == 0 {
			w.WriteHeader(http.StatusTooManyRequests)
		} else {
			w.WriteHeader(http.StatusUnprocessableEntity)
		}
		return true
	}}
	cfg := testConfig()
	cfg.CircuitBreaker = CircuitBreaker{MinRequests: 2, FailureRate: 0.1}
	s, _ := newTestSink(t, dest, cfg, httpclienttest.NewClock())
	for i := range 6 {
		_, _ = s.Apply(context.Background(), []Record{{Key: fmt.Sprint(i), Row: row("a@x")}})
	}
	if dest.count() != 6 {
		t.Errorf("%d requests, want 6", dest.count())
	}
	if st := s.breaker.State(); st != gobreaker.StateClosed {
		t.Errorf("breaker %s, want closed: 422 and 429 are not the destination failing", st)
	}
}

func TestSink_ApplyBatch(t *testing.T) {
	var batches atomic.Int32
	dest := &fakeDest{}
	dest.before = func(w http.ResponseWriter, r *http.Request, _ int) bool {
		if r.URL.Path != "/v1/customers/batch" || batches.Add(1) != 1 {
			return false
		}
		// The first batch: one created, one refused.
		writeJSON(w, http.StatusOK, []any{
			map[string]any{"status": 201, "customer": map[string]any{"id": "cus_100"}},
			map[string]any{"status": 422, "error": map[string]any{"type": "validation", "message": "email: not an address"}},
		})
		return true
	}
	cfg := testConfig()
	cfg.Batch = Batch{Path: "/v1/customers/batch", MaxRecords: 2, IdempotencyKeyField: "idempotency_key", IDPath: "customer.id"}
	cfg.MaxInFlight = 1
	s, _ := newTestSink(t, dest, cfg, nil)
	recs := []Record{
		{Key: "a", Row: row("a@x"), IdempotencyKey: "ka"},
		{Key: "b", Row: row("not-an-address"), IdempotencyKey: "kb"},
		{Key: "c", Row: row("c@x"), IdempotencyKey: "kc"},
		{Key: "u", Row: row("u@x"), ExternalID: "cus_9"},
		{Key: "d", Row: row("d@x"), IdempotencyKey: "kd"},
		{Key: "e", Row: row("e@x"), IdempotencyKey: "ke"},
		{Key: "f", Row: row("f@x"), IdempotencyKey: "kf"},
	}
	dest.objects = map[string]map[string]any{"cus_9": {"id": "cus_9"}}
	dest.byKey = map[string]string{}
	res := apply(t, s, recs...)

	want := []struct {
		outcome Outcome
		id      string
	}{
		{OutcomeCreated, "cus_100"}, {OutcomeRejected, ""}, {OutcomeCreated, "cus_1"}, {OutcomeUpdated, "cus_9"},
		{OutcomeCreated, "cus_2"}, {OutcomeCreated, "cus_3"}, {OutcomeCreated, "cus_4"},
	}
	for i, w := range want {
		if r := res.Records[i]; r.Outcome != w.outcome || r.ExternalID != w.id || r.Key != recs[i].Key {
			t.Errorf("record %d: %+v, want %s %q", i, r, w.outcome, w.id)
		}
	}
	if r := res.Records[1]; r.Status != 422 || r.Err != "status 422 Unprocessable Entity: email: not an address" {
		t.Errorf("refused item: %+v", r)
	}
	if res.Created != 5 || res.Updated != 1 || res.Rejected != 1 {
		t.Errorf("counts %+v", res)
	}

	var sent [][]string
	for _, c := range dest.requests() {
		if c.path != "/v1/customers/batch" {
			continue
		}
		var items []map[string]any
		if err := json.Unmarshal([]byte(c.body), &items); err != nil {
			t.Fatalf("batch body %s: %v", c.body, err)
		}
		var keys []string
		for _, it := range items {
			keys = append(keys, it["idempotency_key"].(string))
		}
		sent = append(sent, keys)
		if c.header.Get("Idempotency-Key") != "" {
			t.Errorf("batch with per-item keys also sent a header key")
		}
	}
	if fmt.Sprint(sent) != "[[ka kb] [kc kd] [ke kf]]" {
		t.Errorf("batches %v, want [[ka kb] [kc kd] [ke kf]]", sent)
	}
}

func TestSink_ApplyBatchErrors(t *testing.T) {
	tests := []struct {
		name          string
		answer        func(w http.ResponseWriter)
		wantType      string
		wantPermanent bool
		wantOutcomes  []Outcome
	}{
		{
			name:          "wrong number of items",
			answer:        func(w http.ResponseWriter) { writeJSON(w, 200, []any{map[string]any{"status": 201, "id": "x"}}) },
			wantType:      failure.TypeSinkMalformed,
			wantPermanent: true,
			wantOutcomes:  []Outcome{"", ""},
		},
		{
			name: "created item without an id",
			answer: func(w http.ResponseWriter) {
				writeJSON(w, 200, []any{map[string]any{"status": 201, "id": "x"}, map[string]any{"status": 201}})
			},
			wantType:      failure.TypeSinkMalformed,
			wantPermanent: true,
			wantOutcomes:  []Outcome{OutcomeCreated, ""},
		},
		{
			name: "an item failed transiently, the other conflicted",
			answer: func(w http.ResponseWriter) {
				writeJSON(w, 200, []any{map[string]any{"status": 409, "error": "taken"}, map[string]any{"status": 503, "error": "busy"}})
			},
			wantType:     failure.TypeSinkUnavailable,
			wantOutcomes: []Outcome{OutcomeConflict, ""},
		},
		{
			name:          "the whole batch refused",
			answer:        func(w http.ResponseWriter) { writeJSON(w, 422, map[string]any{"error": "too many"}) },
			wantType:      failure.TypeSinkHTTP,
			wantPermanent: true,
			wantOutcomes:  []Outcome{"", ""},
		},
		{
			name: "refused item by item",
			answer: func(w http.ResponseWriter) {
				writeJSON(w, 400, []any{map[string]any{"status": 201, "id": "x"}, map[string]any{"status": 400, "error": "bad"}})
			},
			wantOutcomes: []Outcome{OutcomeCreated, OutcomeRejected},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			dest := answering(tt.answer)
			cfg := testConfig()
			cfg.Batch = Batch{Path: "/v1/customers/batch"}
			s, _ := newTestSink(t, dest, cfg, nil)
			res, err := s.Apply(context.Background(), []Record{{Key: "a", Row: row("a@x")}, {Key: "b", Row: row("b@x")}})
			if tt.wantType == "" {
				if err != nil {
					t.Fatalf("Apply: %v", err)
				}
			} else if ae := httpclienttest.AppError(t, err); ae.Type() != tt.wantType || ae.NonRetryable() != tt.wantPermanent {
				t.Errorf("type %s permanent %v, want %s %v: %v", ae.Type(), ae.NonRetryable(), tt.wantType, tt.wantPermanent, err)
			}
			for i, w := range tt.wantOutcomes {
				if res.Records[i].Outcome != w {
					t.Errorf("record %d: %+v, want outcome %q", i, res.Records[i], w)
				}
			}
			c := dest.requests()[0]
			if want := batchKey([]string{IdempotencyKey("", "a", row("a@x")), IdempotencyKey("", "b", row("b@x"))}); c.header.Get("Idempotency-Key") != want {
				t.Errorf("batch Idempotency-Key %q, want the hash of its records' keys", c.header.Get("Idempotency-Key"))
			}
		})
	}
}

func TestSink_ApplyPaths(t *testing.T) {
	dest := answering(func(w http.ResponseWriter) { writeJSON(w, 200, map[string]any{"id": "x"}) })
	cfg := testConfig()
	cfg.BaseURL = "" // set by newTestSink, with a prefix below
	cfg.Update = Endpoint{Method: "patch", Path: "/v1/orgs/{{.org.id}}/customers/{{.external_id}}?notify=false"}
	s, srv := newTestSink(t, dest, cfg, nil)
	s2, err := NewClient("prefixed", Config{BaseURL: srv.URL + "/api/", Create: cfg.Create, Update: cfg.Update})
	if err != nil {
		t.Fatal(err)
	}
	for _, sink := range []*Client{s, s2} {
		res := apply(t, sink,
			Record{Key: "a", Row: map[string]any{"org": map[string]any{"id": json.Number("7")}}, ExternalID: "a/b"},
			Record{Key: "b", Row: map[string]any{"org": map[string]any{"id": ".."}}, ExternalID: "c d"},
			Record{Key: "c", Row: map[string]any{"name": "no org"}, ExternalID: "e"},
		)
		if r := res.Records[2]; r.Outcome != OutcomeRejected || !strings.Contains(r.Err, "update.path") || !strings.Contains(r.Err, "org") {
			t.Errorf("record without the path's field: %+v", r)
		}
	}
	var got []string
	for _, c := range dest.requests() {
		got = append(got, c.method+" "+c.path+"?"+c.query)
	}
	want := []string{
		"PATCH /v1/orgs/7/customers/a%2Fb?notify=false",
		"PATCH /v1/orgs/%2E%2E/customers/c%20d?notify=false",
		"PATCH /api/v1/orgs/7/customers/a%2Fb?notify=false",
		"PATCH /api/v1/orgs/%2E%2E/customers/c%20d?notify=false",
	}
	slices.Sort(got)
	slices.Sort(want)
	if !slices.Equal(got, want) {
		t.Errorf("requests\n%v\nwant\n%v", got, want)
	}
}

func TestSink_ApplyCollapsesDuplicateKeys(t *testing.T) {
	dest := &fakeDest{}
	s, _ := newTestSink(t, dest, testConfig(), nil)
	res := apply(t, s, Record{Key: "a", Row: row("first@x")}, Record{Key: "b", Row: row("b@x")}, Record{Key: "a", Row: row("last@x")})
	if res.Records[0].Outcome != OutcomeSuperseded || res.Superseded != 1 || res.Created != 2 {
		t.Fatalf("result %+v", res)
	}
	for _, c := range dest.requests() {
		if strings.Contains(c.body, "first@x") {
			t.Errorf("the superseded record was sent")
		}
	}
}

func TestSink_ApplyCreatedID(t *testing.T) {
	tests := []struct {
		name    string
		answer  func(w http.ResponseWriter)
		idPath  string
		wantID  string
		wantErr bool
	}{
		{name: "nested", idPath: "data.id", answer: func(w http.ResponseWriter) { writeJSON(w, 201, map[string]any{"data": map[string]any{"id": "n1"}}) }, wantID: "n1"},
		{name: "number", answer: func(w http.ResponseWriter) { writeJSON(w, 201, map[string]any{"id": 12345678901234567}) }, wantID: "12345678901234567"},
		{name: "empty body with Location", answer: func(w http.ResponseWriter) {
			w.Header().Set("Location", "/v1/customers/loc_9")
			w.WriteHeader(201)
		}, wantID: "loc_9"},
		{name: "no id", answer: func(w http.ResponseWriter) { writeJSON(w, 201, map[string]any{"ok": true}) }, wantErr: true},
		{name: "not JSON", answer: func(w http.ResponseWriter) { w.WriteHeader(201); fmt.Fprint(w, "created!") }, wantErr: true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			dest := answering(tt.answer)
			cfg := testConfig()
			cfg.IDPath = tt.idPath
			s, _ := newTestSink(t, dest, cfg, nil)
			res, err := s.Apply(context.Background(), []Record{{Key: "a", Row: row("a@x")}})
			if tt.wantErr {
				ae := httpclienttest.AppError(t, err)
				if ae.Type() != failure.TypeSinkMalformed || !ae.NonRetryable() || !strings.Contains(err.Error(), "id_path") {
					t.Errorf("type %s: %v", ae.Type(), err)
				}
				return
			}
			if err != nil || res.Records[0].ExternalID != tt.wantID {
				t.Errorf("result %+v, %v; want id %q", res.Records[0], err, tt.wantID)
			}
		})
	}
}

func TestSink_Delete(t *testing.T) {
	tests := []struct {
		status        int
		wantErr       string
		wantPermanent bool
	}{
		{status: 204},
		{status: 200},
		{status: 404}, // already gone
		{status: 410},
		{status: 500, wantErr: failure.TypeSinkUnavailable},
		{status: 403, wantErr: failure.TypeSinkAuth, wantPermanent: true},
		{status: 409, wantErr: failure.TypeSinkHTTP, wantPermanent: true},
	}
	for _, tt := range tests {
		t.Run(fmt.Sprint(tt.status), func(t *testing.T) {
			dest := answering(func(w http.ResponseWriter) { w.WriteHeader(tt.status) })
			cfg := testConfig()
			cfg.Retry.Max = -1
			cfg.Delete = Endpoint{Path: "/v1/customers/{{.external_id}}?email={{.email}}"}
			s, _ := newTestSink(t, dest, cfg, nil)
			err := s.Delete(context.Background(), "cus_1", row("a@x"))
			if tt.wantErr == "" {
				if err != nil {
					t.Fatalf("Delete: %v", err)
				}
			} else if ae := httpclienttest.AppError(t, err); ae.Type() != tt.wantErr || ae.NonRetryable() != tt.wantPermanent {
				t.Errorf("type %s permanent %v, want %s %v", ae.Type(), ae.NonRetryable(), tt.wantErr, tt.wantPermanent)
			}
			c := dest.requests()[0]
			if c.method != http.MethodDelete || c.path != "/v1/customers/cus_1" || c.query != "email=a%40x" {
				t.Errorf("request %s %s?%s", c.method, c.path, c.query)
			}
		})
	}
	t.Run("no id", func(t *testing.T) {
		s, _ := newTestSink(t, &fakeDest{}, testConfig(), nil)
		err := s.Delete(context.Background(), "", row("a@x"))
		if !failure.IsType(err, failure.TypeCompensation) || !failure.IsPermanent(err) {
			t.Errorf("err = %v, want a permanent compensation error", err)
		}
	})
	t.Run("twice against the real thing", func(t *testing.T) {
		dest := &fakeDest{}
		s, _ := newTestSink(t, dest, testConfig(), nil)
		res := apply(t, s, Record{Key: "a", Row: row("a@x")})
		id := res.Records[0].ExternalID
		for i := range 2 {
			if err := s.Delete(context.Background(), id, nil); err != nil {
				t.Fatalf("delete %d: %v", i, err)
			}
		}
		if dest.objectCount() != 0 {
			t.Errorf("%d objects left", dest.objectCount())
		}
	})
}

func TestSink_Restore(t *testing.T) {
	dest := &fakeDest{}
	cfg := testConfig()
	cfg.Update.Method = http.MethodPatch // Restore PUTs whatever update uses
	s, _ := newTestSink(t, dest, cfg, nil)
	res := apply(t, s, Record{Key: "a", Row: row("a@x")})
	id := res.Records[0].ExternalID
	apply(t, s, Record{Key: "a", Row: map[string]any{"email": "new@x"}, ExternalID: id})

	before := map[string]any{"email": "a@x", "name": "A"}
	if err := s.Restore(context.Background(), id, before); err != nil {
		t.Fatal(err)
	}
	last := dest.requests()[2]
	if last.method != http.MethodPut || last.path != "/v1/customers/"+id || last.body != `{"email":"a@x","name":"A"}` {
		t.Errorf("restore request %s %s %s", last.method, last.path, last.body)
	}
	if got := dest.objects[id]["email"]; got != "a@x" {
		t.Errorf("destination holds %v after the restore", dest.objects[id])
	}

	err := s.Restore(context.Background(), "cus_404", before)
	if !failure.IsType(err, failure.TypeCompensation) || !failure.IsPermanent(err) || !strings.Contains(err.Error(), "status 404") {
		t.Errorf("restore of a gone record: %v, want a permanent compensation error", err)
	}
}

func TestSink_SecretsNeverInErrors(t *testing.T) {
	const secret = "very-secret-value"
	tokens := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		_ = r.ParseForm()
		w.Header().Set("Content-Type", "application/json")
		w.WriteHeader(http.StatusUnauthorized)
		fmt.Fprintf(w, `{"error":"invalid_client","error_description":"bad secret %s"}`, secret)
	})
	srv := httptest.NewServer(tokens)
	t.Cleanup(srv.Close)
	tests := []struct {
		name string
		auth httpclient.Auth
	}{
		{name: "oauth2 token refused", auth: httpclient.Auth{Kind: httpclient.AuthOAuth2, TokenURL: srv.URL + "/oauth/token?client_secret=" + secret, ClientID: "c", ClientSecret: secret}},
		{name: "api key echoed", auth: httpclient.Auth{Kind: httpclient.AuthAPIKey, APIKey: secret}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			dest := &fakeDest{before: func(w http.ResponseWriter, r *http.Request, _ int) bool {
				w.WriteHeader(http.StatusUnauthorized)
				fmt.Fprintf(w, "key %s refused", r.Header.Get("X-API-Key"))
				return true
			}}
			cfg := testConfig()
			cfg.Auth = tt.auth
			s, _ := newTestSink(t, dest, cfg, nil)
			_, err := s.Apply(context.Background(), []Record{{Key: "a", Row: row("a@x")}})
			if ae := httpclienttest.AppError(t, err); ae.Type() != failure.TypeSinkAuth || !ae.NonRetryable() {
				t.Errorf("type %s: %v", ae.Type(), err)
			}
			if strings.Contains(err.Error(), secret) {
				t.Errorf("error leaks the secret: %v", err)
			}
			if err := s.Delete(context.Background(), "x", nil); err == nil || strings.Contains(err.Error(), secret) {
				t.Errorf("delete error: %v", err)
			}
		})
	}
	t.Run("config error", func(t *testing.T) {
		cfg := testConfig()
		cfg.BaseURL = "http://user:" + secret + "@127.0.0.1"
		_, err := NewClient("x", cfg)
		if err == nil || strings.Contains(err.Error(), secret) {
			t.Errorf("New: %v", err)
		}
	})
}

func TestSink_ApplyCancelled(t *testing.T) {
	dest := &fakeDest{delay: 50 * time.Millisecond}
	s, _ := newTestSink(t, dest, testConfig(), nil)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Millisecond)
	defer cancel()
	var recs []Record
	for i := range 20 {
		recs = append(recs, Record{Key: fmt.Sprint(i), Row: row("a@x")})
	}
	_, err := s.Apply(ctx, recs)
	if !strings.Contains(fmt.Sprint(err), context.DeadlineExceeded.Error()) {
		t.Errorf("err = %v, want the context's", err)
	}
	if n := dest.count(); n > 4 {
		t.Errorf("%d requests after the deadline, want at most max_in_flight", n)
	}
}

// failingUntil is a destination answering 502 until healthy is set, then
// as usual: a breaker opens on it and closes again.
func failingUntil(healthy *atomic.Bool) *fakeDest {
	dest := &fakeDest{}
	dest.before = func(w http.ResponseWriter, r *http.Request, _ int) bool {
		if healthy.Load() {
			return false
		}
		w.WriteHeader(http.StatusBadGateway)
		return true
	}
	return dest
}
