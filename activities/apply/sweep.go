package apply

import (
	"context"
	"encoding/json"
	"fmt"

	"go.temporal.io/sdk/activity"

	"github.com/tetherflow/tether/activities/connector"
	"github.com/tetherflow/tether/activities/lib/cursor"
	"github.com/tetherflow/tether/activities/lib/failure"
	"github.com/tetherflow/tether/activities/lib/heartbeat"
	"github.com/tetherflow/tether/activities/lib/postgres"
	"github.com/tetherflow/tether/activities/syncstep"
)

// A batch refresh makes a destination equal to its source when the source
// has no usable cursor (or deletes records without telling): the run reads
// the whole source and upserts it like a full sync, while each destination
// that sweeps (connector.Sweeper) records the key of every row it writes
// (connector.Batch.SeenRun); once the read is complete, SweepRefresh
// deletes, in one transaction, the rows whose keys the run did not see.
// Until then readers see every old row; an atomic run keeps the deleted
// rows' before-images, so its compensation puts them back. HTTP
// destinations are not swept: their objects are only upserted.

// SweepRefresh ends a refresh run that read the whole source: in one
// transaction, every destination of the run's definition that sweeps drops
// the rows whose keys the run did not write, except the rows of records
// the run quarantined (the source still has them; they are only invalid).
// An atomic run records the deleted rows' before-images under in.Seq. The
// transaction also records the run's counts (which fences out a run being
// compensated) and marks the sweep done, so a retried sweep deletes
// nothing more and returns what the first one did.
func (a *Activities) SweepRefresh(ctx context.Context, in syncstep.SweepRefreshInput) (syncstep.SweepRefreshOutput, error) {
	c, err := a.Catalog.Get(in.Integration, in.Definition)
	if err != nil {
		return syncstep.SweepRefreshOutput{}, err
	}
	marker := BatchMarker(ctx, in.RunID) + "@sweep"
	if prev, done, err := a.Store.BatchApplied(ctx, a.DB, marker, in.Seq); err != nil {
		return syncstep.SweepRefreshOutput{}, err
	} else if done {
		var out syncstep.SweepRefreshOutput
		if err := json.Unmarshal(prev, &out); err != nil {
			return syncstep.SweepRefreshOutput{}, failure.Permanent(failure.TypeSinkSQL, fmt.Errorf("read the sweep of refresh %s: %w", in.RunID, err))
		}
		out.Replayed = true
		return out, nil
	}
	if in.Counts.NotModified > 0 {
		return syncstep.SweepRefreshOutput{}, failure.Permanent(failure.TypeConfig, fmt.Errorf(
			"refresh %s of %q: %d page(s) were answered 304 Not Modified, so their records were not seen and nothing is deleted; start the refresh again (it forgets the page validators when it starts)",
			in.RunID, in.Integration, in.Counts.NotModified))
	}
	swept := map[int]connector.Sweeper{}
	for i, st := range c.Steps {
		if sw, ok := st.Sink.(connector.Sweeper); ok && st.Sink.Capabilities().Sweep {
			swept[i] = sw
		}
	}
	if len(swept) == 0 {
		activity.GetLogger(ctx).Info("refresh has no destination to sweep", "runId", in.RunID)
		return syncstep.SweepRefreshOutput{}, nil
	}
	if err := a.checkNotFenced(ctx, in.RunID); err != nil {
		return syncstep.SweepRefreshOutput{}, err
	}
	keep, err := a.Store.QuarantinedKeys(ctx, in.Integration, in.RunID)
	if err != nil {
		return syncstep.SweepRefreshOutput{}, err
	}
	stop := heartbeat.Keep(ctx, fmt.Sprintf("sweeping the rows refresh %s did not see", in.RunID))
	defer stop()
	w := postgres.NewLazyTx(a.DB, "the sweep of refresh "+in.RunID)
	defer w.Rollback()
	tx, err := w.Tx(ctx)
	if err != nil {
		return syncstep.SweepRefreshOutput{}, err
	}
	var out syncstep.SweepRefreshOutput
	for i, st := range c.Steps {
		sw, ok := swept[i]
		if !ok {
			continue
		}
		n, err := sw.Sweep(ctx, tx, in.RunID, in.Seq, in.Atomic, keep)
		if err != nil {
			return syncstep.SweepRefreshOutput{}, err // classified, names the table
		}
		out.Steps = append(out.Steps, syncstep.SweptStep{Step: i, Name: st.Dest.Name, Deleted: n})
		out.Deleted += n
	}
	counts := in.Counts
	counts.Deleted += out.Deleted
	if err := a.Store.UpdateRun(ctx, tx, in.RunID, counts, cursor.Checkpoint{}, in.Next); err != nil {
		return syncstep.SweepRefreshOutput{}, err
	}
	if err := a.Store.MarkBatchApplied(ctx, tx, marker, in.Seq, out); err != nil {
		return syncstep.SweepRefreshOutput{}, err
	}
	if err := w.Commit(); err != nil {
		return syncstep.SweepRefreshOutput{}, err
	}
	activity.GetLogger(ctx).Info("refresh swept", "runId", in.RunID, "seq", in.Seq, "deleted", out.Deleted, "kept", len(keep))
	return out, nil
}
