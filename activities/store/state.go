package store

import (
	"context"
	"database/sql"
	"time"

	"github.com/tetherflow/tether/activities/lib/postgres"
)

// IntegrationState is what the database says of an integration's runs,
// for the worker's metrics: the same on every worker of the deployment.
type IntegrationState struct {
	Integration string
	// LastSuccess is when its latest completed run (not a replay)
	// finished; zero when none has.
	LastSuccess time.Time
	// LastProgress is, when a run of it is in progress (running or
	// compensating), the latest time such a run started or committed a
	// batch; zero when none is.
	LastProgress time.Time
	// Cursor is its checkpoint's cursor value ("" when it has none).
	Cursor string
}

// States returns the state of every integration that has runs or a
// checkpoint, sorted by name.
func (s *Store) States(ctx context.Context) ([]IntegrationState, error) {
	rows, err := s.DB.QueryContext(ctx, `
WITH runs AS (
    SELECT integration,
           max(finished_at) FILTER (WHERE status = 'Completed' AND kind <> 'replay') AS last_success,
           max(updated_at) FILTER (WHERE status IN ('Running', 'Compensating')) AS last_progress
    FROM tether_runs GROUP BY integration
)
SELECT coalesce(r.integration, c.integration), r.last_success, r.last_progress, coalesce(c.checkpoint->>'cursor', '')
FROM runs r FULL JOIN tether_checkpoints c ON c.integration = r.integration
ORDER BY 1`)
	if err != nil {
		return nil, postgres.Classify(err, "read the integrations' state")
	}
	defer rows.Close()
	var out []IntegrationState
	for rows.Next() {
		var st IntegrationState
		var success, progress sql.NullTime
		if err := rows.Scan(&st.Integration, &success, &progress, &st.Cursor); err != nil {
			return nil, postgres.Classify(err, "read the integrations' state")
		}
		st.LastSuccess, st.LastProgress = success.Time, progress.Time
		out = append(out, st)
	}
	return out, postgres.Classify(rows.Err(), "read the integrations' state")
}
