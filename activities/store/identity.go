package store

import (
	"context"
	"database/sql"
	"encoding/json"
	"fmt"

	"github.com/lib/pq"
	"github.com/tetherflow/tether/activities/connector"
	"github.com/tetherflow/tether/activities/lib/postgres"
)

// LookupIdentities returns the identities of keys in namespace, by key.
// Keys the map does not know are absent.
func (s *Store) LookupIdentities(ctx context.Context, q Querier, namespace string, keys []string) (map[string]connector.Identity, error) {
	out := make(map[string]connector.Identity, len(keys))
	if len(keys) == 0 {
		return out, nil
	}
	what := fmt.Sprintf("look up %d identities in %q", len(keys), namespace)
	rows, err := s.on(q).QueryContext(ctx, `
SELECT record_key, external_id, row_hash, coalesce(last_row, 'null'::jsonb), run_id
FROM tether_identities WHERE namespace = $1 AND record_key = ANY($2)`, namespace, pq.Array(keys))
	if err != nil {
		return nil, postgres.Classify(err, what)
	}
	defer rows.Close()
	for rows.Next() {
		var id connector.Identity
		var last []byte
		if err := rows.Scan(&id.Key, &id.ExternalID, &id.RowHash, &last, &id.RunID); err != nil {
			return nil, postgres.Classify(err, what)
		}
		id.LastRow = json.RawMessage(last)
		out[id.Key] = id
	}
	return out, postgres.Classify(rows.Err(), what)
}

// SaveIdentities records, in the batch's transaction q, the ids and rows
// just sent to namespace's destination by runID.
func (s *Store) SaveIdentities(ctx context.Context, q Querier, namespace, runID string, ids []connector.Identity) error {
	if len(ids) == 0 {
		return nil
	}
	keys, exts, hashes, rowsJSON := make([]string, len(ids)), make([]string, len(ids)), make([]string, len(ids)), make([]sql.NullString, len(ids))
	for i, id := range ids {
		keys[i], exts[i], hashes[i] = id.Key, id.ExternalID, id.RowHash
		rowsJSON[i] = nullJSON(id.LastRow)
	}
	_, err := s.on(q).ExecContext(ctx, `
INSERT INTO tether_identities AS t (namespace, record_key, external_id, row_hash, last_row, run_id)
SELECT $1, k, e, h, r::jsonb, $6 FROM unnest($2::text[], $3::text[], $4::text[], $5::text[]) AS u(k, e, h, r)
ON CONFLICT (namespace, record_key) DO UPDATE SET external_id = excluded.external_id,
    row_hash = excluded.row_hash, last_row = excluded.last_row, run_id = excluded.run_id, updated_at = now()`,
		namespace, pq.Array(keys), pq.Array(exts), pq.Array(hashes), pq.Array(rowsJSON), runID)
	return postgres.Classify(err, fmt.Sprintf("save %d identities in %q", len(ids), namespace))
}

// RecordIdentityImages keeps, before namespace's destination is called
// for batch seq of runID, an image of every record about to be sent. With
// firstPerRun, a record the run already imaged in an earlier batch keeps
// that image (the state before the run); otherwise (notifications, which
// are each undone) every batch keeps its own. Images already recorded for
// this batch (a retried attempt) are kept.
func (s *Store) RecordIdentityImages(ctx context.Context, q Querier, runID, namespace string, seq int, firstPerRun bool, images []connector.IdentityImage) error {
	if len(images) == 0 {
		return nil
	}
	n := len(images)
	keys, priorIDs, priorHashes, priorRuns, idems := make([]string, n), make([]string, n), make([]string, n), make([]string, n), make([]string, n)
	existed := make([]bool, n)
	priorRows, sent := make([]sql.NullString, n), make([]sql.NullString, n)
	for i, im := range images {
		keys[i], existed[i], idems[i] = im.Key, im.Existed, im.IdempotencyKey
		priorIDs[i], priorHashes[i], priorRuns[i] = im.Prior.ExternalID, im.Prior.RowHash, im.Prior.RunID
		priorRows[i], sent[i] = nullJSON(im.Prior.LastRow), nullJSON(im.SentRow)
	}
	_, err := s.on(q).ExecContext(ctx, `
INSERT INTO tether_identity_images (run_id, namespace, record_key, seq, existed, prior_id, prior_hash, prior_row,
    prior_run_id, idempotency_key, sent_row)
SELECT $1, $2, k, $3, x, pid, ph, pr::jsonb, prun, idem, sr::jsonb
FROM unnest($4::text[], $5::bool[], $6::text[], $7::text[], $8::text[], $9::text[], $10::text[], $11::text[])
    AS u(k, x, pid, ph, pr, prun, idem, sr)
WHERE NOT $12 OR NOT EXISTS (SELECT 1 FROM tether_identity_images i
    WHERE i.run_id = $1 AND i.namespace = $2 AND i.record_key = u.k AND i.seq <> $3)
ON CONFLICT (run_id, namespace, record_key, seq) DO NOTHING`,
		runID, namespace, seq, pq.Array(keys), pq.BoolArray(existed), pq.Array(priorIDs), pq.Array(priorHashes),
		pq.Array(priorRows), pq.Array(priorRuns), pq.Array(idems), pq.Array(sent), firstPerRun)
	return postgres.Classify(err, fmt.Sprintf("record %d identity images of batch %d of run %q in %q", n, seq, runID, namespace))
}

// SetImageSentIDs records, in the batch's transaction q, the ids the
// destination gave the rows batch seq sent, by key.
func (s *Store) SetImageSentIDs(ctx context.Context, q Querier, runID, namespace string, seq int, sentIDs map[string]string) error {
	if len(sentIDs) == 0 {
		return nil
	}
	keys, ids := make([]string, 0, len(sentIDs)), make([]string, 0, len(sentIDs))
	for k, id := range sentIDs {
		keys, ids = append(keys, k), append(ids, id)
	}
	_, err := s.on(q).ExecContext(ctx, `
UPDATE tether_identity_images i SET sent_id = u.id
FROM unnest($4::text[], $5::text[]) AS u(k, id)
WHERE i.run_id = $1 AND i.namespace = $2 AND i.seq = $3 AND i.record_key = u.k`,
		runID, namespace, seq, pq.Array(keys), pq.Array(ids))
	return postgres.Classify(err, fmt.Sprintf("record the ids of batch %d of run %q in %q", seq, runID, namespace))
}

// IdentityImages returns the images batch seq of runID left in namespace,
// in key order.
func (s *Store) IdentityImages(ctx context.Context, runID, namespace string, seq int) ([]connector.IdentityImage, error) {
	what := fmt.Sprintf("read the identity images of batch %d of run %q in %q", seq, runID, namespace)
	rows, err := s.DB.QueryContext(ctx, `
SELECT record_key, existed, prior_id, prior_hash, coalesce(prior_row, 'null'::jsonb), prior_run_id,
    idempotency_key, coalesce(sent_row, 'null'::jsonb), sent_id
FROM tether_identity_images WHERE run_id = $1 AND namespace = $2 AND seq = $3 ORDER BY record_key`, runID, namespace, seq)
	if err != nil {
		return nil, postgres.Classify(err, what)
	}
	defer rows.Close()
	var out []connector.IdentityImage
	for rows.Next() {
		im := connector.IdentityImage{Seq: seq}
		var prior, sent []byte
		if err := rows.Scan(&im.Key, &im.Existed, &im.Prior.ExternalID, &im.Prior.RowHash, &prior, &im.Prior.RunID,
			&im.IdempotencyKey, &sent, &im.SentID); err != nil {
			return nil, postgres.Classify(err, what)
		}
		im.Prior.Key = im.Key
		im.Prior.LastRow, im.SentRow = nullRaw(prior), nullRaw(sent)
		out = append(out, im)
	}
	return out, postgres.Classify(rows.Err(), what)
}

// UndoIdentity consumes one image once its destination call is undone:
// the identity goes back to its prior state (or is forgotten when the run
// created it), unless a later run has sent the record since.
func (s *Store) UndoIdentity(ctx context.Context, runID, namespace string, im connector.IdentityImage) error {
	what := fmt.Sprintf("undo the identity of %q in %q for run %q", im.Key, namespace, runID)
	tx, err := s.DB.BeginTx(ctx, nil)
	if err != nil {
		return postgres.Classify(err, what)
	}
	defer tx.Rollback() //nolint:errcheck // no-op after commit
	if im.Existed {
		_, err = tx.ExecContext(ctx, `
UPDATE tether_identities SET external_id = $3, row_hash = $4, last_row = $5::jsonb, run_id = $6, updated_at = now()
WHERE namespace = $1 AND record_key = $2 AND run_id = $7`,
			namespace, im.Key, im.Prior.ExternalID, im.Prior.RowHash, nullJSON(im.Prior.LastRow), im.Prior.RunID, runID)
	} else {
		_, err = tx.ExecContext(ctx, `DELETE FROM tether_identities WHERE namespace = $1 AND record_key = $2 AND run_id = $3`,
			namespace, im.Key, runID)
	}
	if err == nil {
		_, err = tx.ExecContext(ctx, `DELETE FROM tether_identity_images WHERE run_id = $1 AND namespace = $2 AND record_key = $3 AND seq = $4`,
			runID, namespace, im.Key, im.Seq)
	}
	if err != nil {
		return postgres.Classify(err, what)
	}
	return postgres.Classify(tx.Commit(), what)
}

// LastIdentityImageSeq returns the highest batch of runID with identity
// images left in namespace (0 when none).
func (s *Store) LastIdentityImageSeq(ctx context.Context, runID, namespace string) (int, error) {
	var seq int
	err := s.DB.QueryRowContext(ctx, `SELECT coalesce(max(seq), 0) FROM tether_identity_images WHERE run_id = $1 AND namespace = $2`,
		runID, namespace).Scan(&seq)
	return seq, postgres.Classify(err, fmt.Sprintf("find the identity images of run %q in %q", runID, namespace))
}

// ForgetIdentityImages forgets the identity images a finished run left in
// namespace.
func (s *Store) ForgetIdentityImages(ctx context.Context, runID, namespace string) error {
	_, err := s.DB.ExecContext(ctx, `DELETE FROM tether_identity_images WHERE run_id = $1 AND namespace = $2`, runID, namespace)
	return postgres.Classify(err, fmt.Sprintf("drop the identity images of run %q in %q", runID, namespace))
}

// DropIdentityImages forgets the images of records (key and batch) whose
// calls the destination refused: there is nothing to undo for them.
func (s *Store) DropIdentityImages(ctx context.Context, q Querier, runID, namespace string, images []connector.IdentityImage) error {
	if len(images) == 0 {
		return nil
	}
	keys, seqs := make([]string, len(images)), make([]int64, len(images))
	for i, im := range images {
		keys[i], seqs[i] = im.Key, int64(im.Seq)
	}
	_, err := s.on(q).ExecContext(ctx, `
DELETE FROM tether_identity_images i USING unnest($3::text[], $4::bigint[]) AS u(k, seq)
WHERE i.run_id = $1 AND i.namespace = $2 AND i.record_key = u.k AND i.seq = u.seq AND i.sent_id = ''`,
		runID, namespace, pq.Array(keys), pq.Array(seqs))
	return postgres.Classify(err, fmt.Sprintf("drop %d refused identity images of run %q in %q", len(images), runID, namespace))
}

func nullJSON(b json.RawMessage) sql.NullString {
	if len(b) == 0 || string(b) == "null" {
		return sql.NullString{}
	}
	return sql.NullString{String: string(b), Valid: true}
}

func nullRaw(b []byte) json.RawMessage {
	if string(b) == "null" {
		return nil
	}
	return json.RawMessage(b)
}

// MatchOwners returns, for each normalised match value the namespace
// knows, the key of the record that owns it.
func (s *Store) MatchOwners(ctx context.Context, q Querier, namespace string, values []string) (map[string]string, error) {
	out := make(map[string]string, len(values))
	if len(values) == 0 {
		return out, nil
	}
	what := fmt.Sprintf("look up %d match values in %q", len(values), namespace)
	rows, err := s.on(q).QueryContext(ctx,
		`SELECT match_value, record_key FROM tether_match_keys WHERE namespace = $1 AND match_value = ANY($2)`, namespace, pq.Array(values))
	if err != nil {
		return nil, postgres.Classify(err, what)
	}
	defer rows.Close()
	for rows.Next() {
		var v, k string
		if err := rows.Scan(&v, &k); err != nil {
			return nil, postgres.Classify(err, what)
		}
		out[v] = k
	}
	return out, postgres.Classify(rows.Err(), what)
}

// ClaimMatchValues records, in the batch's transaction q, that each key
// owns its match value (key → value), and forgets the values the key
// owned before (its record changed them). A value another key owns is
// left to it.
func (s *Store) ClaimMatchValues(ctx context.Context, q Querier, namespace, runID string, claims map[string]string) error {
	if len(claims) == 0 {
		return nil
	}
	keys, values := make([]string, 0, len(claims)), make([]string, 0, len(claims))
	for k, v := range claims {
		keys, values = append(keys, k), append(values, v)
	}
	what := fmt.Sprintf("claim %d match values in %q", len(claims), namespace)
	_, err := s.on(q).ExecContext(ctx, `
DELETE FROM tether_match_keys m USING unnest($2::text[], $3::text[]) AS u(k, v)
WHERE m.namespace = $1 AND m.record_key = u.k AND m.match_value <> u.v`, namespace, pq.Array(keys), pq.Array(values))
	if err == nil {
		_, err = s.on(q).ExecContext(ctx, `
INSERT INTO tether_match_keys (namespace, match_value, record_key, run_id)
SELECT $1, v, k, $4 FROM unnest($2::text[], $3::text[]) AS u(k, v)
ON CONFLICT (namespace, match_value) DO NOTHING`, namespace, pq.Array(keys), pq.Array(values), runID)
	}
	return postgres.Classify(err, what)
}
