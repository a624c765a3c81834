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
	type last struct {
		op  capture.Op
		row capRow
	}
	byKey := map[int64]last{}
	var order []int64
	ids := make([]int64, len(changes))
	invalid := 0
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
		byKey[row.ID] = last{op: ch.Op, row: row} // ascending ids: the last wins
	}
	var (
		uID                     []int64
		uEmail                  []string
		uName, uStatus, uUpdate []sql.NullString
		uScore                  []sql.NullInt64
		dID                     []int64
		dVersion                []sql.NullString
	)
	str := func(p *string) sql.NullString {
		if p == nil {
			return sql.NullString{}
		}
		return sql.NullString{String: *p, Valid: true}
	}
	for _, id := range order {
		l := byKey[id]
		if l.op == capture.OpDelete {
			dID, dVersion = append(dID, id), append(dVersion, str(l.row.UpdatedAt))
			continue
		}
		score := sql.NullInt64{}
		if l.row.Score != nil {
			score = sql.NullInt64{Int64: *l.row.Score, Valid: true}
		}
		uID = append(uID, id)
		uEmail = append(uEmail, strings.ToLower(strings.TrimSpace(l.row.Email)))
		uName, uStatus = append(uName, str(l.row.FullName)), append(uStatus, str(l.row.Status))
		uScore, uUpdate = append(uScore, score), append(uUpdate, str(l.row.UpdatedAt))
	}
	tx, err := b.db.BeginTx(ctx, nil)
	if err != nil {
		return 0, fmt.Errorf("begin: %w", err)
	}
	defer tx.Rollback() //nolint:errcheck // no-op after commit
	if len(uID) > 0 {
		if _, err := tx.ExecContext(ctx, capUpsert, pq.Array(uID), pq.Array(uEmail), pq.Array(uName), pq.Array(uStatus),
			pq.Array(uScore), pq.Array(uUpdate)); err != nil {
			return 0, fmt.Errorf("upsert: %w", err)
		}
	}
	if len(dID) > 0 {
		if _, err := tx.ExecContext(ctx, capDelete, pq.Array(dID), pq.Array(dVersion)); err != nil {
			return 0, fmt.Errorf("delete: %w", err)
		}
	}
	if err := tx.Commit(); err != nil {
		return 0, fmt.Errorf("commit: %w", err)
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
