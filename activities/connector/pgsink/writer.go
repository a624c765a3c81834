package pgsink

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"maps"
	"slices"
	"strings"

	"github.com/lib/pq"

	"github.com/tetherflow/tether/activities/lib/failure"
)

// Row is one record to write, column name to value, with values as decoded
// from JSON with UseNumber (string, json.Number, float64, int, int64, bool,
// nil, map[string]any, []any) or time.Time. Missing columns are NULL; keys
// that are not declared columns are ignored.
type Row = map[string]any

// UpsertOptions tune one Upsert.
type UpsertOptions struct {
	// BeforeImages keeps the before-image of every row the batch touches, so
	// the batch can be compensated (atomic integrations).
	BeforeImages bool
	// RunID identifies the run the batch belongs to (required with
	// BeforeImages).
	RunID string
	// Seq identifies the batch within the run.
	Seq int
	// SeenRun, when set, names the refresh run the batch belongs to: the
	// key of every row the batch stages is recorded as seen by it, in the
	// same savepoint as the upsert, for the run's Sweep.
	SeenRun string
}

// Result counts what happened to every row of a batch:
// Received = Duplicates + Inserted + Updated + Unchanged + Stale + len(Rejected).
type Result struct {
	// Received is the number of rows passed in.
	Received int
	// Duplicates is the number of rows superseded by a later row with the same
	// key in the same batch (the last one wins).
	Duplicates int
	// Inserted is the number of new keys written.
	Inserted int
	// Updated is the number of existing rows changed.
	Updated int
	// Unchanged is the number of rows identical to the stored ones (not
	// rewritten).
	Unchanged int
	// Stale is the number of rows skipped because the stored row has a newer
	// version.
	Stale int
	// Rejected lists the rows that could not be written, with the reason.
	Rejected []Rejected
}

// Rejected is a row that was not written because its data was refused:
// a value that does not fit its column, a NULL key, or PostgreSQL refusing it
// (SQLSTATE class 22 or 23, e.g. a value too long or a check constraint).
type Rejected struct {
	// Index is the row's position in the rows passed to Upsert.
	Index int
	// Key is the row's key as KeyString writes it.
	Key string
	// SQLState is PostgreSQL's error code, or the code PostgreSQL would have
	// given for a value the sink refused before sending it.
	SQLState string
	// Err says what is wrong, naming the column or constraint when known.
	Err string
}

// savepoint isolates each attempt at a batch inside the caller's
// transaction, so a refused row does not abort it.
const savepoint = "tether_pgsink"

// TableWriter writes batches of rows into one PostgreSQL table.
type TableWriter struct {
	table    Table
	sql      statements
	convert  []convertFunc
	keyIndex []int // positions of the key columns in table.Columns
	notNull  []bool
}

// NewTableWriter checks the table definition and prepares everything a batch needs,
// SQL included. A bad definition is a non-retryable failure.TypeSinkSQL error
// listing every problem.
func NewTableWriter(t Table) (*TableWriter, error) {
	if err := t.Validate(); err != nil {
		return nil, failure.Permanent(failure.TypeSinkSQL, err)
	}
	t = Table{
		Schema: t.Schema, Name: t.Name, VersionColumn: t.VersionColumn,
		Columns: slices.Clone(t.Columns), Key: slices.Clone(t.Key),
		OnErase: t.OnErase, Anonymise: maps.Clone(t.Anonymise),
	}
	s := &TableWriter{table: t, sql: buildStatements(t)}
	isKey := make(map[string]bool, len(t.Key))
	for _, k := range t.Key {
		isKey[k] = true
	}
	for _, c := range t.Columns {
		s.convert = append(s.convert, converterFor(c.Type))
		s.notNull = append(s.notNull, c.NotNull || isKey[c.Name])
	}
	for _, k := range t.Key {
		s.keyIndex = append(s.keyIndex, slices.IndexFunc(t.Columns, func(c Column) bool { return c.Name == k }))
	}
	return s, nil
}

// Table returns the table definition the sink writes to.
func (s *TableWriter) Table() Table {
	t := s.table
	t.Columns = slices.Clone(t.Columns)
	t.Key = slices.Clone(t.Key)
	return t
}

// String names the target table as SQL spells it.
func (s *TableWriter) String() string { return s.sql.target }

// stagedRow is a row converted for COPY.
type stagedRow struct {
	index  int   // position in the caller's rows
	row    Row   // the row as received, for the key of a rejected row
	values []any // one text value (or nil) per column, then the ordinal
}

// counts is what one successful attempt at a set of staged rows did.
type counts struct {
	distinct, stale, inserted, updated int
}

// Upsert writes rows into the table inside tx, the caller's transaction, and
// reports what happened to each. Rows PostgreSQL refuses for their data are
// returned in Result.Rejected and the rest are applied; any other error is
// returned classified (failure.TypeSinkSQL or failure.TypeSinkUnavailable) and
// tx is left at the state it had before the call.
func (s *TableWriter) Upsert(ctx context.Context, tx *sql.Tx, rows []Row, opt UpsertOptions) (Result, error) {
	res := Result{Received: len(rows)}
	if opt.BeforeImages && opt.RunID == "" {
		return res, permanent("upsert into %s: before-images need a run id", s.sql.target)
	}
	staged := s.stage(rows, &res, false)
	if len(staged) > 0 {
		if err := s.apply(ctx, tx, staged, opt, &res); err != nil {
			return Result{Received: len(rows)}, err
		}
	}
	slices.SortFunc(res.Rejected, func(a, b Rejected) int { return a.Index - b.Index })
	return res, nil
}

// stageKeys stages rows that carry only keys (and versions): only the key
// columns must be set.
func (s *TableWriter) stageKeys(rows []Row, res *Result) []stagedRow { return s.stage(rows, res, true) }

// stage converts rows for COPY, rejecting those with values that do not fit
// their columns or with NULL keys (or NULL not_null columns, unless
// keysOnly), and collapses rows with the same key (the last one wins).
func (s *TableWriter) stage(rows []Row, res *Result, keysOnly bool) []stagedRow {
	cols := s.table.Columns
	staged := make([]stagedRow, 0, len(rows))
	byKey := make(map[string]int, len(rows))
	var kb strings.Builder
	for i, row := range rows {
		values := make([]any, len(cols)+1)
		var bad *Rejected
		for j, c := range cols {
			v, verr := s.convert[j](row[c.Name])
			if verr == nil && v == nil && s.notNull[j] && (!keysOnly || slices.Contains(s.keyIndex, j)) {
				what := "not_null column"
				if slices.Contains(s.keyIndex, j) {
					what = "key column"
				}
				verr = &valueError{stateNotNull, fmt.Sprintf("%s %q is NULL or missing", what, c.Name)}
			}
			if verr != nil {
				msg := verr.msg
				if verr.state != stateNotNull {
					msg = fmt.Sprintf("column %q (%s): %s", c.Name, c.Type, msg)
				}
				bad = &Rejected{Index: i, Key: KeyString(row, s.table.Key), SQLState: verr.state, Err: msg}
				break
			}
			values[j] = v
		}
		if bad != nil {
			res.Rejected = append(res.Rejected, *bad)
			continue
		}
		values[len(cols)] = int64(i)
		kb.Reset()
		for _, j := range s.keyIndex {
			kb.WriteString(values[j].(string))
			kb.WriteByte(0)
		}
		r := stagedRow{index: i, row: row, values: values}
		if at, ok := byKey[kb.String()]; ok {
			staged[at] = r
			res.Duplicates++
			continue
		}
		byKey[kb.String()] = len(staged)
		staged = append(staged, r)
	}
	return staged
}

// apply writes staged rows; when PostgreSQL refuses the data, it splits the
// rows in halves until the refused rows are isolated and rejected, and
// applies the rest.
func (s *TableWriter) apply(ctx context.Context, tx *sql.Tx, rows []stagedRow, opt UpsertOptions, res *Result) error {
	c, err := s.attempt(ctx, tx, rows, opt)
	if err == nil {
		res.Duplicates += len(rows) - c.distinct
		res.Stale += c.stale
		res.Inserted += c.inserted
		res.Updated += c.updated
		res.Unchanged += max(0, c.distinct-c.stale-c.inserted-c.updated)
		return nil
	}
	if !isDataError(err) {
		return classify(err, "upsert into "+s.sql.target)
	}
	if len(rows) == 1 {
		res.Rejected = append(res.Rejected, Rejected{
			Index: rows[0].index, Key: KeyString(rows[0].row, s.table.Key), SQLState: sqlState(err), Err: rowMessage(err),
		})
		return nil
	}
	mid := len(rows) / 2
	if err := s.apply(ctx, tx, rows[:mid], opt, res); err != nil {
		return err
	}
	return s.apply(ctx, tx, rows[mid:], opt, res)
}

// attempt stages rows and applies them in one savepoint; on any error the
// transaction is rolled back to where it was.
func (s *TableWriter) attempt(ctx context.Context, tx *sql.Tx, rows []stagedRow, opt UpsertOptions) (counts, error) {
	return s.attemptWith(ctx, tx, rows, func() *sql.Row {
		if opt.BeforeImages {
			return tx.QueryRowContext(ctx, s.sql.upsertImages, opt.RunID, opt.Seq)
		}
		return tx.QueryRowContext(ctx, s.sql.upsert)
	}, opt.SeenRun)
}

// attemptWith stages rows and runs statement (which returns distinct,
// stale, inserted, updated) in one savepoint, recording the staged keys as
// seen by seenRun when set.
func (s *TableWriter) attemptWith(ctx context.Context, tx *sql.Tx, rows []stagedRow, statement func() *sql.Row, seenRun string) (c counts, err error) {
	defer func() {
		if err != nil {
			// The savepoint may be gone with the connection, or never have
			// been made; err says why.
			_, _ = tx.ExecContext(context.WithoutCancel(ctx),
				"ROLLBACK TO SAVEPOINT "+savepoint+"; RELEASE SAVEPOINT "+savepoint)
		}
	}()
	if _, err := tx.ExecContext(ctx, "SAVEPOINT "+savepoint+";\n"+s.sql.createStage); err != nil {
		return c, err
	}
	if err := s.copy(ctx, tx, rows); err != nil {
		return c, err
	}
	if err := statement().Scan(&c.distinct, &c.stale, &c.inserted, &c.updated); err != nil {
		return c, err
	}
	if seenRun != "" {
		if err := s.recordSeen(ctx, tx, seenRun); err != nil {
			return c, err
		}
	}
	if _, err := tx.ExecContext(ctx, "RELEASE SAVEPOINT "+savepoint); err != nil {
		return c, err
	}
	return c, nil
}

// copy streams rows into the staging table.
func (s *TableWriter) copy(ctx context.Context, tx *sql.Tx, rows []stagedRow) error {
	stmt, err := tx.PrepareContext(ctx, s.sql.copyStage)
	if err != nil {
		return err
	}
	for _, r := range rows {
		if _, err := stmt.ExecContext(ctx, r.values...); err != nil {
			_ = stmt.Close()
			return err
		}
	}
	if _, err := stmt.ExecContext(ctx); err != nil {
		_ = stmt.Close()
		return err
	}
	return stmt.Close()
}

// Compensate undoes batch seq of run runID inside tx: keys the batch created
// are deleted, keys it changed get their before-image back, and the batch's
// before-images are consumed. It returns the number of rows deleted or
// rewritten; once tx commits, another call for the same batch restores
// nothing. Compensating a run's batches in reverse order restores the table
// exactly.
func (s *TableWriter) Compensate(ctx context.Context, tx *sql.Tx, runID string, seq int) (restored int, err error) {
	if err := tx.QueryRowContext(ctx, s.sql.compensate, runID, seq).Scan(&restored); err != nil {
		return 0, classify(err, fmt.Sprintf("compensate batch %d of run %s in %s", seq, runID, s.sql.target))
	}
	return restored, nil
}

// LastImagedBatch returns the highest batch of run runID that still has
// before-images (0 when none): where compensating the run must start, also
// for batches an earlier execution of the run applied before a reset.
func (s *TableWriter) LastImagedBatch(ctx context.Context, db *sql.DB, runID string) (int, error) {
	var seq int
	err := db.QueryRowContext(ctx, s.sql.lastImageSeq, runID).Scan(&seq)
	if sqlState(err) == "42P01" { // no before-images table: nothing to undo
		return 0, nil
	}
	if err != nil {
		return 0, classify(err, fmt.Sprintf("find the before-images of run %s in %s", runID, s.sql.images))
	}
	return seq, nil
}

// DropBeforeImages forgets the before-images of a run, once it has completed
// or been compensated. It is idempotent.
func (s *TableWriter) DropBeforeImages(ctx context.Context, db *sql.DB, runID string) error {
	_, err := db.ExecContext(ctx, s.sql.dropImages, runID)
	if sqlState(err) == "42P01" { // no before-images table: nothing to forget
		return nil
	}
	return classify(err, fmt.Sprintf("drop before-images of run %s from %s", runID, s.sql.images))
}

// Ensure makes sure the table, its before-images table and its seen-keys
// table exist. It creates the table (primary key on Key) when missing;
// when the table exists, it checks that every declared column exists, that
// a unique index or primary key covers exactly Key, and that the sink's
// upsert runs against it, and otherwise returns a non-retryable
// failure.TypeSinkSQL error naming what is wrong.
func (s *TableWriter) Ensure(ctx context.Context, db *sql.DB) error {
	what := "ensure " + s.sql.target
	tx, err := db.BeginTx(ctx, nil)
	if err != nil {
		return classify(err, what)
	}
	defer tx.Rollback() //nolint:errcheck // no-op after commit
	// Serialise set-ups: integrations sharing a schema share the
	// before-images table, and concurrent CREATE IF NOT EXISTS can collide.
	if _, err := tx.ExecContext(ctx, `SELECT pg_advisory_xact_lock(hashtext('tether_pgsink_ensure'))`); err != nil {
		return classify(err, what)
	}
	if _, err := tx.ExecContext(ctx, s.sql.createTable); err != nil {
		return classify(err, "create "+s.sql.target)
	}
	if err := s.checkTable(ctx, tx); err != nil {
		return err
	}
	if _, err := tx.ExecContext(ctx, s.sql.createImages); err != nil {
		return classify(err, "create "+s.sql.images)
	}
	if _, err := tx.ExecContext(ctx, s.sql.refresh.createSeen); err != nil {
		return classify(err, "create "+s.sql.refresh.seen)
	}
	// Dry run: the upsert against no rows proves the SQL fits the table
	// (types assignable, version column comparable) without writing.
	if _, err := tx.ExecContext(ctx, s.sql.createStage); err != nil {
		return classify(err, what+": create staging table")
	}
	var c counts
	if err := tx.QueryRowContext(ctx, s.sql.upsertImages, "tether-ensure", 0).
		Scan(&c.distinct, &c.stale, &c.inserted, &c.updated); err != nil {
		return classify(err, fmt.Sprintf("table %s does not accept the sink's upsert", s.sql.target))
	}
	if err := tx.Commit(); err != nil {
		return classify(err, what)
	}
	return nil
}

// checkTable compares the existing table with the definition.
func (s *TableWriter) checkTable(ctx context.Context, tx *sql.Tx) error {
	var oid int64
	if err := tx.QueryRowContext(ctx, `SELECT to_regclass($1)::oid`, s.sql.target).Scan(&oid); err != nil {
		return classify(err, "look up "+s.sql.target)
	}
	attrs, err := s.readColumns(ctx, tx, oid)
	if err != nil {
		return err
	}
	problems := s.columnProblems(attrs)
	keyProblem, err := s.checkKeyIndex(ctx, tx, oid)
	if err != nil {
		return err
	}
	if keyProblem != "" {
		problems = append(problems, keyProblem)
	}
	if len(problems) == 0 {
		return nil
	}
	return failure.Permanent(failure.TypeSinkSQL, fmt.Errorf("table %s does not match its definition: %w",
		s.sql.target, errors.New(strings.Join(problems, "; "))))
}

// tableColumn is a column of the existing table as the catalog has it.
type tableColumn struct {
	name, typ             string
	notNull, def, special bool // special: identity or generated
}

// readColumns lists the existing table's columns (table oid), in order.
func (s *TableWriter) readColumns(ctx context.Context, tx *sql.Tx, oid int64) ([]tableColumn, error) {
	rows, err := tx.QueryContext(ctx, `
SELECT attname, format_type(atttypid, atttypmod), attnotnull,
       atthasdef, attidentity <> '' OR attgenerated <> ''
FROM pg_attribute WHERE attrelid = $1 AND attnum > 0 AND NOT attisdropped ORDER BY attnum`, oid)
	if err != nil {
		return nil, classify(err, "read columns of "+s.sql.target)
	}
	var cols []tableColumn
	for rows.Next() {
		var a tableColumn
		if err := rows.Scan(&a.name, &a.typ, &a.notNull, &a.def, &a.special); err != nil {
			rows.Close()
			return nil, classify(err, "read columns of "+s.sql.target)
		}
		cols = append(cols, a)
	}
	if err := rows.Err(); err != nil {
		return nil, classify(err, "read columns of "+s.sql.target)
	}
	return cols, nil
}

// columnProblems names the declared columns the table lacks, then the
// undeclared columns that would refuse every insert.
func (s *TableWriter) columnProblems(cols []tableColumn) []string {
	exists := make(map[string]bool, len(cols))
	for _, a := range cols {
		exists[a.name] = true
	}
	var problems []string
	declared := map[string]bool{}
	for _, c := range s.table.Columns {
		declared[c.Name] = true
		if !exists[c.Name] {
			problems = append(problems, fmt.Sprintf("missing column %q (declared %s)", c.Name, c.Type))
		}
	}
	for _, a := range cols {
		if !declared[a.name] && a.notNull && !a.def && !a.special {
			problems = append(problems, fmt.Sprintf(
				"column %q is NOT NULL without a default and not declared, so no row could be inserted", a.name))
		}
	}
	return problems
}

// checkKeyIndex looks for a usable primary key or unique index on exactly
// the key of the existing table (table oid) and, when there is none,
// returns the problem, listing the unique indexes found.
func (s *TableWriter) checkKeyIndex(ctx context.Context, tx *sql.Tx, oid int64) (problem string, err error) {
	idx, err := tx.QueryContext(ctx, `
SELECT i.indexrelid::regclass::text,
       array(SELECT coalesce(a.attname::text, '(expression)')
             FROM unnest(i.indkey::int2[]) WITH ORDINALITY AS u(num, ord)
             LEFT JOIN pg_attribute a ON a.attrelid = i.indrelid AND a.attnum = u.num
             ORDER BY u.ord),
       i.indimmediate AND i.indisvalid AND i.indpred IS NULL AND i.indexprs IS NULL
FROM pg_index i WHERE i.indrelid = $1 AND i.indisunique ORDER BY 1`, oid)
	if err != nil {
		return "", classify(err, "read indexes of "+s.sql.target)
	}
	want := slices.Sorted(slices.Values(s.table.Key))
	found := false
	var others []string
	for idx.Next() {
		var name string
		var cols []string
		var usable bool
		if err := idx.Scan(&name, pq.Array(&cols), &usable); err != nil {
			idx.Close()
			return "", classify(err, "read indexes of "+s.sql.target)
		}
		if usable && slices.Equal(slices.Sorted(slices.Values(cols)), want) {
			found = true
		}
		others = append(others, fmt.Sprintf("%s on (%s)", name, strings.Join(cols, ", ")))
	}
	if err := idx.Err(); err != nil {
		return "", classify(err, "read indexes of "+s.sql.target)
	}
	if found {
		return "", nil
	}
	problem = fmt.Sprintf("no primary key or unique index on exactly the key (%s)", strings.Join(s.table.Key, ", "))
	if len(others) > 0 {
		problem += "; unique indexes found: " + strings.Join(others, ", ")
	}
	return problem, nil
}
