package pipeline

import (
	"context"
	"crypto/md5"
	"database/sql"
	"encoding/binary"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"strings"
	"time"

	"github.com/lib/pq"
	"go.temporal.io/sdk/activity"

	"github.com/tetherflow/tether/activities/connector"
	"github.com/tetherflow/tether/activities/connector/pgsink"
	"github.com/tetherflow/tether/activities/integration"
	"github.com/tetherflow/tether/activities/lib/cursor"
	"github.com/tetherflow/tether/activities/lib/failure"
	"github.com/tetherflow/tether/activities/lib/postgres"
	"github.com/tetherflow/tether/activities/lib/progress"
	"github.com/tetherflow/tether/activities/lib/schema"
	"github.com/tetherflow/tether/activities/store"
	"github.com/tetherflow/tether/activities/syncstep"
)

// Reconciliation compares the source with the destination by key and
// content without holding either side in memory:
//
//  1. ReconcileScan reads the whole source once and folds every record into
//     the digest of its chunk: chunk = hash(key) mod Chunks, digest = count
//     and XOR of md5(key text, row text), where both texts are the ones
//     PostgreSQL gives the row once cast to the destination's column types
//     (pgsink.RowTexts), so equal texts mean the upsert would change nothing.
//     Only the Chunks digests are kept (and invalid records, staged for the
//     repair's quarantine).
//  2. ReconcileCompare computes the destination's digests in one GROUP BY
//     inside PostgreSQL and returns the chunks that differ.
//  3. Only when some do, ReconcileScan reads the source again and stages the
//     records of those chunks; ReconcileClassify compares them key by key
//     with the destination rows of those chunks: missing, changed, extra.
//  4. The workflow repairs missing and changed records through a child sync
//     run of kind repair (FetchRepairPage feeds it the staged records, and
//     validate, transform and apply run as in any sync), and deletes, marks
//     or only reports the extras.

// Chunk counts: by default about 16 destination rows per chunk, so that
// drift touching 1% of the rows leaves most chunks equal, within bounds
// that keep the digests small (24 bytes a chunk).
const (
	MinChunks     = 1024
	MaxChunks     = 65536
	rowsPerChunk  = 16
	heartbeatEach = 10 * time.Second
)

// chunksFor is the default chunk count for a table of rows rows: a power
// of two between MinChunks and MaxChunks.
func chunksFor(rows int64) int {
	n := MinChunks
	for n < MaxChunks && int64(n)*rowsPerChunk < rows {
		n *= 2
	}
	return n
}

// sampleSize is how many keys per class a report lists.
const sampleSize = 10

// ordPass spaces the staged records of the two scans apart.
const ordPass = int64(1) << 40

// ReconcileBegin checks the integration can be reconciled, takes its
// writer lease (unless a dry run), and records the reconciliation.
func (a *Activities) ReconcileBegin(ctx context.Context, in syncstep.ReconcileBeginInput) (syncstep.ReconcilePlan, error) {
	c, err := a.get(in.Integration, "")
	if err != nil {
		return syncstep.ReconcilePlan{}, err
	}
	st, err := reconcilable(c)
	if err != nil {
		return syncstep.ReconcilePlan{}, err
	}
	plan := syncstep.ReconcilePlan{
		Definition: c.fingerprint, Chunks: c.def.Reconcile.Chunks, Extras: c.def.Reconcile.Extras,
		MarkColumn: c.def.Reconcile.MarkColumn, BatchSize: c.def.BatchSize, Table: st.pg.String(),
	}
	if err := st.pg.Ensure(ctx, a.db); err != nil {
		return plan, err
	}
	if plan.Chunks == 0 {
		var rows int64
		if err := a.db.QueryRowContext(ctx, `SELECT count(*) FROM `+st.pg.Exprs().Target).Scan(&rows); err != nil {
			return plan, postgres.Classify(err, "count the rows of "+st.pg.String())
		}
		plan.Chunks = chunksFor(rows)
	}
	if in.Extras != "" {
		plan.Extras = in.Extras
	}
	if plan.Extras == "" {
		plan.Extras = integration.ExtrasReport
	}
	switch plan.Extras {
	case integration.ExtrasReport, integration.ExtrasDelete:
	case integration.ExtrasMark:
		if plan.MarkColumn == "" {
			return plan, failure.Permanent(failure.TypeConfig, fmt.Errorf(
				"integration %q: extras %q needs reconcile.mark_column: the timestamptz column that marks a row deleted", in.Integration, plan.Extras))
		}
	default:
		return plan, failure.Permanent(failure.TypeConfig, fmt.Errorf(
			"extras %q is not %q, %q or %q", plan.Extras, integration.ExtrasReport, integration.ExtrasDelete, integration.ExtrasMark))
	}
	if !in.DryRun {
		if err := a.acquireWriter(ctx, syncstep.StartRunInput{
			Integration: in.Integration, RunID: in.ReconcileID, WorkflowID: in.WorkflowID, Kind: "reconcile", Trigger: in.Trigger,
		}); err != nil {
			return plan, err
		}
	}
	_, err = a.db.ExecContext(ctx, `
INSERT INTO tether_reconciliations (reconcile_id, integration, workflow_id, dry_run, extras_policy, status, chunks)
VALUES ($1, $2, $3, $4, $5, $6, $7)
ON CONFLICT (reconcile_id) DO UPDATE SET status = EXCLUDED.status, finished_at = NULL, error = NULL`,
		in.ReconcileID, in.Integration, in.WorkflowID, in.DryRun, plan.Extras, progress.StatusRunning, plan.Chunks)
	if err != nil {
		return plan, postgres.Classify(err, fmt.Sprintf("record reconciliation %q", in.ReconcileID))
	}
	return plan, nil
}

// reconcileTarget returns the pinned version of the integration and its
// PostgreSQL destination, or says why it cannot be reconciled.
func (a *Activities) reconcileTarget(name, pinned string) (*compiled, *step, error) {
	c, err := a.get(name, pinned)
	if err != nil {
		return nil, nil, err
	}
	st, err := reconcilable(c)
	return c, st, err
}

// reconcilable returns the integration's PostgreSQL destination, or says
// why it cannot be reconciled.
func reconcilable(c *compiled) (*step, error) {
	if len(c.steps) != 1 || c.steps[0].pg == nil {
		return nil, failure.Permanent(failure.TypeConfig, fmt.Errorf(
			"integration %q cannot be reconciled: reconciliation compares the source with one PostgreSQL destination table, and this integration writes to %v",
			c.def.Name, stepKinds(c.steps)))
	}
	return c.steps[0], nil
}

func stepKinds(steps []*step) []string {
	out := make([]string, len(steps))
	for i, s := range steps {
		out[i] = s.dest.Name + " (" + s.dest.Kind() + ")"
	}
	return out
}

// scanState is a scan's position, heartbeated so a retried scan resumes.
type scanState struct {
	Position cursor.Position   `json:"position"`
	Since    cursor.Checkpoint `json:"since"`
	Out      syncstep.ReconcileScanOutput
	Ord      int64       `json:"ord"`
	Digests  [][3]uint64 `json:"digests,omitempty"`
	Started  bool        `json:"started"`
}

// ReconcileScan reads the whole source (see the package comment above):
// the first scan digests every chunk, the second (in.Drill set) stages the
// records of the chunks that differ. It heartbeats its position and
// resumes there when retried.
func (a *Activities) ReconcileScan(ctx context.Context, in syncstep.ReconcileScanInput) (syncstep.ReconcileScanOutput, error) {
	c, st, err := a.reconcileTarget(in.Integration, in.Definition)
	if err != nil {
		return syncstep.ReconcileScanOutput{}, err
	}
	drill := len(in.Drill) > 0
	base := ordPass
	if drill {
		base = 2 * ordPass
	}
	var s scanState
	if activity.HasHeartbeatDetails(ctx) {
		if err := activity.GetHeartbeatDetails(ctx, &s); err != nil {
			s = scanState{}
		}
	}
	if !s.Started {
		s = scanState{Started: true, Ord: base}
		if c.def.CursorField != "" {
			s.Since = cursor.Checkpoint{Cursor: c.def.InitialCursor}
		}
		if !drill {
			s.Digests = make([][3]uint64, in.Chunks)
		}
	}
	if !drill && len(s.Digests) != in.Chunks {
		return syncstep.ReconcileScanOutput{}, failure.Permanent(failure.TypeConfig, fmt.Errorf("scan state has %d chunks, want %d", len(s.Digests), in.Chunks))
	}
	// Records staged after the last heartbeat are staged again.
	if _, err := a.db.ExecContext(ctx, `DELETE FROM tether_reconcile_rows WHERE reconcile_id = $1 AND ord >= $2 AND ord < $3`,
		in.ReconcileID, s.Ord, base+ordPass); err != nil {
		return syncstep.ReconcileScanOutput{}, postgres.Classify(err, "reset staged reconciliation records")
	}
	wanted := make(map[int]bool, len(in.Drill))
	for _, ch := range in.Drill {
		wanted[ch] = true
	}
	lastBeat := time.Now()
	activity.RecordHeartbeat(ctx, s)
	limit := in.BatchSize
	if limit <= 0 {
		limit = integration.DefaultBatchSize
	}
	for {
		if err := ctx.Err(); err != nil {
			return s.Out, err
		}
		page, err := c.src.Fetch(ctx, connector.Request{Integration: in.Integration, Position: s.Position, Since: s.Since, Limit: limit, Unconditional: true})
		if err != nil {
			return s.Out, err
		}
		s.Out.Pages++
		var only map[int]bool
		if drill {
			only = wanted
		}
		recs, err := a.scanPage(ctx, c, st.pg, page.Records, s.Since, in.Chunks, only)
		if err != nil {
			return s.Out, err
		}
		var stage []stagedRecord
		for _, r := range recs {
			s.Out.Read++
			switch {
			case r.skipped:
				s.Out.Read--
			case r.invalid:
				s.Out.Invalid++
				if !drill {
					stage = append(stage, r.stagedRecord)
				}
			default:
				s.Out.Valid++
				if drill {
					if wanted[r.chunk] {
						stage = append(stage, r.stagedRecord)
					}
					continue
				}
				d := &s.Digests[r.chunk]
				d[0]++
				d[1] ^= r.h1
				d[2] ^= r.h2
			}
		}
		if len(stage) > 0 {
			if err := a.stageReconcileRows(ctx, in.ReconcileID, s.Ord, stage); err != nil {
				return s.Out, err
			}
			s.Ord += int64(len(stage))
			s.Out.Staged += len(stage)
		}
		if page.Done {
			break
		}
		last := cursor.Checkpoint{}
		if len(c.cursorPath) > 0 {
			last = lastPosition(page.Records, c.cursorPath, c.keyPath)
		}
		switch {
		case len(c.cursorPath) > 0 && !last.IsZero() && compareCheckpoints(last, s.Since) > 0:
			s.Since, s.Position = last, cursor.Position{}
		case page.Next == s.Position:
			return s.Out, failure.Permanent(failure.TypeSourceMalformed, fmt.Errorf(
				"source of %q: page %d is not the last but gives no next position: the read cannot go on", in.Integration, s.Out.Pages))
		default:
			s.Position = page.Next
		}
		// The state holds every digest: heartbeat it now and then, not
		// every page.
		if time.Since(lastBeat) >= heartbeatEach {
			activity.RecordHeartbeat(ctx, s)
			lastBeat = time.Now()
		}
	}
	if !drill {
		if err := a.saveDigests(ctx, in.ReconcileID, s.Digests); err != nil {
			return s.Out, err
		}
	}
	return s.Out, nil
}

// stagedRecord is a source record kept for the comparison by key (and
// the repair).
type stagedRecord struct {
	chunk     int
	keyText   string
	sourceKey string
	rowHash   string
	invalid   bool
	raw       json.RawMessage
}

// scannedRecord is one source record as a scan sees it.
type scannedRecord struct {
	stagedRecord
	skipped bool
	h1, h2  uint64
}

// scanPage validates and transforms a page's records, without side
// effects, and gives every valid one its chunk and content hash. With only
// set (the second read), the JSON Schema, the costliest check, is run on
// the records of those chunks alone: the others are not kept.
func (a *Activities) scanPage(ctx context.Context, c *compiled, sink *pgsink.Sink, raws []json.RawMessage, since cursor.Checkpoint, chunks int, only map[int]bool) ([]scannedRecord, error) {
	out := make([]scannedRecord, len(raws))
	var rows []pgsink.Row
	var rowAt []int
	var decoded []any
	for i, raw := range raws {
		r := &out[i]
		r.raw = raw
		v, err := schema.Decode(raw)
		rec, ok := v.(map[string]any)
		if err != nil || !ok {
			r.invalid = true
			continue
		}
		key, hasKey := scalarString(lookup(rec, c.keyPath))
		r.sourceKey = key
		if len(c.cursorPath) > 0 && !since.IsZero() {
			if cur, ok := scalarString(lookup(rec, c.cursorPath)); ok &&
				compareCheckpoints(cursor.Checkpoint{Cursor: cur, Key: key}, since) <= 0 {
				r.skipped = true
				continue
			}
		}
		if !hasKey || (only == nil && len(c.validator.Validate(v)) > 0) {
			r.invalid = true
			continue
		}
		row, err := c.transform(rec)
		if err != nil {
			r.invalid = true
			continue
		}
		rows = append(rows, pgsink.Row(row))
		rowAt = append(rowAt, i)
		decoded = append(decoded, v)
	}
	if len(rows) == 0 {
		return out, nil
	}
	texts, rejected, err := sink.RowTexts(ctx, a.db, rows)
	if err != nil {
		return nil, err
	}
	for _, rj := range rejected {
		out[rowAt[rj.Index]].invalid = true
	}
	seen := make([]bool, len(rows))
	for _, t := range texts {
		seen[t.Index] = true
		r := &out[rowAt[t.Index]]
		km := md5.Sum([]byte(t.Key))
		rh := md5.Sum([]byte(t.Key + t.Row))
		r.chunk = int(binary.BigEndian.Uint32(km[:4])&0x7fffffff) % chunks
		r.keyText = t.Key
		r.rowHash = hex.EncodeToString(rh[:])
		r.h1, r.h2 = binary.BigEndian.Uint64(rh[:8]), binary.BigEndian.Uint64(rh[8:])
		if only != nil && only[r.chunk] && len(c.validator.Validate(decoded[t.Index])) > 0 {
			r.invalid = true
		}
	}
	for j, ok := range seen {
		// A row collapsed into a later one with the same key is counted
		// once, as the upsert would write it once.
		if !ok && !out[rowAt[j]].invalid {
			out[rowAt[j]].skipped = true
		}
	}
	return out, nil
}

// stageReconcileRows keeps records for the comparison by key, numbered
// from ord.
func (a *Activities) stageReconcileRows(ctx context.Context, id string, ord int64, recs []stagedRecord) error {
	n := len(recs)
	ords, chunks := make([]int64, n), make([]int64, n)
	keys, srcKeys, hashes, classes, records := make([]string, n), make([]string, n), make([]string, n), make([]sql.NullString, n), make([]string, n)
	for i, r := range recs {
		ords[i], chunks[i] = ord+int64(i), int64(r.chunk)
		keys[i], srcKeys[i], hashes[i], records[i] = r.keyText, r.sourceKey, r.rowHash, string(r.raw)
		if r.invalid {
			classes[i] = sql.NullString{String: "invalid", Valid: true}
			if keys[i] == "" {
				keys[i] = "invalid:" + r.sourceKey
			}
		}
	}
	_, err := a.db.ExecContext(ctx, `
INSERT INTO tether_reconcile_rows (reconcile_id, ord, chunk, key_text, source_key, row_hash, class, record)
SELECT $1, o, c, k, sk, h, cl, r::jsonb
FROM unnest($2::bigint[], $3::int[], $4::text[], $5::text[], $6::text[], $7::text[], $8::text[]) AS u(o, c, k, sk, h, cl, r)
ON CONFLICT DO NOTHING`, id, pq.Array(ords), pq.Array(chunks), pq.Array(keys), pq.Array(srcKeys), pq.Array(hashes),
		pq.Array(classes), pq.Array(records))
	return postgres.Classify(err, fmt.Sprintf("stage %d records of reconciliation %q", n, id))
}

// saveDigests stores the source's chunk digests (chunks with no record
// are left out, as the destination's GROUP BY leaves them out).
func (a *Activities) saveDigests(ctx context.Context, id string, digests [][3]uint64) error {
	var chunks, ns, x1s, x2s []int64
	for ch, d := range digests {
		if d[0] == 0 {
			continue
		}
		chunks = append(chunks, int64(ch))
		ns = append(ns, int64(d[0]))
		x1s = append(x1s, int64(d[1]))
		x2s = append(x2s, int64(d[2]))
	}
	tx, err := a.db.BeginTx(ctx, nil)
	if err != nil {
		return postgres.Classify(err, "save chunk digests")
	}
	defer tx.Rollback() //nolint:errcheck // no-op after commit
	if _, err := tx.ExecContext(ctx, `DELETE FROM tether_reconcile_chunks WHERE reconcile_id = $1`, id); err != nil {
		return postgres.Classify(err, "save chunk digests")
	}
	if _, err := tx.ExecContext(ctx, `
INSERT INTO tether_reconcile_chunks (reconcile_id, chunk, n, x1, x2)
SELECT $1, c, n, x1, x2 FROM unnest($2::int[], $3::bigint[], $4::bigint[], $5::bigint[]) AS u(c, n, x1, x2)`,
		id, pq.Array(chunks), pq.Array(ns), pq.Array(x1s), pq.Array(x2s)); err != nil {
		return postgres.Classify(err, "save chunk digests")
	}
	return postgres.Classify(tx.Commit(), "save chunk digests")
}

// destRows is the destination's rows with their key text, content hash,
// chunk and key JSON ($1 the reconciliation, $2 the chunks), those a mark
// policy marked deleted left out.
func destRows(e pgsink.Exprs, markColumn string) string {
	var where []string
	if markColumn != "" {
		where = append(where, "t."+pq.QuoteIdentifier(markColumn)+" IS NULL")
	}
	if e.KeyColumn != "" {
		// A row whose source record is invalid now is neither compared
		// nor extra: the source still has the record (in quarantine).
		where = append(where, `NOT EXISTS (SELECT 1 FROM tether_reconcile_rows s
        WHERE s.reconcile_id = $1 AND s.class = 'invalid' AND s.source_key = `+e.KeyColumn+`)`)
	}
	cond := ""
	if len(where) > 0 {
		cond = "\n    WHERE " + strings.Join(where, " AND ")
	}
	return `SELECT k, md5(k || r) AS h, (('x' || substr(md5(k), 1, 8))::bit(32)::int & 2147483647) % $2 AS chunk, kj
FROM (SELECT ` + e.Key + ` AS k, ` + e.Row + ` AS r, ` + e.KeyJSON + ` AS kj
    FROM ` + e.Target + ` t` + cond + `) z`
}

// ReconcileCompare computes the destination's chunk digests inside
// PostgreSQL and returns the chunks whose digest differs from the source's.
func (a *Activities) ReconcileCompare(ctx context.Context, in syncstep.ReconcileCompareInput) (syncstep.ReconcileCompareOutput, error) {
	_, st, err := a.reconcileTarget(in.Integration, in.Definition)
	if err != nil {
		return syncstep.ReconcileCompareOutput{}, err
	}
	stop := heartbeat(ctx, "comparing chunk digests")
	defer stop()
	q := `WITH d AS (
    SELECT chunk, count(*) AS n,
           bit_xor(('x' || substr(h, 1, 16))::bit(64)::bigint) AS x1,
           bit_xor(('x' || substr(h, 17, 16))::bit(64)::bigint) AS x2
    FROM (` + destRows(st.pg.Exprs(), in.MarkColumn) + `) rows GROUP BY chunk
), s AS (SELECT chunk, n, x1, x2 FROM tether_reconcile_chunks WHERE reconcile_id = $1)
SELECT coalesce(d.chunk, s.chunk), coalesce(d.n, 0),
       d.chunk IS NULL OR s.chunk IS NULL OR d.n <> s.n OR d.x1 <> s.x1 OR d.x2 <> s.x2
FROM d FULL JOIN s ON s.chunk = d.chunk
ORDER BY 1`
	rows, err := a.db.QueryContext(ctx, q, in.ReconcileID, in.Chunks)
	if err != nil {
		return syncstep.ReconcileCompareOutput{}, postgres.Classify(err, "compare chunk digests with "+st.pg.String())
	}
	defer rows.Close()
	var out syncstep.ReconcileCompareOutput
	for rows.Next() {
		var (
			chunk, n int
			differs  bool
		)
		if err := rows.Scan(&chunk, &n, &differs); err != nil {
			return out, postgres.Classify(err, "compare chunk digests")
		}
		out.DestinationRows += n
		if differs {
			out.Differing = append(out.Differing, chunk)
		}
	}
	return out, postgres.Classify(rows.Err(), "compare chunk digests")
}

// ReconcileClassify compares, key by key, the staged source records of
// the differing chunks with the destination's rows of those chunks:
// missing (only in the source), changed (content differs), extra (only in
// the destination; a row whose key an invalid source record still has is
// not extra) and same. It is idempotent.
func (a *Activities) ReconcileClassify(ctx context.Context, in syncstep.ReconcileClassifyInput) (syncstep.ReconcileFound, error) {
	_, st, err := a.reconcileTarget(in.Integration, in.Definition)
	if err != nil {
		return syncstep.ReconcileFound{}, err
	}
	stop := heartbeat(ctx, "comparing differing chunks key by key")
	defer stop()
	tx, err := a.db.BeginTx(ctx, nil)
	if err != nil {
		return syncstep.ReconcileFound{}, postgres.Classify(err, "classify")
	}
	defer tx.Rollback() //nolint:errcheck // no-op after commit
	what := "compare differing chunks with " + st.pg.String()
	d := `d AS MATERIALIZED (SELECT * FROM (` + destRows(st.pg.Exprs(), in.MarkColumn) + `) rows WHERE chunk = ANY($3::int[]))`
	drill := pq.Array(intsToInt64(in.Drill))
	var compared int
	err = tx.QueryRowContext(ctx, `WITH `+d+`,
cls AS (
    UPDATE tether_reconcile_rows s SET class = CASE WHEN d.h = s.row_hash THEN 'same' ELSE 'changed' END
    FROM d WHERE s.reconcile_id = $1 AND s.class IS DISTINCT FROM 'invalid' AND s.key_text = d.k
),
missing AS (
    UPDATE tether_reconcile_rows s SET class = 'missing'
    WHERE s.reconcile_id = $1 AND s.class IS DISTINCT FROM 'invalid'
      AND NOT EXISTS (SELECT 1 FROM d WHERE d.k = s.key_text)
),
extras AS (
    INSERT INTO tether_reconcile_extras (reconcile_id, key_text, key)
    SELECT $1, d.k, d.kj FROM d
    WHERE NOT EXISTS (SELECT 1 FROM tether_reconcile_rows s WHERE s.reconcile_id = $1 AND s.key_text = d.k)
    ON CONFLICT DO NOTHING
)
SELECT count(*) FROM d`,
		in.ReconcileID, in.Chunks, drill).Scan(&compared)
	if err != nil {
		return syncstep.ReconcileFound{}, postgres.Classify(err, what)
	}
	found, err := reconcileFound(ctx, tx, in.ReconcileID)
	if err != nil {
		return found, err
	}
	found.RowsCompared = compared
	return found, postgres.Classify(tx.Commit(), what)
}

// reconcileFound counts a reconciliation's classes, with sample keys.
func reconcileFound(ctx context.Context, q store.Querier, id string) (syncstep.ReconcileFound, error) {
	found := syncstep.ReconcileFound{Samples: map[string][]string{}}
	rows, err := q.QueryContext(ctx, `
SELECT class, count(*), (array_agg(CASE WHEN source_key <> '' THEN source_key WHEN class = 'invalid' THEN '(no key)' ELSE key_text END ORDER BY ord))[1:10]
FROM tether_reconcile_rows WHERE reconcile_id = $1 AND class IN ('missing', 'changed', 'invalid') GROUP BY class
UNION ALL
SELECT 'extra', count(*), (array_agg(key_text ORDER BY key_text))[1:10]
FROM tether_reconcile_extras WHERE reconcile_id = $1 HAVING count(*) > 0`, id)
	if err != nil {
		return found, postgres.Classify(err, "count reconciliation findings")
	}
	defer rows.Close()
	for rows.Next() {
		var (
			class   string
			n       int
			samples []string
		)
		if err := rows.Scan(&class, &n, pq.Array(&samples)); err != nil {
			return found, postgres.Classify(err, "count reconciliation findings")
		}
		found.Samples[class] = samples
		switch class {
		case "missing":
			found.Missing = n
		case "changed":
			found.Changed = n
		case "invalid":
			found.Invalid = n
		case "extra":
			found.Extra = n
		}
	}
	return found, postgres.Classify(rows.Err(), "count reconciliation findings")
}

func intsToInt64(xs []int) []int64 {
	out := make([]int64, len(xs))
	for i, x := range xs {
		out[i] = int64(x)
	}
	return out
}

// FetchRepairPage stages the next page of records a reconciliation found
// missing, changed or invalid, like a fetched page, so its repair run
// sends them through validate, transform and apply.
func (a *Activities) FetchRepairPage(ctx context.Context, in syncstep.FetchRepairInput) (syncstep.FetchPageOutput, error) {
	if _, err := a.get(in.Integration, in.Definition); err != nil {
		return syncstep.FetchPageOutput{}, err
	}
	rows, err := a.db.QueryContext(ctx, `
SELECT ord, record::text FROM tether_reconcile_rows
WHERE reconcile_id = $1 AND ord > $2 AND class IN ('missing', 'changed', 'invalid')
ORDER BY ord LIMIT $3`, in.Reconcile, in.AfterOrd, in.Limit)
	if err != nil {
		return syncstep.FetchPageOutput{}, postgres.Classify(err, "read records to repair")
	}
	defer rows.Close()
	var records []json.RawMessage
	last := in.AfterOrd
	for rows.Next() {
		var text string
		if err := rows.Scan(&last, &text); err != nil {
			return syncstep.FetchPageOutput{}, postgres.Classify(err, "read records to repair")
		}
		records = append(records, json.RawMessage(text))
	}
	if err := rows.Err(); err != nil {
		return syncstep.FetchPageOutput{}, postgres.Classify(err, "read records to repair")
	}
	ref := in.Ref
	ref.Stage = newStageToken()
	out := syncstep.FetchPageOutput{Ref: ref, Count: len(records), Next: cursor.Position{Offset: int(last)},
		Done: len(records) < in.Limit}
	if len(records) == 0 {
		return out, nil
	}
	if err := a.stage(ctx, ref, records); err != nil {
		return syncstep.FetchPageOutput{}, err
	}
	return out, nil
}

// ReconcileExtras deletes or marks (policy) the destination rows the
// reconciliation found extra, in one transaction; a retry does nothing
// more.
func (a *Activities) ReconcileExtras(ctx context.Context, in syncstep.ReconcileExtrasInput) (int, error) {
	_, st, err := a.reconcileTarget(in.Integration, in.Definition)
	if err != nil {
		return 0, err
	}
	e := st.pg.Exprs()
	var q string
	switch in.Policy {
	case integration.ExtrasDelete:
		q = `WITH gone AS (
    DELETE FROM ` + e.Target + ` t USING tether_reconcile_extras x
    WHERE x.reconcile_id = $1 AND x.handled IS NULL AND x.key = ` + e.KeyJSON + `
    RETURNING ` + e.KeyJSON + ` AS kj
)
UPDATE tether_reconcile_extras x SET handled = 'deleted' FROM gone WHERE x.reconcile_id = $1 AND x.key = gone.kj`
	case integration.ExtrasMark:
		col := pq.QuoteIdentifier(in.MarkColumn)
		q = `WITH marked AS (
    UPDATE ` + e.Target + ` t SET ` + col + ` = now() FROM tether_reconcile_extras x
    WHERE x.reconcile_id = $1 AND x.handled IS NULL AND x.key = ` + e.KeyJSON + ` AND t.` + col + ` IS NULL
    RETURNING ` + e.KeyJSON + ` AS kj
)
UPDATE tether_reconcile_extras x SET handled = 'marked' FROM marked WHERE x.reconcile_id = $1 AND x.key = marked.kj`
	default:
		return 0, nil
	}
	tx, err := a.db.BeginTx(ctx, nil)
	if err != nil {
		return 0, postgres.Classify(err, "handle extra rows")
	}
	defer tx.Rollback() //nolint:errcheck // no-op after commit
	if _, err := tx.ExecContext(ctx, q, in.ReconcileID); err != nil {
		return 0, postgres.Classify(err, fmt.Sprintf("%s extra rows of %s", in.Policy, e.Target))
	}
	var n int
	if err := tx.QueryRowContext(ctx, `SELECT count(*) FROM tether_reconcile_extras WHERE reconcile_id = $1 AND handled IS NOT NULL`,
		in.ReconcileID).Scan(&n); err != nil {
		return 0, postgres.Classify(err, "count handled extra rows")
	}
	return n, postgres.Classify(tx.Commit(), "handle extra rows")
}

// ReconcileFinish records the report, releases the writer lease and drops
// the staged records (the report keeps the counts and sample keys).
func (a *Activities) ReconcileFinish(ctx context.Context, in syncstep.ReconcileFinishInput) error {
	r := in.Report
	samples, err := json.Marshal(r.Samples)
	if err != nil {
		return failure.Permanent(failure.TypeSinkSQL, fmt.Errorf("encode samples: %w", err))
	}
	_, err = a.db.ExecContext(ctx, `
UPDATE tether_reconciliations SET status = $2, finished_at = now(), chunks_differing = $3, source_read = $4,
    destination_rows = $5, rows_compared = $6, missing = $7, changed = $8, extra = $9, invalid = $10,
    repaired = $11, extras_handled = $12, samples = $13, error = nullif($14, '')
WHERE reconcile_id = $1`, in.ReconcileID, in.Status, r.ChunksDiffering, r.SourceRead, r.DestinationRows, r.RowsCompared,
		r.Missing, r.Changed, r.Extra, r.Invalid, r.Repaired, r.ExtrasHandled, string(samples), r.Error)
	if err != nil {
		return postgres.Classify(err, fmt.Sprintf("record the end of reconciliation %q", in.ReconcileID))
	}
	for _, t := range []string{"tether_reconcile_chunks", "tether_reconcile_rows", "tether_reconcile_extras"} {
		if _, err := a.db.ExecContext(ctx, `DELETE FROM `+t+` WHERE reconcile_id = $1`, in.ReconcileID); err != nil {
			return postgres.Classify(err, "drop the staged records of reconciliation "+in.ReconcileID)
		}
	}
	if err := a.store.ReleaseWriter(ctx, in.Integration, in.ReconcileID); err != nil {
		return err
	}
	return nil
}
