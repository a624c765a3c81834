package pipeline

import (
	"context"
	"encoding/json"
	"fmt"
	"strconv"
	"time"

	"go.temporal.io/sdk/activity"

	"github.com/tetherflow/tether/activities/connector/pgsource"
	"github.com/tetherflow/tether/activities/connector/pgsource/capture"
	"github.com/tetherflow/tether/activities/lib/failure"
	"github.com/tetherflow/tether/activities/lib/postgres"
	"github.com/tetherflow/tether/activities/lib/schema"
	"github.com/tetherflow/tether/activities/syncstep"
)

// DefaultCaptureRun is how long one CaptureChanges runs before returning.
const DefaultCaptureRun = time.Minute

// lagEvery is how often a busy capture measures its lag.
const lagEvery = 2 * time.Second

// captureFallback is how long the reader waits without a notification
// before it looks at the outbox anyway (and heartbeats).
const captureFallback = 5 * time.Second

// CaptureTarget is what change capture reads for the integration: its
// PostgreSQL source's table and key.
func CaptureTarget(name string, cfg pgsource.Config) capture.Target {
	return capture.Target{Integration: name, Schema: cfg.Schema, Table: cfg.Table, Key: cfg.Key}
}

// captureSource returns the integration's PostgreSQL source and capture
// target, or a permanent failure.TypeConfig error.
// A source without a schema reads the table on the connection's
// search_path: the capture goes on the table found there.
func (a *Activities) captureSource(ctx context.Context, name, pinned string) (*compiled, *pgsource.Source, capture.Target, error) {
	c, err := a.get(name, pinned)
	if err != nil {
		return nil, nil, capture.Target{}, err
	}
	src, ok := c.src.(*pgsource.Source)
	if !ok {
		return nil, nil, capture.Target{}, failure.Permanent(failure.TypeConfig, fmt.Errorf(
			"integration %q: change capture needs a PostgreSQL source (source.postgres)", name))
	}
	t := CaptureTarget(name, src.Config())
	if t.Schema == "" {
		db, _ := src.Conn()
		if err := db.QueryRowContext(ctx, `SELECT current_schema()`).Scan(&t.Schema); err != nil {
			return nil, nil, capture.Target{}, failure.Transient(failure.TypeSourceUnavailable,
				fmt.Errorf("integration %q: read the source connection's schema: %v", name, err))
		}
	}
	return c, src, t, nil
}

// CaptureChanges installs the integration's change capture (idempotently)
// and applies its changes as they commit, for in.RunFor: it reads the
// oldest changes left in the outbox, applies them as events in one
// destination transaction (ApplyEvents' rules: newest version per key,
// stale skipped, deletes by policy, invalid rows quarantined), and only
// then deletes them from the outbox. A crash anywhere in between reads
// them again: delivery is at least once, into idempotent applies. It
// heartbeats the lag while it waits; a retry on another worker resumes.
func (a *Activities) CaptureChanges(ctx context.Context, in syncstep.CaptureInput) (syncstep.CaptureOutput, error) {
	c, src, target, err := a.captureSource(ctx, in.Integration, in.Definition)
	if err != nil {
		return syncstep.CaptureOutput{}, err
	}
	if err := EventsSupported(c.def); err != nil {
		return syncstep.CaptureOutput{}, err
	}
	if err := a.ensureTables(ctx, c); err != nil {
		return syncstep.CaptureOutput{}, err
	}
	db, dsn := src.Conn()
	if err := capture.Install(ctx, db, target); err != nil {
		return syncstep.CaptureOutput{}, err
	}
	r, err := capture.NewReader(db, dsn, target, capture.WithLogger(a.log))
	if err != nil {
		return syncstep.CaptureOutput{}, err
	}
	defer r.Close() //nolint:errcheck // it only stops listening
	out := syncstep.CaptureOutput{Definition: c.fingerprint}
	runFor := in.RunFor
	if runFor <= 0 {
		runFor = DefaultCaptureRun
	}
	deadline := time.Now().Add(runFor)
	var lagAt time.Time
	cols := src.Config().Columns
	for time.Now().Before(deadline) {
		changes, err := r.Read(ctx, c.def.BatchSize)
		if err != nil {
			return out, err
		}
		if len(changes) == 0 {
			if out.Pending, out.Oldest, err = r.Lag(ctx); err != nil {
				return out, err
			}
			a.deps.Metrics.captureLag(in.Integration, out.Pending, out.Oldest)
			if activity.IsActivity(ctx) {
				activity.RecordHeartbeat(ctx, out)
			}
			if err := r.Wait(ctx, min(captureFallback, time.Until(deadline))); err != nil {
				if ctx.Err() != nil {
					return out, nil // cancelled or timed out: what was applied stays applied
				}
				return out, err
			}
			continue
		}
		stop := heartbeat(ctx, fmt.Sprintf("applying %d changes", len(changes)))
		counts, err := a.applyChanges(ctx, c, in.WorkflowID, out.Batches+1, changes, cols)
		stop()
		if err != nil {
			return out, err
		}
		ids := make([]int64, len(changes))
		for i, ch := range changes {
			ids[i] = ch.ID
		}
		// Applied and committed: now the position moves. A crash before
		// this line applies them again, which changes nothing.
		if err := r.Ack(ctx, ids); err != nil {
			return out, err
		}
		out.Batches++
		out.Counts = out.Counts.Add(counts)
		out.LastAppliedAt = time.Now().UTC()
		// The lag costs a scan of the outbox: measured every few seconds
		// while busy, not after every batch.
		if time.Since(lagAt) >= lagEvery {
			if out.Pending, out.Oldest, err = r.Lag(ctx); err != nil {
				return out, err
			}
			lagAt = time.Now()
			a.deps.Metrics.captureLag(in.Integration, out.Pending, out.Oldest)
		}
		if activity.IsActivity(ctx) {
			activity.RecordHeartbeat(ctx, out) // the SDK sends at most one per interval
		}
	}
	out.Pending, out.Oldest, err = r.Lag(ctx)
	a.deps.Metrics.captureLag(in.Integration, out.Pending, out.Oldest)
	return out, err
}

// applyChanges applies captured changes as events in one transaction.
func (a *Activities) applyChanges(ctx context.Context, c *compiled, workflowID string, batch int, changes []capture.Change, cols []string) (syncstep.EventCounts, error) {
	evs := make([]syncstep.Event, len(changes))
	for i, ch := range changes {
		ev := syncstep.Event{Source: "capture", Record: ch.Row, Delete: ch.Op == capture.OpDelete, ReceivedAt: ch.ChangedAt}
		if rec, ok := decodeObject(ch.Row); ok {
			if len(cols) > 0 {
				// The record a sync reads: the configured columns only.
				ev.Record = pickColumns(rec, cols)
				rec, _ = decodeObject(ev.Record)
			}
			ev.Key, _ = scalarString(lookup(rec, c.keyPath))
			ev.Version, _ = scalarString(lookup(rec, c.cursorPath))
		}
		evs[i] = ev
	}
	tx, err := a.db.BeginTx(ctx, nil)
	if err != nil {
		return syncstep.EventCounts{}, postgres.Classify(err, "begin applying captured changes")
	}
	defer tx.Rollback() //nolint:errcheck // no-op after commit
	counts, err := a.applyEvents(ctx, tx, c, syncstep.PageRef{RunID: workflowID, Page: batch}, evs)
	if err != nil {
		return syncstep.EventCounts{}, err
	}
	if err := tx.Commit(); err != nil {
		return syncstep.EventCounts{}, postgres.Classify(err, "commit captured changes "+strconv.FormatInt(changes[0].ID, 10)+"..")
	}
	a.deps.Metrics.applied(c.def.Name, counts, evs, time.Now())
	return counts, nil
}

// decodeObject decodes a JSON object.
func decodeObject(raw []byte) (map[string]any, bool) {
	v, err := schema.Decode(raw)
	if err != nil {
		return nil, false
	}
	rec, ok := v.(map[string]any)
	return rec, ok
}

// pickColumns keeps the named columns of a row, as JSON.
func pickColumns(rec map[string]any, cols []string) []byte {
	out := make(map[string]any, len(cols))
	for _, c := range cols {
		if v, ok := rec[c]; ok {
			out[c] = v
		}
	}
	b, _ := json.Marshal(out) // decoded from JSON: it encodes
	return b
}

// RemoveCapture drops the integration's change capture: its trigger,
// trigger function and outbox with the changes in it. It is idempotent.
func (a *Activities) RemoveCapture(ctx context.Context, in syncstep.CaptureInput) error {
	_, src, target, err := a.captureSource(ctx, in.Integration, in.Definition)
	if err != nil {
		return err
	}
	db, _ := src.Conn()
	return capture.Remove(ctx, db, target)
}
