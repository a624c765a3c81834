// Package telemetry is what a worker tells its operators beyond its
// results: per-integration sync metrics and the Temporal SDK's own metrics
// on the worker's Prometheus registry, OpenTelemetry traces from a start
// through every step and each HTTP and SQL call, and the integration,
// workflow, run and step on every log line of workflows and activities.
//
// One worker interceptor (NewInterceptor) does the per-step part: it reads
// which integration, run and page a step serves from its input, puts it in
// the step's context (package observe) for logs, spans and the libraries
// the step calls, and records the step's latency, attempts and tallies.
package telemetry

import (
	"fmt"
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

// Names of the sync metrics.
const (
	MetricRecords      = "tether_records_total"
	MetricRuns         = "tether_runs_total"
	MetricStepDuration = "tether_step_duration_seconds"
	MetricStepRetries  = "tether_step_retries_total"
	MetricThrottleWait = "tether_throttle_wait_seconds_total"
)

// StepBuckets are the buckets of tether_step_duration_seconds.
var StepBuckets = []float64{.005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10, 30, 60}

// Metrics are the per-integration sync metrics. Their labels are the
// integration's name, the step's type name and fixed outcome words, so the
// series are bounded by the integrations and steps a worker runs.
type Metrics struct {
	records  *prometheus.CounterVec
	runs     *prometheus.CounterVec
	duration *prometheus.HistogramVec
	retries  *prometheus.CounterVec
	throttle *prometheus.CounterVec
}

// NewMetrics registers the sync metrics with reg.
func NewMetrics(reg prometheus.Registerer) (*Metrics, error) {
	m := &Metrics{
		records: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: MetricRecords,
			Help: "Records by what a sync step did to them: fetched, valid, invalid (quarantined by validation or the transform), skipped (already committed, stale or duplicate), applied (inserted or updated), unchanged, rejected (refused by the destination, quarantined), deleted (by a refresh's sweep).",
		}, []string{"integration", "outcome"}),
		runs: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: MetricRuns,
			Help: "Sync and replay runs that finished, by outcome: completed, warned (completed with warnings), failed (compensated or not), canceled.",
		}, []string{"integration", "outcome"}),
		duration: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name:    MetricStepDuration,
			Help:    "Duration of one attempt of a step (an activity or local activity) in the worker, by integration, step and outcome (ok, error).",
			Buckets: StepBuckets,
		}, []string{"integration", "step", "outcome"}),
		retries: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: MetricStepRetries,
			Help: "Attempts of a step after its first (Temporal retries), by integration and step.",
		}, []string{"integration", "step"}),
		throttle: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: MetricThrottleWait,
			Help: "Time spent waiting because an API asked to slow down (429, Retry-After, X-RateLimit-Reset) or a connection's rate_limit was reached: waits inside a request and the retry delays of throttled steps.",
		}, []string{"integration"}),
	}
	for _, c := range []prometheus.Collector{m.records, m.runs, m.duration, m.retries, m.throttle} {
		if err := reg.Register(c); err != nil {
			return nil, fmt.Errorf("sync metrics: %w", err)
		}
	}
	return m, nil
}

// ThrottleWait implements observe.Recorder.
func (m *Metrics) ThrottleWait(integration string, d time.Duration) {
	if m != nil && d > 0 {
		m.throttle.WithLabelValues(integration).Add(d.Seconds())
	}
}

// step records one attempt of a step: its duration and outcome, a retry
// when it is not the first attempt, what it tallied, and the outcome of a
// run it finished.
func (m *Metrics) step(integration, step string, attempt int32, took time.Duration, ok bool, tally map[string]int, run string) {
	if m == nil {
		return
	}
	outcome := "ok"
	if !ok {
		outcome = "error"
	}
	m.duration.WithLabelValues(integration, step, outcome).Observe(took.Seconds())
	if attempt > 1 {
		m.retries.WithLabelValues(integration, step).Inc()
	}
	for o, n := range tally {
		if n > 0 {
			m.records.WithLabelValues(integration, o).Add(float64(n))
		}
	}
	if run != "" {
		m.runs.WithLabelValues(integration, run).Inc()
	}
}
