package pgsink

import (
	"context"
	"database/sql"
	"fmt"
	"slices"
	"strings"

	"github.com/lib/pq"
	"github.com/tetherflow/tether/activities/connector"
)

// DeleteOptions tune one Delete.
type DeleteOptions struct {
	// Tombstone, when set, names a timestamptz column that is set to now()
	// instead of deleting the row (soft delete); the row takes the
	// deletion's version when it is newer. A later upsert of the key with a
	// newer version writes the row again with the column as the row has it
	// (NULL when the row does not set it), which brings the entity back.
	Tombstone string
}

// buildDeleteStatement renders the delete (or, with tombstone, the soft
// delete) of the staged keys, guarded by the version column: a key whose
// stored row has a newer version than the deletion is left alone and
// counted stale.
func buildDeleteStatement(t Table, target, stage, tombstone string) string {
	q := pq.QuoteIdentifier
	keys := make([]string, len(t.Key))
	on := make([]string, len(t.Key))
	for i, k := range t.Key {
		keys[i] = q(k)
		on[i] = "t." + q(k) + " = s." + q(k)
	}
	cols := strings.Join(keys, ", ")
	guard := "TRUE"
	if v := t.VersionColumn; v != "" {
		cols += ", " + q(v)
		guard = "(s." + q(v) + " IS NULL OR t." + q(v) + " IS NULL OR t." + q(v) + " <= s." + q(v) + ")"
	}
	staged := "staged AS MATERIALIZED (\n    SELECT DISTINCT ON (" + strings.Join(keys, ", ") + ") " + cols +
		"\n    FROM " + stage + "\n    ORDER BY " + strings.Join(keys, ", ") + ", " + ordinalColumn + " DESC\n)"
	join := strings.Join(on, " AND ")
	stats := "stats AS (\n    SELECT count(*) FILTER (WHERE NOT " + guard + ") AS stale\n    FROM staged s JOIN " + target + " t ON " + join + "\n)"
	gone := "gone AS (\n    DELETE FROM " + target + " t USING staged s\n    WHERE " + join + " AND " + guard + "\n    RETURNING 1\n)"
	if tombstone != "" {
		set := q(tombstone) + " = now()"
		if v := t.VersionColumn; v != "" {
			// The row keeps the deletion's version, so an update older than
			// the deletion arriving later is stale and does not bring the
			// entity back.
			set += ", " + q(v) + " = CASE WHEN s." + q(v) + " IS NOT NULL AND (t." + q(v) + " IS NULL OR s." + q(v) + " > t." + q(v) +
				") THEN s." + q(v) + " ELSE t." + q(v) + " END"
		}
		gone = "gone AS (\n    UPDATE " + target + " t SET " + set + " FROM staged s\n    WHERE " + join + " AND " + guard +
			" AND t." + q(tombstone) + " IS NULL\n    RETURNING 1\n)"
	}
	return "WITH " + staged + ",\n" + stats + ",\n" + gone +
		"\nSELECT (SELECT count(*) FROM staged), stats.stale, (SELECT count(*) FROM gone), 0 FROM stats"
}

// Delete removes the rows with the keys of rows (only their key columns
// and the version column are read) inside tx, or tombstones them with
// opt.Tombstone. A key whose stored row is newer than the deletion (both
// have a version and the stored one is greater) is kept and counted Stale;
// a key not in the table counts Unchanged. In the Result, Updated counts
// the rows deleted or tombstoned. Rows whose key or version cannot be
// converted are Rejected, as in Upsert; other errors are classified.
func (s *TableWriter) Delete(ctx context.Context, tx *sql.Tx, rows []Row, opt DeleteOptions) (Result, error) {
	res := Result{Received: len(rows)}
	if opt.Tombstone != "" {
		c, ok := s.table.column(opt.Tombstone)
		if !ok || slices.Contains(s.table.Key, opt.Tombstone) {
			return res, permanent("tombstone column %q is not a non-key column of %s", opt.Tombstone, s.sql.target)
		}
		if c.Type != "timestamptz" {
			return res, permanent("tombstone column %q of %s is %s, not timestamptz", opt.Tombstone, s.sql.target, c.Type)
		}
	}
	keep := map[string]bool{}
	for _, k := range s.table.Key {
		keep[k] = true
	}
	if v := s.table.VersionColumn; v != "" {
		keep[v] = true
	}
	trimmed := make([]Row, len(rows))
	for i, r := range rows {
		t := make(Row, len(keep))
		for k := range keep {
			t[k] = r[k]
		}
		trimmed[i] = t
	}
	staged := s.stageKeys(trimmed, &res)
	if len(staged) == 0 {
		return res, nil
	}
	stmt := s.deleteStatement(opt.Tombstone)
	c, err := s.attemptWith(ctx, tx, staged, func() *sql.Row { return tx.QueryRowContext(ctx, stmt) }, "")
	if err != nil {
		return Result{Received: len(rows)}, classify(err, "delete from "+s.sql.target)
	}
	res.Duplicates += len(staged) - c.distinct
	res.Stale, res.Updated = c.stale, c.inserted
	res.Unchanged = max(0, c.distinct-c.stale-c.inserted)
	return res, nil
}

func (s *TableWriter) deleteStatement(tombstone string) string {
	if tombstone == "" {
		return s.sql.remove
	}
	return buildDeleteStatement(s.table, s.sql.target, s.sql.stage, tombstone)
}

// anonymise is the statement that keeps the subject's row with every
// column but the key and the version set to its Anonymise value, or NULL.
func anonymise(t Table, target, keyCol, key string) (string, []any) {
	args := []any{key}
	var set []string
	for _, c := range t.Columns {
		if slices.Contains(t.Key, c.Name) || c.Name == t.VersionColumn {
			continue
		}
		v, ok := t.Anonymise[c.Name]
		if !ok {
			set = append(set, pq.QuoteIdentifier(c.Name)+" = NULL")
			continue
		}
		args = append(args, v)
		set = append(set, fmt.Sprintf("%s = $%d::%s", pq.QuoteIdentifier(c.Name), len(args), c.Type))
	}
	return "UPDATE " + target + " SET " + strings.Join(set, ", ") + " WHERE " + keyCol + "::text = $1", args
}

// Erase deletes the row whose key is key (a single-column key, compared
// as text), or anonymises it when the table's OnErase says so, and every
// before-image of it, in w's transaction: a subject's erasure, whatever
// the table's tombstone or version settings. It returns the rows deleted
// (or anonymised) in the table.
func (s *Sink) Erase(ctx context.Context, w connector.Writer, key string) (int, error) {
	t := s.w.Table()
	if len(t.Key) != 1 {
		return 0, permanent("erase from %s: the table has a composite key (%s); erase the subject there by hand", s.w.sql.target, strings.Join(t.Key, ", "))
	}
	tx, err := w.Tx(ctx)
	if err != nil {
		return 0, err
	}
	col := pq.QuoteIdentifier(t.Key[0])
	stmt, args := "DELETE FROM "+s.w.sql.target+" WHERE "+col+"::text = $1", []any{key}
	if t.OnErase == EraseAnonymise {
		stmt, args = anonymise(t, s.w.sql.target, col, key)
	}
	res, err := tx.ExecContext(ctx, stmt, args...)
	if err != nil {
		if sqlState(err) == "42P01" { // the table was never created: nothing to erase
			return 0, nil
		}
		return 0, classify(err, "erase from "+s.w.sql.target)
	}
	n, _ := res.RowsAffected()
	if _, err := tx.ExecContext(ctx, "SAVEPOINT tether_erase_images"); err != nil {
		return 0, classify(err, "erase before-images")
	}
	_, err = tx.ExecContext(ctx, "DELETE FROM "+s.w.sql.images+" WHERE key->>"+pq.QuoteLiteral(t.Key[0])+" = $1", key)
	switch {
	case sqlState(err) == "42P01": // no before-images table
		_, err = tx.ExecContext(ctx, "ROLLBACK TO SAVEPOINT tether_erase_images")
	case err == nil:
		_, err = tx.ExecContext(ctx, "RELEASE SAVEPOINT tether_erase_images")
	}
	if err != nil {
		return 0, classify(err, "erase before-images in "+s.w.sql.images)
	}
	return int(n), nil
}
