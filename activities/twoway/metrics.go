package twoway

import (
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/tetherflow/tether/activities/syncstep"
)

// Metrics are the two-way integrations' Prometheus series.
type Metrics struct {
	changes   *prometheus.CounterVec
	writes    *prometheus.CounterVec
	conflicts *prometheus.CounterVec
	parked    *prometheus.GaugeVec
	lastCycle *prometheus.GaugeVec
}

// NewMetrics registers the metrics with reg.
func NewMetrics(reg prometheus.Registerer) (*Metrics, error) {
	m := &Metrics{
		changes: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "tether_twoway_changes_total",
			Help: "Changes read from a two-way integration's side feeds, by side (a, b) and outcome: changed, or unchanged (a write of tether's coming back, a re-read).",
		}, []string{"integration", "side", "outcome"}),
		writes: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "tether_twoway_writes_total",
			Help: "Records written (created, updated, deleted) on a two-way integration's side (a, b).",
		}, []string{"integration", "side"}),
		conflicts: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "tether_twoway_conflicts_total",
			Help: "Conflicts of a two-way integration by outcome: resolved (by the policy), parked (waiting for a person), manual (resolved by a person).",
		}, []string{"integration", "outcome"}),
		parked: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "tether_twoway_parked_conflicts",
			Help: "Conflicts of a two-way integration waiting for a person, as of its last cycle.",
		}, []string{"integration"}),
		lastCycle: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "tether_twoway_last_cycle_timestamp_seconds",
			Help: "When a two-way integration's last cycle ended without error (Unix time).",
		}, []string{"integration"}),
	}
	for _, c := range []prometheus.Collector{m.changes, m.writes, m.conflicts, m.parked, m.lastCycle} {
		if err := reg.Register(c); err != nil {
			return nil, err
		}
	}
	return m, nil
}

// cycle records what a cycle did.
func (m *Metrics) cycle(name string, out syncstep.TwoWayCycle, at time.Time) {
	if m == nil {
		return
	}
	c := out.Counts
	m.changes.WithLabelValues(name, "a", "changed").Add(float64(max(c.ReadA-c.UnchangedA, 0)))
	m.changes.WithLabelValues(name, "a", "unchanged").Add(float64(c.UnchangedA))
	m.changes.WithLabelValues(name, "b", "changed").Add(float64(max(c.ReadB-(c.Unchanged-c.UnchangedA), 0)))
	m.changes.WithLabelValues(name, "b", "unchanged").Add(float64(c.Unchanged - c.UnchangedA))
	m.writes.WithLabelValues(name, "a").Add(float64(c.WritesA))
	m.writes.WithLabelValues(name, "b").Add(float64(c.WritesB))
	m.conflicts.WithLabelValues(name, "resolved").Add(float64(c.Resolved))
	m.conflicts.WithLabelValues(name, "parked").Add(float64(c.Parked))
	m.parked.WithLabelValues(name).Set(float64(out.ParkedTotal))
	m.lastCycle.WithLabelValues(name).Set(float64(at.Unix()))
}

// resolved records a person's resolution and its writes.
func (m *Metrics) resolved(name string, writes [2]int) {
	if m == nil {
		return
	}
	m.conflicts.WithLabelValues(name, "manual").Inc()
	m.writes.WithLabelValues(name, "a").Add(float64(writes[0]))
	m.writes.WithLabelValues(name, "b").Add(float64(writes[1]))
}
