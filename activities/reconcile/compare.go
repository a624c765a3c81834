package reconcile

import (
	"context"
	"strings"

	"github.com/lib/pq"

	"github.com/tetherflow/tether/activities/connector/pgsink"
	"github.com/tetherflow/tether/activities/lib/heartbeat"
	"github.com/tetherflow/tether/activities/lib/postgres"
	"github.com/tetherflow/tether/activities/store"
	"github.com/tetherflow/tether/activities/syncstep"
)

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
	stop := heartbeat.Keep(ctx, "comparing chunk digests")
	defer stop()
	q := `WITH d AS (
    SELECT chunk, count(*) AS n,
           bit_xor(('x' || substr(h, 1, 16))::bit(64)::bigint) AS x1,
           bit_xor(('x' || substr(h, 17, 16))::bit(64)::bigint) AS x2
    FROM (` + destRows(st.Writer().Exprs(), in.MarkColumn) + `) rows GROUP BY chunk
), s AS (SELECT chunk, n, x1, x2 FROM tether_reconcile_chunks WHERE reconcile_id = $1)
SELECT coalesce(d.chunk, s.chunk), coalesce(d.n, 0),
       d.chunk IS NULL OR s.chunk IS NULL OR d.n <> s.n OR d.x1 <> s.x1 OR d.x2 <> s.x2
FROM d FULL JOIN s ON s.chunk = d.chunk
ORDER BY 1`
	rows, err := a.DB.QueryContext(ctx, q, in.ReconcileID, in.Chunks)
	if err != nil {
		return syncstep.ReconcileCompareOutput{}, postgres.Classify(err, "compare chunk digests with "+st.String())
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
	stop := heartbeat.Keep(ctx, "comparing differing chunks key by key")
	defer stop()
	tx, err := a.DB.BeginTx(ctx, nil)
	if err != nil {
		return syncstep.ReconcileFound{}, postgres.Classify(err, "classify")
	}
	defer tx.Rollback() //nolint:errcheck // no-op after commit
	what := "compare differing chunks with " + st.String()
	d := `d AS MATERIALIZED (SELECT * FROM (` + destRows(st.Writer().Exprs(), in.MarkColumn) + `) rows WHERE chunk = ANY($3::int[]))`
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
