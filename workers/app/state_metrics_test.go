package app

import (
	"context"
	"log/slog"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/tetherflow/tether/activities/integration"
	"github.com/tetherflow/tether/activities/store"
	"github.com/tetherflow/tether/tests/pgtest"
)

func TestScheduleInterval_EveryOrTheShortestCronGap(t *testing.T) {
	now := time.Date(2026, 12, 7, 10, 7, 0, 0, time.UTC)
	for _, c := range []struct {
		s    integration.Schedule
		want time.Duration
	}{
		{integration.Schedule{Every: time.Hour}, time.Hour},
		{integration.Schedule{Cron: []string{"*/15 * * * *"}}, 15 * time.Minute},
		{integration.Schedule{Cron: []string{"0 2 * * *"}}, 24 * time.Hour},
		{integration.Schedule{Cron: []string{"@daily", "0 */6 * * *"}, Every: 12 * time.Hour}, 6 * time.Hour},
		{integration.Schedule{Cron: []string{"not cron"}}, 0},
	} {
		if got := scheduleInterval(c.s, now); got != c.want {
			t.Errorf("%+v: %v, want %v", c.s, got, c.want)
		}
	}
}

// TestStateMetrics_ReadTheDatabase: last success, the progress of a run
// in progress and the checkpoint's lag come from the database's rows.
func TestStateMetrics_ReadTheDatabase(t *testing.T) {
	db := pgtest.New(t)
	ctx := context.Background()
	if err := store.Migrate(ctx, db.DB); err != nil {
		t.Fatal(err)
	}
	success := time.Date(2026, 12, 7, 9, 0, 0, 0, time.UTC)
	progress := time.Date(2026, 12, 7, 9, 30, 0, 0, time.UTC)
	if _, err := db.DB.Exec(`
INSERT INTO tether_runs (run_id, integration, status, finished_at, updated_at, kind) VALUES
  ('a', 'crm', 'Completed', $1, $1, 'sync'),
  ('b', 'crm', 'Completed', $1::timestamptz + interval '1 hour', $1, 'replay'),
  ('c', 'crm', 'Failed', $1::timestamptz + interval '2 hours', $1, 'sync'),
  ('d', 'crm', 'Running', NULL, $2, 'sync'),
  ('e', 'billing', 'Failed', $1, $1, 'sync')`, success, progress); err != nil {
		t.Fatal(err)
	}
	if _, err := db.DB.Exec(`INSERT INTO tether_checkpoints (integration, checkpoint) VALUES
  ('crm', '{"cursor": "2026-12-07T09:50:00Z"}'), ('ids', '{"cursor": "42"}')`); err != nil {
		t.Fatal(err)
	}
	none, err := integration.NewRegistry()
	if err != nil {
		t.Fatal(err)
	}
	c := newStateCollector(store.New(db.DB), none, slog.New(slog.DiscardHandler))
	c.now = func() time.Time { return time.Date(2026, 12, 7, 10, 0, 0, 0, time.UTC) }
	reg := prometheus.NewRegistry()
	reg.MustRegister(c)
	want := `
# HELP tether_checkpoint_lag_seconds Now minus the integration's committed checkpoint, when its cursor is a time (RFC 3339): how far behind the source the next incremental run starts.
# TYPE tether_checkpoint_lag_seconds gauge
tether_checkpoint_lag_seconds{integration="crm"} 600
# HELP tether_last_success_timestamp_seconds Unix time the integration's latest successful run (completed, not a replay) finished, from the database.
# TYPE tether_last_success_timestamp_seconds gauge
tether_last_success_timestamp_seconds{integration="crm"} ` + unixText(success) + `
# HELP tether_run_last_progress_timestamp_seconds For an integration with a run in progress (running or compensating, per the database): Unix time such a run last committed a batch or started. Absent when none runs.
# TYPE tether_run_last_progress_timestamp_seconds gauge
tether_run_last_progress_timestamp_seconds{integration="crm"} ` + unixText(progress) + `
# HELP tether_state_read_ok 1 when this scrape read the integrations' state from the database, 0 when it could not (the state gauges are then absent).
# TYPE tether_state_read_ok gauge
tether_state_read_ok 1
`
	if err := testutil.GatherAndCompare(reg, strings.NewReader(want)); err != nil {
		t.Error(err)
	}
}

func unixText(t time.Time) string { return strconv.FormatFloat(unix(t), 'e', -1, 64) }
