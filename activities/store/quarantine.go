package store

import (
	"bytes"
	"context"
	"database/sql"
	"encoding/json"
	"fmt"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/lib/pq"

	"github.com/tetherflow/tether/activities/lib/failure"
	"github.com/tetherflow/tether/activities/lib/postgres"
)

// Pipeline steps that quarantine records.
const (
	// StepValidate: the record failed its JSON Schema.
	StepValidate = "validate"
	// StepTransform: the record could not be transformed.
	StepTransform = "transform"
	// StepApply: the destination rejected the record's row.
	StepApply = "apply"
	// StepKey: the record's key could not be extracted.
	StepKey = "key"
	// StepEvent: the webhook receiver found the event invalid (its
	// source's schema).
	StepEvent = "event"
)

// ErrorDetail is one reason a record was quarantined.
type ErrorDetail struct {
	// Pointer is the JSON Pointer of the offending value ("" for the record).
	Pointer string `json:"pointer"`
	// Keyword is the failed JSON Schema keyword, when there is one.
	Keyword string `json:"keyword,omitempty"`
	// Message says what is wrong, for a person.
	Message string `json:"message"`
}

// QuarantineEntry is one quarantined record.
type QuarantineEntry struct {
	// ID is assigned by the store.
	ID          int64
	Integration string
	RunID       string
	// Page and Index locate the record in the page of RunID that first
	// quarantined it.
	Page, Index int
	// Key is the record's key, when it could be extracted.
	Key string
	// Step is one of the Step* constants.
	Step string
	// Payload is the record. Quarantine takes it as the source sent it,
	// valid JSON or not. ListQuarantine returns it as stored in jsonb
	// (PostgreSQL normalises spacing and key order), or nil when the record
	// was not storable as JSON: its text is then in PayloadText.
	Payload json.RawMessage
	// PayloadText is the record's raw text when it is not valid JSON (so
	// Payload, a json.RawMessage, stays marshalable). Quarantine uses it
	// when Payload is empty.
	PayloadText string
	// Errors are the reasons.
	Errors []ErrorDetail
	// CreatedAt is set by the store.
	CreatedAt time.Time
	// ReplayedAt and ReplayRunID are set once a replay run has taken it.
	ReplayedAt  *time.Time
	ReplayRunID string
}

// Quarantine records entries in one statement and says how many were
// new and how many their runs count (Quarantined). An integration keeps one pending entry per record — per key, or per
// payload for records without a key: a record already pending (a retried
// step, a rerun or full read that meets it again, possibly changed, a
// replay that still finds it invalid) gets its latest payload, errors,
// step and location instead of a second entry, so the quarantine never
// lists a record twice and a replay never applies an old version of it.
// Within entries, the last record of a key wins. Pass the batch's transaction as q.
// A payload PostgreSQL cannot hold as jsonb (not JSON, invalid UTF-8, a
// \u0000 escape) is kept as text in payload_text instead, with invalid
// bytes replaced.
func (s *Store) Quarantine(ctx context.Context, q Querier, entries []QuarantineEntry) (Quarantined, error) {
	if len(entries) == 0 {
		return Quarantined{}, nil
	}
	n := len(entries)
	var (
		integrations = make([]string, n)
		runs         = make([]string, n)
		pages        = make([]int64, n)
		indexes      = make([]int64, n)
		keys         = make([]string, n)
		steps        = make([]string, n)
		payloads     = make([]sql.NullString, n)
		texts        = make([]sql.NullString, n)
		errs         = make([]string, n)
	)
	for i, e := range entries {
		integrations[i], runs[i], steps[i] = e.Integration, e.RunID, e.Step
		pages[i], indexes[i] = int64(e.Page), int64(e.Index)
		keys[i] = cleanText(e.Key)
		switch {
		case jsonbSafe(e.Payload):
			payloads[i] = sql.NullString{String: string(e.Payload), Valid: true}
		case len(e.Payload) == 0:
			texts[i] = sql.NullString{String: cleanText(e.PayloadText), Valid: true}
		default:
			texts[i] = sql.NullString{String: cleanText(string(e.Payload)), Valid: true}
		}
		details := make([]ErrorDetail, len(e.Errors))
		for j, d := range e.Errors {
			details[j] = ErrorDetail{Pointer: cleanText(d.Pointer), Keyword: cleanText(d.Keyword), Message: cleanText(d.Message)}
		}
		b, err := json.Marshal(details)
		if err != nil {
			return Quarantined{}, failure.Permanent(failure.TypeSinkSQL, fmt.Errorf("quarantine record %d of page %d: encode errors: %w", e.Index, e.Page, err))
		}
		errs[i] = string(b)
	}
	rows, err := s.on(q).QueryContext(ctx, quarantineSQL,
		pq.StringArray(integrations), pq.StringArray(runs), pq.Int64Array(pages), pq.Int64Array(indexes),
		pq.StringArray(keys), pq.StringArray(steps), pq.GenericArray{A: payloads}, pq.GenericArray{A: texts},
		pq.StringArray(errs))
	what := fmt.Sprintf("quarantine %d records of run %q", n, entries[0].RunID)
	if err != nil {
		return Quarantined{}, postgres.Classify(err, what)
	}
	defer rows.Close()
	var out Quarantined
	for rows.Next() {
		var inserted, counted bool
		if err := rows.Scan(&inserted, &counted); err != nil {
			return Quarantined{}, postgres.Classify(err, what)
		}
		if inserted {
			out.New++
		}
		if counted {
			out.Counted++
		}
	}
	return out, postgres.Classify(rows.Err(), what)
}

// Quarantined is what Quarantine did with its entries.
type Quarantined struct {
	// New is how many became new pending entries.
	New int
	// Counted is how many their runs count as quarantined: every distinct
	// record except one the run had already quarantined at another place
	// of its read (a record the source gave twice, e.g. on two pages).
	// The same record at the same place again (a retried step) counts
	// again, as the step's first attempt did.
	Counted int
}

// quarantineSQL inserts entries, one per distinct pending record; the
// conflict target is the partial unique index of migration 8. Each row it
// returns says whether the entry is new, and whether its run counts it
// (Quarantined.Counted): not when the run had already quarantined the same
// record at another place (page, index) of its read.
const quarantineSQL = `
WITH incoming AS (
    SELECT u.*, CASE WHEN u.record_key = '' THEN md5(coalesce(u.payload::text, u.payload_text, '')) ELSE '' END AS twin
    FROM unnest($1::text[], $2::text[], $3::int[], $4::int[], $5::text[], $6::text[], $7::jsonb[], $8::text[], $9::jsonb[])
        WITH ORDINALITY AS u(integration, run_id, page, record_index, record_key, step, payload, payload_text, errors, ord)
), once AS (
    -- the last record of a key wins, as in the destination
    SELECT DISTINCT ON (integration, record_key, twin) *
    FROM incoming ORDER BY integration, record_key, twin, ord DESC
), prior AS (
    SELECT o.ord, q.run_id, q.page, q.record_index
    FROM once o JOIN tether_quarantine q ON q.integration = o.integration AND q.record_key = o.record_key
        AND (CASE WHEN q.record_key = '' THEN md5(coalesce(q.payload::text, q.payload_text, '')) ELSE '' END) = o.twin
    WHERE q.replayed_at IS NULL
), stored AS (
    INSERT INTO tether_quarantine (integration, run_id, page, record_index, record_key, step, payload, payload_text, errors)
    SELECT integration, run_id, page, record_index, record_key, step, payload, payload_text, errors FROM once ORDER BY ord
    ON CONFLICT (integration, record_key, (CASE WHEN record_key = '' THEN md5(coalesce(payload::text, payload_text, '')) ELSE '' END))
        WHERE replayed_at IS NULL
    DO UPDATE SET errors = EXCLUDED.errors, step = EXCLUDED.step, payload = EXCLUDED.payload, payload_text = EXCLUDED.payload_text,
        run_id = EXCLUDED.run_id,
        -- a run keeps the first place it met the record at, so a retried
        -- step finds it there (and counts it) after a later duplicate
        page = CASE WHEN tether_quarantine.run_id = EXCLUDED.run_id THEN tether_quarantine.page ELSE EXCLUDED.page END,
        record_index = CASE WHEN tether_quarantine.run_id = EXCLUDED.run_id THEN tether_quarantine.record_index ELSE EXCLUDED.record_index END
    RETURNING (xmax = 0) AS inserted, integration, record_key,
        CASE WHEN record_key = '' THEN md5(coalesce(payload::text, payload_text, '')) ELSE '' END AS twin
)
SELECT s.inserted,
    s.inserted OR p.run_id IS DISTINCT FROM o.run_id OR (p.page = o.page AND p.record_index = o.record_index)
FROM stored s JOIN once o ON o.integration = s.integration AND o.record_key = s.record_key AND o.twin = s.twin
LEFT JOIN prior p ON p.ord = o.ord`

// jsonbSafe reports whether p can be stored as jsonb as it is.
func jsonbSafe(p json.RawMessage) bool {
	return len(p) > 0 && json.Valid(p) && utf8.Valid(p) && !bytes.Contains(p, []byte(`\u0000`))
}

// QuarantineFilter selects quarantined records. Zero fields select all.
type QuarantineFilter struct {
	Integration string
	RunID       string
	// PendingOnly selects records not yet replayed.
	PendingOnly bool
	// AfterID selects records with a larger ID (keyset paging).
	AfterID int64
	// UpToID, when positive, selects records with an ID at most UpToID (a
	// replay reads only what was quarantined before it started).
	UpToID int64
	// Limit caps the records listed (no cap when <= 0); CountQuarantine
	// ignores it.
	Limit int
}

// where returns the filter's WHERE clause and arguments.
func (f QuarantineFilter) where() (string, []any) {
	var w conditions
	if f.Integration != "" {
		w.add("integration = $%d", f.Integration)
	}
	if f.RunID != "" {
		w.add("run_id = $%d", f.RunID)
	}
	if f.AfterID > 0 {
		w.add("id > $%d", f.AfterID)
	}
	if f.UpToID > 0 {
		w.add("id <= $%d", f.UpToID)
	}
	if f.PendingOnly {
		w.conds = append(w.conds, "replayed_at IS NULL")
	}
	return w.sql(), w.args
}

// conditions builds a WHERE clause whose conditions number their
// arguments ($1, $2…) in the order they are added.
type conditions struct {
	conds []string
	args  []any
}

// add adds cond, a format with one %d for its argument's number.
func (w *conditions) add(cond string, arg any) {
	w.args = append(w.args, arg)
	w.conds = append(w.conds, fmt.Sprintf(cond, len(w.args)))
}

// sql is " WHERE …", or "" without conditions.
func (w conditions) sql() string {
	if len(w.conds) == 0 {
		return ""
	}
	return " WHERE " + strings.Join(w.conds, " AND ")
}

// ListQuarantine returns the quarantined records f selects, by ID.
func (s *Store) ListQuarantine(ctx context.Context, f QuarantineFilter) ([]QuarantineEntry, error) {
	where, args := f.where()
	query := `SELECT id, integration, run_id, page, record_index, record_key, step,
	payload::text, coalesce(payload_text, ''), errors, created_at, replayed_at, coalesce(replay_run_id, '')
FROM tether_quarantine` + where + ` ORDER BY id`
	if f.Limit > 0 {
		args = append(args, f.Limit)
		query += fmt.Sprintf(" LIMIT $%d", len(args))
	}
	rows, err := s.DB.QueryContext(ctx, query, args...)
	if err != nil {
		return nil, postgres.Classify(err, "list quarantine")
	}
	defer rows.Close()
	var out []QuarantineEntry
	for rows.Next() {
		var (
			e        QuarantineEntry
			payload  sql.NullString
			errs     []byte
			replayed sql.NullTime
		)
		if err := rows.Scan(&e.ID, &e.Integration, &e.RunID, &e.Page, &e.Index, &e.Key, &e.Step,
			&payload, &e.PayloadText, &errs, &e.CreatedAt, &replayed, &e.ReplayRunID); err != nil {
			return nil, postgres.Classify(err, "list quarantine")
		}
		if payload.Valid {
			e.Payload = json.RawMessage(payload.String)
		}
		if err := decodeJSON(errs, &e.Errors, fmt.Sprintf("quarantine %d errors", e.ID)); err != nil {
			return nil, err
		}
		if replayed.Valid {
			t := replayed.Time
			e.ReplayedAt = &t
		}
		out = append(out, e)
	}
	if err := rows.Err(); err != nil {
		return nil, postgres.Classify(err, "list quarantine")
	}
	return out, nil
}

// CountQuarantine counts the quarantined records f selects.
func (s *Store) CountQuarantine(ctx context.Context, f QuarantineFilter) (int, error) {
	where, args := f.where()
	var n int
	err := s.DB.QueryRowContext(ctx, `SELECT count(*) FROM tether_quarantine`+where, args...).Scan(&n)
	return n, postgres.Classify(err, "count quarantine")
}

// MarkReplayed records that the replay run replayRunID applied the
// quarantined records ids (records it found still invalid stay pending). Records already marked keep their first replay; pass the
// replay batch's transaction as q.
func (s *Store) MarkReplayed(ctx context.Context, q Querier, ids []int64, replayRunID string) error {
	if len(ids) == 0 {
		return nil
	}
	_, err := s.on(q).ExecContext(ctx, `
UPDATE tether_quarantine SET replayed_at = now(), replay_run_id = $2
WHERE id = ANY($1) AND replayed_at IS NULL`, pq.Int64Array(ids), replayRunID)
	return postgres.Classify(err, fmt.Sprintf("mark %d quarantined records replayed by run %q", len(ids), replayRunID))
}

// MaxQuarantineID is the largest quarantine ID of an integration (0 when
// none): the upper bound of a replay.
func (s *Store) MaxQuarantineID(ctx context.Context, integration string) (int64, error) {
	var id int64
	err := s.DB.QueryRowContext(ctx,
		`SELECT coalesce(max(id), 0) FROM tether_quarantine WHERE integration = $1`, integration).Scan(&id)
	return id, postgres.Classify(err, fmt.Sprintf("newest quarantined record of %q", integration))
}

// UnmarkReplayed puts back in the pending list the records a replay run had
// marked, once that run was compensated: its applies were rolled back.
func (s *Store) UnmarkReplayed(ctx context.Context, replayRunID string) error {
	_, err := s.DB.ExecContext(ctx, `
UPDATE tether_quarantine q SET replayed_at = NULL, replay_run_id = NULL
WHERE q.replay_run_id = $1 AND NOT EXISTS (
    -- met again since and pending under another entry: that one stays
    SELECT 1 FROM tether_quarantine p
    WHERE p.replayed_at IS NULL AND p.integration = q.integration AND p.record_key = q.record_key
      AND (q.record_key <> '' OR md5(coalesce(p.payload::text, p.payload_text, '')) = md5(coalesce(q.payload::text, q.payload_text, ''))))`, replayRunID)
	return postgres.Classify(err, fmt.Sprintf("put back the records replayed by run %q", replayRunID))
}

// Supersede resolves the pending entries of keys a sync run has just
// applied a valid version of: they are marked with the applying run, as a
// replay would, so the pending list shows only what is still broken. Pass
// the batch's transaction as q.
func (s *Store) Supersede(ctx context.Context, q Querier, integration string, keys []string, runID string) error {
	if len(keys) == 0 {
		return nil
	}
	_, err := s.on(q).ExecContext(ctx, `
UPDATE tether_quarantine SET replayed_at = now(), replay_run_id = $3
WHERE integration = $1 AND record_key = ANY($2) AND record_key <> '' AND replayed_at IS NULL`,
		integration, pq.StringArray(keys), runID)
	return postgres.Classify(err, fmt.Sprintf("resolve the quarantined records run %q applied", runID))
}
