package connector

import (
	"context"
	"database/sql"
)

// Row is one destination row: column (or JSON member) name → value.
type Row = map[string]any

// Batch is one batch of rows for one destination of a run.
type Batch struct {
	// RunID and Seq name the batch: before-images are kept under them, and
	// a retried batch finds what an earlier attempt did.
	RunID string
	Seq   int
	// Keys are the records' keys, one per row (the tie to the source
	// record, the identity map and quarantine).
	Keys []string
	// Rows are the rows to write, or, for Delete, the rows naming what to
	// delete (their key columns, and version when the sink guards by one).
	Rows []Row
	// KeepImages keeps what the batch changed so Restore can undo it (an
	// atomic run).
	KeepImages bool
	// SeenRun, when set, records the keys written under that run (a batch
	// refresh deletes afterwards the rows it did not see); sinks that do
	// not sweep ignore it.
	SeenRun string
	// Tombstone, for Delete, sets this column to now() instead of deleting
	// the row (sinks that support tombstones).
	Tombstone string
}

// Result says what a sink did with a batch; every row is counted once.
type Result struct {
	Inserted  int
	Updated   int
	Unchanged int
	// Stale rows were older than the destination's version and skipped.
	Stale int
	// Duplicates were earlier rows of a key repeated in the batch: the
	// last one was written.
	Duplicates int
	// Refused rows were not written: bad data for this destination. The
	// caller quarantines them with the reason, never drops them.
	Refused []Refusal
}

// Refusal is a row the sink did not write, and why.
type Refusal struct {
	// Index is the row's position in Batch.Rows.
	Index int
	// Keyword classifies the reason ("sqlstate 23502", "rejected",
	// "conflict", "json"); Message says it for a person.
	Keyword, Message string
}

// Writer is the transaction a batch commits in together with tether's own
// state (checkpoint, counters, quarantine): a transactional sink writes its
// rows in it, so the batch and the checkpoint commit or roll back as one; a
// sink calling a remote API calls first and records what its calls did in
// it. Tx begins the transaction on its first call.
type Writer interface {
	Tx(ctx context.Context) (*sql.Tx, error)
}

// Capabilities say what a connector supports; the steps refuse, with a
// clear error, an integration that needs what its connector lacks.
type Capabilities struct {
	// Kind is the connector's registered kind ("http", "postgres").
	Kind string
	// Transactional sinks write inside the Writer's transaction: a batch
	// is applied exactly once with its checkpoint. Others apply
	// idempotently (idempotency keys, identity map) and are fenced before
	// every call.
	Transactional bool
	// Deletes: Delete removes (or tombstones) rows, for change events.
	Deletes bool
	// Compensation: KeepImages is honoured and Restore undoes a batch.
	Compensation bool
	// Sweep: the sink records the keys a refresh saw and deletes the rest
	// (Sweeper).
	Sweep bool
	// Incremental sources filter by cursor on their side (Request.Since);
	// Conditional sources answer "not modified" from page memos; Capture
	// sources can stream their changes as events.
	Incremental, Conditional, Capture bool
	// FollowsPages: an incremental read follows the source's pages from
	// its Since to the end (Page.Next), because the next page stays right
	// while records change (keyset pagination). Without it, every page is
	// asked "since" the last record read, which is safe with page or
	// offset pagination but reads again, and skips, the records sharing
	// that record's cursor value.
	FollowsPages bool
}

// Sink writes batches of rows to one destination.
//
// Every method is idempotent: applying a batch again (a retried activity,
// a worker killed after the call and before its commit) writes nothing
// more, and restoring a batch again restores nothing more. Errors are
// classified with package failure.
type Sink interface {
	// Capabilities says what the sink supports.
	Capabilities() Capabilities
	// Apply writes the batch's rows: inserted when new, updated when
	// changed, counted unchanged when equal.
	Apply(ctx context.Context, w Writer, b Batch) (Result, error)
	// Delete deletes the rows the batch names (or sets b.Tombstone).
	Delete(ctx context.Context, w Writer, b Batch) (Result, error)
	// Restore undoes batch seq of run runID from the images Apply kept
	// (KeepImages). Restoring a run's batches from its last to its first
	// puts the destination back exactly as it was before the run (a sink
	// may keep one image per record and run, its state before the run, so
	// only that order is exact). It returns the number of rows (or remote
	// objects) restored.
	Restore(ctx context.Context, w Writer, runID string, seq int) (int, error)
	// LastImaged returns the highest batch of the run with images left to
	// restore (0 when none).
	LastImaged(ctx context.Context, runID string) (int, error)
	// Forget drops the run's images once it has ended for good.
	Forget(ctx context.Context, runID string) error
}

// Preparer is a sink with something to create before its first write
// (a table). Prepare is idempotent.
type Preparer interface {
	Prepare(ctx context.Context) error
}

// Sweeper is a sink a batch refresh can sweep (Capabilities.Sweep).
type Sweeper interface {
	// Sweep deletes, in tx, the rows whose keys run runID did not write
	// (Batch.SeenRun), except those of keep, keeping their images under
	// seq when keepImages; it returns the number deleted.
	Sweep(ctx context.Context, tx *sql.Tx, runID string, seq int, keepImages bool, keep []string) (int, error)
	// ForgetSeen drops the keys recorded for the runs.
	ForgetSeen(ctx context.Context, runIDs ...string) error
}
