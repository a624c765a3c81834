package httpsink

import (
	"context"
	"fmt"
	"net/http"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
	"github.com/sony/gobreaker/v2"

	"github.com/tetherflow/tether/activities/lib/failure"
)

func TestSink_MetricsFollowTheCircuitOpenHalfOpenClosed(t *testing.T) {
	reg := prometheus.NewPedanticRegistry()
	m, err := NewMetrics(reg)
	if err != nil {
		t.Fatal(err)
	}
	var healthy atomic.Bool
	dest := failingUntil(&healthy)
	cfg := testConfig()
	cfg.Retry.Max = -1
	cfg.MaxInFlight = 1
	cfg.CircuitBreaker = CircuitBreaker{FailureRate: 0.5, MinRequests: 2, Window: time.Minute, OpenFor: 100 * time.Millisecond}
	s, _ := newTestSink(t, dest, cfg, nil, WithMetrics(m), WithDestination("crm-billing", "billing"))
	// A second destination of the same registry keeps its own series.
	other, _ := newTestSink(t, &fakeDest{}, testConfig(), nil, WithMetrics(m), WithDestination("crm-billing", "notify"))
	apply(t, other, Record{Key: "n", Row: row("n@x")})

	state := m.state.WithLabelValues("crm-billing", "billing")
	transitions := func(to string) float64 {
		return testutil.ToFloat64(m.transitions.WithLabelValues("crm-billing", "billing", to))
	}
	requests := func(outcome string) float64 {
		return testutil.ToFloat64(m.requests.WithLabelValues("crm-billing", "billing", outcome))
	}
	check := func(when string, wantState float64, wantTransitions map[string]float64) {
		t.Helper()
		if got := testutil.ToFloat64(state); got != wantState {
			t.Errorf("%s: %s %v, want %v", when, MetricCircuitState, got, wantState)
		}
		for _, to := range []string{"closed", "half-open", "open"} {
			if got := transitions(to); got != wantTransitions[to] {
				t.Errorf("%s: %s{to=%q} %v, want %v", when, MetricCircuitTransitions, to, got, wantTransitions[to])
			}
		}
	}
	ctx := context.Background()

	check("new", 0, nil)
	// Two failed calls in the window: the circuit opens.
	for i := range 2 {
		if _, err := s.Apply(ctx, []Record{{Key: fmt.Sprint(i), Row: row("a@x")}}); !failure.IsType(err, failure.TypeSinkUnavailable) {
			t.Fatalf("call %d: %v, want unavailable", i, err)
		}
	}
	check("after 2 failures", 2, map[string]float64{"open": 1})

	// Open: a call is refused without reaching the destination.
	healthy.Store(true)
	if _, err := s.Apply(ctx, []Record{{Key: "x", Row: row("x@x")}}); !failure.IsType(err, failure.TypeCircuitOpen) {
		t.Fatalf("open circuit: %v", err)
	}
	check("refused by the open circuit", 2, map[string]float64{"open": 1})

	// After open_for the breaker lets a probe through: half-open.
	deadline := time.Now().Add(5 * time.Second)
	for s.breaker.State() == gobreaker.StateOpen && time.Now().Before(deadline) {
		time.Sleep(10 * time.Millisecond)
	}
	check("after open_for", 1, map[string]float64{"open": 1, "half-open": 1})

	// The probe succeeds: closed again.
	if res := apply(t, s, Record{Key: "probe", Row: row("p@x")}); res.Created != 1 {
		t.Fatalf("probe: %+v", res)
	}
	check("after the probe", 0, map[string]float64{"open": 1, "half-open": 1, "closed": 1})

	for outcome, want := range map[string]float64{CallFailed: 2, CallCircuitOpen: 1, CallOK: 1, CallRefused: 0, CallThrottled: 0} {
		if got := requests(outcome); got != want {
			t.Errorf("%s{outcome=%q} %v, want %v", MetricRequests, outcome, got, want)
		}
	}
	if dest.count() != 3 {
		t.Errorf("the destination got %d calls, want 3 (2 failed, the probe)", dest.count())
	}

	// The other destination's series: one call, circuit closed, no change.
	want := `
# HELP tether_destination_circuit_state State of the destination's circuit breaker: 0 closed, 1 half-open, 2 open.
# TYPE tether_destination_circuit_state gauge
tether_destination_circuit_state{destination="billing",integration="crm-billing"} 0
tether_destination_circuit_state{destination="notify",integration="crm-billing"} 0
`
	if err := testutil.GatherAndCompare(reg, strings.NewReader(want), MetricCircuitState); err != nil {
		t.Error(err)
	}
	if got := testutil.ToFloat64(m.requests.WithLabelValues("crm-billing", "notify", CallOK)); got != 1 {
		t.Errorf("notify: %v ok calls, want 1", got)
	}
	if got := testutil.ToFloat64(m.transitions.WithLabelValues("crm-billing", "notify", "open")); got != 0 {
		t.Errorf("notify: opened %v times, want 0", got)
	}
	if problems, err := testutil.GatherAndLint(reg); err != nil || len(problems) > 0 {
		t.Errorf("lint: %v %+v", err, problems)
	}
}

func TestCallOutcome(t *testing.T) {
	tests := []struct {
		give string
		rep  reply
		err  error
		want string
	}{
		{give: "201", rep: reply{status: http.StatusCreated}, want: CallOK},
		{give: "422", rep: reply{status: http.StatusUnprocessableEntity}, want: CallRefused},
		{give: "401", rep: reply{status: http.StatusUnauthorized}, want: CallRefused},
		{give: "429", err: failure.Throttled(failure.TypeSinkThrottled, fmt.Errorf("429"), time.Second), want: CallThrottled},
		{give: "502", err: failure.Transient(failure.TypeSinkUnavailable, fmt.Errorf("502")), want: CallFailed},
		{give: "oversized answer", err: failure.Permanent(failure.TypeSinkMalformed, fmt.Errorf("too big")), want: CallError},
		{give: "open circuit", err: failure.Throttled(failure.TypeCircuitOpen, fmt.Errorf("open"), time.Second), want: CallCircuitOpen},
		{give: "cancelled", err: fmt.Errorf("POST /v1: %w", context.Canceled), want: CallCanceled},
	}
	for _, tt := range tests {
		t.Run(tt.give, func(t *testing.T) {
			if got := callOutcome(tt.rep, tt.err); got != tt.want {
				t.Errorf("callOutcome = %q, want %q", got, tt.want)
			}
		})
	}
}

func TestNewMetrics_TwiceOnOneRegistryFails(t *testing.T) {
	reg := prometheus.NewRegistry()
	if _, err := NewMetrics(reg); err != nil {
		t.Fatal(err)
	}
	if _, err := NewMetrics(reg); err == nil || !strings.Contains(err.Error(), "register the destination metrics") {
		t.Errorf("second NewMetrics on one registry: %v, want a registration error", err)
	}
}
