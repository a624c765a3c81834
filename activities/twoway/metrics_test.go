package twoway

import (
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/tetherflow/tether/activities/syncstep"
)

func TestMetrics_CountWhatCyclesAndResolutionsDid(t *testing.T) {
	reg := prometheus.NewRegistry()
	m, err := NewMetrics(reg)
	if err != nil {
		t.Fatal(err)
	}
	at := time.Unix(1796670000, 0)
	m.cycle("crm", syncstep.TwoWayCycle{Counts: syncstep.TwoWayCounts{ReadA: 5, ReadB: 3, Unchanged: 4, UnchangedA: 3,
		WritesA: 1, WritesB: 2, Resolved: 1, Parked: 1}, Parked: []syncstep.ParkedConflict{{ID: 9}}, ParkedTotal: 1}, at)
	m.resolved("crm", [2]int{1, 0})
	for _, c := range []struct {
		got  prometheus.Collector
		want float64
	}{
		{m.changes.WithLabelValues("crm", "a", "changed"), 2},
		{m.changes.WithLabelValues("crm", "a", "unchanged"), 3},
		{m.changes.WithLabelValues("crm", "b", "changed"), 2},
		{m.changes.WithLabelValues("crm", "b", "unchanged"), 1},
		{m.writes.WithLabelValues("crm", "a"), 2},
		{m.writes.WithLabelValues("crm", "b"), 2},
		{m.conflicts.WithLabelValues("crm", "resolved"), 1},
		{m.conflicts.WithLabelValues("crm", "parked"), 1},
		{m.conflicts.WithLabelValues("crm", "manual"), 1},
		{m.parked.WithLabelValues("crm"), 1},
		{m.lastCycle.WithLabelValues("crm"), float64(at.Unix())},
	} {
		if got := testutil.ToFloat64(c.got); got != c.want {
			t.Errorf("%v = %v, want %v", c.got, got, c.want)
		}
	}
	var nilMetrics *Metrics // metrics off: nothing recorded, no panic
	nilMetrics.cycle("crm", syncstep.TwoWayCycle{}, at)
	nilMetrics.resolved("crm", [2]int{})
}
