// Package events holds the activity that applies change events (signed
// webhooks, captured row changes) to an integration's destinations:
// ApplyEvents, run as a local activity by EventsWorkflow, and Apply, which
// change capture (package capture) calls in its own transaction. Each
// entity's events are reduced to the newest, validated and transformed as
// a sync's records are, and written in one transaction with the delivery
// ids that make a redelivery a no-op.
package events

import (
	"context"
	"database/sql"
	"encoding/json"
	"fmt"
	"maps"
	"slices"
	"time"

	"github.com/tetherflow/tether/activities/apply"
	"github.com/tetherflow/tether/activities/catalog"
	"github.com/tetherflow/tether/activities/connector"
	"github.com/tetherflow/tether/activities/connector/pgsink"
	"github.com/tetherflow/tether/activities/integration"
	"github.com/tetherflow/tether/activities/lib/cursor"
	"github.com/tetherflow/tether/activities/lib/failure"
	"github.com/tetherflow/tether/activities/lib/postgres"
	"github.com/tetherflow/tether/activities/lib/record"
	"github.com/tetherflow/tether/activities/lib/schema"
	"github.com/tetherflow/tether/activities/pages"
	"github.com/tetherflow/tether/activities/store"
	"github.com/tetherflow/tether/activities/syncstep"
	"github.com/tetherflow/tether/activities/transform"
	"github.com/tetherflow/tether/activities/validate"
	"go.temporal.io/sdk/activity"
	"go.temporal.io/sdk/worker"
)

// Activities applies events. Its fields are what it uses.
type Activities struct {
	Catalog *catalog.Catalog
	Store   *store.Store
	// DB is where an event batch's transaction runs.
	DB *sql.DB
	// Metrics counts the events (nil: none).
	Metrics *Metrics
}

// Register puts the activities of a on a worker, each under the name
// workflows call it by (package syncstep) (run as local activities).
func Register(r worker.ActivityRegistry, a *Activities) {
	r.RegisterActivityWithOptions(a.ApplyEvents, activity.RegisterOptions{Name: syncstep.ApplyEvents.Name()})
}

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
	c, err := a.Catalog.Get(in.Integration, "")
	if err != nil {
		return syncstep.ApplyEventsOutput{}, err
	}
	if err := c.PrepareOnce(ctx); err != nil {
		return syncstep.ApplyEventsOutput{}, err
	}
	tx, err := a.DB.BeginTx(ctx, nil)
	if err != nil {
		return syncstep.ApplyEventsOutput{}, postgres.Classify(err, "begin applying events")
	}
	defer tx.Rollback() //nolint:errcheck // no-op after commit
	counts, err := Apply(ctx, a.Store, tx, c, in.Ref, in.Events)
	if err != nil {
		return syncstep.ApplyEventsOutput{}, err
	}
	if err := tx.Commit(); err != nil {
		return syncstep.ApplyEventsOutput{}, postgres.Classify(err, fmt.Sprintf("commit %d events of %q", len(in.Events), in.Integration))
	}
	now := time.Now().UTC()
	a.Metrics.Applied(in.Integration, counts, in.Events, now)
	return syncstep.ApplyEventsOutput{Counts: counts, AppliedAt: now}, nil
}

// Supported says why integration def cannot apply events, or nil.
func Supported(def integration.Definition) error {
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
	c       *catalog.Integration
	ref     syncstep.PageRef
	events  []syncstep.Event
	counts  syncstep.EventCounts
	bad     []store.QuarantineEntry
	upserts *pages.Page // the winning upserts, transformed
	deletes []int       // indexes of the winning deletions
	// refusedRows are the upserts (positions in upserts.rows) a
	// destination refused, refusedDeletes the deletions (event indexes).
	refusedRows    map[int]bool
	refusedDeletes map[int]bool
}

// Apply applies events to c's destinations inside tx, with st's delivery
// ids, writer leases and quarantine.
func Apply(ctx context.Context, st *store.Store, tx *sql.Tx, c *catalog.Integration, ref syncstep.PageRef, events []syncstep.Event) (syncstep.EventCounts, error) {
	if err := Supported(c.Def); err != nil {
		return syncstep.EventCounts{}, err
	}
	b := &eventBatch{c: c, ref: ref, events: events, counts: syncstep.EventCounts{Received: len(events)},
		upserts: &pages.Page{}, refusedRows: map[int]bool{}, refusedDeletes: map[int]bool{}}
	// Deliveries with an id are recorded (a redelivery is skipped);
	// captured changes have none: re-reading them after a crash applies
	// them again, which changes nothing.
	var ds []store.Delivery
	var at []int
	for i, ev := range events {
		if ev.DeliveryID != "" {
			ds, at = append(ds, store.Delivery{Source: ev.Source, ID: ev.DeliveryID, Key: ev.Key, Sender: ev.Sender}), append(at, i)
		}
	}
	recorded, err := st.RecordDeliveries(ctx, tx, c.Def.Name, ds)
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
	if holder, ok, err := st.CurrentWriter(ctx, c.Def.Name); err != nil {
		return syncstep.EventCounts{}, err
	} else if ok && holder.Kind == store.KindRefresh {
		// A refresh sweeps the rows it did not see: an entity an event
		// writes during it is seen.
		seenRun = holder.RunID
	}
	for i, step := range c.Steps {
		if err := b.apply(ctx, st, tx, step, i == 0, seenRun); err != nil {
			return syncstep.EventCounts{}, err
		}
	}
	if len(b.bad) > 0 {
		if _, err := st.Quarantine(ctx, tx, b.bad); err != nil {
			return syncstep.EventCounts{}, err
		}
	}
	var applied []string
	for pos, key := range b.upserts.RowKeys {
		if !b.refusedRows[pos] {
			applied = append(applied, key)
		}
	}
	if err := st.Supersede(ctx, tx, c.Def.Name, applied, ref.RunID); err != nil {
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
			b.quarantine(i, store.StepEvent, details...)
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
			switch cmp := cursor.CompareValues(ev.Version, prev.Version, true); {
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
		Integration: b.c.Def.Name, RunID: b.ref.RunID, Page: b.ref.Page, Index: i,
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
		b.quarantine(i, store.StepValidate, store.ErrorDetail{Keyword: "type", Message: fmt.Sprintf("record is a JSON %s, not an object", record.Kind(v))})
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
	if key, ok := record.Scalar(record.Lookup(rec, c.KeyPath)); !ok || key != ev.Key {
		b.quarantine(i, store.StepKey, store.ErrorDetail{Pointer: record.Pointer(c.KeyPath), Keyword: "key",
			Message: fmt.Sprintf("the event is about entity %q but the record's %s is %q", ev.Key, c.Def.KeyField, key)})
		return
	}
	if errs := c.Validator.Validate(rec); len(errs) > 0 {
		b.quarantine(i, store.StepValidate, validate.Details(errs)...)
		return
	}
	row, err := c.Transform(rec)
	if err != nil {
		b.quarantine(i, store.StepTransform, transform.Detail(err))
		return
	}
	p := b.upserts
	p.Raw = append(p.Raw, ev.Record)
	p.Rows = append(p.Rows, connector.Row(row))
	p.RowIndex = append(p.RowIndex, i)
	p.RowKeys = append(p.RowKeys, ev.Key)
}

// deleteRow is the row naming the key (and version) event i deletes in
// step st's table: the deleted record transformed like an upsert's when it
// can be, else the event's key and version in the table's key and version
// columns (single-column keys only).
func (b *eventBatch) deleteRow(st *catalog.Step, i int) (connector.Row, error) {
	ev := b.events[i]
	if rec, ok := record.Object(ev.Record); ok {
		if row, err := b.c.Transform(rec); err == nil {
			if st.Mapping == nil {
				return row, nil
			}
			if out, err := st.Mapping(row); err == nil {
				return out, nil
			}
		}
	}
	sink, ok := st.Sink.(*pgsink.Sink)
	if !ok {
		return nil, fmt.Errorf("destination %q cannot delete by key", st.Dest.Name)
	}
	return sink.DeleteRow(st.Dest.Name, ev.Key, ev.Version)
}

// apply writes the batch's upserts and deletions to one destination.
// Rows it refuses are quarantined and, like a sync's, not sent to later
// steps; only the first step's outcome is counted.
func (b *eventBatch) apply(ctx context.Context, st *store.Store, tx *sql.Tx, step *catalog.Step, first bool, seenRun string) error {
	w := postgres.Joined(tx)
	if p := b.upserts; len(p.Rows) > len(b.refusedRows) {
		sb, err := apply.ForStep(ctx, st, tx, step, p, slices.Collect(maps.Keys(b.refusedRows)), nil, nil)
		if err != nil {
			return err
		}
		for _, rf := range sb.Refused {
			b.refuseRow(rf.Pos, store.StepTransform, store.ErrorDetail{Keyword: rf.Keyword, Message: rf.Message})
		}
		res, err := step.Sink.Apply(ctx, w, connector.Batch{Keys: sb.Keys, Rows: sb.Rows, SeenRun: seenRun})
		if err != nil {
			return err // classified
		}
		for _, r := range res.Refused {
			b.refuseRow(sb.Pos[r.Index], store.StepApply, store.ErrorDetail{Keyword: r.Keyword,
				Message: fmt.Sprintf("destination %q: %s", step.Dest.Name, r.Message)})
		}
		if first {
			b.counts.Inserted += res.Inserted
			b.counts.Updated += res.Updated
			b.counts.Unchanged += res.Unchanged
			b.counts.Stale += res.Stale
		}
	}
	if len(b.deletes) == 0 || b.c.Def.Events.Deletes == integration.DeletesIgnore {
		if first {
			b.counts.Unchanged += len(b.deletes)
		}
		return nil
	}
	var rows []connector.Row
	var which []int
	for _, i := range b.deletes {
		if b.refusedDeletes[i] {
			continue
		}
		row, err := b.deleteRow(step, i)
		if err != nil {
			b.refusedDeletes[i] = true
			b.quarantine(i, store.StepApply, store.ErrorDetail{Keyword: "delete", Message: err.Error()})
			continue
		}
		rows, which = append(rows, row), append(which, i)
	}
	res, err := step.Sink.Delete(ctx, w, connector.Batch{Rows: rows, Tombstone: b.c.Def.Events.TombstoneColumn})
	if err != nil {
		return err // classified
	}
	for _, r := range res.Refused {
		i := which[r.Index]
		b.refusedDeletes[i] = true
		b.quarantine(i, store.StepApply, store.ErrorDetail{Keyword: r.Keyword,
			Message: fmt.Sprintf("destination %q: %s", step.Dest.Name, r.Message)})
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
	b.quarantine(b.upserts.RowIndex[pos], step, d)
}
