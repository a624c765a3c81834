package store

import (
	"context"
	"encoding/json"
	"fmt"

	"github.com/lib/pq"

	"github.com/tetherflow/tether/activities/lib/postgres"
)

// Places of tether's own state a subject is erased from.
const (
	PlaceQuarantine     = "quarantine"
	PlaceStagedPages    = "staged pages"
	PlaceDeliveries     = "event deliveries"
	PlaceIdentityMaps   = "identity maps"
	PlaceReconciliation = "reconciliation rows"
)

// EraseState deletes the subject whose record key is key from tether's
// own tables for integration: its quarantine entries (pending or
// replayed), the staged pages of its runs holding it (hasKey tells whether
// a staged record is the subject's; a reset of such a run fetches the
// page again), its event deliveries, its entries in the identity maps
// namespaces (with their before-images and match keys), and the rows
// reconciliations kept of it. It returns how many rows went, by place.
// Every delete is idempotent: a retry deletes nothing more.
func (s *Store) EraseState(ctx context.Context, integration, key string, namespaces []string, hasKey func(json.RawMessage) bool) (map[string]int, error) {
	out := map[string]int{}
	what := fmt.Sprintf("erase %q of %s", key, integration)
	for _, d := range []struct {
		place string
		sql   string
		args  []any
	}{
		{PlaceQuarantine, `DELETE FROM tether_quarantine WHERE integration = $1 AND record_key = $2`, []any{integration, key}},
		{PlaceDeliveries, `DELETE FROM tether_event_deliveries WHERE integration = $1 AND entity_key = $2`, []any{integration, key}},
		{PlaceIdentityMaps, `DELETE FROM tether_identities WHERE namespace = ANY($1) AND record_key = $2`, []any{pq.StringArray(namespaces), key}},
		{PlaceIdentityMaps, `DELETE FROM tether_identity_images WHERE namespace = ANY($1) AND record_key = $2`, []any{pq.StringArray(namespaces), key}},
		{PlaceIdentityMaps, `DELETE FROM tether_match_keys WHERE namespace = ANY($1) AND record_key = $2`, []any{pq.StringArray(namespaces), key}},
		{PlaceReconciliation, `DELETE FROM tether_reconcile_rows r USING tether_reconciliations c
			WHERE r.reconcile_id = c.reconcile_id AND c.integration = $1 AND (r.source_key = $2 OR r.key_text = $2)`, []any{integration, key}},
		{PlaceReconciliation, `DELETE FROM tether_reconcile_extras r USING tether_reconciliations c
			WHERE r.reconcile_id = c.reconcile_id AND c.integration = $1 AND r.key_text = $2`, []any{integration, key}},
	} {
		res, err := s.DB.ExecContext(ctx, d.sql, d.args...)
		if err != nil {
			return nil, postgres.Classify(err, what+": "+d.place)
		}
		n, _ := res.RowsAffected()
		out[d.place] += int(n)
	}
	n, err := s.eraseStaged(ctx, integration, hasKey)
	if err != nil {
		return nil, postgres.Classify(err, what+": "+PlaceStagedPages)
	}
	out[PlaceStagedPages] = n
	return out, nil
}

// eraseStaged deletes the staged pages of integration's runs that hold a
// record hasKey picks.
func (s *Store) eraseStaged(ctx context.Context, integration string, hasKey func(json.RawMessage) bool) (int, error) {
	rows, err := s.DB.QueryContext(ctx, `
SELECT p.run_id, p.page, p.stage, p.records, p.record_ends, p.record_count
FROM tether_staged_pages p JOIN tether_runs r ON r.run_id = p.run_id WHERE r.integration = $1`, integration)
	if err != nil {
		return 0, err
	}
	type pageID struct {
		run   string
		page  int
		stage string
	}
	var holding []pageID
	for rows.Next() {
		var id pageID
		var body, ends []byte
		var count int
		if err := rows.Scan(&id.run, &id.page, &id.stage, &body, &ends, &count); err != nil {
			rows.Close()
			return 0, err
		}
		records, err := decodePage(body, ends, count)
		if err != nil {
			holding = append(holding, id) // unreadable: it may hold the subject
			continue
		}
		for _, r := range records {
			if hasKey(r) {
				holding = append(holding, id)
				break
			}
		}
	}
	if err := rows.Close(); err != nil {
		return 0, err
	}
	for _, id := range holding {
		if _, err := s.DB.ExecContext(ctx, `DELETE FROM tether_staged_pages WHERE run_id = $1 AND page = $2 AND stage = $3`,
			id.run, id.page, id.stage); err != nil {
			return 0, err
		}
	}
	return len(holding), rows.Err()
}
