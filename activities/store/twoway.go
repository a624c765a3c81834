package store

import (
	"context"
	"database/sql"
	"encoding/json"
	"errors"
	"fmt"
	"time"

	"github.com/lib/pq"

	"github.com/tetherflow/tether/activities/lib/postgres"
)

// TwoWayPair is one record of a two-way integration: its key on each side
// (empty until it exists there) and its last synced state (Base, nil
// before its first sync or once deleted on both) with each side's version
// then.
type TwoWayPair struct {
	ID                 int64
	Integration        string
	AKey, BKey         string
	Base               json.RawMessage
	AVersion, BVersion string
}

// TwoWayPairs returns the pairs of integration whose key on side ("a" or
// "b") is one of keys, by that key.
func (s *Store) TwoWayPairs(ctx context.Context, integration, side string, keys []string) (map[string]TwoWayPair, error) {
	col := "a_key"
	if side == "b" {
		col = "b_key"
	}
	what := fmt.Sprintf("read the pairs of %q", integration)
	rows, err := s.DB.QueryContext(ctx, `
SELECT id, coalesce(a_key, ''), coalesce(b_key, ''), base, a_version, b_version
FROM tether_twoway_pairs WHERE integration = $1 AND `+col+` = ANY($2)`, integration, pq.Array(keys))
	if err != nil {
		return nil, postgres.Classify(err, what)
	}
	defer rows.Close()
	out := make(map[string]TwoWayPair, len(keys))
	for rows.Next() {
		p := TwoWayPair{Integration: integration}
		var base []byte
		if err := rows.Scan(&p.ID, &p.AKey, &p.BKey, &base, &p.AVersion, &p.BVersion); err != nil {
			return nil, postgres.Classify(err, what)
		}
		if base != nil {
			p.Base = base
		}
		k := p.AKey
		if side == "b" {
			k = p.BKey
		}
		out[k] = p
	}
	return out, postgres.Classify(rows.Err(), what)
}

// TwoWayPair returns the pair id of integration.
func (s *Store) TwoWayPair(ctx context.Context, integration string, id int64) (TwoWayPair, error) {
	p := TwoWayPair{ID: id, Integration: integration}
	var base []byte
	err := s.DB.QueryRowContext(ctx, `
SELECT coalesce(a_key, ''), coalesce(b_key, ''), base, a_version, b_version
FROM tether_twoway_pairs WHERE integration = $1 AND id = $2`, integration, id).Scan(&p.AKey, &p.BKey, &base, &p.AVersion, &p.BVersion)
	if base != nil {
		p.Base = base
	}
	return p, postgres.Classify(err, fmt.Sprintf("read pair %d of %q", id, integration))
}

// SaveTwoWayPair records p as in sync: a new pair (ID 0) is inserted and
// returned with its id; a known one is updated.
func (s *Store) SaveTwoWayPair(ctx context.Context, p TwoWayPair) (TwoWayPair, error) {
	what := fmt.Sprintf("save a pair of %q", p.Integration)
	base := sql.NullString{String: string(p.Base), Valid: p.Base != nil}
	if p.ID == 0 {
		err := s.DB.QueryRowContext(ctx, `
INSERT INTO tether_twoway_pairs (integration, a_key, b_key, base, a_version, b_version)
VALUES ($1, nullif($2, ''), nullif($3, ''), $4::jsonb, $5, $6) RETURNING id`,
			p.Integration, p.AKey, p.BKey, base, p.AVersion, p.BVersion).Scan(&p.ID)
		return p, postgres.Classify(err, what)
	}
	_, err := s.DB.ExecContext(ctx, `
UPDATE tether_twoway_pairs SET a_key = nullif($3, ''), b_key = nullif($4, ''), base = $5::jsonb,
    a_version = $6, b_version = $7, synced_at = now()
WHERE integration = $1 AND id = $2`, p.Integration, p.ID, p.AKey, p.BKey, base, p.AVersion, p.BVersion)
	return p, postgres.Classify(err, what)
}

// SaveTwoWayPairs records known pairs (ID set) as in sync, in one
// statement.
func (s *Store) SaveTwoWayPairs(ctx context.Context, integration string, ps []TwoWayPair) error {
	if len(ps) == 0 {
		return nil
	}
	ids := make([]int64, len(ps))
	aKeys, bKeys, bases, aVers, bVers := make([]string, len(ps)), make([]string, len(ps)), make([]sql.NullString, len(ps)), make([]string, len(ps)), make([]string, len(ps))
	for i, p := range ps {
		ids[i], aKeys[i], bKeys[i], aVers[i], bVers[i] = p.ID, p.AKey, p.BKey, p.AVersion, p.BVersion
		bases[i] = sql.NullString{String: string(p.Base), Valid: p.Base != nil}
	}
	_, err := s.DB.ExecContext(ctx, `
UPDATE tether_twoway_pairs AS t SET a_key = nullif(u.a_key, ''), b_key = nullif(u.b_key, ''), base = u.base::jsonb,
    a_version = u.a_version, b_version = u.b_version, synced_at = now()
FROM unnest($2::bigint[], $3::text[], $4::text[], $5::text[], $6::text[], $7::text[]) AS u(id, a_key, b_key, base, a_version, b_version)
WHERE t.integration = $1 AND t.id = u.id`,
		integration, pq.Array(ids), pq.Array(aKeys), pq.Array(bKeys), pq.Array(bases), pq.Array(aVers), pq.Array(bVers))
	return postgres.Classify(err, fmt.Sprintf("save %d pairs of %q", len(ps), integration))
}

// TwoWayCursor is where side's change feed was read up to (zero values
// before the first read), and whether that read stopped at its limit
// (partial: the next one goes on strictly after it).
func (s *Store) TwoWayCursor(ctx context.Context, integration, side string) (cursor, key string, partial bool, err error) {
	err = s.DB.QueryRowContext(ctx, `SELECT cursor, key, partial FROM tether_twoway_cursors WHERE integration = $1 AND side = $2`,
		integration, side).Scan(&cursor, &key, &partial)
	if errors.Is(err, sql.ErrNoRows) {
		return "", "", false, nil
	}
	return cursor, key, partial, postgres.Classify(err, fmt.Sprintf("read the %s cursor of %q", side, integration))
}

// SaveTwoWayCursor records where side's change feed was read up to.
func (s *Store) SaveTwoWayCursor(ctx context.Context, integration, side, cursor, key string, partial bool) error {
	_, err := s.DB.ExecContext(ctx, `
INSERT INTO tether_twoway_cursors (integration, side, cursor, key, partial) VALUES ($1, $2, $3, $4, $5)
ON CONFLICT (integration, side) DO UPDATE SET cursor = excluded.cursor, key = excluded.key, partial = excluded.partial`,
		integration, side, cursor, key, partial)
	return postgres.Classify(err, fmt.Sprintf("save the %s cursor of %q", side, integration))
}

// Conflict statuses.
const (
	ConflictResolved   = "resolved"
	ConflictParked     = "parked"
	ConflictSuperseded = "superseded"
)

// Conflict is one record both sides changed differently since it was
// last in sync: both versions, the base, the policy, and how it was
// resolved, by whom and when (a parked one waits for a person).
type Conflict struct {
	ID          int64           `json:"id"`
	Integration string          `json:"integration"`
	PairID      int64           `json:"pairId"`
	AKey        string          `json:"aKey,omitempty"`
	BKey        string          `json:"bKey,omitempty"`
	Base        json.RawMessage `json:"base"`
	A           json.RawMessage `json:"a"`
	B           json.RawMessage `json:"b"`
	ADeleted    bool            `json:"aDeleted,omitempty"`
	BDeleted    bool            `json:"bDeleted,omitempty"`
	AVersion    string          `json:"aVersion,omitempty"`
	BVersion    string          `json:"bVersion,omitempty"`
	AAt         time.Time       `json:"aAt,omitzero"`
	BAt         time.Time       `json:"bAt,omitzero"`
	Fields      []string        `json:"fields"`
	Policy      string          `json:"policy"`
	Status      string          `json:"status"`
	Resolution  string          `json:"resolution,omitempty"`
	Result      json.RawMessage `json:"result,omitempty"`
	ResolvedBy  string          `json:"resolvedBy,omitempty"`
	DetectedAt  time.Time       `json:"detectedAt"`
	ResolvedAt  time.Time       `json:"resolvedAt,omitzero"`
}

func nullJSONOf(b json.RawMessage) sql.NullString {
	return sql.NullString{String: string(b), Valid: b != nil}
}

func nullTime(t time.Time) sql.NullTime { return sql.NullTime{Time: t, Valid: !t.IsZero()} }

// RecordConflict keeps c and returns its id. A parked conflict takes the
// place of the pair's parked one, if it has one (the sides changed again
// before a person looked): one parked conflict per pair.
func (s *Store) RecordConflict(ctx context.Context, c Conflict) (int64, error) {
	what := fmt.Sprintf("record a conflict of %q", c.Integration)
	if c.Fields == nil {
		c.Fields = []string{}
	}
	args := []any{c.Integration, c.PairID, c.AKey, c.BKey, nullJSONOf(c.Base), nullJSONOf(c.A), nullJSONOf(c.B), c.ADeleted, c.BDeleted,
		c.AVersion, c.BVersion, nullTime(c.AAt), nullTime(c.BAt), pq.Array(c.Fields), c.Policy, c.Status, c.Resolution, nullJSONOf(c.Result), c.ResolvedBy}
	q := `
INSERT INTO tether_conflicts (integration, pair_id, a_key, b_key, base, a, b, a_deleted, b_deleted, a_version, b_version, a_at, b_at,
    fields, policy, status, resolution, result, resolved_by, resolved_at)
VALUES ($1, $2, $3, $4, $5::jsonb, $6::jsonb, $7::jsonb, $8, $9, $10, $11, $12, $13, $14, $15, $16, $17, $18::jsonb, $19,
    CASE WHEN $16 = 'parked' THEN NULL ELSE now() END)`
	if c.Status == ConflictParked {
		q += `
ON CONFLICT (integration, pair_id) WHERE status = 'parked' DO UPDATE SET a_key = excluded.a_key, b_key = excluded.b_key,
    base = excluded.base, a = excluded.a, b = excluded.b, a_deleted = excluded.a_deleted, b_deleted = excluded.b_deleted,
    a_version = excluded.a_version, b_version = excluded.b_version, a_at = excluded.a_at, b_at = excluded.b_at,
    fields = excluded.fields, detected_at = now()`
	}
	var id int64
	err := s.DB.QueryRowContext(ctx, q+" RETURNING id", args...).Scan(&id)
	return id, postgres.Classify(err, what)
}

// SettleConflict records how a parked conflict was resolved, by whom
// (status resolved), or that the pair no longer conflicts (superseded);
// false when it is not parked (resolved already).
func (s *Store) SettleConflict(ctx context.Context, integration string, id int64, status, resolution string, result json.RawMessage, by string) (bool, error) {
	res, err := s.DB.ExecContext(ctx, `
UPDATE tether_conflicts SET status = $3, resolution = $4, result = $5::jsonb, resolved_by = $6, resolved_at = now()
WHERE integration = $1 AND id = $2 AND status = 'parked'`, integration, id, status, resolution, nullJSONOf(result), by)
	if err != nil {
		return false, postgres.Classify(err, fmt.Sprintf("settle conflict %d of %q", id, integration))
	}
	n, _ := res.RowsAffected()
	return n == 1, nil
}

// ParkedConflicts returns the ids of integration's conflicts waiting for
// a person, by pair.
func (s *Store) ParkedConflicts(ctx context.Context, integration string) (map[int64][]int64, error) {
	what := fmt.Sprintf("list the parked conflicts of %q", integration)
	rows, err := s.DB.QueryContext(ctx, `SELECT pair_id, id FROM tether_conflicts WHERE integration = $1 AND status = 'parked'`, integration)
	if err != nil {
		return nil, postgres.Classify(err, what)
	}
	defer rows.Close()
	out := map[int64][]int64{}
	for rows.Next() {
		var pair, id int64
		if err := rows.Scan(&pair, &id); err != nil {
			return nil, postgres.Classify(err, what)
		}
		out[pair] = append(out[pair], id)
	}
	return out, postgres.Classify(rows.Err(), what)
}

// ConflictFilter selects conflicts; zero fields select all.
type ConflictFilter struct {
	Integration string
	Status      string
	PairID      int64
	ID          int64
	Limit       int
}

// ListConflicts returns conflicts, newest first.
func (s *Store) ListConflicts(ctx context.Context, f ConflictFilter) ([]Conflict, error) {
	q := `
SELECT id, integration, pair_id, a_key, b_key, base, a, b, a_deleted, b_deleted, a_version, b_version, a_at, b_at,
    fields, policy, status, resolution, result, resolved_by, detected_at, resolved_at
FROM tether_conflicts
WHERE ($1 = '' OR integration = $1) AND ($2 = '' OR status = $2) AND ($3 = 0 OR pair_id = $3) AND ($4 = 0 OR id = $4)
ORDER BY detected_at DESC, id DESC`
	if f.Limit > 0 {
		q += fmt.Sprintf(" LIMIT %d", f.Limit)
	}
	rows, err := s.DB.QueryContext(ctx, q, f.Integration, f.Status, f.PairID, f.ID)
	if err != nil {
		return nil, postgres.Classify(err, "list conflicts")
	}
	defer rows.Close()
	var out []Conflict
	for rows.Next() {
		var c Conflict
		var base, a, b, result []byte
		var aAt, bAt, resolvedAt sql.NullTime
		if err := rows.Scan(&c.ID, &c.Integration, &c.PairID, &c.AKey, &c.BKey, &base, &a, &b, &c.ADeleted, &c.BDeleted,
			&c.AVersion, &c.BVersion, &aAt, &bAt, pq.Array(&c.Fields), &c.Policy, &c.Status, &c.Resolution, &result,
			&c.ResolvedBy, &c.DetectedAt, &resolvedAt); err != nil {
			return nil, postgres.Classify(err, "list conflicts")
		}
		c.Base, c.A, c.B, c.Result = rawOrNil(base), rawOrNil(a), rawOrNil(b), rawOrNil(result)
		c.AAt, c.BAt, c.ResolvedAt = aAt.Time, bAt.Time, resolvedAt.Time
		out = append(out, c)
	}
	return out, postgres.Classify(rows.Err(), "list conflicts")
}

func rawOrNil(b []byte) json.RawMessage {
	if b == nil {
		return nil
	}
	return json.RawMessage(b)
}
