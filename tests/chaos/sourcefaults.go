package chaos

import (
	"bytes"
	"fmt"
	"math/rand/v2"
	"net/http"
	"net/http/httptest"
	"slices"
	"strconv"
	"sync"
	"time"
)

// sourceFaults is a fault-injecting proxy in front of the sandbox's
// contacts (GET /v1/contacts; anything else passes): per request, drawn
// from a seeded RNG, a 5xx (ErrorRate), the start of a burst of 429s with
// Retry-After, an answer held longer than the client's timeout, a body cut
// off mid-way (the connection closed before Content-Length bytes), or a
// malformed 200 (invalid JSON, an HTML page). It counts what it did and
// when each request came, to check the client kept its rate.
type sourceFaults struct {
	next    http.Handler
	timeout time.Duration

	mu        sync.Mutex
	rng       *rand.Rand
	burstLeft int
	arrivals  []time.Time
	n         map[string]int
}

// Rates of the source faults (of every request to /v1/contacts).
const (
	srcErrorRate     = 0.30 // 500, 502 or 503
	srcBurstRate     = 0.02 // a burst of srcBurstLen 429s starts
	srcBurstLen      = 5
	srcRetryAfter    = 1 // seconds
	srcSlowRate      = 0.03
	srcTruncateRate  = 0.03
	srcMalformedRate = 0.03
)

func newSourceFaults(next http.Handler, timeout time.Duration, seed uint64) *sourceFaults {
	return &sourceFaults{next: next, timeout: timeout, rng: rand.New(rand.NewPCG(seed, 0x5f)), n: map[string]int{}}
}

// draw picks the fault of one request ("" for none).
func (f *sourceFaults) draw() string {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.arrivals = append(f.arrivals, time.Now())
	f.n["requests"]++
	if f.burstLeft > 0 {
		f.burstLeft--
		f.n["429"]++
		return "429"
	}
	u := f.rng.Float64()
	fault := ""
	switch {
	case u < srcBurstRate:
		f.burstLeft = srcBurstLen - 1
		f.n["bursts"]++
		fault = "429"
	case u < srcBurstRate+srcErrorRate:
		fault = "5xx"
	case u < srcBurstRate+srcErrorRate+srcSlowRate:
		fault = "slow"
	case u < srcBurstRate+srcErrorRate+srcSlowRate+srcTruncateRate:
		fault = "truncated"
	case u < srcBurstRate+srcErrorRate+srcSlowRate+srcTruncateRate+srcMalformedRate:
		fault = []string{"malformed-json", "malformed-html"}[f.rng.IntN(2)]
	}
	if fault != "" {
		f.n[fault]++
	}
	return fault
}

func (f *sourceFaults) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if r.Method != http.MethodGet || r.URL.Path != "/v1/contacts" {
		f.next.ServeHTTP(w, r)
		return
	}
	switch f.draw() {
	case "429":
		w.Header().Set("Retry-After", strconv.Itoa(srcRetryAfter))
		http.Error(w, `{"error":"rate_limited"}`, http.StatusTooManyRequests)
	case "5xx":
		code := []int{http.StatusInternalServerError, http.StatusBadGateway, http.StatusServiceUnavailable}[rand.IntN(3)]
		http.Error(w, `{"error":"injected"}`, code)
	case "slow":
		// Longer than the client waits; it has gone by then.
		select {
		case <-r.Context().Done():
		case <-time.After(f.timeout + time.Second):
			f.next.ServeHTTP(w, r)
		}
	case "truncated":
		body, h := f.upstream(r)
		for k, v := range h {
			w.Header()[k] = v
		}
		w.Header().Set("Content-Length", strconv.Itoa(len(body)))
		w.WriteHeader(http.StatusOK)
		_, _ = w.Write(body[:len(body)/2])
		if fl, ok := w.(http.Flusher); ok {
			fl.Flush()
		}
		// Closes the connection short of Content-Length.
		panic(http.ErrAbortHandler)
	case "malformed-json":
		body, _ := f.upstream(r)
		cut := body[:len(body)/3]
		w.Header().Set("Content-Type", "application/json")
		w.Header().Set("Content-Length", strconv.Itoa(len(cut)))
		_, _ = w.Write(cut)
	case "malformed-html":
		w.Header().Set("Content-Type", "text/html")
		_, _ = w.Write([]byte("<html><body><h1>502 Bad Gateway</h1>upstream hiccup</body></html>"))
	default:
		f.next.ServeHTTP(w, r)
	}
}

// upstream is the sandbox's answer to r.
func (f *sourceFaults) upstream(r *http.Request) ([]byte, http.Header) {
	rec := httptest.NewRecorder()
	f.next.ServeHTTP(rec, r)
	b := rec.Body.Bytes()
	if len(b) < 2 {
		b = bytes.Repeat([]byte(" "), 2)
	}
	return b, rec.Header()
}

// summary is the faults injected, and the count of them.
func (f *sourceFaults) summary() (int, string) {
	f.mu.Lock()
	defer f.mu.Unlock()
	n := f.n["429"] + f.n["5xx"] + f.n["slow"] + f.n["truncated"] + f.n["malformed-json"] + f.n["malformed-html"]
	return n, fmt.Sprintf("%d of %d requests: %d 5xx, %d 429 (%d bursts, Retry-After %ds), %d slower than the %s timeout, %d truncated, %d malformed",
		n, f.n["requests"], f.n["5xx"], f.n["429"], f.n["bursts"], srcRetryAfter, f.n["slow"], f.timeout, f.n["truncated"], f.n["malformed-json"]+f.n["malformed-html"])
}

// peakRate is the most requests that arrived within any one second, and
// the mean rate from the first request to the last.
func (f *sourceFaults) peakRate() (peak int, mean float64) {
	f.mu.Lock()
	ts := slices.Clone(f.arrivals)
	f.mu.Unlock()
	slices.SortFunc(ts, func(a, b time.Time) int { return a.Compare(b) })
	j := 0
	for i := range ts {
		for ts[i].Sub(ts[j]) >= time.Second {
			j++
		}
		peak = max(peak, i-j+1)
	}
	if len(ts) > 1 {
		mean = float64(len(ts)-1) / ts[len(ts)-1].Sub(ts[0]).Seconds()
	}
	return peak, mean
}
