package httpsink

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/tetherflow/tether/activities/lib/httpclient"
	"github.com/tetherflow/tether/activities/lib/httpclient/httpclienttest"
)

// call is one request the fake destination received.
type call struct {
	method, path, query string
	header              http.Header
	body                string
}

// fakeDest is a customers API over real loopback HTTP: POST /v1/customers
// creates (deduplicated by Idempotency-Key, as a careful API does), PUT and
// PATCH /v1/customers/{id} update, DELETE deletes, POST
// /v1/customers/batch creates arrays ({"status", "customer", "error"} per
// item, deduplicated by each item's "idempotency_key"). Every request is
// recorded.
type fakeDest struct {
	// before, when set, may answer the request itself (return true); call
	// counts from 1.
	before func(w http.ResponseWriter, r *http.Request, call int) bool
	// delay holds every request this long (concurrency tests).
	delay time.Duration

	mu      sync.Mutex
	calls   []call
	objects map[string]map[string]any // id -> row
	byKey   map[string]string         // idempotency key -> id
	seq     int
}

func (d *fakeDest) requests() []call {
	d.mu.Lock()
	defer d.mu.Unlock()
	return append([]call(nil), d.calls...)
}

func (d *fakeDest) count() int {
	d.mu.Lock()
	defer d.mu.Unlock()
	return len(d.calls)
}

func (d *fakeDest) objectCount() int {
	d.mu.Lock()
	defer d.mu.Unlock()
	return len(d.objects)
}

func (d *fakeDest) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	b, _ := io.ReadAll(r.Body)
	d.mu.Lock()
	d.calls = append(d.calls, call{method: r.Method, path: r.URL.EscapedPath(), query: r.URL.RawQuery, header: r.Header.Clone(), body: string(b)})
	n := len(d.calls)
	d.mu.Unlock()
	if d.delay > 0 {
		time.Sleep(d.delay)
	}
	if d.before != nil && d.before(w, r, n) {
		return
	}
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.objects == nil {
		d.objects, d.byKey = map[string]map[string]any{}, map[string]string{}
	}
	switch id, _ := strings.CutPrefix(r.URL.EscapedPath(), "/v1/customers/"); {
	case r.URL.Path == "/v1/customers" && r.Method == http.MethodPost:
		var row map[string]any
		if err := json.Unmarshal(b, &row); err != nil {
			writeJSON(w, http.StatusBadRequest, map[string]any{"error": map[string]any{"message": err.Error()}})
			return
		}
		status, obj := d.create(r.Header.Get("Idempotency-Key"), row)
		writeJSON(w, status, obj)
	case r.URL.Path == "/v1/customers/batch" && r.Method == http.MethodPost:
		var rows []map[string]any
		if err := json.Unmarshal(b, &rows); err != nil {
			writeJSON(w, http.StatusBadRequest, map[string]any{"error": map[string]any{"message": err.Error()}})
			return
		}
		results := make([]map[string]any, len(rows))
		for i, row := range rows {
			key, _ := row["idempotency_key"].(string)
			delete(row, "idempotency_key")
			status, obj := d.create(key, row)
			results[i] = map[string]any{"status": status, "customer": obj}
		}
		writeJSON(w, http.StatusOK, results)
	case id != "" && (r.Method == http.MethodPut || r.Method == http.MethodPatch):
		if _, ok := d.objects[id]; !ok {
			writeJSON(w, http.StatusNotFound, map[string]any{"error": map[string]any{"message": "no customer " + id}})
			return
		}
		var row map[string]any
		_ = json.Unmarshal(b, &row)
		row["id"] = id
		d.objects[id] = row
		writeJSON(w, http.StatusOK, row)
	case id != "" && r.Method == http.MethodDelete:
		if _, ok := d.objects[id]; !ok {
			writeJSON(w, http.StatusNotFound, map[string]any{"error": map[string]any{"message": "no customer " + id}})
			return
		}
		delete(d.objects, id)
		w.WriteHeader(http.StatusNoContent)
	default:
		writeJSON(w, http.StatusNotFound, map[string]any{"error": map[string]any{"message": "no route"}})
	}
}

// create stores row under a new id, or answers the object already created
// under the same idempotency key. Called with d.mu held.
func (d *fakeDest) create(key string, row map[string]any) (int, map[string]any) {
	if id, ok := d.byKey[key]; ok && key != "" {
		return http.StatusCreated, d.objects[id]
	}
	d.seq++
	id := fmt.Sprintf("cus_%d", d.seq)
	row["id"] = id
	d.objects[id] = row
	if key != "" {
		d.byKey[key] = id
	}
	return http.StatusCreated, row
}

// answering is a fake destination that answers every request with answer.
func answering(answer func(w http.ResponseWriter)) *fakeDest {
	return &fakeDest{before: func(w http.ResponseWriter, _ *http.Request, _ int) bool {
		answer(w)
		return true
	}}
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	_ = json.NewEncoder(w).Encode(v)
}

// testConfig is a valid per-record configuration for the fake destination.
func testConfig() Config {
	return Config{
		Create: Endpoint{Path: "/v1/customers"},
		Update: Endpoint{Path: "/v1/customers/{{.external_id}}"},
		Retry:  httpclient.Retry{WaitMin: time.Millisecond, WaitMax: 2 * time.Second},
	}
}

// newTestSink serves h on loopback and builds a Client for it. When clk is
// set, the Client reads time from it and the pacer sleeps through it.
func newTestSink(t testing.TB, h http.Handler, cfg Config, clk *httpclienttest.Clock, opts ...Option) (*Client, *httptest.Server) {
	t.Helper()
	srv := httptest.NewServer(h)
	t.Cleanup(srv.Close)
	if cfg.BaseURL == "" {
		cfg.BaseURL = srv.URL
	}
	if clk != nil {
		opts = append(opts, WithClock(clk.Now), func(s *Client) { s.sleep = clk.Sleep })
	}
	s, err := NewClient("test-customers", cfg, opts...)
	if err != nil {
		t.Fatalf("New: %v", err)
	}
	return s, srv
}

// row makes a customer row.
func row(email string) map[string]any {
	return map[string]any{"email": email, "name": strings.ToUpper(email[:1])}
}

func apply(t *testing.T, s *Client, records ...Record) Result {
	t.Helper()
	res, err := s.Apply(context.Background(), records)
	if err != nil {
		t.Fatalf("Apply: %v", err)
	}
	return res
}
