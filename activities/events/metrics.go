package events

import (
	"fmt"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/tetherflow/tether/activities/syncstep"
)

// Metrics are the Prometheus metrics of event applies and change
// capture. Labels are integration names and outcomes only.
type Metrics struct {
	events  *prometheus.CounterVec
	lag     *prometheus.HistogramVec
	pending *prometheus.GaugeVec
	oldest  *prometheus.GaugeVec
}

// NewMetrics registers the metrics with reg.
func NewMetrics(reg prometheus.Registerer) (*Metrics, error) {
	m := &Metrics{
		events: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "tether_events_total",
			Help: "Change events (webhooks, captured changes) by what happened to them: inserted, updated, deleted, unchanged, stale, superseded, duplicate, quarantined.",
		}, []string{"integration", "outcome"}),
		lag: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name:    "tether_event_apply_lag_seconds",
			Help:    "Time from an event's arrival (webhook received, row change committed) to the commit of its apply.",
			Buckets: []float64{.005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10, 30, 60, 300},
		}, []string{"integration"}),
		pending: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "tether_capture_pending_changes",
			Help: "Captured changes waiting in the integration's outbox.",
		}, []string{"integration"}),
		oldest: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "tether_capture_lag_seconds",
			Help: "Age of the oldest captured change not applied yet (0 when the outbox is empty): how far change capture is behind.",
		}, []string{"integration"}),
	}
	for _, c := range []prometheus.Collector{m.events, m.lag, m.pending, m.oldest} {
		if err := reg.Register(c); err != nil {
			return nil, fmt.Errorf("event metrics: %w", err)
		}
	}
	return m, nil
}

// Applied records a batch's outcome and the lag of each of its events.
func (m *Metrics) Applied(integration string, c syncstep.EventCounts, events []syncstep.Event, at time.Time) {
	if m == nil {
		return
	}
	for outcome, n := range map[string]int{
		"inserted": c.Inserted, "updated": c.Updated, "deleted": c.Deleted, "unchanged": c.Unchanged, "stale": c.Stale,
		"superseded": c.Superseded, "duplicate": c.Duplicates, "quarantined": c.Quarantined,
	} {
		if n > 0 {
			m.events.WithLabelValues(integration, outcome).Add(float64(n))
		}
	}
	h := m.lag.WithLabelValues(integration)
	for _, ev := range events {
		if !ev.ReceivedAt.IsZero() {
			h.Observe(at.Sub(ev.ReceivedAt).Seconds())
		}
	}
}

// CaptureLag records how far change capture is behind.
func (m *Metrics) CaptureLag(integration string, pending int64, oldest time.Time) {
	if m == nil {
		return
	}
	m.pending.WithLabelValues(integration).Set(float64(pending))
	age := 0.0
	if !oldest.IsZero() {
		age = max(0, time.Since(oldest).Seconds())
	}
	m.oldest.WithLabelValues(integration).Set(age)
}
