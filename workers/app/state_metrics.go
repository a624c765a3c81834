package app

import (
	"context"
	"log/slog"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/robfig/cron"

	"github.com/tetherflow/tether/activities/integration"
	"github.com/tetherflow/tether/activities/store"
	"github.com/tetherflow/tether/workers/schedules"
)

// Names of the gauges read from the database and the integrations.
const (
	MetricLastSuccess      = "tether_last_success_timestamp_seconds"
	MetricLastProgress     = "tether_run_last_progress_timestamp_seconds"
	MetricCheckpointLag    = "tether_checkpoint_lag_seconds"
	MetricScheduleInterval = "tether_schedule_interval_seconds"
	MetricStateUp          = "tether_state_read_ok"
)

// stateReadTimeout bounds the database read of one scrape.
const stateReadTimeout = 3 * time.Second

// stateCollector reports, at each scrape, what the database says of every
// integration (last success, progress of a run in progress, checkpoint
// lag) and the intervals of the integrations' sync schedules. Read from
// the database, the values are the same on every worker replica, and
// survive a worker's restart.
type stateCollector struct {
	store        *store.Store
	integrations *integration.Registry
	log          *slog.Logger
	now          func() time.Time

	success, progress, lag, interval, up *prometheus.Desc
}

// RegisterStateMetrics puts the state gauges on reg.
func RegisterStateMetrics(reg *prometheus.Registry, st *store.Store, integrations *integration.Registry, log *slog.Logger) error {
	return reg.Register(newStateCollector(st, integrations, log))
}

func newStateCollector(st *store.Store, integrations *integration.Registry, log *slog.Logger) *stateCollector {
	return &stateCollector{
		store: st, integrations: integrations, log: log, now: time.Now,
		success: prometheus.NewDesc(MetricLastSuccess,
			"Unix time the integration's latest successful run (completed, not a replay) finished, from the database.", []string{"integration"}, nil),
		progress: prometheus.NewDesc(MetricLastProgress,
			"For an integration with a run in progress (running or compensating, per the database): Unix time such a run last committed a batch or started. Absent when none runs.", []string{"integration"}, nil),
		lag: prometheus.NewDesc(MetricCheckpointLag,
			"Now minus the integration's committed checkpoint, when its cursor is a time (RFC 3339): how far behind the source the next incremental run starts.", []string{"integration"}, nil),
		interval: prometheus.NewDesc(MetricScheduleInterval,
			"Interval of each sync or refresh schedule declared by an integration (every, or the shortest gap between its cron times).", []string{"integration", "schedule"}, nil),
		up: prometheus.NewDesc(MetricStateUp,
			"1 when this scrape read the integrations' state from the database, 0 when it could not (the state gauges are then absent).", nil, nil),
	}
}

func (c *stateCollector) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range []*prometheus.Desc{c.success, c.progress, c.lag, c.interval, c.up} {
		ch <- d
	}
}

func (c *stateCollector) Collect(ch chan<- prometheus.Metric) {
	for _, def := range c.integrations.All() {
		for _, s := range def.Schedules {
			if s.Kind != integration.ScheduleSync && s.Kind != integration.ScheduleRefresh {
				continue
			}
			if every := scheduleInterval(s, c.now()); every > 0 {
				ch <- prometheus.MustNewConstMetric(c.interval, prometheus.GaugeValue, every.Seconds(), def.Name, schedules.ID(def.Name, s.Kind))
			}
		}
	}
	ctx, cancel := context.WithTimeout(context.Background(), stateReadTimeout)
	defer cancel()
	states, err := c.store.States(ctx)
	if err != nil {
		c.log.Warn("metrics: reading the integrations' state failed", "error", err)
		ch <- prometheus.MustNewConstMetric(c.up, prometheus.GaugeValue, 0)
		return
	}
	ch <- prometheus.MustNewConstMetric(c.up, prometheus.GaugeValue, 1)
	now := c.now()
	for _, st := range states {
		if !st.LastSuccess.IsZero() {
			ch <- prometheus.MustNewConstMetric(c.success, prometheus.GaugeValue, unix(st.LastSuccess), st.Integration)
		}
		if !st.LastProgress.IsZero() {
			ch <- prometheus.MustNewConstMetric(c.progress, prometheus.GaugeValue, unix(st.LastProgress), st.Integration)
		}
		if t, err := time.Parse(time.RFC3339Nano, st.Cursor); err == nil {
			ch <- prometheus.MustNewConstMetric(c.lag, prometheus.GaugeValue, max(0, now.Sub(t).Seconds()), st.Integration)
		}
	}
}

func unix(t time.Time) float64 { return float64(t.UnixNano()) / 1e9 }

// scheduleInterval is how often a schedule fires: its every, or the
// shortest gap between the next few times of its cron expressions (0 when
// it has neither, or they do not parse).
func scheduleInterval(s integration.Schedule, now time.Time) time.Duration {
	shortest := s.Every
	for _, expr := range s.Cron {
		sched, err := cron.ParseStandard(expr)
		if err != nil {
			continue
		}
		t := sched.Next(now)
		for range 4 {
			next := sched.Next(t)
			if gap := next.Sub(t); gap > 0 && (shortest == 0 || gap < shortest) {
				shortest = gap
			}
			t = next
		}
	}
	return shortest
}
