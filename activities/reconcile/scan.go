package reconcile

import (
	"context"
	"crypto/md5"
	"database/sql"
	"encoding/binary"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"time"

	"github.com/lib/pq"
	"go.temporal.io/sdk/activity"

	"github.com/tetherflow/tether/activities/catalog"
	"github.com/tetherflow/tether/activities/connector"
	"github.com/tetherflow/tether/activities/connector/pgsink"
	"github.com/tetherflow/tether/activities/integration"
	"github.com/tetherflow/tether/activities/lib/cursor"
	"github.com/tetherflow/tether/activities/lib/failure"
	"github.com/tetherflow/tether/activities/lib/postgres"
	"github.com/tetherflow/tether/activities/lib/record"
	"github.com/tetherflow/tether/activities/lib/schema"
	"github.com/tetherflow/tether/activities/syncstep"
)

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
	s := resumeScan(ctx, c, in, base)
	if !drill && len(s.Digests) != in.Chunks {
		return syncstep.ReconcileScanOutput{}, failure.Permanent(failure.TypeConfig, fmt.Errorf("scan state has %d chunks, want %d", len(s.Digests), in.Chunks))
	}
	// Records staged after the last heartbeat are staged again.
	if _, err := a.DB.ExecContext(ctx, `DELETE FROM tether_reconcile_rows WHERE reconcile_id = $1 AND ord >= $2 AND ord < $3`,
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
		done, err := a.scanNextPage(ctx, c, st, in, &s, wanted, limit)
		if err != nil {
			return s.Out, err
		}
		if done {
			break
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

// resumeScan returns the position a retried scan heartbeated, or a fresh
// one whose staged records are numbered from base.
func resumeScan(ctx context.Context, c *catalog.Integration, in syncstep.ReconcileScanInput, base int64) scanState {
	var s scanState
	if activity.HasHeartbeatDetails(ctx) {
		if err := activity.GetHeartbeatDetails(ctx, &s); err != nil {
			s = scanState{}
		}
	}
	if !s.Started {
		s = scanState{Started: true, Ord: base}
		if c.Def.CursorField != "" {
			s.Since = cursor.Checkpoint{Cursor: c.Def.InitialCursor}
		}
		if len(in.Drill) == 0 {
			s.Digests = make([][3]uint64, in.Chunks)
		}
	}
	return s
}

// scanNextPage reads the page at the scan's position, digests or stages
// its records, and moves the position past it. It reports done after the
// source's last page.
func (a *Activities) scanNextPage(ctx context.Context, c *catalog.Integration, st *pgsink.Sink, in syncstep.ReconcileScanInput,
	s *scanState, wanted map[int]bool, limit int) (done bool, err error) {
	drill := len(in.Drill) > 0
	page, err := c.Source.Fetch(ctx, connector.Request{Integration: in.Integration, Position: s.Position, Since: s.Since, Limit: limit, Unconditional: true})
	if err != nil {
		return false, err
	}
	s.Out.Pages++
	var only map[int]bool
	if drill {
		only = wanted
	}
	recs, err := a.scanPage(ctx, c, st.Writer(), page.Records, s.Since, in.Chunks, only)
	if err != nil {
		return false, err
	}
	if stage := s.tally(recs, drill, wanted); len(stage) > 0 {
		if err := a.stageReconcileRows(ctx, in.ReconcileID, s.Ord, stage); err != nil {
			return false, err
		}
		s.Ord += int64(len(stage))
		s.Out.Staged += len(stage)
	}
	if page.Done {
		return true, nil
	}
	return false, s.advance(c, page, in.Integration)
}

// tally counts a page's scanned records and adds the valid ones to their
// chunk's digest (first scan). It returns the records to stage: the
// invalid ones (first scan), or the valid ones of the wanted chunks (the
// second, drill).
func (s *scanState) tally(recs []scannedRecord, drill bool, wanted map[int]bool) []stagedRecord {
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
	return stage
}

// advance moves the scan past a page that is not the source's last: after
// its last (cursor, key) when the source has a cursor that moved, else to
// the page's next position.
func (s *scanState) advance(c *catalog.Integration, page connector.Page, integration string) error {
	last := cursor.Checkpoint{}
	if len(c.CursorPath) > 0 {
		last = record.Last(page.Records, c.CursorPath, c.KeyPath)
	}
	switch {
	case len(c.CursorPath) > 0 && !last.IsZero() && cursor.Compare(last, s.Since) > 0:
		s.Since, s.Position = last, cursor.Position{}
	case page.Next == s.Position:
		return failure.Permanent(failure.TypeSourceMalformed, fmt.Errorf(
			"source of %q: page %d is not the last but gives no next position: the read cannot go on", integration, s.Out.Pages))
	default:
		s.Position = page.Next
	}
	return nil
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
func (a *Activities) scanPage(ctx context.Context, c *catalog.Integration, sink *pgsink.TableWriter, raws []json.RawMessage, since cursor.Checkpoint, chunks int, only map[int]bool) ([]scannedRecord, error) {
	out := make([]scannedRecord, len(raws))
	var rows []connector.Row
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
		key, hasKey := record.Scalar(record.Lookup(rec, c.KeyPath))
		r.sourceKey = key
		if len(c.CursorPath) > 0 && !since.IsZero() {
			if cur, ok := record.Scalar(record.Lookup(rec, c.CursorPath)); ok &&
				cursor.Compare(cursor.Checkpoint{Cursor: cur, Key: key}, since) <= 0 {
				r.skipped = true
				continue
			}
		}
		if !hasKey || (only == nil && len(c.Validator.Validate(v)) > 0) {
			r.invalid = true
			continue
		}
		row, err := c.Transform(rec)
		if err != nil {
			r.invalid = true
			continue
		}
		rows = append(rows, connector.Row(row))
		rowAt = append(rowAt, i)
		decoded = append(decoded, v)
	}
	if len(rows) == 0 {
		return out, nil
	}
	texts, rejected, err := sink.RowTexts(ctx, a.DB, rows)
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
		if only != nil && only[r.chunk] && len(c.Validator.Validate(decoded[t.Index])) > 0 {
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
	_, err := a.DB.ExecContext(ctx, `
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
	tx, err := a.DB.BeginTx(ctx, nil)
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
