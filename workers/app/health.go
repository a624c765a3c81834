package app

// The worker's health endpoints, served beside /metrics on metrics.listen:
//
//	GET /healthz  liveness: 200 "ok" while the process serves HTTP. It
//	              reaches nothing: a Temporal or PostgreSQL outage must not
//	              make Kubernetes restart every replica at once.
//	GET /readyz   readiness: 200 "ok" once the worker polls its task queue
//	              (the worker's start hook ran) and until its graceful stop
//	              begins, while PostgreSQL answers a ping within
//	              ReadyCheckTimeout; otherwise 503 and one line saying why.
//
// Neither asks for metrics.token: a kubelet's HTTP probe cannot send a
// token from a Secret, and neither endpoint tells more than ready or not.

import (
	"context"
	"errors"
	"log/slog"
	"net/http"
	"sync"
	"sync/atomic"
	"time"
)

// ReadyCheckTimeout bounds each dependency check of /readyz (the
// PostgreSQL ping): /readyz answers within it, whatever the database does.
const ReadyCheckTimeout = time.Second

// Reasons /readyz gives for a 503 in the worker's lifecycle.
const (
	NotReadyStarting = "starting: the worker is not polling yet"
	NotReadyStopping = "stopping: the worker has begun its graceful stop and takes no new tasks"
)

// The worker's lifecycle, as /readyz sees it.
const (
	stateStarting int32 = iota
	statePolling
	stateStopping
)

// Healthz answers every request 200 "ok": the liveness of the process,
// which depends on nothing else.
func Healthz() http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		plain(w, http.StatusOK, "ok")
	})
}

// Readiness is the worker's readiness, served as /readyz: not ready while
// the worker starts (its zero value), ready once it polls (Polling), and
// not ready again, for good, once its graceful stop begins (Stopping);
// while it polls, every dependency check (Require) must pass too. Its
// methods are safe for concurrent use, and do nothing on a nil Readiness.
type Readiness struct {
	state atomic.Int32
	log   *slog.Logger // nil: nothing logged

	mu     sync.Mutex
	checks []*readyCheck
}

// NewReadiness is a Readiness that logs its dependency checks' failures
// and recoveries to log (nil: not logged).
func NewReadiness(log *slog.Logger) *Readiness { return &Readiness{log: log} }

// Polling marks the worker as polling its task queue: ready. It does
// nothing once Stopping was called.
func (r *Readiness) Polling() {
	if r != nil {
		r.state.CompareAndSwap(stateStarting, statePolling)
	}
}

// Stopping marks the start of the worker's graceful stop: not ready from
// now on.
func (r *Readiness) Stopping() {
	if r != nil {
		r.state.Store(stateStopping)
	}
}

// Require adds a check of a dependency, made on each /readyz while the
// worker polls, bounded by ReadyCheckTimeout. Its error is logged, not
// served: /readyz answers without authentication.
func (r *Readiness) Require(name string, check func(context.Context) error) {
	if r == nil || check == nil {
		return
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	r.checks = append(r.checks, &readyCheck{name: name, check: check, log: r.log})
}

// Ready returns nil when the worker is ready, or why not (the line /readyz
// serves). It returns within ReadyCheckTimeout, or as soon as ctx ends.
func (r *Readiness) Ready(ctx context.Context) error {
	if r == nil {
		return errors.New(NotReadyStarting)
	}
	switch r.state.Load() {
	case stateStarting:
		return errors.New(NotReadyStarting)
	case stateStopping:
		return errors.New(NotReadyStopping)
	}
	r.mu.Lock()
	checks := r.checks
	r.mu.Unlock()
	for _, c := range checks {
		if err := c.run(ctx); err != nil {
			return err
		}
	}
	// The stop may have begun during the checks.
	if r.state.Load() == stateStopping {
		return errors.New(NotReadyStopping)
	}
	return nil
}

// ServeHTTP answers 200 "ok" when ready, else 503 and the reason.
func (r *Readiness) ServeHTTP(w http.ResponseWriter, req *http.Request) {
	if err := r.Ready(req.Context()); err != nil {
		plain(w, http.StatusServiceUnavailable, err.Error())
		return
	}
	plain(w, http.StatusOK, "ok")
}

// plain answers status with one line of text, never cached.
func plain(w http.ResponseWriter, status int, line string) {
	h := w.Header()
	h.Set("Content-Type", "text/plain; charset=utf-8")
	h.Set("X-Content-Type-Options", "nosniff")
	h.Set("Cache-Control", "no-store")
	w.WriteHeader(status)
	_, _ = w.Write([]byte(line + "\n"))
}

// readyCheck is one dependency check. Concurrent requests share the check
// in flight, and a check that ignores its context's deadline delays no
// answer: it finishes in the background, and the next request waits for
// it (up to ReadyCheckTimeout) rather than start another.
type readyCheck struct {
	name  string
	check func(context.Context) error
	log   *slog.Logger

	mu       sync.Mutex
	inFlight *checkRun
	failing  bool // the last check failed (logged once per change)
}

// checkRun is one run of a check; its fields are set before done closes.
type checkRun struct {
	done     chan struct{}
	err      error
	timedOut bool // the check failed once its deadline had passed
}

// run returns nil when the dependency answered within ReadyCheckTimeout.
func (c *readyCheck) run(ctx context.Context) error {
	c.mu.Lock()
	f := c.inFlight
	if f == nil {
		f = &checkRun{done: make(chan struct{})}
		c.inFlight = f
		go c.do(f)
	}
	c.mu.Unlock()
	timer := time.NewTimer(ReadyCheckTimeout)
	defer timer.Stop()
	select {
	case <-f.done:
		switch {
		case f.timedOut:
			return c.noAnswer()
		case f.err != nil:
			return errors.New(c.name + ": not answering (the worker's log says why)")
		}
		return nil
	case <-timer.C:
		c.report(context.DeadlineExceeded)
		return c.noAnswer()
	case <-ctx.Done():
		return errors.New(c.name + ": not checked: " + ctx.Err().Error())
	}
}

// noAnswer is the reason given for a check that took its whole time.
func (c *readyCheck) noAnswer() error {
	return errors.New(c.name + ": no answer within " + ReadyCheckTimeout.String())
}

// do runs the check of f and reports its result.
func (c *readyCheck) do(f *checkRun) {
	ctx, cancel := context.WithTimeout(context.Background(), ReadyCheckTimeout)
	f.err = c.check(ctx)
	f.timedOut = f.err != nil && ctx.Err() != nil
	cancel()
	c.mu.Lock()
	c.inFlight = nil
	c.mu.Unlock()
	close(f.done)
	c.report(f.err)
}

// report logs a change between passing and failing.
func (c *readyCheck) report(err error) {
	c.mu.Lock()
	changed := c.failing != (err != nil)
	c.failing = err != nil
	c.mu.Unlock()
	if !changed || c.log == nil {
		return
	}
	if err != nil {
		c.log.Warn("not ready (/readyz answers 503): "+c.name+" check failed", "check", c.name, "error", err)
		return
	}
	c.log.Info("ready again (/readyz answers 200): "+c.name+" check passes", "check", c.name)
}
