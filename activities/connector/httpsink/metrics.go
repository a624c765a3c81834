package httpsink

import (
	"context"
	"errors"
	"fmt"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/sony/gobreaker/v2"

	"github.com/tetherflow/tether/activities/lib/failure"
)

// Names of the metrics Metrics registers.
const (
	// MetricCircuitState is a gauge: the state of a destination's circuit
	// breaker, 0 closed, 1 half-open, 2 open.
	MetricCircuitState = "tether_destination_circuit_state"
	// MetricCircuitTransitions counts the changes of a destination's
	// circuit breaker by the state it changed to ("closed", "half-open",
	// "open").
	MetricCircuitTransitions = "tether_destination_circuit_transitions_total"
	// MetricRequests counts a destination's calls by outcome (CallOK and
	// the other Call* values).
	MetricRequests = "tether_destination_requests_total"
)

// Outcomes of a call, the "outcome" label of MetricRequests. A call is one
// request and its short in-process retries.
const (
	// CallOK: answered 2xx.
	CallOK = "ok"
	// CallRefused: answered with a status the caller handles as the
	// record's or the credentials' fault (3xx: redirects are not followed;
	// 4xx other than 408 and 429).
	CallRefused = "refused"
	// CallThrottled: answered 429, or 503 with a wait to honour.
	CallThrottled = "throttled"
	// CallFailed: no answer, 408 or 5xx; what the circuit breaker counts.
	CallFailed = "failed"
	// CallError: a permanent failure other than an answer's status (an
	// unreadable or oversized answer, credentials the token endpoint
	// refuses).
	CallError = "error"
	// CallCircuitOpen: not sent, the circuit breaker is open.
	CallCircuitOpen = "circuit_open"
	// CallCanceled: the caller gave up (cancelled, or out of time).
	CallCanceled = "canceled"
)

var callOutcomes = []string{CallOK, CallRefused, CallThrottled, CallFailed, CallError, CallCircuitOpen, CallCanceled}

// Metrics are the Prometheus metrics of a worker's HTTP destinations: the
// state of each one's circuit breaker, its changes, and its calls by
// outcome. Build one per registry with NewMetrics and give it to every
// Client with WithMetrics. The labels are the integration's and the
// destination's names, never a URL or a key, so the series are bounded by
// the integrations the worker runs.
type Metrics struct {
	state       *prometheus.GaugeVec
	transitions *prometheus.CounterVec
	requests    *prometheus.CounterVec
}

// NewMetrics registers the destinations' metrics with reg.
func NewMetrics(reg prometheus.Registerer) (*Metrics, error) {
	labels := []string{"integration", "destination"}
	m := &Metrics{
		state: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: MetricCircuitState,
			Help: "State of the destination's circuit breaker: 0 closed, 1 half-open, 2 open.",
		}, labels),
		transitions: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: MetricCircuitTransitions,
			Help: "Changes of the destination's circuit breaker, by the state it changed to.",
		}, append(labels, "to")),
		requests: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: MetricRequests,
			Help: "Calls to the destination (each with its short retries), by outcome: " +
				"ok, refused, throttled, failed, error, circuit_open, canceled.",
		}, append(labels, "outcome")),
	}
	for _, c := range []prometheus.Collector{m.state, m.transitions, m.requests} {
		if err := reg.Register(c); err != nil {
			return nil, fmt.Errorf("register the destination metrics: %w", err)
		}
	}
	return m, nil
}

// WithMetrics reports the Client's circuit state, its changes and its calls
// to m, under the labels WithDestination gives (default: the Client's name
// as the integration, no destination). One Metrics serves every Client of a
// worker: pass it with the options every destination gets. A Client built
// again under the same labels (an integration reloaded) starts closed and
// takes the series over. A nil m reports nothing.
func WithMetrics(m *Metrics) Option {
	return func(s *Client) { s.metricsTo = m }
}

// WithDestination names what the Client writes for: the integration and its
// destination (step), the labels of its metrics.
func WithDestination(integration, destination string) Option {
	return func(s *Client) { s.integration, s.destination = integration, destination }
}

// destinationMetrics are one Client's series.
type destinationMetrics struct {
	state       prometheus.Gauge
	transitions *prometheus.CounterVec // by "to"
	requests    *prometheus.CounterVec // by "outcome"
}

// forDestination returns the series of one destination, all of them
// created at zero and the circuit closed.
func (m *Metrics) forDestination(integration, destination string) *destinationMetrics {
	l := prometheus.Labels{"integration": integration, "destination": destination}
	d := &destinationMetrics{
		state:       m.state.With(l),
		transitions: m.transitions.MustCurryWith(l),
		requests:    m.requests.MustCurryWith(l),
	}
	// Every series exists from the start, so that rates and alerts see
	// the first change.
	d.state.Set(circuitValue(gobreaker.StateClosed))
	for _, st := range []gobreaker.State{gobreaker.StateClosed, gobreaker.StateHalfOpen, gobreaker.StateOpen} {
		d.transitions.WithLabelValues(st.String())
	}
	for _, o := range callOutcomes {
		d.requests.WithLabelValues(o)
	}
	return d
}

// circuitChanged records a change of the circuit breaker.
func (d *destinationMetrics) circuitChanged(to gobreaker.State) {
	if d == nil {
		return
	}
	d.state.Set(circuitValue(to))
	d.transitions.WithLabelValues(to.String()).Inc()
}

// called records a call's outcome.
func (d *destinationMetrics) called(rep reply, err error) {
	if d == nil {
		return
	}
	d.requests.WithLabelValues(callOutcome(rep, err)).Inc()
}

// circuitValue is the gauge's value of a state.
func circuitValue(st gobreaker.State) float64 {
	switch st {
	case gobreaker.StateHalfOpen:
		return 1
	case gobreaker.StateOpen:
		return 2
	}
	return 0
}

// callOutcome classifies what send returned.
func callOutcome(rep reply, err error) string {
	switch {
	case err == nil && rep.status >= 200 && rep.status <= 299:
		return CallOK
	case err == nil:
		return CallRefused
	case failure.IsType(err, failure.TypeCircuitOpen):
		return CallCircuitOpen
	case errors.Is(err, context.Canceled) || errors.Is(err, context.DeadlineExceeded):
		return CallCanceled
	case failure.IsType(err, failure.TypeSinkThrottled):
		return CallThrottled
	case failure.IsPermanent(err):
		return CallError
	}
	return CallFailed
}
