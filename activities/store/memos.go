package store

import (
	"context"
	"database/sql"
	"encoding/json"
	"errors"
	"fmt"

	"github.com/lib/pq"
	"github.com/lib/pq/pqerror"

	"github.com/tetherflow/tether/activities/connector"
	"github.com/tetherflow/tether/activities/lib/cursor"
	"github.com/tetherflow/tether/activities/lib/failure"
	"github.com/tetherflow/tether/activities/lib/postgres"
)

// ErrBatchAlreadyApplied is wrapped by MarkBatchApplied's error when another
// attempt committed the same batch first. The caller's transaction is then
// aborted: roll it back and answer with BatchApplied's result. The error is
// retryable, so an ApplyBatch that just returns it is retried and finds the
// marker.
var ErrBatchAlreadyApplied = errors.New("batch already applied")

// Store is the connectors' MemoStore and IdentityMap.
var (
	_ connector.MemoStore   = (*Store)(nil)
	_ connector.IdentityMap = (*Store)(nil)
)

// Recall returns the memo remembered for an integration's page, and false
// when there is none. It implements connector.MemoStore.
func (s *Store) Recall(ctx context.Context, integration, cacheKey string) (cursor.Memo, bool, error) {
	what := fmt.Sprintf("recall memo of %q for %q", cacheKey, integration)
	var b []byte
	err := s.DB.QueryRowContext(ctx,
		`SELECT memo FROM tether_page_memos WHERE integration = $1 AND cache_key = $2`,
		integration, cleanText(cacheKey)).Scan(&b)
	if errors.Is(err, sql.ErrNoRows) {
		return cursor.Memo{}, false, nil
	}
	if err != nil {
		return cursor.Memo{}, false, postgres.Classify(err, what)
	}
	var m cursor.Memo
	if err := decodeJSON(b, &m, what); err != nil {
		return cursor.Memo{}, false, err
	}
	return m, true, nil
}

// Remember records the memo of an integration's page, replacing any earlier
// one. Call it only once the page's records are committed (pass that
// transaction as q), so a later run never skips a page that was not applied.
func (s *Store) Remember(ctx context.Context, q Querier, integration, cacheKey string, m cursor.Memo) error {
	what := fmt.Sprintf("remember memo of %q for %q", cacheKey, integration)
	b, err := json.Marshal(m)
	if err != nil {
		return failure.Permanent(failure.TypeSinkSQL, fmt.Errorf("%s: %w", what, err))
	}
	_, err = s.on(q).ExecContext(ctx, `
INSERT INTO tether_page_memos (integration, cache_key, memo, updated_at) VALUES ($1, $2, $3, now())
ON CONFLICT (integration, cache_key) DO UPDATE SET memo = EXCLUDED.memo, updated_at = now()`,
		integration, cleanText(cacheKey), string(b))
	return postgres.Classify(err, what)
}

// BatchApplied returns the result recorded when batch seq of a run was
// committed, and false when it was not. Call it in the batch's transaction
// before writing anything.
func (s *Store) BatchApplied(ctx context.Context, q Querier, runID string, seq int) (json.RawMessage, bool, error) {
	var b []byte
	err := s.on(q).QueryRowContext(ctx,
		`SELECT coalesce(result, 'null'::jsonb) FROM tether_applied_batches WHERE run_id = $1 AND seq = $2`,
		runID, seq).Scan(&b)
	if errors.Is(err, sql.ErrNoRows) {
		return nil, false, nil
	}
	if err != nil {
		return nil, false, postgres.Classify(err, fmt.Sprintf("check batch %d of run %q", seq, runID))
	}
	return json.RawMessage(b), true, nil
}

// MarkBatchApplied records, in the batch's transaction q, that batch seq of
// a run is committed with result (any JSON-encodable value). A concurrent
// attempt at the same batch waits for this transaction and then fails with
// an error wrapping ErrBatchAlreadyApplied, so a batch never commits twice.
func (s *Store) MarkBatchApplied(ctx context.Context, q Querier, runID string, seq int, result any) error {
	what := fmt.Sprintf("mark batch %d of run %q applied", seq, runID)
	b, err := json.Marshal(result)
	if err != nil {
		return failure.Permanent(failure.TypeSinkSQL, fmt.Errorf("%s: encode result: %w", what, err))
	}
	_, err = s.on(q).ExecContext(ctx,
		`INSERT INTO tether_applied_batches (run_id, seq, result) VALUES ($1, $2, $3)`, runID, seq, string(b))
	if pq.As(err, pqerror.UniqueViolation) != nil {
		return failure.Transient(failure.TypeSinkUnavailable, fmt.Errorf("%s: %w", what, ErrBatchAlreadyApplied))
	}
	return postgres.Classify(err, what)
}

// ForgetMemos drops every page memo of an integration, so the next run asks
// for every page unconditionally (after a compensated run rolled back pages
// whose memos were remembered).
func (s *Store) ForgetMemos(ctx context.Context, integration string) error {
	_, err := s.DB.ExecContext(ctx, `DELETE FROM tether_page_memos WHERE integration = $1`, integration)
	return postgres.Classify(err, fmt.Sprintf("forget memos of %q", integration))
}
