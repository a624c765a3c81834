package webhook

import (
	"math"
	"net/http"
	"strconv"
	"sync"
	"time"

	"golang.org/x/time/rate"
)

// limiter is one source's token bucket.
type limiter struct {
	mu    sync.Mutex // so the headers of an answer describe its own take
	lim   *rate.Limiter
	rate  float64
	burst int
}

func newLimiter(r RateLimit) *limiter {
	return &limiter{lim: rate.NewLimiter(rate.Limit(r.PerSecond), r.Burst), rate: r.PerSecond, burst: r.Burst}
}

// quota is the outcome of one take, as the X-RateLimit-* headers say it.
type quota struct {
	allowed    bool
	limit      int           // the bucket's size
	remaining  int           // whole tokens left after this request
	reset      time.Time     // when the bucket is full again
	retryAfter time.Duration // when refused: until the next token
}

// take takes one token at now, if there is one.
func (l *limiter) take(now time.Time) quota {
	l.mu.Lock()
	allowed := l.lim.AllowN(now, 1)
	tokens := l.lim.TokensAt(now)
	l.mu.Unlock()

	q := quota{
		allowed:   allowed,
		limit:     l.burst,
		remaining: max(0, int(math.Floor(tokens))),
		reset:     now.Add(l.wait(float64(l.burst) - tokens)),
	}
	if !allowed {
		q.retryAfter = l.wait(1 - tokens)
	}
	return q
}

// wait is how long the bucket takes to refill n tokens.
func (l *limiter) wait(n float64) time.Duration {
	if n <= 0 {
		return 0
	}
	return time.Duration(n / l.rate * float64(time.Second))
}

// setHeaders writes X-RateLimit-Limit, X-RateLimit-Remaining and
// X-RateLimit-Reset (Unix seconds when the bucket is full again, rounded
// up), and Retry-After (seconds, at least 1) on a refusal.
func (q quota) setHeaders(h http.Header) {
	h.Set("X-RateLimit-Limit", strconv.Itoa(q.limit))
	h.Set("X-RateLimit-Remaining", strconv.Itoa(q.remaining))
	h.Set("X-RateLimit-Reset", strconv.FormatInt(ceilUnix(q.reset), 10))
	if !q.allowed {
		h.Set("Retry-After", strconv.FormatInt(ceilSeconds(q.retryAfter), 10))
	}
}

// ceilUnix is t in Unix seconds, rounded up.
func ceilUnix(t time.Time) int64 {
	s := t.Unix()
	if t.Nanosecond() > 0 {
		s++
	}
	return s
}

// ceilSeconds is d in whole seconds, rounded up, at least 1.
func ceilSeconds(d time.Duration) int64 {
	return max(1, int64(math.Ceil(d.Seconds())))
}
