package pgsink

import (
	"context"
	"database/sql"
	"fmt"
	"strings"

	"github.com/tetherflow/tether/activities/connector"
	"github.com/tetherflow/tether/activities/lib/failure"
)

// Sink is the PostgreSQL destination connector (connector.Sink): a
// TableWriter on the worker's own database, so every batch is written in
// the transaction that also saves the run's checkpoint (exactly once).
type Sink struct {
	w  *TableWriter
	db *sql.DB
}

var (
	_ connector.Sink     = (*Sink)(nil)
	_ connector.Preparer = (*Sink)(nil)
	_ connector.Sweeper  = (*Sink)(nil)
)

// New builds the Sink of table t in db. A bad table definition is the
// integration's configuration at fault: a permanent failure.TypeConfig
// error naming every problem, as the connector contract has it.
func New(t Table, db *sql.DB) (*Sink, error) {
	if err := t.Validate(); err != nil {
		return nil, failure.Permanent(failure.TypeConfig, fmt.Errorf("postgres sink: %w", err))
	}
	w, err := NewTableWriter(t)
	if err != nil {
		return nil, err
	}
	return &Sink{w: w, db: db}, nil
}

// Capabilities: transactional, with deletes, compensation and sweeps.
func (s *Sink) Capabilities() connector.Capabilities {
	return connector.Capabilities{Kind: "postgres", Transactional: true, Deletes: true, Compensation: true, Sweep: true}
}

// Writer is the table writer, for steps that need more than the contract
// (reconciliation compares the table in SQL).
func (s *Sink) Writer() *TableWriter { return s.w }

// DB is the database the table is in.
func (s *Sink) DB() *sql.DB { return s.db }

// String names the table as SQL spells it.
func (s *Sink) String() string { return s.w.String() }

// Prepare creates the table (and its before-images and seen-keys tables)
// when missing, or checks it matches its definition.
func (s *Sink) Prepare(ctx context.Context) error { return s.w.Ensure(ctx, s.db) }

// Apply upserts the batch's rows in w's transaction.
func (s *Sink) Apply(ctx context.Context, w connector.Writer, b connector.Batch) (connector.Result, error) {
	tx, err := w.Tx(ctx)
	if err != nil {
		return connector.Result{}, err
	}
	res, err := s.w.Upsert(ctx, tx, b.Rows, UpsertOptions{BeforeImages: b.KeepImages, RunID: b.RunID, Seq: b.Seq, SeenRun: b.SeenRun})
	if err != nil {
		return connector.Result{}, err // classified
	}
	return result(res, ""), nil
}

// Delete deletes (or tombstones) the rows the batch names, in w's
// transaction.
func (s *Sink) Delete(ctx context.Context, w connector.Writer, b connector.Batch) (connector.Result, error) {
	tx, err := w.Tx(ctx)
	if err != nil {
		return connector.Result{}, err
	}
	res, err := s.w.Delete(ctx, tx, b.Rows, DeleteOptions{Tombstone: b.Tombstone})
	if err != nil {
		return connector.Result{}, err // classified
	}
	return result(res, "deleting: "), nil
}

// result is a TableWriter result in the contract's terms.
func result(res Result, what string) connector.Result {
	out := connector.Result{Inserted: res.Inserted, Updated: res.Updated, Unchanged: res.Unchanged,
		Stale: res.Stale, Duplicates: res.Duplicates}
	for _, rj := range res.Rejected {
		out.Refused = append(out.Refused, connector.Refusal{Index: rj.Index, Keyword: "sqlstate " + rj.SQLState, Message: what + rj.Err})
	}
	return out
}

// Restore puts back the before-images of batch seq of the run in w's
// transaction.
func (s *Sink) Restore(ctx context.Context, w connector.Writer, runID string, seq int) (int, error) {
	tx, err := w.Tx(ctx)
	if err != nil {
		return 0, err
	}
	return s.w.Compensate(ctx, tx, runID, seq)
}

// LastImaged returns the highest batch of the run with before-images left.
func (s *Sink) LastImaged(ctx context.Context, runID string) (int, error) {
	return s.w.LastImagedBatch(ctx, s.db, runID)
}

// Forget drops the run's before-images.
func (s *Sink) Forget(ctx context.Context, runID string) error {
	return s.w.DropBeforeImages(ctx, s.db, runID)
}

// Sweep deletes, in tx, the rows whose keys run runID did not see.
func (s *Sink) Sweep(ctx context.Context, tx *sql.Tx, runID string, seq int, keepImages bool, keep []string) (int, error) {
	return s.w.Sweep(ctx, tx, runID, seq, keepImages, keep)
}

// ForgetSeen drops the keys recorded for the runs.
func (s *Sink) ForgetSeen(ctx context.Context, runIDs ...string) error {
	return s.w.DropSeen(ctx, s.db, runIDs...)
}

// DeleteRow is the row naming the entity key (and version) to delete when
// a deletion carries no record to transform: the key in the table's key
// column, the version in its version column (single-column keys only).
func (s *Sink) DeleteRow(destination, key, version string) (Row, error) {
	t := s.w.Table()
	if len(t.Key) != 1 {
		return nil, fmt.Errorf("destination %q has a composite key (%s): a deletion must carry the deleted record, which must transform",
			destination, strings.Join(t.Key, ", "))
	}
	row := Row{t.Key[0]: key}
	if t.VersionColumn != "" && version != "" {
		row[t.VersionColumn] = version
	}
	return row, nil
}
