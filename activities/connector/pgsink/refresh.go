package pgsink

import (
	"context"
	"database/sql"
	"fmt"
	"strings"

	"github.com/lib/pq"

	"github.com/tetherflow/tether/activities/lib/failure"
)

// SeenKeysTable is the table, beside each target table, that keeps the
// keys a refresh run has written (UpsertOptions.SeenRun), until the run's
// Sweep. It is a logged table: losing it would make a sweep delete live
// rows.
const SeenKeysTable = "tether_seen_keys"

// refreshStatements are the SQL of a batch refresh ("upsert everything,
// then remove what this run did not see"), built once in New.
type refreshStatements struct {
	// seen is the quoted seen-keys table.
	seen string
	// createSeen makes sure the seen-keys table exists.
	createSeen string
	// recordSeen records the key of every staged row as seen by run $1; it
	// runs in the upsert's savepoint, after the upsert.
	recordSeen string
	// seenAny returns whether run $1 recorded any key of the target, and
	// whether the target has any row.
	seenAny string
	// sweep deletes the target's rows whose key run $1 did not see, except
	// those whose single key column, as text, is in $2 (text[]);
	// sweepImages also records their before-images under ($1 run id, $3
	// seq). Both return the number of rows deleted.
	sweep       string
	sweepImages string
	// dropSeen deletes the seen keys of the runs $1 (text[]), of every
	// target of the schema.
	dropSeen string
}

// buildRefreshStatements renders the refresh SQL for a validated table
// whose quoted target, before-images and staging tables are target, images
// and stage.
//
// A key is compared as jsonb_build_object('col', value, ...) of the typed
// values (the staged row's when recorded, the target row's when swept),
// like the before-images key. The one exception is a timestamptz key
// column, written as a UTC timestamp: its JSON text would otherwise depend
// on the session's TimeZone, and a sweep on a connection with another
// TimeZone than the upserts' would see no key and delete every row.
func buildRefreshStatements(t Table, target, images, stage string) refreshStatements {
	q := pq.QuoteIdentifier
	seen := q(SeenKeysTable)
	if t.Schema != "" {
		seen = q(t.Schema) + "." + seen
	}
	keyObject := func(alias string, stable bool) string {
		parts := make([]string, len(t.Key))
		for i, k := range t.Key {
			v := alias + "." + q(k)
			if c, _ := t.column(k); stable && c.Type == TypeTimestamptz {
				v = "(" + v + " AT TIME ZONE 'UTC')"
			}
			parts[i] = pq.QuoteLiteral(k) + ", " + v
		}
		return "jsonb_build_object(" + strings.Join(parts, ", ") + ")"
	}
	name := pq.QuoteLiteral(target) // the target's name in the seen-keys table

	var rs refreshStatements
	rs.seen = seen
	rs.createSeen = "CREATE TABLE IF NOT EXISTS " + seen + ` (
    run_id text NOT NULL,
    target text NOT NULL,
    key jsonb NOT NULL,
    PRIMARY KEY (run_id, target, key)
)`
	rs.recordSeen = "INSERT INTO " + seen + " (run_id, target, key)" +
		"\nSELECT $1, " + name + ", " + keyObject("s", true) + " FROM " + stage + " s" +
		"\nON CONFLICT DO NOTHING"
	rs.seenAny = "SELECT EXISTS (SELECT 1 FROM " + seen + " WHERE run_id = $1 AND target = " + name + ")," +
		"\n       EXISTS (SELECT 1 FROM " + target + ")"

	// Rows to keep although unseen: the run's quarantined records, named by
	// their single key column's text. A composite key cannot be named by a
	// record key: Sweep refuses a non-empty list, and the SQL deletes
	// nothing if one gets through.
	keep := "\n      AND NOT (t." + q(t.Key[0]) + "::text = ANY($2::text[]))"
	if len(t.Key) > 1 {
		keep = "\n      AND cardinality($2::text[]) = 0"
	}
	unseen := "\n    WHERE NOT EXISTS (" +
		"\n        SELECT 1 FROM " + seen + " s" +
		"\n        WHERE s.run_id = $1 AND s.target = " + name + " AND s.key = " + keyObject("t", true) +
		"\n    )" + keep
	rs.sweep = "WITH gone AS (\n    DELETE FROM " + target + " t" + unseen + "\n    RETURNING 1\n)" +
		"\nSELECT count(*) FROM gone"
	rs.sweepImages = "WITH gone AS (\n    DELETE FROM " + target + " t" + unseen +
		"\n    RETURNING " + keyObject("t", false) + " AS key, to_jsonb(t) AS image\n)," +
		"\nimages AS (\n    INSERT INTO " + images + " (run_id, seq, key, image)" +
		"\n    SELECT $1, $3, key, image FROM gone" +
		"\n    ON CONFLICT DO NOTHING\n)" +
		"\nSELECT count(*) FROM gone"
	rs.dropSeen = "DELETE FROM " + seen + " WHERE run_id = ANY($1::text[])"
	return rs
}

// Sweep ends a batch refresh in one statement inside tx, the caller's
// transaction: it deletes the rows of the table whose key the refresh run
// runID did not write (see UpsertOptions.SeenRun), except the rows of keep,
// and returns how many it deleted. keep are the record keys (as text, e.g.
// "42" or "abc") of the records the run quarantined: the source still has
// them, so their rows stay; they are matched against the key column's
// text, so they need a single-column key (a composite key with a non-empty
// keep is refused with a permanent failure.TypeConfig error, nothing
// deleted). With beforeImages, the image of every deleted row is recorded
// under (runID, seq) first, so Compensate(runID, seq) puts the rows back.
//
// A run that wrote no key of the table is refused (permanent
// failure.TypeSinkSQL) when the table has rows: every row would go, which
// is what a refresh reading an empty answer by mistake would do. Readers
// see every row until tx commits.
func (s *TableWriter) Sweep(ctx context.Context, tx *sql.Tx, runID string, seq int, beforeImages bool, keep []string) (deleted int, err error) {
	if runID == "" {
		return 0, permanent("sweep %s: a run id is required", s.sql.target)
	}
	if len(s.table.Key) > 1 && len(keep) > 0 {
		return 0, failure.Permanent(failure.TypeConfig, fmt.Errorf(
			"sweep %s: run %s quarantined %d record(s) (e.g. key %q) whose rows must stay, but the table's key (%s) has several columns, which a record key cannot name; nothing was deleted. Fix and replay the quarantined records, then refresh again",
			s.sql.target, runID, len(keep), keep[0], strings.Join(s.table.Key, ", ")))
	}
	what := fmt.Sprintf("sweep %s for run %s", s.sql.target, runID)
	var seen, rows bool
	if err := tx.QueryRowContext(ctx, s.sql.refresh.seenAny, runID).Scan(&seen, &rows); err != nil {
		return 0, classify(err, what)
	}
	if !seen {
		if rows {
			return 0, permanent("%s: the run wrote no row of the table, so every row would be deleted; nothing was deleted (did the refresh read an empty answer from the source? empty the table by hand if the source really is empty)", what)
		}
		return 0, nil
	}
	if keep == nil {
		keep = []string{}
	}
	var row *sql.Row
	if beforeImages {
		row = tx.QueryRowContext(ctx, s.sql.refresh.sweepImages, runID, pq.StringArray(keep), seq)
	} else {
		row = tx.QueryRowContext(ctx, s.sql.refresh.sweep, runID, pq.StringArray(keep))
	}
	if err := row.Scan(&deleted); err != nil {
		return 0, classify(err, what)
	}
	return deleted, nil
}

// DropSeen forgets the keys the refresh runs runIDs recorded, in every
// table of the sink's schema, once they have ended. It is idempotent.
func (s *TableWriter) DropSeen(ctx context.Context, db *sql.DB, runIDs ...string) error {
	if len(runIDs) == 0 {
		return nil
	}
	_, err := db.ExecContext(ctx, s.sql.refresh.dropSeen, pq.StringArray(runIDs))
	if sqlState(err) == "42P01" { // no seen-keys table: nothing to forget
		return nil
	}
	what := fmt.Sprintf("drop the seen keys of run %s from %s", runIDs[0], s.sql.refresh.seen)
	if len(runIDs) > 1 {
		what = fmt.Sprintf("drop the seen keys of %d runs from %s", len(runIDs), s.sql.refresh.seen)
	}
	return classify(err, what)
}

// recordSeen records, in the upsert's savepoint, the keys of the rows
// staged for a refresh run.
func (s *TableWriter) recordSeen(ctx context.Context, tx *sql.Tx, runID string) error {
	_, err := tx.ExecContext(ctx, s.sql.refresh.recordSeen, runID)
	return err
}
