// Package apply is the sync's apply step: ApplyBatch writes a transformed
// page to one destination (a step of the integration's saga) through the
// destination's connector.Sink and, in the same PostgreSQL transaction,
// quarantines the rows it refuses, saves the (cursor, key) checkpoint and
// the run's counters, and marks the batch applied: a retried ApplyBatch
// whose commit already happened writes nothing, and a crash at any point
// resumes exactly where the data stands. SweepRefresh ends a batch
// refresh by deleting the rows the run did not see.
package apply

import (
	"context"
	"database/sql"
	"encoding/json"
	"errors"
	"fmt"
	"sort"
	"strings"

	"go.temporal.io/sdk/activity"
	"go.temporal.io/sdk/worker"

	"github.com/tetherflow/tether/activities/catalog"
	"github.com/tetherflow/tether/activities/connector"
	"github.com/tetherflow/tether/activities/lib/failure"
	"github.com/tetherflow/tether/activities/lib/heartbeat"
	"github.com/tetherflow/tether/activities/lib/postgres"
	"github.com/tetherflow/tether/activities/lib/progress"
	"github.com/tetherflow/tether/activities/pages"
	"github.com/tetherflow/tether/activities/store"
	"github.com/tetherflow/tether/activities/syncstep"
	"github.com/tetherflow/tether/activities/transform"
)

// Activities is the apply step. Its fields are what it uses.
type Activities struct {
	Catalog *catalog.Catalog
	Pages   *pages.Pages
	// Store keeps the run's state: checkpoints, counters, quarantine,
	// applied-batch markers, identity and match maps.
	Store *store.Store
	// DB is where a batch's transaction runs: the state tables and the
	// PostgreSQL destinations.
	DB *sql.DB
}

// Register puts the activities of a on a worker, each under the name
// workflows call it by (package syncstep).
func Register(r worker.ActivityRegistry, a *Activities) {
	r.RegisterActivityWithOptions(a.ApplyBatch, activity.RegisterOptions{Name: syncstep.ApplyBatch.Name()})
	r.RegisterActivityWithOptions(a.SweepRefresh, activity.RegisterOptions{Name: syncstep.SweepRefresh.Name()})
}

// ApplyBatch writes the page's rows to one destination (in.Step) and, in
// the same transaction, quarantines the rows it refuses, updates the run's
// counters and marks the step applied; the last step also saves the
// checkpoint and remembers the page's validator. A transactional
// destination (PostgreSQL) writes inside that transaction; one that calls
// an API is called first (idempotently) and records what its calls did in
// it. A retry of a step that already committed writes nothing.
func (a *Activities) ApplyBatch(ctx context.Context, in syncstep.ApplyInput) (syncstep.ApplyOutput, error) {
	stop := heartbeat.Keep(ctx, fmt.Sprintf("applying batch %d", in.Seq))
	defer stop()
	c, err := a.Catalog.Get(in.Integration, in.Definition)
	if err != nil {
		return syncstep.ApplyOutput{}, err
	}
	st, err := c.StepAt(in.Step)
	if err != nil {
		return syncstep.ApplyOutput{}, err
	}
	last := in.Step == len(c.Steps)-1
	marker := BatchMarker(ctx, in.Ref.RunID)
	if in.Step > 0 {
		marker += "@" + st.Dest.Name
	}
	if out, done, err := a.applied(ctx, marker, in.Seq); err != nil || done {
		if done && last {
			a.Pages.Drop(in.Ref)
		}
		return out, err
	}
	p, err := transform.Page(ctx, a.Pages, a.Store, c, in.BatchInput)
	if err != nil {
		return syncstep.ApplyOutput{}, err
	}
	b, err := a.batch(ctx, c, st, p, in)
	if err != nil {
		return syncstep.ApplyOutput{}, err
	}
	if !st.Sink.Capabilities().Transactional {
		// The batch's transaction fences a run being compensated; this
		// fences the calls made before it.
		if err := a.checkNotFenced(ctx, in.Ref.RunID); err != nil {
			return syncstep.ApplyOutput{}, err
		}
	}
	w := postgres.NewLazyTx(a.DB, fmt.Sprintf("batch %d", in.Seq))
	defer w.Rollback()
	seen := ""
	if in.Kind == store.KindRefresh {
		seen = in.Ref.RunID // the keys the run's sweep keeps
	}
	res, err := st.Sink.Apply(ctx, w, connector.Batch{RunID: in.Ref.RunID, Seq: in.Seq, Keys: b.Keys, Rows: b.Rows,
		KeepImages: in.Atomic, SeenRun: seen})
	if err != nil {
		return syncstep.ApplyOutput{}, err // classified; the workflow adds the page
	}
	b.Add(res)
	tx, err := w.Tx(ctx)
	if err != nil {
		return syncstep.ApplyOutput{}, err
	}
	out, err := a.commit(ctx, tx, c, in, p, b, marker)
	if err != nil {
		return syncstep.ApplyOutput{}, err
	}
	if err := w.Commit(); err != nil {
		return syncstep.ApplyOutput{}, err
	}
	if last {
		a.Pages.Drop(in.Ref)
	}
	return out, nil
}

// applied returns what an earlier attempt that committed the batch did.
func (a *Activities) applied(ctx context.Context, marker string, seq int) (syncstep.ApplyOutput, bool, error) {
	prev, done, err := a.Store.BatchApplied(ctx, a.DB, marker, seq)
	if err != nil || !done {
		return syncstep.ApplyOutput{}, false, err
	}
	var out syncstep.ApplyOutput
	if err := json.Unmarshal(prev, &out); err != nil {
		return syncstep.ApplyOutput{}, false, failure.Permanent(failure.TypeSinkSQL, fmt.Errorf("read applied batch %d: %w", seq, err))
	}
	out.Replayed = true
	return out, true, nil
}

// batch is the part of the page the step writes. Duplicates of entities
// seen under another key are quarantined or merged (match); every step
// decides alike, the first one records.
func (a *Activities) batch(ctx context.Context, c *catalog.Integration, st *catalog.Step, p *pages.Page, in syncstep.ApplyInput) (*StepBatch, error) {
	mr, err := a.matchPage(ctx, c, p, in.Skip)
	if err != nil {
		return nil, err
	}
	skip := in.Skip
	for _, rf := range mr.refused {
		skip = append(skip[:len(skip):len(skip)], rf.Pos)
	}
	b, err := ForStep(ctx, a.Store, nil, st, p, skip, c.Match, mr.merges)
	if err != nil {
		return nil, err
	}
	if in.Step == 0 {
		b.Refused = append(b.Refused, mr.refused...)
		b.claims = mr.claims
	}
	return b, nil
}

// commit finishes a step's transaction: the step's refusals are
// quarantined, the run's counters updated (which fences out a run being
// compensated), the last step saves the checkpoint (or, replaying, marks
// the entries it applied), and the step is marked applied.
func (a *Activities) commit(ctx context.Context, tx *sql.Tx, c *catalog.Integration, in syncstep.ApplyInput, p *pages.Page, b *StepBatch, marker string) (syncstep.ApplyOutput, error) {
	out := syncstep.ApplyOutput{Inserted: b.Result.Inserted, Updated: b.Result.Updated, Unchanged: b.Result.Unchanged,
		Stale: b.Result.Stale, Duplicates: b.Result.Duplicates, Rejected: len(b.Refused)}
	refused := make(map[int]bool, len(in.Skip)+len(b.Refused))
	for _, pos := range in.Skip {
		refused[pos] = true
	}
	if len(b.Refused) > 0 {
		q := make([]store.QuarantineEntry, 0, len(b.Refused))
		for _, rf := range b.Refused {
			refused[rf.Pos] = true
			idx := p.RowIndex[rf.Pos]
			q = append(q, pages.Quarantine(in.Integration, in.Ref, idx, p.Raw[idx], p.RowKeys[rf.Pos], store.StepApply,
				[]store.ErrorDetail{{Keyword: rf.Keyword, Message: rf.Message}}))
		}
		if _, err := a.Store.Quarantine(ctx, tx, q); err != nil {
			return syncstep.ApplyOutput{}, err
		}
	}
	for pos := range refused {
		out.Refused = append(out.Refused, pos)
	}
	sort.Ints(out.Refused)
	if c.Match != nil && len(b.claims) > 0 {
		claims := make(map[string]string, len(b.claims))
		for pos, v := range b.claims {
			if !refused[pos] {
				claims[p.RowKeys[pos]] = v
			}
		}
		if err := a.Store.ClaimMatchValues(ctx, tx, c.Def.Name, in.Ref.RunID, claims); err != nil {
			return syncstep.ApplyOutput{}, err
		}
	}
	delta := progress.Counts{Invalid: out.Rejected, Valid: -out.Rejected}
	if in.Step == 0 {
		delta.Inserted, delta.Updated, delta.Unchanged = out.Inserted, out.Updated, out.Unchanged
		delta.Stale, delta.Duplicates = out.Stale, out.Duplicates
	}
	if err := a.saveState(ctx, tx, in, in.Step == len(c.Steps)-1, p, refused); err != nil {
		return syncstep.ApplyOutput{}, err
	}
	if err := a.Store.UpdateRun(ctx, tx, in.Ref.RunID, in.Counts.Add(delta), in.Checkpoint, in.Next); err != nil {
		return syncstep.ApplyOutput{}, err
	}
	if err := a.Store.MarkBatchApplied(ctx, tx, marker, in.Seq, out); err != nil {
		return syncstep.ApplyOutput{}, err
	}
	return out, nil
}

// saveState moves the integration's state with the last step of a batch:
// a sync saves its checkpoint and page memo, and a valid version of a
// quarantined record resolves its entry; a replay marks the entries it
// applied; a repair leaves the checkpoint where the syncs left it.
func (a *Activities) saveState(ctx context.Context, tx *sql.Tx, in syncstep.ApplyInput, final bool, p *pages.Page, refused map[int]bool) error {
	switch {
	case !final:
		return nil
	case in.Replay:
		return a.Store.MarkReplayed(ctx, tx, appliedEntries(in.QuarantineIDs, p, refused), in.Ref.RunID)
	case in.Kind == store.KindRepair || in.Kind == store.KindRecords:
		return a.Store.Supersede(ctx, tx, in.Integration, appliedKeys(p, refused), in.Ref.RunID)
	}
	err := a.Store.SaveCheckpoint(ctx, tx, in.Integration, store.CheckpointState{
		Checkpoint: in.Checkpoint, Position: in.Next, RunID: in.Ref.RunID, Seq: in.Seq,
	})
	if err == nil && in.Memo != nil && in.CacheKey != "" {
		err = a.Store.Remember(ctx, tx, in.Integration, in.CacheKey, *in.Memo)
	}
	if err == nil {
		err = a.Store.Supersede(ctx, tx, in.Integration, appliedKeys(p, refused), in.Ref.RunID)
	}
	return err
}

// acceptedRows lists the positions of the page's rows the destinations
// took: every row but those refused.
func acceptedRows(p *pages.Page, refused map[int]bool) []int {
	rows := make([]int, 0, max(0, len(p.RowIndex)-len(refused)))
	for j := range p.RowIndex {
		if !refused[j] {
			rows = append(rows, j)
		}
	}
	return rows
}

// appliedEntries picks, among a replay page's quarantine entries (one per
// record), those whose records reached the destination: not those found
// invalid again, nor rows a destination refused.
func appliedEntries(ids []int64, p *pages.Page, refused map[int]bool) []int64 {
	if len(ids) != len(p.Raw) {
		return nil // not a replay page as staged; mark nothing rather than the wrong entries
	}
	rows := acceptedRows(p, refused)
	applied := make([]int64, len(rows))
	for i, j := range rows {
		applied[i] = ids[p.RowIndex[j]]
	}
	return applied
}

// appliedKeys lists the keys of the page's rows the destinations took.
func appliedKeys(p *pages.Page, refused map[int]bool) []string {
	rows := acceptedRows(p, refused)
	keys := make([]string, len(rows))
	for i, j := range rows {
		keys[i] = p.RowKeys[j]
	}
	return keys
}

// BatchMarker keys applied-batch markers by the run and the workflow
// execution applying it: retries of an ApplyBatch share the key and find
// their own commit, while a reset execution, which numbers its batches
// afresh, never mistakes an earlier execution's batch for its own.
func BatchMarker(ctx context.Context, runID string) string {
	if !activity.IsActivity(ctx) {
		return runID
	}
	return runID + "#" + activity.GetInfo(ctx).WorkflowExecution.RunID
}

// checkNotFenced refuses to call a destination for a run that is being
// compensated (UpdateRun fences the transaction; this fences the calls).
func (a *Activities) checkNotFenced(ctx context.Context, runID string) error {
	run, err := a.Store.GetRun(ctx, runID)
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
