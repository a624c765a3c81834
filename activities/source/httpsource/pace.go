package httpsource

import (
	"context"
	"fmt"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"time"

	"golang.org/x/time/rate"
)

// pacer keeps one Source's requests within its own token bucket and within
// what the server asked for (X-RateLimit-Remaining/Reset, Retry-After). It
// is shared by every Fetch of the Source, so one throttled answer slows all
// of them down.
type pacer struct {
	limiter *rate.Limiter // nil = unlimited
	now     func() time.Time
	sleep   func(ctx context.Context, d time.Duration) error
	maxWait time.Duration // longest server-requested wait slept in process

	mu     sync.Mutex
	until  time.Time // no request before this instant
	reason string    // what set until, for the error when it is too far
}

// throttleError is returned, before any request is sent, when the server
// asked for a pause longer than the pacer may sleep in process.
type throttleError struct {
	wait   time.Duration
	reason string
}

func (e *throttleError) Error() string {
	return fmt.Sprintf("throttled: %s; next request allowed in %s", e.reason, e.wait.Round(time.Millisecond))
}

// wait blocks until a request may be sent, or returns a *throttleError when
// the server-requested pause is longer than maxWait, or ctx's error.
func (p *pacer) wait(ctx context.Context) error {
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
	}
	if p.limiter != nil {
		if err := p.limiter.Wait(ctx); err != nil {
			return fmt.Errorf("rate limit: %w", err)
		}
	}
	return nil
}

// observe reads the server's pacing headers from resp.
func (p *pacer) observe(resp *http.Response) {
	now := p.now()
	if d, ok := retryAfter(resp, now); ok {
		p.pauseUntil(now.Add(d), fmt.Sprintf("status %d with Retry-After %q", resp.StatusCode, resp.Header.Get("Retry-After")))
		return
	}
	if resp.StatusCode == http.StatusTooManyRequests || strings.TrimSpace(resp.Header.Get("X-RateLimit-Remaining")) == "0" {
		if t, ok := rateLimitReset(resp.Header, now); ok {
			p.pauseUntil(t, fmt.Sprintf("status %d, X-RateLimit-Remaining %q, X-RateLimit-Reset %q", resp.StatusCode, resp.Header.Get("X-RateLimit-Remaining"), resp.Header.Get("X-RateLimit-Reset")))
		}
	}
}

func (p *pacer) pauseUntil(t time.Time, reason string) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if t.After(p.until) {
		p.until, p.reason = t, reason
	}
}

// retryAfter returns the delay a 429 or 503 answer asks for in its
// Retry-After header (delta seconds or an HTTP-date).
func retryAfter(resp *http.Response, now time.Time) (time.Duration, bool) {
	if resp == nil || (resp.StatusCode != http.StatusTooManyRequests && resp.StatusCode != http.StatusServiceUnavailable) {
		return 0, false
	}
	return parseRetryAfter(resp.Header.Get("Retry-After"), now)
}

// parseRetryAfter reads an RFC 9110 Retry-After value.
func parseRetryAfter(v string, now time.Time) (time.Duration, bool) {
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

// rateLimitReset reads X-RateLimit-Reset as an instant.
func rateLimitReset(h http.Header, now time.Time) (time.Time, bool) {
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
		return fmt.Errorf("waiting %s for the source's rate limit: %w", d.Round(time.Millisecond), ctx.Err())
	case <-t.C:
		return nil
	}
}

// pacedTransport applies the pacer to every attempt, including the inner
// retries of retryablehttp, which sits above it.
type pacedTransport struct {
	next  http.RoundTripper
	pacer *pacer
}

// RoundTrip implements http.RoundTripper.
func (t *pacedTransport) RoundTrip(req *http.Request) (*http.Response, error) {
	if err := t.pacer.wait(req.Context()); err != nil {
		if req.Body != nil {
			req.Body.Close()
		}
		return nil, err
	}
	resp, err := t.next.RoundTrip(req)
	if err == nil {
		t.pacer.observe(resp)
	}
	return resp, err
}
