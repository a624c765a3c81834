package main

import (
	"context"
	"database/sql"
	"encoding/json"
	"fmt"
	"strings"
	"sync"
	"time"

	"github.com/lib/pq"

	"github.com/tetherflow/tether/activities/connector/pgsource/capture"
	"github.com/tetherflow/tether/activities/lib/schema"
)

// capBaseline is change capture's floor without Temporal: a loop in the
// bench process on the capture package alone. It waits for a
// notification, reads the oldest changes, validates each upsert's row
// against the integration's JSON Schema, keeps the last change per key and
// applies them in one transaction with the same version guard as tether's
// destination (upserts unless the table's version is newer, deletes unless
// the table's row is newer than the row deleted), then acknowledges them.
// It keeps none of tether's other promises: no quarantine (an invalid row
// is skipped and counted), no retry beyond trying again a second later, no
// lag reporting, no failover to another process.
type capBaseline struct {
	db *sql.DB // the destination
	r  *capture.Reader
	v  *schema.Validator

	mu      sync.Mutex
	batches int
	invalid int
	errs    map[string]int
}

func newCapBaseline(db *sql.DB, r *capture.Reader, v *schema.Validator) *capBaseline {
	return &capBaseline{db: db, r: r, v: v, errs: map[string]int{}}
}

// capUpsert writes the rows unless the table has a newer version, as
// pgsink's upsert does for a table with a version column.
const capUpsert = `INSERT INTO ` + capDestBaseline + ` AS t (id, email, full_name, status, score, updated_at)
SELECT * FROM unnest($1::bigint[], $2::text[], $3::text[], $4::text[], $5::int[], $6::timestamptz[])
ON CONFLICT (id) DO UPDATE SET email = EXCLUDED.email, full_name = EXCLUDED.full_name, status = EXCLUDED.status,
	score = EXCLUDED.score, updated_at = EXCLUDED.updated_at
WHERE (t.email, t.full_name, t.status, t.score, t.updated_at) IS DISTINCT FROM
	(EXCLUDED.email, EXCLUDED.full_name, EXCLUDED.status, EXCLUDED.score, EXCLUDED.updated_at)
  AND (t.updated_at IS NULL OR EXCLUDED.updated_at >= t.updated_at)`

// capDelete deletes the rows unless the table's row is newer than the one
// deleted, as pgsink's delete does.
const capDelete = `DELETE FROM ` + capDestBaseline + ` t USING unnest($1::bigint[], $2::timestamptz[]) AS d(id, version)
WHERE t.id = d.id AND (d.version IS NULL OR t.updated_at IS NULL OR t.updated_at <= d.version)`

// capRow is a source row as the trigger renders it (to_jsonb).
type capRow struct {
	ID        int64   `json:"id"`
	Email     string  `json:"email"`
	FullName  *string `json:"full_name"`
	Status    *string `json:"status"`
	Score     *int64  `json:"score"`
	UpdatedAt *string `json:"updated_at"`
}

// run applies changes until ctx ends.
func (b *capBaseline) run(ctx context.Context) {
	for ctx.Err() == nil {
		if err := b.r.Wait(ctx, 5*time.Second); err != nil {
			return
		}
		for ctx.Err() == nil {
			n, err := b.round(ctx)
			if err != nil {
				if ctx.Err() != nil {
					return
				}
				b.mu.Lock()
				b.errs[err.Error()]++
				b.mu.Unlock()
				select {
				case <-ctx.Done():
				case <-time.After(time.Second):
				}
				break
			}
			if n == 0 {
				break
			}
		}
	}
}

// round reads, applies and acknowledges one batch; it returns how many
// changes it read.
func (b *capBaseline) round(ctx context.Context) (int, error) {
	changes, err := b.r.Read(ctx, capBatchSize)
	if err != nil || len(changes) == 0 {
		return 0, err
	}
	order, byKey, ids, invalid := b.lastPerKey(changes)
	if err := b.apply(ctx, newCapBatch(order, byKey)); err != nil {
		return 0, err
	}
	if err := b.r.Ack(ctx, ids); err != nil {
		return 0, err
	}
	b.mu.Lock()
	b.batches++
	b.invalid += invalid
	b.mu.Unlock()
	return len(changes), nil
}

// capLast is the last change of a key in a batch.
type capLast struct {
	op  capture.Op
	row capRow
}

// lastPerKey decodes changes and keeps the last valid one per key: order
// lists the keys as first seen, byKey their last change, ids every
// change's outbox id, and invalid counts the changes skipped.
func (b *capBaseline) lastPerKey(changes []capture.Change) (order []int64, byKey map[int64]capLast, ids []int64, invalid int) {
	byKey = map[int64]capLast{}
	ids = make([]int64, len(changes))
	for i, ch := range changes {
		ids[i] = ch.ID
		var row capRow
		if err := json.Unmarshal(ch.Row, &row); err != nil {
			invalid++
			continue
		}
		if ch.Op == capture.OpUpsert {
			doc, err := schema.Decode(ch.Row)
			if err != nil || len(b.v.Validate(doc)) > 0 {
				invalid++
				continue
			}
		}
		if _, seen := byKey[row.ID]; !seen {
			order = append(order, row.ID)
		}
		byKey[row.ID] = capLast{op: ch.Op, row: row} // ascending ids: the last wins
	}
	return order, byKey, ids, invalid
}

// capBatch is a batch's last change per key as the arrays of capUpsert
// and capDelete.
type capBatch struct {
	uID                     []int64
	uEmail                  []string
	uName, uStatus, uUpdate []sql.NullString
	uScore                  []sql.NullInt64
	dID                     []int64
	dVersion                []sql.NullString
}

// newCapBatch puts the last change of every key of order, from byKey, into
// the statements' arrays.
func newCapBatch(order []int64, byKey map[int64]capLast) capBatch {
	var cb capBatch
	str := func(p *string) sql.NullString {
		if p == nil {
			return sql.NullString{}
		}
		return sql.NullString{String: *p, Valid: true}
	}
	for _, id := range order {
		l := byKey[id]
		if l.op == capture.OpDelete {
			cb.dID, cb.dVersion = append(cb.dID, id), append(cb.dVersion, str(l.row.UpdatedAt))
			continue
		}
		score := sql.NullInt64{}
		if l.row.Score != nil {
			score = sql.NullInt64{Int64: *l.row.Score, Valid: true}
		}
		cb.uID = append(cb.uID, id)
		cb.uEmail = append(cb.uEmail, strings.ToLower(strings.TrimSpace(l.row.Email)))
		cb.uName, cb.uStatus = append(cb.uName, str(l.row.FullName)), append(cb.uStatus, str(l.row.Status))
		cb.uScore, cb.uUpdate = append(cb.uScore, score), append(cb.uUpdate, str(l.row.UpdatedAt))
	}
	return cb
}

// apply writes the batch in one transaction.
func (b *capBaseline) apply(ctx context.Context, cb capBatch) error {
	tx, err := b.db.BeginTx(ctx, nil)
	if err != nil {
		return fmt.Errorf("begin: %w", err)
	}
	defer tx.Rollback() //nolint:errcheck // no-op after commit
	if len(cb.uID) > 0 {
		if _, err := tx.ExecContext(ctx, capUpsert, pq.Array(cb.uID), pq.Array(cb.uEmail), pq.Array(cb.uName), pq.Array(cb.uStatus),
			pq.Array(cb.uScore), pq.Array(cb.uUpdate)); err != nil {
			return fmt.Errorf("upsert: %w", err)
		}
	}
	if len(cb.dID) > 0 {
		if _, err := tx.ExecContext(ctx, capDelete, pq.Array(cb.dID), pq.Array(cb.dVersion)); err != nil {
			return fmt.Errorf("delete: %w", err)
		}
	}
	if err := tx.Commit(); err != nil {
		return fmt.Errorf("commit: %w", err)
	}
	return nil
}

// stats are the loop's batches, invalid rows skipped and errors so far.
func (b *capBaseline) stats() (batches, invalid int, errs map[string]int) {
	b.mu.Lock()
	defer b.mu.Unlock()
	errs = make(map[string]int, len(b.errs))
	for k, v := range b.errs {
		errs[k] = v
	}
	return b.batches, b.invalid, errs
}
