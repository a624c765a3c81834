package pipeline

import (
	"context"
	"database/sql"
	"encoding/json"
	"errors"
	"fmt"
	"maps"
	"slices"
	"strings"
	"time"

	"github.com/tetherflow/tether/activities/connector/pgsink"
	"github.com/tetherflow/tether/activities/integration"
	"github.com/tetherflow/tether/activities/lib/failure"
	"github.com/tetherflow/tether/activities/lib/mapping"
	"github.com/tetherflow/tether/activities/lib/postgres"
	"github.com/tetherflow/tether/activities/lib/schema"
	"github.com/tetherflow/tether/activities/store"
	"github.com/tetherflow/tether/activities/syncstep"
)

// Quarantine step of an event refused before it reached a destination.
const stepEvent = "event"

// ApplyEvents applies a batch of change events (webhooks, captured row
// changes) to the integration's destinations in one transaction: the
// deliveries are recorded (a redelivered event is counted a duplicate and
// skipped), each entity's events are reduced to the newest (older ones are
// stale, equal or unversioned earlier ones superseded), upserts are
// validated against the integration's JSON Schema and transformed as a
// sync's records are, deletions remove (or tombstone) the row, and the
// destination's version column skips an event older than the stored row.
// Invalid events are quarantined with their reasons. A retry after a
// failure applies the whole batch again; after a commit, it finds every
// delivery recorded and changes nothing.
//
// It is run as a local activity by EventsWorkflow (webhooks) and called by
// change capture in its own transaction; it needs PostgreSQL destinations.
func (a *Activities) ApplyEvents(ctx context.Context, in syncstep.ApplyEventsInput) (syncstep.ApplyEventsOutput, error) {
	c, err := a.get(in.Integration, "")
	if err != nil {
		return syncstep.ApplyEventsOutput{}, err
	}
	if err := a.ensureTables(ctx, c); err != nil {
		return syncstep.ApplyEventsOutput{}, err
	}
	tx, err := a.db.BeginTx(ctx, nil)
	if err != nil {
		return syncstep.ApplyEventsOutput{}, postgres.Classify(err, "begin applying events")
	}
	defer tx.Rollback() //nolint:errcheck // no-op after commit
	counts, err := a.applyEvents(ctx, tx, c, in.Ref, in.Events)
	if err != nil {
		return syncstep.ApplyEventsOutput{}, err
	}
	if err := tx.Commit(); err != nil {
		return syncstep.ApplyEventsOutput{}, postgres.Classify(err, fmt.Sprintf("commit %d events of %q", len(in.Events), in.Integration))
	}
	now := time.Now().UTC()
	a.deps.Metrics.applied(in.Integration, counts, in.Events, now)
	return syncstep.ApplyEventsOutput{Counts: counts, AppliedAt: now}, nil
}

// ensureTables makes sure c's destination tables exist, once per
// compiled version.
func (a *Activities) ensureTables(ctx context.Context, c *compiled) error {
	if c.ensured.Load() {
		return nil
	}
	for _, st := range c.steps {
		if st.pg == nil {
			continue
		}
		if err := st.pg.Ensure(ctx, a.db); err != nil {
			return err
		}
	}
	c.ensured.Store(true)
	return nil
}

// EventsSupported says why integration c cannot apply events, or nil.
func EventsSupported(def integration.Definition) error {
	for _, d := range def.Steps() {
		if d.Postgres == nil {
			return failure.Permanent(failure.TypeConfig, fmt.Errorf(
				"integration %q: destination %q is %s; events (webhooks, change capture) are applied to PostgreSQL destinations only, HTTP destinations are written by syncs",
				def.Name, d.Name, d.Kind()))
		}
	}
	return nil
}

// eventBatch is a batch of events on its way to the destinations.
type eventBatch struct {
	c       *compiled
	ref     syncstep.PageRef
	events  []syncstep.Event
	counts  syncstep.EventCounts
	bad     []store.QuarantineEntry
	upserts *pageEntry // the winning upserts, transformed
	deletes []int      // indexes of the winning deletions
	// refusedRows are the upserts (positions in upserts.rows) a
	// destination refused, refusedDeletes the deletions (event indexes).
	refusedRows    map[int]bool
	refusedDeletes map[int]bool
}

// applyEvents applies events to c's destinations inside tx.
func (a *Activities) applyEvents(ctx context.Context, tx *sql.Tx, c *compiled, ref syncstep.PageRef, events []syncstep.Event) (syncstep.EventCounts, error) {
	if err := EventsSupported(c.def); err != nil {
		return syncstep.EventCounts{}, err
	}
	b := &eventBatch{c: c, ref: ref, events: events, counts: syncstep.EventCounts{Received: len(events)},
		upserts: &pageEntry{}, refusedRows: map[int]bool{}, refusedDeletes: map[int]bool{}}
	// Deliveries with an id are recorded (a redelivery is skipped);
	// captured changes have none: re-reading them after a crash applies
	// them again, which changes nothing.
	var ds []store.Delivery
	var at []int
	for i, ev := range events {
		if ev.DeliveryID != "" {
			ds, at = append(ds, store.Delivery{Source: ev.Source, ID: ev.DeliveryID, Key: ev.Key}), append(at, i)
		}
	}
	recorded, err := a.store.RecordDeliveries(ctx, tx, c.def.Name, ds)
	if err != nil {
		return syncstep.EventCounts{}, err
	}
	fresh := make([]bool, len(events))
	for i := range fresh {
		fresh[i] = true
	}
	for j, i := range at {
		fresh[i] = recorded[j]
	}
	for _, i := range b.winners(fresh) {
		if events[i].Delete {
			b.deletes = append(b.deletes, i) // its row is made per destination (deleteRow)
		} else {
			b.upsert(i)
		}
	}
	seenRun := ""
	if holder, ok, err := a.store.CurrentWriter(ctx, c.def.Name); err != nil {
		return syncstep.EventCounts{}, err
	} else if ok && holder.Kind == store.KindRefresh {
		// A refresh sweeps the rows it did not see: an entity an event
		// writes during it is seen.
		seenRun = holder.RunID
	}
	for i, st := range c.steps {
		if err := a.eventStep(ctx, tx, b, st, i == 0, seenRun); err != nil {
			return syncstep.EventCounts{}, err
		}
	}
	if len(b.bad) > 0 {
		if _, err := a.store.Quarantine(ctx, tx, b.bad); err != nil {
			return syncstep.EventCounts{}, err
		}
	}
	var applied []string
	for pos, key := range b.upserts.rowKeys {
		if !b.refusedRows[pos] {
			applied = append(applied, key)
		}
	}
	if err := a.store.Supersede(ctx, tx, c.def.Name, applied, ref.RunID); err != nil {
		return syncstep.EventCounts{}, err
	}
	return b.counts, nil
}

// winners counts duplicates and invalid events and picks, for every
// entity, the event to apply: the newest version, or the last to arrive
// when versions are equal or missing. It returns their indexes in order of
// arrival of each entity's first event.
func (b *eventBatch) winners(fresh []bool) []int {
	winner := map[string]int{}
	var keys []string
	for i, ev := range b.events {
		switch {
		case !fresh[i]:
			b.counts.Duplicates++
			continue
		case len(ev.Invalid) > 0:
			details := make([]store.ErrorDetail, len(ev.Invalid))
			for j, reason := range ev.Invalid {
				details[j] = store.ErrorDetail{Keyword: "event", Message: reason}
			}
			b.quarantine(i, stepEvent, details...)
			continue
		case ev.Key == "":
			b.quarantine(i, store.StepKey, store.ErrorDetail{Keyword: "key", Message: "event has no entity key"})
			continue
		}
		w, seen := winner[ev.Key]
		if !seen {
			winner[ev.Key] = i
			keys = append(keys, ev.Key)
			continue
		}
		prev := b.events[w]
		if ev.Version != "" && prev.Version != "" {
			// Equal versions spelled differently ("Z" and "+00:00") are equal.
			switch cmp := compareValues(ev.Version, prev.Version, true); {
			case cmp < 0:
				b.counts.Stale++ // this one is older
				continue
			case cmp > 0:
				b.counts.Stale++ // the one it replaces is older
				winner[ev.Key] = i
				continue
			}
		}
		b.counts.Superseded++
		winner[ev.Key] = i
	}
	out := make([]int, len(keys))
	for j, k := range keys {
		out[j] = winner[k]
	}
	return out
}

// quarantine keeps event i with the reasons it was not applied.
func (b *eventBatch) quarantine(i int, step string, details ...store.ErrorDetail) {
	ev := b.events[i]
	payload := ev.Record
	if len(payload) == 0 {
		payload = json.RawMessage(`null`)
	}
	b.bad = append(b.bad, store.QuarantineEntry{
		Integration: b.c.def.Name, RunID: b.ref.RunID, Page: b.ref.Page, Index: i,
		Key: ev.Key, Step: step, Payload: payload, Errors: details,
	})
	b.counts.Quarantined++
}

// record decodes event i's record as an object, quarantining it when it
// is not one.
func (b *eventBatch) record(i int) (map[string]any, bool) {
	v, err := schema.Decode(b.events[i].Record)
	if err != nil {
		b.quarantine(i, store.StepValidate, store.ErrorDetail{Keyword: "json", Message: "record is not valid JSON: " + err.Error()})
		return nil, false
	}
	rec, ok := v.(map[string]any)
	if !ok {
		b.quarantine(i, store.StepValidate, store.ErrorDetail{Keyword: "type", Message: fmt.Sprintf("record is a JSON %s, not an object", jsonKind(v))})
		return nil, false
	}
	return rec, true
}

// upsert validates and transforms winning event i into a row.
func (b *eventBatch) upsert(i int) {
	ev, c := b.events[i], b.c
	rec, ok := b.record(i)
	if !ok {
		return
	}
	if key, ok := scalarString(lookup(rec, c.keyPath)); !ok || key != ev.Key {
		b.quarantine(i, store.StepKey, store.ErrorDetail{Pointer: pointer(c.keyPath), Keyword: "key",
			Message: fmt.Sprintf("the event is about entity %q but the record's %s is %q", ev.Key, c.def.KeyField, key)})
		return
	}
	if errs := c.validator.Validate(rec); len(errs) > 0 {
		details := make([]store.ErrorDetail, len(errs))
		for j, fe := range errs {
			details[j] = store.ErrorDetail{Pointer: fe.Pointer, Keyword: fe.Keyword, Message: fe.Message}
		}
		b.quarantine(i, store.StepValidate, details...)
		return
	}
	row, err := c.transform(rec)
	if err != nil {
		b.quarantine(i, store.StepTransform, transformDetail(err))
		return
	}
	e := b.upserts
	e.raw = append(e.raw, ev.Record)
	e.rows = append(e.rows, pgsink.Row(row))
	e.rowIndex = append(e.rowIndex, i)
	e.rowKeys = append(e.rowKeys, ev.Key)
}

// deleteRow is the row naming the key (and version) event i deletes in
// step st's table: the deleted record transformed like an upsert's when it
// can be, else the event's key and version in the table's key and version
// columns (single-column keys only).
func (b *eventBatch) deleteRow(st *step, i int) (pgsink.Row, error) {
	ev := b.events[i]
	t := st.pg.Table()
	if len(ev.Record) > 0 {
		if v, err := schema.Decode(ev.Record); err == nil {
			if rec, ok := v.(map[string]any); ok {
				if row, err := b.c.transform(rec); err == nil {
					if st.mapping == nil {
						return row, nil
					}
					if out, err := st.mapping(row); err == nil {
						return out, nil
					}
				}
			}
		}
	}
	if len(t.Key) != 1 {
		return nil, fmt.Errorf("destination %q has a composite key (%s): a deletion must carry the deleted record, which must transform", st.dest.Name, strings.Join(t.Key, ", "))
	}
	row := pgsink.Row{t.Key[0]: ev.Key}
	if t.VersionColumn != "" && ev.Version != "" {
		row[t.VersionColumn] = ev.Version
	}
	return row, nil
}

// eventStep writes the batch's upserts and deletions to one destination.
// Rows it refuses are quarantined and, like a sync's, not sent to later
// steps; only the first step's outcome is counted.
func (a *Activities) eventStep(ctx context.Context, tx *sql.Tx, b *eventBatch, st *step, first bool, seenRun string) error {
	if e := b.upserts; len(e.rows) > len(b.refusedRows) {
		sb, err := a.batchFor(ctx, tx, st, e, slices.Collect(maps.Keys(b.refusedRows)), nil, nil)
		if err != nil {
			return err
		}
		for _, rf := range sb.refused {
			b.refuseRow(rf.pos, store.StepTransform, store.ErrorDetail{Keyword: rf.keyword, Message: rf.message})
		}
		res, err := st.pg.Upsert(ctx, tx, sb.rows, pgsink.UpsertOptions{SeenRun: seenRun})
		if err != nil {
			return err // classified
		}
		for _, rj := range res.Rejected {
			b.refuseRow(sb.pos[rj.Index], store.StepApply, store.ErrorDetail{Keyword: "sqlstate " + rj.SQLState,
				Message: fmt.Sprintf("destination %q: %s", st.dest.Name, rj.Err)})
		}
		if first {
			b.counts.Inserted += res.Inserted
			b.counts.Updated += res.Updated
			b.counts.Unchanged += res.Unchanged
			b.counts.Stale += res.Stale
		}
	}
	if len(b.deletes) == 0 || b.c.def.Events.Deletes == integration.DeletesIgnore {
		if first {
			b.counts.Unchanged += len(b.deletes)
		}
		return nil
	}
	var rows []pgsink.Row
	var which []int
	for _, i := range b.deletes {
		if b.refusedDeletes[i] {
			continue
		}
		row, err := b.deleteRow(st, i)
		if err != nil {
			b.refusedDeletes[i] = true
			b.quarantine(i, store.StepApply, store.ErrorDetail{Keyword: "delete", Message: err.Error()})
			continue
		}
		rows, which = append(rows, row), append(which, i)
	}
	res, err := st.pg.Delete(ctx, tx, rows, pgsink.DeleteOptions{Tombstone: b.c.def.Events.TombstoneColumn})
	if err != nil {
		return err // classified
	}
	for _, rj := range res.Rejected {
		i := which[rj.Index]
		b.refusedDeletes[i] = true
		b.quarantine(i, store.StepApply, store.ErrorDetail{Keyword: "sqlstate " + rj.SQLState,
			Message: fmt.Sprintf("destination %q: deleting: %s", st.dest.Name, rj.Err)})
	}
	if first {
		b.counts.Deleted += res.Updated
		b.counts.Unchanged += res.Unchanged
		b.counts.Stale += res.Stale
	}
	return nil
}

// refuseRow quarantines the upsert at position pos among the batch's rows
// and keeps it from later destinations.
func (b *eventBatch) refuseRow(pos int, step string, d store.ErrorDetail) {
	if b.refusedRows[pos] {
		return
	}
	b.refusedRows[pos] = true
	b.quarantine(b.upserts.rowIndex[pos], step, d)
}

// transformDetail describes a transformation's failure.
func transformDetail(err error) store.ErrorDetail {
	d := store.ErrorDetail{Keyword: "transform", Message: err.Error()}
	var fe *mapping.FieldError
	if errors.As(err, &fe) {
		d.Pointer = fe.Pointer
	}
	return d
}
