// Package reconcile holds the activities of the reconciliation workflow,
// which finds every difference between an integration's source and its
// PostgreSQL destination and repairs it, without holding either side in
// memory:
//
//  1. ReconcileScan reads the whole source once and folds every record into
//     the digest of its chunk: chunk = hash(key) mod Chunks, digest = count
//     and XOR of md5(key text, row text), where both texts are the ones
//     PostgreSQL gives the row once cast to the destination's column types
//     (pgsink.TableWriter.RowTexts), so equal texts mean the upsert would change nothing.
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
package reconcile

import (
	"context"
	"database/sql"
	"encoding/json"
	"fmt"
	"time"

	"github.com/lib/pq"
	"go.temporal.io/sdk/activity"
	"go.temporal.io/sdk/worker"

	"github.com/tetherflow/tether/activities/catalog"
	"github.com/tetherflow/tether/activities/connector/pgsink"
	"github.com/tetherflow/tether/activities/lib/cursor"
	"github.com/tetherflow/tether/activities/lib/failure"
	"github.com/tetherflow/tether/activities/lib/heartbeat"
	"github.com/tetherflow/tether/activities/lib/postgres"
	"github.com/tetherflow/tether/activities/lib/progress"
	"github.com/tetherflow/tether/activities/pages"
	"github.com/tetherflow/tether/activities/run"
	"github.com/tetherflow/tether/activities/store"
	"github.com/tetherflow/tether/activities/syncstep"
)

// Activities are the reconciliation's steps. Their fields are what they use.
type Activities struct {
	Catalog *catalog.Catalog
	// Pages stages the records a repair run applies.
	Pages *pages.Pages
	Store *store.Store
	// Lease is the integration's writer lease, held while repairing.
	Lease *run.Lease
	// DB holds the destination table and the reconciliation's tables.
	DB *sql.DB
}

// Register puts the activities of a on a worker, each under the name
// workflows call it by (package syncstep).
func Register(r worker.ActivityRegistry, a *Activities) {
	r.RegisterActivityWithOptions(a.ReconcileBegin, activity.RegisterOptions{Name: syncstep.ReconcileBegin.Name()})
	r.RegisterActivityWithOptions(a.ReconcileScan, activity.RegisterOptions{Name: syncstep.ReconcileScan.Name()})
	r.RegisterActivityWithOptions(a.ReconcileCompare, activity.RegisterOptions{Name: syncstep.ReconcileCompare.Name()})
	r.RegisterActivityWithOptions(a.ReconcileClassify, activity.RegisterOptions{Name: syncstep.ReconcileClassify.Name()})
	r.RegisterActivityWithOptions(a.ReconcileExtras, activity.RegisterOptions{Name: syncstep.ReconcileExtras.Name()})
	r.RegisterActivityWithOptions(a.ReconcileFinish, activity.RegisterOptions{Name: syncstep.ReconcileFinish.Name()})
	r.RegisterActivityWithOptions(a.FetchRepairPage, activity.RegisterOptions{Name: syncstep.FetchRepairPage.Name()})
}

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
	c, err := a.Catalog.Get(in.Integration, "")
	if err != nil {
		return syncstep.ReconcilePlan{}, err
	}
	st, err := reconcilable(c)
	if err != nil {
		return syncstep.ReconcilePlan{}, err
	}
	plan := syncstep.ReconcilePlan{
		Definition: c.Fingerprint, Chunks: c.Def.Reconcile.Chunks, Extras: c.Def.Reconcile.Extras,
		MarkColumn: c.Def.Reconcile.MarkColumn, BatchSize: c.Def.BatchSize, Table: st.String(),
	}
	if err := st.Prepare(ctx); err != nil {
		return plan, err
	}
	if plan.Chunks == 0 {
		var rows int64
		if err := a.DB.QueryRowContext(ctx, `SELECT count(*) FROM `+st.Writer().Exprs().Target).Scan(&rows); err != nil {
			return plan, postgres.Classify(err, "count the rows of "+st.String())
		}
		plan.Chunks = chunksFor(rows)
	}
	if in.Extras != "" {
		plan.Extras = in.Extras
	}
	if plan.Extras == "" {
		plan.Extras = syncstep.ExtrasReport
	}
	switch plan.Extras {
	case syncstep.ExtrasReport, syncstep.ExtrasDelete:
	case syncstep.ExtrasMark:
		if plan.MarkColumn == "" {
			return plan, failure.Permanent(failure.TypeConfig, fmt.Errorf(
				"integration %q: extras %q needs reconcile.mark_column: the timestamptz column that marks a row deleted", in.Integration, plan.Extras))
		}
	default:
		return plan, failure.Permanent(failure.TypeConfig, fmt.Errorf(
			"extras %q is not %q, %q or %q", plan.Extras, syncstep.ExtrasReport, syncstep.ExtrasDelete, syncstep.ExtrasMark))
	}
	if !in.DryRun {
		if err := a.Lease.Acquire(ctx, syncstep.StartRunInput{
			Integration: in.Integration, RunID: in.ReconcileID, WorkflowID: in.WorkflowID, Kind: "reconcile", Trigger: in.Trigger,
		}); err != nil {
			return plan, err
		}
	}
	_, err = a.DB.ExecContext(ctx, `
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
func (a *Activities) reconcileTarget(name, pinned string) (*catalog.Integration, *pgsink.Sink, error) {
	c, err := a.Catalog.Get(name, pinned)
	if err != nil {
		return nil, nil, err
	}
	st, err := reconcilable(c)
	return c, st, err
}

// reconcilable returns the integration's PostgreSQL destination, or says
// why it cannot be reconciled.
func reconcilable(c *catalog.Integration) (*pgsink.Sink, error) {
	if len(c.Steps) == 1 {
		if sink, ok := c.Steps[0].Sink.(*pgsink.Sink); ok {
			return sink, nil
		}
	}
	kinds := make([]string, len(c.Steps))
	for i, st := range c.Steps {
		kinds[i] = st.Dest.Name + " (" + st.Dest.Kind() + ")"
	}
	return nil, failure.Permanent(failure.TypeConfig, fmt.Errorf(
		"integration %q cannot be reconciled: reconciliation compares the source with one PostgreSQL destination table, and this integration writes to %v",
		c.Def.Name, kinds))
}

// FetchRepairPage stages the next page of records a reconciliation found
// missing, changed or invalid, like a fetched page, so its repair run
// sends them through validate, transform and apply.
func (a *Activities) FetchRepairPage(ctx context.Context, in syncstep.FetchRepairInput) (syncstep.FetchPageOutput, error) {
	if _, err := a.Catalog.Get(in.Integration, in.Definition); err != nil {
		return syncstep.FetchPageOutput{}, err
	}
	rows, err := a.DB.QueryContext(ctx, `
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
	ref.Stage = pages.NewToken()
	out := syncstep.FetchPageOutput{Ref: ref, Count: len(records), Next: cursor.Position{Offset: int(last)},
		Done: len(records) < in.Limit}
	if len(records) == 0 {
		return out, nil
	}
	if err := a.Pages.Stage(ctx, ref, records); err != nil {
		return syncstep.FetchPageOutput{}, err
	}
	return out, nil
}

// ReconcileExtras deletes or marks (policy) the destination rows the
// reconciliation found extra, in one transaction; a retry does nothing
// more.
func (a *Activities) ReconcileExtras(ctx context.Context, in syncstep.ReconcileExtrasInput) (int, error) {
	stop := heartbeat.Keep(ctx, "handling the extra rows: "+in.Policy)
	defer stop()
	_, st, err := a.reconcileTarget(in.Integration, in.Definition)
	if err != nil {
		return 0, err
	}
	e := st.Writer().Exprs()
	var q string
	switch in.Policy {
	case syncstep.ExtrasDelete:
		q = `WITH gone AS (
    DELETE FROM ` + e.Target + ` t USING tether_reconcile_extras x
    WHERE x.reconcile_id = $1 AND x.handled IS NULL AND x.key = ` + e.KeyJSON + `
    RETURNING ` + e.KeyJSON + ` AS kj
)
UPDATE tether_reconcile_extras x SET handled = 'deleted' FROM gone WHERE x.reconcile_id = $1 AND x.key = gone.kj`
	case syncstep.ExtrasMark:
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
	tx, err := a.DB.BeginTx(ctx, nil)
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
	_, err = a.DB.ExecContext(ctx, `
UPDATE tether_reconciliations SET status = $2, finished_at = now(), chunks_differing = $3, source_read = $4,
    destination_rows = $5, rows_compared = $6, missing = $7, changed = $8, extra = $9, invalid = $10,
    repaired = $11, extras_handled = $12, samples = $13, error = nullif($14, '')
WHERE reconcile_id = $1`, in.ReconcileID, in.Status, r.ChunksDiffering, r.SourceRead, r.DestinationRows, r.RowsCompared,
		r.Missing, r.Changed, r.Extra, r.Invalid, r.Repaired, r.ExtrasHandled, string(samples), r.Error)
	if err != nil {
		return postgres.Classify(err, fmt.Sprintf("record the end of reconciliation %q", in.ReconcileID))
	}
	for _, t := range []string{"tether_reconcile_chunks", "tether_reconcile_rows", "tether_reconcile_extras"} {
		if _, err := a.DB.ExecContext(ctx, `DELETE FROM `+t+` WHERE reconcile_id = $1`, in.ReconcileID); err != nil {
			return postgres.Classify(err, "drop the staged records of reconciliation "+in.ReconcileID)
		}
	}
	if err := a.Lease.Release(ctx, in.Integration, in.ReconcileID); err != nil {
		return err
	}
	return nil
}
