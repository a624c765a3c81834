package pipeline

import (
	"bytes"
	"context"
	"crypto/sha256"
	"database/sql"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"maps"
	"net/http"
	"slices"
	"sort"
	"strings"

	"github.com/tetherflow/tether/activities/connector/httpsink"
	"github.com/tetherflow/tether/activities/connector/pgsink"
	"github.com/tetherflow/tether/activities/integration"
	"github.com/tetherflow/tether/activities/lib/failure"
	"github.com/tetherflow/tether/activities/lib/mapping"
	"github.com/tetherflow/tether/activities/lib/postgres"
	"github.com/tetherflow/tether/activities/lib/progress"
	"github.com/tetherflow/tether/activities/store"
	"github.com/tetherflow/tether/activities/syncstep"
)

// step is one destination of an integration, compiled: exactly one of pg
// and http is set.
type step struct {
	dest     integration.Destination // with its defaults (integration.Steps)
	pg       *pgsink.Sink
	http     *httpsink.Sink
	reversal *httpsink.Sink // notify destinations with a reversal
	mapping  mapping.Func   // nil: the integration's row as it is
	ids      []idField
}

// idField fills a row field with the id an earlier step's destination gave
// the record.
type idField struct {
	field, namespace string
}

func compileSteps(def integration.Definition, d Deps) ([]*step, error) {
	var errs []error
	defs := def.Steps()
	byName := map[string]integration.Destination{}
	steps := make([]*step, 0, len(defs))
	for _, dest := range defs {
		st := &step{dest: dest}
		var err error
		switch {
		case dest.Postgres != nil:
			st.pg, err = pgsink.New(*dest.Postgres)
		case dest.HTTP != nil:
			// The sink's metrics are labelled with the integration and the step.
			opts := func(destination string) []httpsink.Option {
				return append([]httpsink.Option{httpsink.WithLogger(d.Logger), httpsink.WithDestination(def.Name, destination)}, d.SinkOptions...)
			}
			st.http, err = httpsink.New(def.Name+"/"+dest.Name, *dest.HTTP, opts(dest.Name)...)
			if err == nil && dest.Reversal != nil {
				rc := *dest.HTTP
				rc.Create = *dest.Reversal
				rc.Batch = httpsink.Batch{}
				st.reversal, err = httpsink.New(def.Name+"/"+dest.Name+" reversal", rc, opts(dest.Name+"/reversal")...)
			}
		}
		if err != nil {
			errs = append(errs, fmt.Errorf("destination %q: %w", dest.Name, err))
		}
		if len(dest.Mapping.Fields) > 0 {
			fn, err := dest.Mapping.Compile()
			if err != nil {
				errs = append(errs, fmt.Errorf("destination %q: mapping: %w", dest.Name, err))
			}
			st.mapping = fn
		}
		for _, field := range slices.Sorted(maps.Keys(dest.IDs)) {
			st.ids = append(st.ids, idField{field: field, namespace: byName[dest.IDs[field]].Identity})
		}
		byName[dest.Name] = dest
		steps = append(steps, st)
	}
	return steps, errors.Join(errs...)
}

// stepNames lists the steps of a saga for the plan; nil for one step.
func stepNames(steps []*step) []string {
	if len(steps) < 2 {
		return nil
	}
	names := make([]string, len(steps))
	for i, st := range steps {
		names[i] = st.dest.Name
	}
	return names
}

func (c *compiled) step(i int) (*step, error) {
	if i < 0 || i >= len(c.steps) {
		return nil, failure.Permanent(failure.TypeConfig, fmt.Errorf(
			"integration %q has %d destinations, not a step %d: was the integration changed under a running sync? Start a new run",
			c.def.Name, len(c.steps), i))
	}
	return c.steps[i], nil
}

// refusal is a row a step did not apply, with the reason it is
// quarantined.
type refusal struct {
	pos              int // among the page's transformed rows
	keyword, message string
}

// stepBatch is the part of a page one step writes.
type stepBatch struct {
	pos     []int // rows[i] is the page's transformed row pos[i]
	keys    []string
	rows    []pgsink.Row
	out     syncstep.ApplyOutput
	refused []refusal
	claims  map[int]string // match values the rows' keys own (first step)
}

// batchFor picks the page's rows the step writes (every row earlier steps
// did not refuse) and shapes them for it: ids from earlier steps, then the
// step's mapping. A row the mapping refuses is this step's refusal.
func (a *Activities) batchFor(ctx context.Context, q store.Querier, st *step, e *pageEntry, skip []int, m *matcher, merges map[int]string) (*stepBatch, error) {
	skipped := make(map[int]bool, len(skip))
	for _, p := range skip {
		skipped[p] = true
	}
	b := &stepBatch{}
	for p := range e.rows {
		if skipped[p] {
			continue
		}
		b.pos = append(b.pos, p)
		if owner, ok := merges[p]; ok {
			b.keys = append(b.keys, owner)
			b.out.Duplicates++ // merged into the entity first seen as owner
		} else {
			b.keys = append(b.keys, e.rowKeys[p])
		}
	}
	plain := len(st.ids) == 0 && st.mapping == nil
	ids := make([]map[string]store.Identity, len(st.ids))
	for i, f := range st.ids {
		known, err := a.store.LookupIdentities(ctx, q, f.namespace, b.keys)
		if err != nil {
			return nil, err
		}
		ids[i] = known
	}
	pos, keys := b.pos[:0:0], b.keys[:0:0]
	for i, p := range b.pos {
		row := e.rows[p]
		if owner, ok := merges[p]; ok {
			row = m.mergedRow(row, owner)
		}
		if !plain {
			row = maps.Clone(row)
			for j, f := range st.ids {
				if id, ok := ids[j][b.keys[i]]; ok {
					row[f.field] = id.ExternalID
				} else {
					row[f.field] = nil
				}
			}
		}
		if st.mapping != nil {
			out, err := st.mapping(row)
			if err != nil {
				b.refused = append(b.refused, refusal{pos: p, keyword: "transform", message: fmt.Sprintf("destination %q: %v", st.dest.Name, err)})
				continue
			}
			row = out
		}
		pos, keys = append(pos, p), append(keys, b.keys[i])
		b.rows = append(b.rows, row)
	}
	b.pos, b.keys = pos, keys
	return b, nil
}

// applyPostgres upserts the step's rows in tx; a refresh run's batch also
// records their keys as seen, for SweepRefresh.
func (a *Activities) applyPostgres(ctx context.Context, tx *sql.Tx, st *step, in syncstep.ApplyInput, b *stepBatch) error {
	opt := pgsink.UpsertOptions{BeforeImages: in.Atomic, RunID: in.Ref.RunID, Seq: in.Seq}
	if in.Kind == store.KindRefresh {
		opt.SeenRun = in.Ref.RunID // the keys the run's sweep keeps
	}
	res, err := st.pg.Upsert(ctx, tx, b.rows, opt)
	if err != nil {
		return err // classified; the workflow adds the page
	}
	b.out.Inserted, b.out.Updated, b.out.Unchanged = res.Inserted, res.Updated, res.Unchanged
	b.out.Stale = res.Stale
	b.out.Duplicates += res.Duplicates
	for _, rj := range res.Rejected {
		b.refused = append(b.refused, refusal{pos: b.pos[rj.Index], keyword: "sqlstate " + rj.SQLState, message: rj.Err})
	}
	return nil
}

// httpSent is what an HTTP step's calls did, to record in the batch's
// transaction.
type httpSent struct {
	identities []store.Identity
	sentIDs    map[string]string
}

// sendHTTP sends the step's rows to its API before the batch's
// transaction: unchanged rows (the identity map holds the same row) are
// not sent, known records are updated under the id the API gave them
// (upsert mode), others are created with an idempotency key derived from
// the run, key and row, so a retried call never creates a second object.
// In an atomic run, an image of every record is committed first, so a
// compensation knows what the calls may have done even when the batch
// never commits.
func (a *Activities) sendHTTP(ctx context.Context, st *step, in syncstep.ApplyInput, b *stepBatch) (*httpSent, error) {
	if err := a.checkNotFenced(ctx, in.Ref.RunID); err != nil {
		return nil, err
	}
	ns := st.dest.Identity
	known, err := a.store.LookupIdentities(ctx, a.db, ns, b.keys)
	if err != nil {
		return nil, err
	}
	// An earlier attempt at this batch may have sent some records already.
	done := map[string]store.IdentityImage{}
	if in.Atomic {
		images, err := a.store.IdentityImages(ctx, in.Ref.RunID, ns, in.Seq)
		if err != nil {
			return nil, err
		}
		for _, im := range images {
			if im.SentID != "" {
				done[im.Key] = im
			}
		}
	}
	// The last row of a key wins, as in a PostgreSQL destination.
	last := make(map[string]int, len(b.rows))
	for i, k := range b.keys {
		last[k] = i
	}
	var (
		records []httpsink.Record
		recRow  []int // records[j] is b.rows[recRow[j]]
		bodies  [][]byte
		images  []store.IdentityImage
	)
	for i, row := range b.rows {
		key := b.keys[i]
		if last[key] != i {
			b.out.Duplicates++
			continue
		}
		body, err := json.Marshal(row)
		if err != nil {
			b.refused = append(b.refused, refusal{pos: b.pos[i], keyword: "json", message: fmt.Sprintf("destination %q: row is not JSON: %v", st.dest.Name, err)})
			continue
		}
		prior, ok := known[key]
		if ok && prior.RowHash == rowHash(body) {
			// Sent by an earlier attempt of this very batch (which failed
			// part-way): counted as what that attempt did.
			if im, mine := done[key]; mine && prior.RunID == in.Ref.RunID && im.SentID == prior.ExternalID {
				if im.Existed {
					b.out.Updated++
				} else {
					b.out.Inserted++
				}
				continue
			}
			b.out.Unchanged++
			continue
		}
		rec := httpsink.Record{Key: key, Row: row, IdempotencyKey: httpsink.IdempotencyKey(in.Ref.RunID, key, row)}
		if ok && st.dest.Mode == integration.ModeUpsert {
			rec.ExternalID = prior.ExternalID
		}
		records, recRow, bodies = append(records, rec), append(recRow, i), append(bodies, body)
		images = append(images, store.IdentityImage{Key: key, Seq: in.Seq, Existed: ok, Prior: prior,
			IdempotencyKey: rec.IdempotencyKey, SentRow: body})
	}
	if len(records) == 0 {
		return &httpSent{}, nil
	}
	if in.Atomic {
		firstPerRun := st.dest.Mode == integration.ModeUpsert
		if err := a.store.RecordIdentityImages(ctx, a.db, in.Ref.RunID, ns, in.Seq, firstPerRun, images); err != nil {
			return nil, err
		}
	}
	stop := heartbeat(ctx, fmt.Sprintf("sending %d records to %s", len(records), st.dest.Name))
	defer stop()
	res, err := st.http.Apply(ctx, records)
	if err != nil {
		// Keep what is known before failing: the objects created or
		// updated (so a retry updates them and compensation finds their
		// ids), and the records the API refused outright (4xx), which
		// compensation has nothing to undo for.
		if perr := a.recordPartial(ctx, st, in, records, bodies, res); perr != nil {
			a.log.Warn("recording a failed batch's partial outcome failed", "destination", st.dest.Name, "error", perr)
		}
		return nil, err // classified: throttled, circuit open, transient or permanent
	}
	// An object deleted in the destination since it was last sent (404 or
	// 410 on its update) is created again.
	var again []int
	for j, r := range res.Records {
		if r.Outcome == httpsink.OutcomeConflict && records[j].ExternalID != "" &&
			(r.Status == http.StatusNotFound || r.Status == http.StatusGone) {
			again = append(again, j)
		}
	}
	if len(again) > 0 {
		recs := make([]httpsink.Record, len(again))
		for i, j := range again {
			recs[i] = records[j]
			recs[i].ExternalID = ""
		}
		res2, err := st.http.Apply(ctx, recs)
		if err != nil {
			return nil, err
		}
		for i, j := range again {
			res.Records[j] = res2.Records[i]
		}
	}
	sent := &httpSent{sentIDs: map[string]string{}}
	for j, r := range res.Records {
		i := recRow[j]
		switch r.Outcome {
		case httpsink.OutcomeCreated, httpsink.OutcomeUpdated:
			if r.Outcome == httpsink.OutcomeCreated {
				b.out.Inserted++
			} else {
				b.out.Updated++
			}
			sent.identities = append(sent.identities, store.Identity{Key: records[j].Key, ExternalID: r.ExternalID,
				RowHash: rowHash(bodies[j]), LastRow: bodies[j]})
			sent.sentIDs[records[j].Key] = r.ExternalID
		case httpsink.OutcomeConflict:
			b.refused = append(b.refused, refusal{pos: b.pos[i], keyword: "conflict",
				message: fmt.Sprintf("destination %q: %s", st.dest.Name, r.Err)})
		default: // rejected (superseded cannot happen: keys are unique here)
			b.refused = append(b.refused, refusal{pos: b.pos[i], keyword: "rejected",
				message: fmt.Sprintf("destination %q: %s", st.dest.Name, r.Err)})
		}
	}
	return sent, nil
}

// recordPartial records what an Apply that failed part-way did: the
// identities of the records it created or updated, and, in an atomic run,
// their ids in the images; the images of records the API refused with a
// 4xx answer (not 408 or 429) are dropped, as nothing was written for them.
func (a *Activities) recordPartial(ctx context.Context, st *step, in syncstep.ApplyInput, records []httpsink.Record, bodies [][]byte, res httpsink.Result) error {
	sent := &httpSent{sentIDs: map[string]string{}}
	var refused []store.IdentityImage
	for j, r := range res.Records {
		switch {
		case r.Outcome == httpsink.OutcomeCreated || r.Outcome == httpsink.OutcomeUpdated:
			sent.identities = append(sent.identities, store.Identity{Key: records[j].Key, ExternalID: r.ExternalID,
				RowHash: rowHash(bodies[j]), LastRow: bodies[j]})
			sent.sentIDs[records[j].Key] = r.ExternalID
		case r.Outcome == "" && r.Status >= 400 && r.Status < 500 &&
			r.Status != http.StatusRequestTimeout && r.Status != http.StatusTooManyRequests:
			refused = append(refused, store.IdentityImage{Key: records[j].Key, Seq: in.Seq})
		}
	}
	tx, err := a.db.BeginTx(ctx, nil)
	if err != nil {
		return postgres.Classify(err, "begin recording a partial batch")
	}
	defer tx.Rollback() //nolint:errcheck // no-op after commit
	if err := a.saveHTTP(ctx, tx, st, in, sent); err != nil {
		return err
	}
	if in.Atomic {
		if err := a.store.DropIdentityImages(ctx, tx, in.Ref.RunID, st.dest.Identity, refused); err != nil {
			return err
		}
	}
	return postgres.Classify(tx.Commit(), "commit a partial batch")
}

// saveHTTP records, in the batch's transaction, the identities the calls
// created or updated and the ids they got.
func (a *Activities) saveHTTP(ctx context.Context, tx *sql.Tx, st *step, in syncstep.ApplyInput, sent *httpSent) error {
	if err := a.store.SaveIdentities(ctx, tx, st.dest.Identity, in.Ref.RunID, sent.identities); err != nil {
		return err
	}
	if !in.Atomic {
		return nil
	}
	return a.store.SetImageSentIDs(ctx, tx, in.Ref.RunID, st.dest.Identity, in.Seq, sent.sentIDs)
}

// checkNotFenced refuses to call a destination for a run that is being
// compensated (UpdateRun fences the transaction; this fences the calls).
func (a *Activities) checkNotFenced(ctx context.Context, runID string) error {
	run, err := a.store.GetRun(ctx, runID)
	if errors.Is(err, sql.ErrNoRows) {
		return nil // StartRun records every run; tests may call a step alone
	}
	if err != nil {
		return postgres.Classify(err, "read run "+runID)
	}
	if run.Status == progress.StatusCompensating || run.Status == progress.StatusCompensated {
		return failure.Permanent(failure.TypeRunFenced, fmt.Errorf(
			"run %s is %s: no destination is called for it any more; start a new run instead of resetting this one",
			runID, strings.ToLower(run.Status)), runID)
	}
	return nil
}

// rowHash identifies a row's content (its JSON, keys sorted).
func rowHash(body []byte) string {
	sum := sha256.Sum256(body)
	return hex.EncodeToString(sum[:])
}

// compensateHTTP undoes batch seq of a run in an HTTP destination, record
// by record, each consumed once undone: an upsert destination's objects
// the run created are deleted and those it changed get their previous row
// back; a notify destination's notifications get their reversal. A
// transient failure is returned for a retry (records done stay done); the
// records that cannot be undone are listed in a permanent
// failure.TypeCompensation error, to repair by hand.
func (a *Activities) compensateHTTP(ctx context.Context, st *step, runID string, seq int) (int, error) {
	ns := st.dest.Identity
	images, err := a.store.IdentityImages(ctx, runID, ns, seq)
	if err != nil {
		return 0, err
	}
	var left []string
	undone := 0
	for _, im := range images {
		if err := a.undoHTTP(ctx, st, runID, im); err != nil {
			if !failure.IsPermanent(err) {
				return undone, err
			}
			left = append(left, fmt.Sprintf("%s: %v", im.Key, err))
			continue
		}
		if err := a.store.UndoIdentity(ctx, runID, ns, im); err != nil {
			return undone, err
		}
		undone++
	}
	if len(left) > 0 {
		sort.Strings(left)
		return undone, failure.Permanent(failure.TypeCompensation, fmt.Errorf(
			"destination %q, batch %d: %d of %d records could not be undone; repair them by hand (their images stay in tether_identity_images, namespace %q): %s",
			st.dest.Name, seq, len(left), len(images), ns, strings.Join(left, "; ")))
	}
	return undone, nil
}

// undoHTTP undoes one record's call.
func (a *Activities) undoHTTP(ctx context.Context, st *step, runID string, im store.IdentityImage) error {
	sentRow, err := decodeRow(im.SentRow)
	if err != nil {
		return failure.Permanent(failure.TypeCompensation, fmt.Errorf("the row sent is unreadable: %v", err))
	}
	if st.dest.Mode == integration.ModeUpsert && im.Existed {
		prior, err := decodeRow(im.Prior.LastRow)
		if err != nil || prior == nil {
			return failure.Permanent(failure.TypeCompensation, fmt.Errorf("no readable previous row to restore %s with", im.Prior.ExternalID))
		}
		return st.http.Restore(ctx, im.Prior.ExternalID, prior)
	}
	if st.dest.Mode == integration.ModeNotify && st.reversal == nil {
		return nil // nothing declared to undo a notification with
	}
	id := im.SentID
	if id == "" {
		// The call's answer was never recorded (the worker stopped, or the
		// batch failed after it): ask again under the same idempotency key,
		// which answers with the object the first call created, if any.
		res, err := st.http.Apply(ctx, []httpsink.Record{{Key: im.Key, Row: sentRow, IdempotencyKey: im.IdempotencyKey}})
		if err != nil {
			return err
		}
		r := res.Records[0]
		if r.Outcome == httpsink.OutcomeRejected || r.Outcome == httpsink.OutcomeConflict {
			// The API refuses the create (it replays its first answer):
			// nothing was created, so nothing is left to undo.
			return nil
		}
		if r.Outcome != httpsink.OutcomeCreated {
			return failure.Permanent(failure.TypeCompensation, fmt.Errorf(
				"could not learn the id of the object created under idempotency key %s: %s %s", im.IdempotencyKey, r.Outcome, r.Err))
		}
		id = r.ExternalID
	}
	if st.dest.Mode == integration.ModeUpsert {
		return st.http.Delete(ctx, id, sentRow)
	}
	res, err := st.reversal.Apply(ctx, []httpsink.Record{{
		Key:            im.Key,
		Row:            map[string]any{"reversal_of": id, "record": json.RawMessage(im.SentRow)},
		IdempotencyKey: "reversal-" + im.IdempotencyKey,
	}})
	if err != nil {
		return err
	}
	if r := res.Records[0]; r.Outcome != httpsink.OutcomeCreated {
		return failure.Permanent(failure.TypeCompensation, fmt.Errorf("the reversal of %s was refused: %s", id, r.Err))
	}
	return nil
}

func decodeRow(b json.RawMessage) (map[string]any, error) {
	if len(b) == 0 {
		return nil, nil
	}
	dec := json.NewDecoder(bytes.NewReader(b))
	dec.UseNumber()
	var row map[string]any
	err := dec.Decode(&row)
	return row, err
}
