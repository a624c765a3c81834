package store

import (
	"context"
	"fmt"

	"github.com/tetherflow/tether/activities/lib/postgres"
)

// QuarantinedKeys lists the distinct record keys run runID of an
// integration quarantined (records without a key are not listed): the
// records the source still has but that are invalid, whose destination
// rows a batch refresh keeps.
func (s *Store) QuarantinedKeys(ctx context.Context, integration, runID string) ([]string, error) {
	what := fmt.Sprintf("list the keys run %q quarantined", runID)
	rows, err := s.DB.QueryContext(ctx, `
SELECT DISTINCT record_key FROM tether_quarantine
WHERE integration = $1 AND run_id = $2 AND record_key <> ''
ORDER BY 1`, integration, runID)
	if err != nil {
		return nil, postgres.Classify(err, what)
	}
	defer rows.Close()
	keys := []string{}
	for rows.Next() {
		var k string
		if err := rows.Scan(&k); err != nil {
			return nil, postgres.Classify(err, what)
		}
		keys = append(keys, k)
	}
	return keys, postgres.Classify(rows.Err(), what)
}

// EndedRefreshRuns lists an integration's refresh runs, other than except,
// that are not running: the runs whose seen keys can go once a later run
// completes (a failed refresh keeps them until then, so a reset can still
// finish it).
func (s *Store) EndedRefreshRuns(ctx context.Context, integration, except string) ([]string, error) {
	what := fmt.Sprintf("list the ended refresh runs of %q", integration)
	rows, err := s.DB.QueryContext(ctx, `
SELECT run_id FROM tether_runs
WHERE integration = $1 AND run_id <> $2 AND kind = $3 AND status <> 'Running'
ORDER BY run_id`, integration, except, KindRefresh)
	if err != nil {
		return nil, postgres.Classify(err, what)
	}
	defer rows.Close()
	var ids []string
	for rows.Next() {
		var id string
		if err := rows.Scan(&id); err != nil {
			return nil, postgres.Classify(err, what)
		}
		ids = append(ids, id)
	}
	return ids, postgres.Classify(rows.Err(), what)
}
