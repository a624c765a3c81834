package webhook

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"sync"
	"sync/atomic"
	"testing"
	"testing/fstest"
	"time"

	"github.com/tetherflow/tether/activities/lib/schema"
)

// Secrets of the tests: current, previous (during a rotation) and one the
// receiver does not know.
const (
	secretNew   = "whsec-new-5c1e0d9a7f3b4e28a6d1c0b9"
	secretOld   = "whsec-old-0b8f2e61d47a4c39b5e0f1a2"
	secretOther = "whsec-other-9d3a6c2b18e04f7da5c3b2e1"
)

// eventsSchema is the schema of the tests' event envelope.
const eventsSchema = `{
  "$schema": "https://json-schema.org/draft/2020-12/schema",
  "type": "object",
  "required": ["type", "data"],
  "properties": {
    "type": {"enum": ["contact.created", "contact.updated"]},
    "data": {
      "type": "object",
      "required": ["id", "updated_at"],
      "properties": {
        "id": {"type": ["integer", "string"]},
        "updated_at": {"type": "string", "format": "date-time"},
        "email": {"type": "string", "format": "email"}
      }
    }
  }
}`

// itemsSchema makes one error per item that is not an integer.
const itemsSchema = `{"type": "object", "properties": {"items": {"type": "array", "items": {"type": "integer"}}}}`

// validBody is an event that matches eventsSchema.
const validBody = `{"type":"contact.updated","data":{"id":4711,"updated_at":"2026-11-23T10:15:00Z","email":"carol@example.com"}}`

// t0 is the fake clock's start: a whole second, so header values are exact.
var t0 = time.Date(2026, 11, 23, 10, 15, 0, 0, time.UTC)

// crmSource is the tests' usual source: one secret, the events schema,
// quarantine, and a rate limit no test reaches unless it means to.
func crmSource() Source {
	return Source{
		Name:        "crm",
		Secrets:     []string{secretNew},
		Schema:      "events.schema.json",
		KeyPath:     "data.id",
		VersionPath: "data.updated_at",
		RateLimit:   RateLimit{PerSecond: 1000, Burst: 1000},
	}
}

// fakeAccepter records the events it accepts, refuses delivery ids it has
// seen with ErrDuplicate, and fails every call while err is set.
type fakeAccepter struct {
	mu     sync.Mutex
	err    error
	calls  int
	seen   map[string]bool
	events []Event
}

func (f *fakeAccepter) Accept(_ context.Context, ev Event) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.calls++
	if f.err != nil {
		return f.err
	}
	if f.seen[ev.DeliveryID] {
		return fmt.Errorf("signal-with-start %s: %w", ev.DeliveryID, ErrDuplicate)
	}
	if f.seen == nil {
		f.seen = map[string]bool{}
	}
	f.seen[ev.DeliveryID] = true
	f.events = append(f.events, ev)
	return nil
}

func (f *fakeAccepter) setErr(err error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.err = err
}

// counts returns how many calls the accepter had and how many events it
// recorded.
func (f *fakeAccepter) counts() (calls, recorded int) {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.calls, len(f.events)
}

func (f *fakeAccepter) recorded() []Event {
	f.mu.Lock()
	defer f.mu.Unlock()
	return append([]Event(nil), f.events...)
}

// fakeClock is a clock the test moves.
type fakeClock struct {
	mu sync.Mutex
	t  time.Time
}

func (c *fakeClock) now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.t
}

func (c *fakeClock) advance(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.t = c.t.Add(d)
}

// syncBuffer is a bytes.Buffer the handler's goroutines can log into.
type syncBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *syncBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *syncBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}

// harness is a Receiver behind an httptest server on loopback.
type harness struct {
	srv   *httptest.Server
	acc   *fakeAccepter
	clock *fakeClock
	logs  *syncBuffer
	next  atomic.Int64 // delivery ids
}

// testRegistry compiles the tests' schema.
func testRegistry(t testing.TB) *schema.Registry {
	t.Helper()
	reg, err := schema.NewRegistry(fstest.MapFS{
		"events.schema.json": {Data: []byte(eventsSchema)},
		"items.schema.json":  {Data: []byte(itemsSchema)},
	})
	if err != nil {
		t.Fatal(err)
	}
	return reg
}

func newHarness(t *testing.T, sources []Source, opts ...Option) *harness {
	t.Helper()
	h := &harness{acc: &fakeAccepter{}, clock: &fakeClock{t: t0}, logs: &syncBuffer{}}
	logger := slog.New(slog.NewJSONHandler(h.logs, &slog.HandlerOptions{Level: slog.LevelDebug}))
	opts = append([]Option{WithClock(h.clock.now), WithLogger(logger)}, opts...)
	rcv, err := New(sources, testRegistry(t), h.acc, opts...)
	if err != nil {
		t.Fatal(err)
	}
	h.srv = newServer(t, rcv)
	return h
}

// newServer serves h on loopback for the test.
func newServer(t testing.TB, h http.Handler) *httptest.Server {
	srv := httptest.NewServer(h)
	t.Cleanup(srv.Close)
	return srv
}

// request is one webhook the tests send.
type request struct {
	method    string // default POST
	path      string // default Path(source)
	source    string // default crm
	body      string // default validBody
	delivery  string // X-Tether-Delivery; "-" sends none
	signature string // the signature header's value; default Sign with secretNew at the clock
	header    map[string]string
	chunked   bool // send the body without Content-Length
}

// response is what came back.
type response struct {
	status int
	header http.Header
	body   map[string]any
	raw    string
}

func (h *harness) send(t testing.TB, r request) response {
	t.Helper()
	if r.method == "" {
		r.method = http.MethodPost
	}
	if r.source == "" {
		r.source = "crm"
	}
	if r.path == "" {
		r.path = Path(r.source)
	}
	if r.body == "" {
		r.body = validBody
	}
	if r.signature == "" {
		r.signature = Sign("", h.clock.now(), []byte(r.body), secretNew)
	}
	var body io.Reader = bytes.NewReader([]byte(r.body))
	if r.chunked {
		body = io.MultiReader(body) // hides the length: sent chunked
	}
	req, err := http.NewRequest(r.method, h.srv.URL+r.path, body)
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Content-Type", "application/json")
	if r.signature != "-" {
		req.Header.Set(DefaultSignatureHeader, r.signature)
	}
	if r.delivery != "-" {
		if r.delivery == "" {
			r.delivery = fmt.Sprintf("dlv-%d", h.next.Add(1))
		}
		req.Header.Set(DefaultDeliveryHeader, r.delivery)
	}
	for k, v := range r.header {
		req.Header.Set(k, v)
	}
	resp, err := h.srv.Client().Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	raw, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	out := response{status: resp.StatusCode, header: resp.Header, raw: string(raw)}
	if ct := resp.Header.Get("Content-Type"); ct != "application/json; charset=utf-8" {
		t.Errorf("%s %s: Content-Type %q, want JSON", r.method, r.path, ct)
	}
	if err := json.Unmarshal(raw, &out.body); err != nil {
		t.Errorf("%s %s: answer %q is not a JSON object: %v", r.method, r.path, raw, err)
	}
	return out
}

// wantRateHeaders checks the X-RateLimit-* headers every answer for a
// source carries.
func wantRateHeaders(t testing.TB, r response) {
	t.Helper()
	for _, k := range []string{"X-RateLimit-Limit", "X-RateLimit-Remaining", "X-RateLimit-Reset"} {
		if r.header.Get(k) == "" {
			t.Errorf("answer %d has no %s header", r.status, k)
		}
	}
}
