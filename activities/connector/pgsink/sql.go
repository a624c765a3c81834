package pgsink

import (
	"fmt"
	"hash/fnv"
	"strings"

	"github.com/lib/pq"
)

// ordinalColumn is the staging table's extra column holding each row's index
// in the batch. It contains a space, so no declared column can take its name.
const ordinalColumn = `"tether ordinal"`

// statements is every SQL string a TableWriter runs, built once in New.
type statements struct {
	// target is the quoted, possibly schema-qualified, target table.
	target string
	// images is the quoted before-images table beside the target.
	images string
	// stage is the quoted staging table (in pg_temp).
	stage string

	createTable  string
	createImages string
	// createStage makes sure the staging table exists and is empty.
	createStage string
	// copyStage is the COPY ... FROM STDIN into the staging table.
	copyStage string
	// upsert applies the staged rows; upsertImages also records
	// before-images ($1 run id, $2 seq). Both return one row: distinct rows,
	// stale, inserted, updated.
	upsert       string
	upsertImages string
	// compensate restores and consumes the images of ($1 run id, $2 seq)
	// and returns the number of rows deleted or written back.
	compensate string
	// dropImages deletes a run's images ($1 run id).
	dropImages string
	// lastImageSeq is the highest batch of a run ($1) with before-images left.
	lastImageSeq string
	// refresh are the statements of a batch refresh (refresh.go).
	refresh refreshStatements
	// rowTexts computes the key and row texts of rows (RowTexts).
	rowTexts string
	// remove deletes the staged keys (Delete); it returns distinct keys,
	// stale, deleted, 0.
	remove string
}

// buildStatements renders the SQL for a validated table.
func buildStatements(t Table) statements {
	q := pq.QuoteIdentifier
	qualify := func(name string) string {
		if t.Schema == "" {
			return q(name)
		}
		return q(t.Schema) + "." + q(name)
	}
	var st statements
	st.target = qualify(t.Name)
	st.images = qualify(BeforeImagesTable)

	isKey := make(map[string]bool, len(t.Key))
	for _, k := range t.Key {
		isKey[k] = true
	}
	var all, keys, rest []string
	for _, c := range t.Columns {
		all = append(all, q(c.Name))
		if !isKey[c.Name] {
			rest = append(rest, q(c.Name))
		}
	}
	for _, k := range t.Key {
		keys = append(keys, q(k))
	}
	list := func(cols []string, prefix string) string {
		out := make([]string, len(cols))
		for i, c := range cols {
			out[i] = prefix + c
		}
		return strings.Join(out, ", ")
	}
	joinOn := func(a, b string) string {
		out := make([]string, len(keys))
		for i, k := range keys {
			out[i] = a + "." + k + " = " + b + "." + k
		}
		return strings.Join(out, " AND ")
	}

	// Target and before-images tables.
	var defs []string
	for _, c := range t.Columns {
		d := "    " + q(c.Name) + " " + c.Type
		if c.NotNull || isKey[c.Name] {
			d += " NOT NULL"
		}
		defs = append(defs, d)
	}
	defs = append(defs, "    PRIMARY KEY ("+list(keys, "")+")")
	st.createTable = "CREATE TABLE IF NOT EXISTS " + st.target + " (\n" + strings.Join(defs, ",\n") + "\n)"
	st.createImages = "CREATE TABLE IF NOT EXISTS " + st.images + ` (
    run_id text NOT NULL,
    seq integer NOT NULL,
    key jsonb NOT NULL,
    image jsonb,
    PRIMARY KEY (run_id, seq, key)
);
-- One before-image per key and run: the first batch to touch a key keeps
-- the key's state before the run, whatever later batches (or a reset
-- execution numbering its batches afresh) do to it.
CREATE UNIQUE INDEX IF NOT EXISTS tether_before_images_run_key ON ` + st.images + ` (run_id, key)`

	// Staging: one temporary table per connection and table definition
	// (the name hashes the definition), created once and emptied at every
	// commit, so batches do not churn the catalog.
	var stageDefs []string
	for _, c := range t.Columns {
		stageDefs = append(stageDefs, q(c.Name)+" "+c.Type)
	}
	stageDefs = append(stageDefs, ordinalColumn+" integer NOT NULL")
	stageCols := strings.Join(stageDefs, ", ")
	h := fnv.New64a()
	h.Write([]byte(st.target + "\x00" + stageCols))
	stageName := fmt.Sprintf("tether_stage_%016x", h.Sum64())
	st.stage = "pg_temp." + q(stageName)
	st.createStage = "CREATE TEMP TABLE IF NOT EXISTS " + q(stageName) + " (" + stageCols + ") ON COMMIT DELETE ROWS;\n" +
		"DELETE FROM " + st.stage
	st.copyStage = "COPY " + st.stage + " (" + list(all, "") + ", " + ordinalColumn + ") FROM STDIN"

	// Upsert.
	staged := "staged AS MATERIALIZED (\n    SELECT DISTINCT ON (" + list(keys, "") + ") " + list(all, "") +
		"\n    FROM " + st.stage +
		"\n    ORDER BY " + list(keys, "") + ", " + ordinalColumn + " DESC\n)"
	fresh := "TRUE"
	guard := ""
	if v := t.VersionColumn; v != "" {
		fresh = "(t." + q(v) + " IS NULL OR s." + q(v) + " >= t." + q(v) + ")"
		guard = "\n      AND (t." + q(v) + " IS NULL OR EXCLUDED." + q(v) + " >= t." + q(v) + ")"
	}
	stats := "stats AS (\n    SELECT (SELECT count(*) FROM staged) AS distinct_rows,\n" +
		"           (SELECT count(*) FROM staged s JOIN " + st.target + " t ON " + joinOn("t", "s") +
		"\n             WHERE " + fresh + " IS NOT TRUE) AS stale\n)"
	conflict := "ON CONFLICT (" + list(keys, "") + ") DO NOTHING"
	if len(rest) > 0 {
		sets := make([]string, len(rest))
		for i, c := range rest {
			sets[i] = c + " = EXCLUDED." + c
		}
		conflict = "ON CONFLICT (" + list(keys, "") + ") DO UPDATE SET " + strings.Join(sets, ", ") +
			"\n    WHERE (" + list(rest, "t.") + ") IS DISTINCT FROM (" + list(rest, "EXCLUDED.") + ")" + guard
	}
	applied := "applied AS (\n    INSERT INTO " + st.target + " AS t (" + list(all, "") + ")" +
		"\n    SELECT " + list(all, "") + " FROM staged" +
		"\n    " + conflict +
		"\n    RETURNING (t.xmax = 0) AS inserted\n)"
	keyObject := make([]string, len(t.Key))
	for i, k := range t.Key {
		keyObject[i] = pq.QuoteLiteral(k) + ", s." + q(k)
	}
	images := "images AS (\n    INSERT INTO " + st.images + " (run_id, seq, key, image)" +
		"\n    SELECT $1, $2, jsonb_build_object(" + strings.Join(keyObject, ", ") + ")," +
		"\n           CASE WHEN t." + keys[0] + " IS NULL THEN NULL ELSE to_jsonb(t) END" +
		"\n    FROM staged s LEFT JOIN " + st.target + " t ON " + joinOn("t", "s") +
		"\n    ON CONFLICT DO NOTHING\n)"
	result := "SELECT stats.distinct_rows, stats.stale," +
		"\n       (SELECT count(*) FROM applied WHERE inserted)," +
		"\n       (SELECT count(*) FROM applied WHERE NOT inserted)\nFROM stats"
	st.upsert = "WITH " + staged + ",\n" + stats + ",\n" + applied + "\n" + result
	st.upsertImages = "WITH " + staged + ",\n" + stats + ",\n" + images + ",\n" + applied + "\n" + result

	// Compensation.
	restoreConflict := "ON CONFLICT (" + list(keys, "") + ") DO NOTHING"
	if len(rest) > 0 {
		sets := make([]string, len(rest))
		for i, c := range rest {
			sets[i] = c + " = EXCLUDED." + c
		}
		restoreConflict = "ON CONFLICT (" + list(keys, "") + ") DO UPDATE SET " + strings.Join(sets, ", ") +
			"\n    WHERE (" + list(rest, "t.") + ") IS DISTINCT FROM (" + list(rest, "EXCLUDED.") + ")"
	}
	st.compensate = "WITH img AS (\n    SELECT key, image FROM " + st.images + " WHERE run_id = $1 AND seq = $2\n)," +
		"\ndeleted AS (\n    DELETE FROM " + st.target + " t\n    USING img, jsonb_populate_record(NULL::" + st.target + ", img.key) k" +
		"\n    WHERE img.image IS NULL AND " + joinOn("t", "k") + "\n    RETURNING 1\n)," +
		"\nrestored AS (\n    INSERT INTO " + st.target + " AS t (" + list(all, "") + ")" +
		"\n    SELECT " + list(all, "r.") +
		"\n    FROM img, jsonb_populate_record(NULL::" + st.target + ", img.image) r" +
		"\n    WHERE img.image IS NOT NULL" +
		"\n    " + restoreConflict + "\n    RETURNING 1\n)," +
		"\nconsumed AS (\n    DELETE FROM " + st.images + " WHERE run_id = $1 AND seq = $2\n)" +
		"\nSELECT (SELECT count(*) FROM deleted) + (SELECT count(*) FROM restored)"
	st.dropImages = "DELETE FROM " + st.images + " WHERE run_id = $1"
	st.lastImageSeq = "SELECT coalesce(max(seq), 0) FROM " + st.images + " WHERE run_id = $1"
	st.refresh = buildRefreshStatements(t, st.target, st.images, st.stage)
	st.rowTexts = rowTextsSQL(t)
	st.remove = buildDeleteStatement(t, st.target, st.stage, "")
	return st
}

// golden renders every statement for review (the golden-file test).
func (st statements) golden() string {
	parts := []struct{ name, sql string }{
		{"create table", st.createTable},
		{"create before-images table", st.createImages},
		{"create staging table", st.createStage},
		{"copy", st.copyStage},
		{"upsert", st.upsert},
		{"upsert with before-images", st.upsertImages},
		{"compensate", st.compensate},
		{"drop before-images", st.dropImages},
		{"last batch with before-images", st.lastImageSeq},
		{"create seen-keys table", st.refresh.createSeen},
		{"record seen keys", st.refresh.recordSeen},
		{"seen any key", st.refresh.seenAny},
		{"sweep", st.refresh.sweep},
		{"sweep with before-images", st.refresh.sweepImages},
		{"drop seen keys", st.refresh.dropSeen},
		{"delete keys", st.remove},
	}
	var b strings.Builder
	for _, p := range parts {
		fmt.Fprintf(&b, "-- %s\n%s;\n\n", p.name, p.sql)
	}
	return b.String()
}
