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
	n := newColumnNames(t)

	st.createTable = createTableSQL(t, st.target, n)
	st.createImages = createImagesSQL(st.images)
	st.stage, st.createStage, st.copyStage = stageSQL(t, st.target, n)
	st.upsert, st.upsertImages = upsertSQL(t, st, n)
	st.compensate = compensateSQL(st, n)
	st.dropImages = "DELETE FROM " + st.images + " WHERE run_id = $1"
	st.lastImageSeq = "SELECT coalesce(max(seq), 0) FROM " + st.images + " WHERE run_id = $1"
	st.refresh = buildRefreshStatements(t, st.target, st.images, st.stage)
	st.rowTexts = rowTextsSQL(t)
	st.remove = buildDeleteStatement(t, st.target, st.stage, "")
	return st
}

// columnNames are a table's quoted column names, as the statements list
// them.
type columnNames struct {
	all  []string // every column, in declared order
	keys []string // the key columns, in key order
	rest []string // the columns outside the key, in declared order
}

func newColumnNames(t Table) columnNames {
	q := pq.QuoteIdentifier
	isKey := make(map[string]bool, len(t.Key))
	for _, k := range t.Key {
		isKey[k] = true
	}
	var n columnNames
	for _, c := range t.Columns {
		n.all = append(n.all, q(c.Name))
		if !isKey[c.Name] {
			n.rest = append(n.rest, q(c.Name))
		}
	}
	for _, k := range t.Key {
		n.keys = append(n.keys, q(k))
	}
	return n
}

// joinOn is the condition matching alias a's key columns with alias b's.
func (n columnNames) joinOn(a, b string) string {
	out := make([]string, len(n.keys))
	for i, k := range n.keys {
		out[i] = a + "." + k + " = " + b + "." + k
	}
	return strings.Join(out, " AND ")
}

// columnList joins cols with commas, each behind prefix (e.g. "t.").
func columnList(cols []string, prefix string) string {
	out := make([]string, len(cols))
	for i, c := range cols {
		out[i] = prefix + c
	}
	return strings.Join(out, ", ")
}

// createTableSQL creates the target table, with its primary key on the key.
func createTableSQL(t Table, target string, n columnNames) string {
	isKey := make(map[string]bool, len(t.Key))
	for _, k := range t.Key {
		isKey[k] = true
	}
	var defs []string
	for _, c := range t.Columns {
		d := "    " + pq.QuoteIdentifier(c.Name) + " " + c.Type
		if c.NotNull || isKey[c.Name] {
			d += " NOT NULL"
		}
		defs = append(defs, d)
	}
	defs = append(defs, "    PRIMARY KEY ("+columnList(n.keys, "")+")")
	return "CREATE TABLE IF NOT EXISTS " + target + " (\n" + strings.Join(defs, ",\n") + "\n)"
}

// createImagesSQL creates the before-images table beside the target.
func createImagesSQL(images string) string {
	return "CREATE TABLE IF NOT EXISTS " + images + ` (
    run_id text NOT NULL,
    seq integer NOT NULL,
    key jsonb NOT NULL,
    image jsonb,
    PRIMARY KEY (run_id, seq, key)
);
-- One before-image per key and run: the first batch to touch a key keeps
-- the key's state before the run, whatever later batches (or a reset
-- execution numbering its batches afresh) do to it.
CREATE UNIQUE INDEX IF NOT EXISTS tether_before_images_run_key ON ` + images + ` (run_id, key)`
}

// stageSQL names the staging table and renders its creation and the COPY
// into it. There is one temporary table per connection and table
// definition (the name hashes the definition), created once and emptied at
// every commit, so batches do not churn the catalog.
func stageSQL(t Table, target string, n columnNames) (stage, createStage, copyStage string) {
	q := pq.QuoteIdentifier
	var stageDefs []string
	for _, c := range t.Columns {
		stageDefs = append(stageDefs, q(c.Name)+" "+c.Type)
	}
	stageDefs = append(stageDefs, ordinalColumn+" integer NOT NULL")
	stageCols := strings.Join(stageDefs, ", ")
	h := fnv.New64a()
	h.Write([]byte(target + "\x00" + stageCols))
	stageName := fmt.Sprintf("tether_stage_%016x", h.Sum64())
	stage = "pg_temp." + q(stageName)
	createStage = "CREATE TEMP TABLE IF NOT EXISTS " + q(stageName) + " (" + stageCols + ") ON COMMIT DELETE ROWS;\n" +
		"DELETE FROM " + stage
	copyStage = "COPY " + stage + " (" + columnList(n.all, "") + ", " + ordinalColumn + ") FROM STDIN"
	return stage, createStage, copyStage
}

// upsertSQL renders the upsert of the staged rows into st.target, without
// and with the recording of before-images.
func upsertSQL(t Table, st statements, n columnNames) (upsert, upsertImages string) {
	q := pq.QuoteIdentifier
	staged := "staged AS MATERIALIZED (\n    SELECT DISTINCT ON (" + columnList(n.keys, "") + ") " + columnList(n.all, "") +
		"\n    FROM " + st.stage +
		"\n    ORDER BY " + columnList(n.keys, "") + ", " + ordinalColumn + " DESC\n)"
	fresh := "TRUE"
	guard := ""
	if v := t.VersionColumn; v != "" {
		fresh = "(t." + q(v) + " IS NULL OR s." + q(v) + " >= t." + q(v) + ")"
		guard = "\n      AND (t." + q(v) + " IS NULL OR EXCLUDED." + q(v) + " >= t." + q(v) + ")"
	}
	stats := "stats AS (\n    SELECT (SELECT count(*) FROM staged) AS distinct_rows,\n" +
		"           (SELECT count(*) FROM staged s JOIN " + st.target + " t ON " + n.joinOn("t", "s") +
		"\n             WHERE " + fresh + " IS NOT TRUE) AS stale\n)"
	applied := "applied AS (\n    INSERT INTO " + st.target + " AS t (" + columnList(n.all, "") + ")" +
		"\n    SELECT " + columnList(n.all, "") + " FROM staged" +
		"\n    " + onConflict(n, guard) +
		"\n    RETURNING (t.xmax = 0) AS inserted\n)"
	images := beforeImagesSQL(t, st, n)
	counted := "SELECT stats.distinct_rows, stats.stale," +
		"\n       (SELECT count(*) FROM applied WHERE inserted)," +
		"\n       (SELECT count(*) FROM applied WHERE NOT inserted)\nFROM stats"
	upsert = "WITH " + staged + ",\n" + stats + ",\n" + applied + "\n" + counted
	upsertImages = "WITH " + staged + ",\n" + stats + ",\n" + images + ",\n" + applied + "\n" + counted
	return upsert, upsertImages
}

// onConflict is the conflict clause writing a staged row over the stored
// one when a non-key column differs and guard (empty, or an AND condition)
// holds; with no column outside the key there is nothing to update.
func onConflict(n columnNames, guard string) string {
	if len(n.rest) == 0 {
		return "ON CONFLICT (" + columnList(n.keys, "") + ") DO NOTHING"
	}
	sets := make([]string, len(n.rest))
	for i, c := range n.rest {
		sets[i] = c + " = EXCLUDED." + c
	}
	return "ON CONFLICT (" + columnList(n.keys, "") + ") DO UPDATE SET " + strings.Join(sets, ", ") +
		"\n    WHERE (" + columnList(n.rest, "t.") + ") IS DISTINCT FROM (" + columnList(n.rest, "EXCLUDED.") + ")" + guard
}

// beforeImagesSQL is the upsert's step recording, under ($1 run id, $2
// seq), the stored row (or NULL) of every staged key, unless the run
// already holds an image of the key.
func beforeImagesSQL(t Table, st statements, n columnNames) string {
	keyObject := make([]string, len(t.Key))
	for i, k := range t.Key {
		keyObject[i] = pq.QuoteLiteral(k) + ", s." + pq.QuoteIdentifier(k)
	}
	return "images AS (\n    INSERT INTO " + st.images + " (run_id, seq, key, image)" +
		"\n    SELECT $1, $2, jsonb_build_object(" + strings.Join(keyObject, ", ") + ")," +
		"\n           CASE WHEN t." + n.keys[0] + " IS NULL THEN NULL ELSE to_jsonb(t) END" +
		"\n    FROM staged s LEFT JOIN " + st.target + " t ON " + n.joinOn("t", "s") +
		"\n    ON CONFLICT DO NOTHING\n)"
}

// compensateSQL restores and consumes the before-images of a batch ($1 run
// id, $2 seq): it deletes the rows the batch inserted and writes back the
// ones it changed.
func compensateSQL(st statements, n columnNames) string {
	return "WITH img AS (\n    SELECT key, image FROM " + st.images + " WHERE run_id = $1 AND seq = $2\n)," +
		"\ndeleted AS (\n    DELETE FROM " + st.target + " t\n    USING img, jsonb_populate_record(NULL::" + st.target + ", img.key) k" +
		"\n    WHERE img.image IS NULL AND " + n.joinOn("t", "k") + "\n    RETURNING 1\n)," +
		"\nrestored AS (\n    INSERT INTO " + st.target + " AS t (" + columnList(n.all, "") + ")" +
		"\n    SELECT " + columnList(n.all, "r.") +
		"\n    FROM img, jsonb_populate_record(NULL::" + st.target + ", img.image) r" +
		"\n    WHERE img.image IS NOT NULL" +
		"\n    " + onConflict(n, "") + "\n    RETURNING 1\n)," +
		"\nconsumed AS (\n    DELETE FROM " + st.images + " WHERE run_id = $1 AND seq = $2\n)" +
		"\nSELECT (SELECT count(*) FROM deleted) + (SELECT count(*) FROM restored)"
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
