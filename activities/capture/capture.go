// Package capture holds the activities of PostgreSQL change capture:
// CaptureChanges installs an integration's capture (a trigger-maintained
// outbox on its source table, package pgsource/capture) and applies the
// changes as they commit, as events (package events), for a while at a
// time; RemoveCapture drops it. CaptureWorkflow runs them.
package capture

import (
	"context"
	"database/sql"
	"encoding/json"
	"fmt"
	"log/slog"
	"strconv"
	"time"

	"go.temporal.io/sdk/activity"
	"go.temporal.io/sdk/worker"

	"github.com/tetherflow/tether/activities/catalog"
	"github.com/tetherflow/tether/activities/connector/pgsource"
	pgcapture "github.com/tetherflow/tether/activities/connector/pgsource/capture"
	"github.com/tetherflow/tether/activities/events"
	"github.com/tetherflow/tether/activities/lib/failure"
	"github.com/tetherflow/tether/activities/lib/heartbeat"
	"github.com/tetherflow/tether/activities/lib/postgres"
	"github.com/tetherflow/tether/activities/lib/record"
	"github.com/tetherflow/tether/activities/store"
	"github.com/tetherflow/tether/activities/syncstep"
)

// DefaultCaptureRun is how long one CaptureChanges runs before returning.
const DefaultCaptureRun = time.Minute

// lagEvery is how often a busy capture measures its lag.
const lagEvery = 2 * time.Second

// captureFallback is how long the reader waits without a notification
// before it looks at the outbox anyway (and heartbeats).
const captureFallback = 5 * time.Second

// Activities run change capture. Its fields are what they use.
type Activities struct {
	Catalog *catalog.Catalog
	Store   *store.Store
	// DB is where the captured changes are applied.
	DB     *sql.DB
	Logger *slog.Logger
	// Metrics counts the events and the lag (nil: none).
	Metrics *events.Metrics
}

// Register puts the activities of a on a worker, each under the name
// workflows call it by (package syncstep).
func Register(r worker.ActivityRegistry, a *Activities) {
	r.RegisterActivityWithOptions(a.CaptureChanges, activity.RegisterOptions{Name: syncstep.CaptureChanges.Name()})
	r.RegisterActivityWithOptions(a.RemoveCapture, activity.RegisterOptions{Name: syncstep.RemoveCapture.Name()})
}

// captureSource returns the integration's PostgreSQL source and capture
// target, or a permanent failure.TypeConfig error.
// A source without a schema reads the table on the connection's
// search_path: the capture goes on the table found there.
func (a *Activities) captureSource(ctx context.Context, name, pinned string) (*catalog.Integration, *pgsource.Source, pgcapture.Target, error) {
	c, err := a.Catalog.Get(name, pinned)
	if err != nil {
		return nil, nil, pgcapture.Target{}, err
	}
	src, ok := c.Source.(*pgsource.Source)
	if !ok {
		return nil, nil, pgcapture.Target{}, failure.Permanent(failure.TypeConfig, fmt.Errorf(
			"integration %q: change capture needs a PostgreSQL source (source.postgres)", name))
	}
	t := pgcapture.For(name, src.Config())
	if t.Schema == "" {
		db, _ := src.Conn()
		if err := db.QueryRowContext(ctx, `SELECT current_schema()`).Scan(&t.Schema); err != nil {
			return nil, nil, pgcapture.Target{}, failure.Transient(failure.TypeSourceUnavailable,
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
	c, src, r, err := a.openCapture(ctx, in)
	if err != nil {
		return syncstep.CaptureOutput{}, err
	}
	defer r.Close() //nolint:errcheck // it only stops listening
	out := syncstep.CaptureOutput{Definition: c.Fingerprint}
	runFor := in.RunFor
	if runFor <= 0 {
		runFor = DefaultCaptureRun
	}
	deadline := time.Now().Add(runFor)
	var lagAt time.Time
	cols := src.Config().Columns
	for time.Now().Before(deadline) {
		changes, err := r.Read(ctx, c.Def.BatchSize)
		if err != nil {
			return out, err
		}
		if len(changes) == 0 {
			if stop, err := a.awaitChanges(ctx, r, in.Integration, &out, deadline); stop {
				return out, err
			}
			continue
		}
		if err := a.applyAndAck(ctx, c, r, in.WorkflowID, &out, changes, cols); err != nil {
			return out, err
		}
		// The lag costs a scan of the outbox: measured every few seconds
		// while busy, not after every batch.
		if time.Since(lagAt) >= lagEvery {
			if out.Pending, out.Oldest, err = r.Lag(ctx); err != nil {
				return out, err
			}
			lagAt = time.Now()
			a.Metrics.CaptureLag(in.Integration, out.Pending, out.Oldest)
		}
		if activity.IsActivity(ctx) {
			activity.RecordHeartbeat(ctx, out) // the SDK sends at most one per interval
		}
	}
	out.Pending, out.Oldest, err = r.Lag(ctx)
	a.Metrics.CaptureLag(in.Integration, out.Pending, out.Oldest)
	return out, err
}

// openCapture installs the integration's change capture and opens a
// reader of its outbox; the caller closes the reader.
func (a *Activities) openCapture(ctx context.Context, in syncstep.CaptureInput) (*catalog.Integration, *pgsource.Source, *pgcapture.Reader, error) {
	c, src, target, err := a.captureSource(ctx, in.Integration, in.Definition)
	if err != nil {
		return nil, nil, nil, err
	}
	if err := events.Supported(c.Def); err != nil {
		return nil, nil, nil, err
	}
	if err := c.PrepareOnce(ctx); err != nil {
		return nil, nil, nil, err
	}
	db, dsn := src.Conn()
	if err := pgcapture.Install(ctx, db, target); err != nil {
		return nil, nil, nil, err
	}
	r, err := pgcapture.NewReader(db, dsn, target, pgcapture.WithLogger(a.Logger))
	if err != nil {
		return nil, nil, nil, err
	}
	return c, src, r, nil
}

// awaitChanges reports the lag of an empty outbox and waits for a change
// to commit (or captureFallback, within the deadline). It reports stop
// when the capture must return, with the error to return: none when the
// activity was cancelled or timed out, since what was applied stays
// applied.
func (a *Activities) awaitChanges(ctx context.Context, r *pgcapture.Reader, integration string, out *syncstep.CaptureOutput, deadline time.Time) (stop bool, err error) {
	if out.Pending, out.Oldest, err = r.Lag(ctx); err != nil {
		return true, err
	}
	a.Metrics.CaptureLag(integration, out.Pending, out.Oldest)
	if activity.IsActivity(ctx) {
		activity.RecordHeartbeat(ctx, *out)
	}
	if err := r.Wait(ctx, min(captureFallback, time.Until(deadline))); err != nil {
		if ctx.Err() != nil {
			return true, nil // cancelled or timed out: what was applied stays applied
		}
		return true, err
	}
	return false, nil
}

// applyAndAck applies a batch of changes, then deletes them from the
// outbox and counts them in out.
func (a *Activities) applyAndAck(ctx context.Context, c *catalog.Integration, r *pgcapture.Reader, workflowID string,
	out *syncstep.CaptureOutput, changes []pgcapture.Change, cols []string) error {
	stop := heartbeat.Keep(ctx, fmt.Sprintf("applying %d changes", len(changes)))
	counts, err := a.applyChanges(ctx, c, workflowID, out.Batches+1, changes, cols)
	stop()
	if err != nil {
		return err
	}
	ids := make([]int64, len(changes))
	for i, ch := range changes {
		ids[i] = ch.ID
	}
	// Applied and committed: now the position moves. A crash before
	// this line applies them again, which changes nothing.
	if err := r.Ack(ctx, ids); err != nil {
		return err
	}
	out.Batches++
	out.Counts = out.Counts.Add(counts)
	out.LastAppliedAt = time.Now().UTC()
	return nil
}

// applyChanges applies captured changes as events in one transaction.
func (a *Activities) applyChanges(ctx context.Context, c *catalog.Integration, workflowID string, batch int, changes []pgcapture.Change, cols []string) (syncstep.EventCounts, error) {
	evs := make([]syncstep.Event, len(changes))
	for i, ch := range changes {
		ev := syncstep.Event{Source: "capture", Record: ch.Row, Delete: ch.Op == pgcapture.OpDelete, ReceivedAt: ch.ChangedAt}
		if rec, ok := record.Object(ch.Row); ok {
			if len(cols) > 0 {
				// The record a sync reads: the configured columns only.
				ev.Record = pickColumns(rec, cols)
				rec, _ = record.Object(ev.Record)
			}
			ev.Key, _ = record.Scalar(record.Lookup(rec, c.KeyPath))
			ev.Version, _ = record.Scalar(record.Lookup(rec, c.CursorPath))
		}
		evs[i] = ev
	}
	tx, err := a.DB.BeginTx(ctx, nil)
	if err != nil {
		return syncstep.EventCounts{}, postgres.Classify(err, "begin applying captured changes")
	}
	defer tx.Rollback() //nolint:errcheck // no-op after commit
	counts, err := events.Apply(ctx, a.Store, tx, c, syncstep.PageRef{RunID: workflowID, Page: batch}, evs)
	if err != nil {
		return syncstep.EventCounts{}, err
	}
	if err := tx.Commit(); err != nil {
		return syncstep.EventCounts{}, postgres.Classify(err, "commit captured changes "+strconv.FormatInt(changes[0].ID, 10)+"..")
	}
	a.Metrics.Applied(c.Def.Name, counts, evs, time.Now())
	return counts, nil
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
	return pgcapture.Remove(ctx, db, target)
}
