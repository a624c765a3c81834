package connectortest

import (
	"context"
	"strconv"
	"testing"

	"github.com/tetherflow/tether/activities/connector"
)

// SinkDriver is what a sink connector's test hands to Sink: how to make a
// fresh destination and open the connector on it, the rows to write, and
// the rows and configurations the connector must refuse.
//
// The suite's record keys are decimal strings ("1", "2", ...); Row puts a
// key where the destination keeps it, and StoredRow.Key gives it back.
type SinkDriver struct {
	// Open creates a fresh, empty destination for one case. It is called
	// once per case; clean up with t.Cleanup.
	Open func(t *testing.T) SinkFixture
	// Row returns a valid row for key at version v (from 1): rows of two
	// versions of a key differ, and the later one supersedes the earlier.
	// It is the row exactly as StoredRow.Row reads it back.
	Row func(key string, version int) connector.Row
	// BadRows are rows the destination must refuse. At least one is
	// required: every destination has data it cannot hold.
	BadRows []BadRow
	// BadConfigs are configurations the factory must refuse. At least one
	// is required.
	BadConfigs []BadConfig
}

// SinkFixture is one fresh destination and how to open the sink on it.
type SinkFixture struct {
	// Factory opens the sink, as the connector's Register line does (with
	// the worker's database and identity map of this destination).
	Factory connector.SinkFactory
	// Config is a valid configuration of the sink for the destination.
	Config any
	// NewWriter returns a batch's transaction in the worker's database,
	// begun on first use: postgres.NewLazyTx(db, "batch").
	NewWriter func() CommitWriter
	// State reads back what the destination holds: one StoredRow per row
	// or object, as Row builds rows.
	State func(t *testing.T) []StoredRow
}

// CommitWriter is a batch's Writer that the suite commits or rolls back,
// as the apply step does (*postgres.LazyTx).
type CommitWriter interface {
	connector.Writer
	Commit() error
	Rollback()
}

// StoredRow is one row (or remote object) the destination holds, under the
// suite's key for it.
type StoredRow struct {
	Key string
	Row connector.Row
}

// BadRow is a row the destination must refuse, and why.
type BadRow struct {
	// Name names the case.
	Name string
	// Row returns the bad row for key.
	Row func(key string) connector.Row
	// Why is what the refusal's message must mention (the column, member
	// or constraint at fault), compared without regard to case.
	Why string
}

// Sink runs the acceptance suite of a sink connector, each case as a
// subtest on a fresh destination:
//
//   - ApplyReadBack: a batch inserts new rows, updates changed ones, counts
//     equal ones unchanged and keeps the last of a repeated key; the
//     destination then holds exactly those rows.
//   - ReapplyIsIdempotent: the same batch again changes nothing and counts
//     every row unchanged; no object is duplicated.
//   - CrashBeforeCommit: a batch applied in a transaction that is rolled
//     back, then applied again and committed, leaves one copy of each row;
//     a transactional sink leaves nothing behind the rollback.
//   - Deletes (Capabilities().Deletes): deleted keys are gone, the others
//     stay, and deleting again changes nothing. A sink without deletes
//     refuses them with a permanent error.
//   - Compensation (Capabilities().Compensation): batches 1 and 2 of a run
//     kept images; Restore 2 then 1 puts the destination back as it was,
//     row by row, and consumes the images (LastImaged); Forget drops them.
//   - Sweep (Capabilities().Sweep): a refresh run's sweep deletes the rows
//     it did not write, except those it keeps, once; with images, Restore
//     puts them back.
//   - BadRows: each BadRow is refused with a Refusal naming why, while the
//     rest of its batch is applied; nothing is dropped silently.
//   - BadConfig: each BadConfig, and another connector's configuration, is
//     refused by the factory with a permanent failure.TypeConfig error.
//
// Every Result must count every row of its batch once. Cases the sink's
// Capabilities rule out are skipped with the reason; the others are
// required.
func Sink(t *testing.T, d SinkDriver) {
	t.Helper()
	if d.Open == nil || d.Row == nil {
		t.Fatal("connectortest: a SinkDriver needs Open and Row")
	}
	t.Run("ApplyReadBack", func(t *testing.T) { sinkApplyReadBack(t, d) })
	t.Run("ReapplyIsIdempotent", func(t *testing.T) { sinkReapply(t, d) })
	t.Run("CrashBeforeCommit", func(t *testing.T) { sinkCrashBeforeCommit(t, d) })
	t.Run("Deletes", func(t *testing.T) { sinkDeletes(t, d) })
	t.Run("Compensation", func(t *testing.T) { sinkCompensation(t, d) })
	t.Run("Sweep", func(t *testing.T) { sinkSweep(t, d) })
	t.Run("BadRows", func(t *testing.T) { sinkBadRows(t, d) })
	t.Run("BadConfig", func(t *testing.T) { sinkBadConfig(t, d) })
}

// dest is one fresh destination with its sink open, and the rows the
// destination is expected to hold.
type dest struct {
	t    *testing.T
	d    SinkDriver
	fx   SinkFixture
	sink connector.Sink
	want map[string]connector.Row
}

// openSink creates a fresh destination, opens the sink on it (and
// prepares it) and checks it is empty.
func openSink(t *testing.T, d SinkDriver) *dest {
	t.Helper()
	fx := d.Open(t)
	if fx.Factory == nil || fx.NewWriter == nil || fx.State == nil {
		t.Fatal("connectortest: a SinkFixture needs Factory, NewWriter and State")
	}
	sink, err := fx.Factory(connector.SinkSpec{Integration: integration, Destination: "acceptance", Config: fx.Config})
	if err != nil {
		t.Fatalf("open the sink with the fixture's configuration: %v", err)
	}
	if sink == nil {
		t.Fatal("the factory returned neither a sink nor an error")
	}
	if sink.Capabilities().Kind == "" {
		t.Error("Capabilities().Kind is empty: a sink names its registered kind")
	}
	if p, ok := sink.(connector.Preparer); ok {
		if err := p.Prepare(context.Background()); err != nil {
			t.Fatalf("Prepare: %v", err)
		}
		if err := p.Prepare(context.Background()); err != nil {
			t.Fatalf("Prepare again (it is idempotent): %v", err)
		}
	}
	ds := &dest{t: t, d: d, fx: fx, sink: sink, want: map[string]connector.Row{}}
	ds.check("a fresh destination")
	return ds
}

// version is one row of a batch: a key at a version.
type version struct {
	key string
	v   int
}

// batch builds batch seq of run runID from key versions.
func (ds *dest) batch(runID string, seq int, rows ...version) connector.Batch {
	b := connector.Batch{RunID: runID, Seq: seq}
	for _, r := range rows {
		b.Keys = append(b.Keys, r.key)
		b.Rows = append(b.Rows, ds.d.Row(r.key, r.v))
	}
	return b
}

// expect records that the destination holds key at version v (0: not at all).
func (ds *dest) expect(rows ...version) {
	for _, r := range rows {
		if r.v == 0 {
			delete(ds.want, r.key)
		} else {
			ds.want[r.key] = ds.d.Row(r.key, r.v)
		}
	}
}

// state reads what the destination holds, by key, failing on duplicates.
func (ds *dest) state() map[string]connector.Row {
	ds.t.Helper()
	got, err := byKey(ds.fx.State(ds.t))
	if err != nil {
		ds.t.Fatal(err)
	}
	return got
}

// check asserts the destination holds exactly the expected rows.
func (ds *dest) check(when string) {
	ds.t.Helper()
	if err := diffRows(ds.want, ds.state()); err != nil {
		ds.t.Fatalf("after %s: %v", when, err)
	}
}

// apply applies b in a new Writer and commits, as the apply step does.
func (ds *dest) apply(b connector.Batch, what string) connector.Result {
	ds.t.Helper()
	return ds.inWriter(what, true, func(w connector.Writer) (connector.Result, error) {
		return ds.sink.Apply(context.Background(), w, b)
	}, len(b.Rows))
}

// remove deletes the rows b names in a new Writer and commits.
func (ds *dest) remove(b connector.Batch, what string) connector.Result {
	ds.t.Helper()
	return ds.inWriter(what, true, func(w connector.Writer) (connector.Result, error) {
		return ds.sink.Delete(context.Background(), w, b)
	}, len(b.Rows))
}

// inWriter runs one call in a new Writer, commits it (or rolls it back),
// and checks every row is counted once.
func (ds *dest) inWriter(what string, commit bool, call func(connector.Writer) (connector.Result, error), n int) connector.Result {
	ds.t.Helper()
	w := ds.fx.NewWriter()
	defer w.Rollback()
	res, err := call(w)
	if err != nil {
		ds.t.Fatalf("%s: %v", what, err)
	}
	if commit {
		if err := w.Commit(); err != nil {
			ds.t.Fatalf("%s: commit: %v", what, err)
		}
	}
	if err := checkCounted(res, n); err != nil {
		ds.t.Errorf("%s: %v", what, err)
	}
	return res
}

// restore restores batch seq of runID in a new Writer and commits.
func (ds *dest) restore(runID string, seq int) int {
	ds.t.Helper()
	w := ds.fx.NewWriter()
	defer w.Rollback()
	n, err := ds.sink.Restore(context.Background(), w, runID, seq)
	if err != nil {
		ds.t.Fatalf("Restore(%s, %d): %v", runID, seq, err)
	}
	if err := w.Commit(); err != nil {
		ds.t.Fatalf("Restore(%s, %d): commit: %v", runID, seq, err)
	}
	return n
}

// lastImaged asserts LastImaged(runID) is want.
func (ds *dest) lastImaged(runID string, want int, when string) {
	ds.t.Helper()
	got, err := ds.sink.LastImaged(context.Background(), runID)
	if err != nil {
		ds.t.Fatalf("LastImaged(%s): %v", runID, err)
	}
	if got != want {
		ds.t.Errorf("after %s: LastImaged(%s) = %d, want %d", when, runID, got, want)
	}
}

// wantTally asserts what a Result counts.
func wantTally(t *testing.T, what string, res connector.Result, want tally) {
	t.Helper()
	if got := tallyOf(res); got != want {
		t.Errorf("%s: result counts %+v, want %+v (refusals: %+v)", what, got, want, res.Refused)
	}
}

// keys returns the decimal keys from..to.
func keys(from, to int) []string {
	var out []string
	for i := from; i <= to; i++ {
		out = append(out, strconv.Itoa(i))
	}
	return out
}

// at is the keys at version v.
func at(v int, ks ...string) []version {
	out := make([]version, len(ks))
	for i, k := range ks {
		out[i] = version{k, v}
	}
	return out
}
