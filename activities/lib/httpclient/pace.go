package httpclient

import (
	"context"
	"fmt"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/tetherflow/tether/activities/lib/observe"
	"golang.org/x/time/rate"
)

// Pacer keeps one Client's requests within its own token bucket and within
// what the server asked for (X-RateLimit-Remaining/Reset, Retry-After). It
// is shared by every request of the Client, so one throttled answer slows
// all of them down.
type Pacer struct {
	limiter *rate.Limiter // nil = unlimited
	now     func() time.Time
	sleep   func(ctx context.Context, d time.Duration) error
	maxWait time.Duration // longest server-requested wait slept in process

	mu     sync.Mutex
	until  time.Time // no request before this instant
	reason string    // what set until, for the error when it is too far
}

// newPacer returns a Pacer for the token bucket rl (unlimited when its rate
// is 0) that sleeps in process through server-requested pauses up to
// maxWait. now and sleep default to the real clock.
func newPacer(rl RateLimit, maxWait time.Duration, now func() time.Time, sleep func(ctx context.Context, d time.Duration) error) *Pacer {
	rl = rl.WithDefaults()
	p := &Pacer{now: now, sleep: sleep, maxWait: maxWait}
	if p.now == nil {
		p.now = time.Now
	}
	if p.sleep == nil {
		p.sleep = sleepCtx
	}
	if rl.RequestsPerSecond > 0 {
		p.limiter = rate.NewLimiter(rate.Limit(rl.RequestsPerSecond), rl.Burst)
	}
	return p
}

// throttleError is returned, before any request is sent, when the server
// asked for a pause longer than the Pacer may sleep in process.
type throttleError struct {
	wait   time.Duration
	reason string
}

func (e *throttleError) Error() string {
	return fmt.Sprintf("throttled: %s; next request allowed in %s", e.reason, e.wait.Round(time.Millisecond))
}

// Wait blocks until a request may be sent, or returns a *throttleError when
// the server-requested pause is longer than the Pacer's maximum wait, or
// ctx's error.
func (p *Pacer) Wait(ctx context.Context) error {
	p.mu.Lock()
	until, reason := p.until, p.reason
	p.mu.Unlock()
	if d := until.Sub(p.now()); d > 0 {
		if d > p.maxWait {
			return &throttleError{wait: d, reason: reason}
		}
		if err := p.sleep(ctx, d); err != nil {
			return err
		}
		observe.ThrottleWait(ctx, d)
	}
	if p.limiter == nil {
		return nil
	}
	// Reserve on the Pacer's clock and sleep through its sleep, so a test
	// clock sees the waits the token bucket asks for.
	now := p.now()
	r := p.limiter.ReserveN(now, 1)
	if !r.OK() {
		return fmt.Errorf("rate limit: burst %d is too small for one request", p.limiter.Burst())
	}
	if d := r.DelayFrom(now); d > 0 {
		if err := p.sleep(ctx, d); err != nil {
			r.CancelAt(p.now())
			return fmt.Errorf("rate limit: %w", err)
		}
		observe.ThrottleWait(ctx, d)
	}
	return nil
}

// Observe reads the server's pacing headers from resp.
func (p *Pacer) Observe(resp *http.Response) {
	now := p.now()
	if d, ok := RetryAfter(resp, now); ok {
		p.PauseUntil(now.Add(d), fmt.Sprintf("status %d with Retry-After %q", resp.StatusCode, resp.Header.Get("Retry-After")))
		return
	}
	if resp.StatusCode == http.StatusTooManyRequests || strings.TrimSpace(resp.Header.Get("X-RateLimit-Remaining")) == "0" {
		if t, ok := RateLimitReset(resp.Header, now); ok {
			p.PauseUntil(t, fmt.Sprintf("status %d, X-RateLimit-Remaining %q, X-RateLimit-Reset %q", resp.StatusCode, resp.Header.Get("X-RateLimit-Remaining"), resp.Header.Get("X-RateLimit-Reset")))
		}
	}
}

// PauseUntil holds every request until t (if later than the current
// pause); reason says why, in the error of a request refused meanwhile.
func (p *Pacer) PauseUntil(t time.Time, reason string) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if t.After(p.until) {
		p.until, p.reason = t, reason
	}
}

// RetryAfter returns the delay a 429 or 503 answer asks for in its
// Retry-After header (delta seconds or an HTTP-date).
func RetryAfter(resp *http.Response, now time.Time) (time.Duration, bool) {
	if resp == nil || (resp.StatusCode != http.StatusTooManyRequests && resp.StatusCode != http.StatusServiceUnavailable) {
		return 0, false
	}
	return ParseRetryAfter(resp.Header.Get("Retry-After"), now)
}

// ParseRetryAfter reads an RFC 9110 Retry-After value, capped at a day.
func ParseRetryAfter(v string, now time.Time) (time.Duration, bool) {
	v = strings.TrimSpace(v)
	if v == "" {
		return 0, false
	}
	if n, err := strconv.ParseInt(v, 10, 64); err == nil {
		if n < 0 {
			return 0, false
		}
		if n > int64(24*time.Hour/time.Second) {
			n = int64(24 * time.Hour / time.Second)
		}
		return time.Duration(n) * time.Second, true
	}
	t, err := http.ParseTime(v)
	if err != nil {
		return 0, false
	}
	return max(t.Sub(now), 0), true
}

// deltaLimit separates the two conventions of X-RateLimit-Reset: values
// below it are seconds from now, values above it are Unix times.
const deltaLimit = 1_000_000_000

// RateLimitReset reads X-RateLimit-Reset (delta seconds or a Unix time) as
// an instant, at most a day away.
func RateLimitReset(h http.Header, now time.Time) (time.Time, bool) {
	v := strings.TrimSpace(h.Get("X-RateLimit-Reset"))
	if v == "" {
		return time.Time{}, false
	}
	f, err := strconv.ParseFloat(v, 64)
	if err != nil || f < 0 || f != f {
		return time.Time{}, false
	}
	if f < deltaLimit {
		return now.Add(time.Duration(f * float64(time.Second))), true
	}
	sec := int64(f)
	if sec > now.Unix()+int64(24*time.Hour/time.Second) {
		return now.Add(24 * time.Hour), true
	}
	return time.Unix(sec, int64((f-float64(sec))*1e9)), true
}

// sleepCtx sleeps for d or until ctx is done.
func sleepCtx(ctx context.Context, d time.Duration) error {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return fmt.Errorf("waiting %s for the API's rate limit: %w", d.Round(time.Millisecond), ctx.Err())
	case <-t.C:
		return nil
	}
}

// pacedTransport applies the pacer to every attempt, including the inner
// retries of retryablehttp, which sits above it.
type pacedTransport struct {
	next  http.RoundTripper
	pacer *Pacer
}

// RoundTrip implements http.RoundTripper.
func (t *pacedTransport) RoundTrip(req *http.Request) (*http.Response, error) {
	if err := t.pacer.Wait(req.Context()); err != nil {
		if req.Body != nil {
			req.Body.Close()
		}
		return nil, err
	}
	resp, err := t.next.RoundTrip(req)
	if err == nil {
		t.pacer.Observe(resp)
	}
	return resp, err
}
