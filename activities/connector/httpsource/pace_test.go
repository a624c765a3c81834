package httpsource

import (
	"context"
	"errors"
	"net/http"
	"strconv"
	"testing"
	"time"

	"github.com/tetherflow/tether/activities/connector"
	"github.com/tetherflow/tether/activities/lib/failure"
	"github.com/tetherflow/tether/activities/lib/httpclient/httpclienttest"
)

func TestSource_FetchHonoursServerPacing(t *testing.T) {
	clk := httpclienttest.NewClock()
	unix := func(d time.Duration) string { return strconv.FormatInt(clk.Now().Add(d).Unix(), 10) }
	tests := []struct {
		name string
		// first sees the first request; later ones are served normally.
		first       func(w http.ResponseWriter) bool // true: it answered
		wantErr     string                           // failure type of the first Fetch, "" = it succeeds
		wantDelay   time.Duration
		wantWaits   []time.Duration // sleeps before the last request
		wantCalls   int             // requests after two Fetches
		secondFails bool            // the second Fetch is refused without a request
	}{
		{
			name: "X-RateLimit-Remaining 0 with delta reset holds the next request",
			first: func(w http.ResponseWriter) bool {
				w.Header().Set("X-RateLimit-Remaining", "0")
				w.Header().Set("X-RateLimit-Reset", "2")
				return false
			},
			wantWaits: []time.Duration{2 * time.Second},
			wantCalls: 2,
		},
		{
			name: "X-RateLimit-Reset as Unix seconds",
			first: func(w http.ResponseWriter) bool {
				w.Header().Set("X-RateLimit-Remaining", "0")
				w.Header().Set("X-RateLimit-Reset", unix(time.Second))
				return false
			},
			wantWaits: []time.Duration{time.Second},
			wantCalls: 2,
		},
		{
			name: "remaining above 0 does not wait",
			first: func(w http.ResponseWriter) bool {
				w.Header().Set("X-RateLimit-Remaining", "3")
				w.Header().Set("X-RateLimit-Reset", "2")
				return false
			},
			wantCalls: 2,
		},
		{
			name: "reset beyond wait_max: next Fetch throttled without a request",
			first: func(w http.ResponseWriter) bool {
				w.Header().Set("X-RateLimit-Remaining", "0")
				w.Header().Set("X-RateLimit-Reset", unix(60*time.Second))
				return false
			},
			wantCalls:   1,
			secondFails: true,
			wantDelay:   60 * time.Second,
		},
		{
			name: "429 with short Retry-After is retried in process after the wait",
			first: func(w http.ResponseWriter) bool {
				w.Header().Set("Retry-After", "1")
				w.WriteHeader(http.StatusTooManyRequests)
				return true
			},
			wantWaits: []time.Duration{time.Second},
			wantCalls: 3, // 429, its retry, then the second Fetch
		},
		{
			name: "503 with Retry-After as an HTTP-date",
			first: func(w http.ResponseWriter) bool {
				w.Header().Set("Retry-After", clk.Now().Add(2*time.Second).Format(http.TimeFormat))
				w.WriteHeader(http.StatusServiceUnavailable)
				return true
			},
			wantWaits: []time.Duration{2 * time.Second},
			wantCalls: 3,
		},
		{
			name: "429 with long Retry-After goes back to Temporal",
			first: func(w http.ResponseWriter) bool {
				w.Header().Set("Retry-After", "120")
				w.WriteHeader(http.StatusTooManyRequests)
				return true
			},
			wantErr:     failure.TypeSourceThrottled,
			wantDelay:   120 * time.Second,
			wantCalls:   1,
			secondFails: true,
		},
		{
			name: "429 without Retry-After uses X-RateLimit-Reset",
			first: func(w http.ResponseWriter) bool {
				w.Header().Set("X-RateLimit-Reset", "5")
				w.WriteHeader(http.StatusTooManyRequests)
				return true
			},
			wantErr:     failure.TypeSourceThrottled,
			wantDelay:   5 * time.Second,
			wantCalls:   1,
			secondFails: true,
		},
		{
			name: "429 with nothing to go by waits 1s",
			first: func(w http.ResponseWriter) bool {
				w.WriteHeader(http.StatusTooManyRequests)
				return true
			},
			wantErr:   failure.TypeSourceThrottled,
			wantDelay: time.Second,
			wantCalls: 2,
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			clk = httpclienttest.NewClock()
			api := &fakeAPI{n: 3, style: StyleNone, before: func(w http.ResponseWriter, r *http.Request, call int) bool {
				return call == 1 && tt.first(w)
			}}
			s, _ := newTestSource(t, api, Config{RecordsPath: "data", Retry: Retry{WaitMin: time.Millisecond, WaitMax: 2 * time.Second}}, clk)
			ctx := context.Background()

			_, err := s.Fetch(ctx, connector.Request{Limit: 5})
			if tt.wantErr != "" {
				ae := httpclienttest.AppError(t, err)
				if ae.Type() != tt.wantErr || ae.NonRetryable() {
					t.Fatalf("first Fetch: type %s, permanent %v: %v", ae.Type(), ae.NonRetryable(), err)
				}
				if ae.NextRetryDelay() != tt.wantDelay {
					t.Errorf("NextRetryDelay = %s, want %s", ae.NextRetryDelay(), tt.wantDelay)
				}
			} else if err != nil {
				t.Fatalf("first Fetch: %v", err)
			}

			_, err = s.Fetch(ctx, connector.Request{Limit: 5})
			if tt.secondFails {
				ae := httpclienttest.AppError(t, err)
				if ae.Type() != failure.TypeSourceThrottled || ae.NextRetryDelay() < tt.wantDelay-time.Second {
					t.Errorf("second Fetch: type %s, delay %s, want throttled ~%s: %v", ae.Type(), ae.NextRetryDelay(), tt.wantDelay, err)
				}
			} else if err != nil {
				t.Fatalf("second Fetch: %v", err)
			}
			if api.calls() != tt.wantCalls {
				t.Errorf("requests = %d, want %d", api.calls(), tt.wantCalls)
			}
			if got := clk.Waits(); !equalDurations(got, tt.wantWaits) {
				t.Errorf("waits = %v, want %v", got, tt.wantWaits)
			}
		})
	}
}

func equalDurations(a, b []time.Duration) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if a[i] != b[i] {
			return false
		}
	}
	return true
}

func TestSource_FetchServerWaitIsReal(t *testing.T) {
	// With the real clock: the second request really waits for the reset.
	api := &fakeAPI{n: 1, style: StyleNone, before: func(w http.ResponseWriter, r *http.Request, call int) bool {
		if call == 1 {
			w.Header().Set("X-RateLimit-Remaining", "0")
			w.Header().Set("X-RateLimit-Reset", "0.3")
		}
		return false
	}}
	s, _ := newTestSource(t, api, Config{RecordsPath: "data"}, nil)
	if _, err := s.Fetch(context.Background(), connector.Request{}); err != nil {
		t.Fatal(err)
	}
	start := time.Now()
	if _, err := s.Fetch(context.Background(), connector.Request{}); err != nil {
		t.Fatal(err)
	}
	if waited := time.Since(start); waited < 250*time.Millisecond {
		t.Errorf("second request after %s, want at least ~300ms", waited)
	}

	t.Run("waiting respects ctx", func(t *testing.T) {
		s.client.Pacer().PauseUntil(time.Now().Add(time.Second), "test")
		ctx, cancel := context.WithTimeout(context.Background(), 50*time.Millisecond)
		defer cancel()
		calls := api.calls()
		_, err := s.Fetch(ctx, connector.Request{})
		if !errors.Is(err, context.DeadlineExceeded) {
			t.Errorf("err = %v, want the context's deadline", err)
		}
		if api.calls() != calls {
			t.Errorf("a request was sent while waiting")
		}
	})
}

func TestSource_FetchTokenBucket(t *testing.T) {
	api := &fakeAPI{n: 1, style: StyleNone}
	s, _ := newTestSource(t, api, Config{RecordsPath: "data", RateLimit: RateLimit{RequestsPerSecond: 20, Burst: 1}}, nil)
	start := time.Now()
	for range 5 {
		if _, err := s.Fetch(context.Background(), connector.Request{}); err != nil {
			t.Fatal(err)
		}
	}
	// 5 requests at 20/s with a burst of 1: at least 4 intervals of 50ms.
	if elapsed := time.Since(start); elapsed < 190*time.Millisecond {
		t.Errorf("5 requests took %s, want at least 200ms at 20 rps", elapsed)
	}
}
