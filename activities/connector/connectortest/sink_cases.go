package connectortest

// The sink cases Sink runs, one function each.

import (
	"context"
	"slices"
	"strconv"
	"strings"
	"testing"

	"github.com/tetherflow/tether/activities/connector"
	"github.com/tetherflow/tether/activities/lib/failure"
)

func sinkApplyReadBack(t *testing.T, d SinkDriver) {
	ds := openSink(t, d)
	first := at(1, keys(1, 5)...)
	res := ds.apply(ds.batch("run-1", 1, first...), "apply batch 1")
	wantTally(t, "batch 1", res, tally{Inserted: 5})
	ds.expect(first...)
	ds.check("batch 1")

	// Two changed rows, one equal row, a new key sent twice (the last
	// version wins) and the untouched keys 4 and 5.
	second := []version{{"1", 2}, {"2", 2}, {"3", 1}, {"6", 1}, {"6", 2}}
	res = ds.apply(ds.batch("run-2", 1, second...), "apply batch 2")
	wantTally(t, "batch 2", res, tally{Inserted: 1, Updated: 2, Unchanged: 1, Duplicates: 1})
	ds.expect(second...)
	ds.check("batch 2")
}

func sinkReapply(t *testing.T, d SinkDriver) {
	ds := openSink(t, d)
	rows := at(1, keys(1, 4)...)
	b := ds.batch("run-1", 1, rows...)
	ds.apply(b, "apply the batch")
	ds.expect(rows...)
	// A retried activity applies its batch again.
	res := ds.apply(b, "apply the batch again")
	wantTally(t, "the batch applied again", res, tally{Unchanged: 4})
	ds.check("the batch applied again")
	// So does a later run reading the same records.
	res = ds.apply(ds.batch("run-2", 1, rows...), "apply the rows in another run")
	wantTally(t, "the rows applied by another run", res, tally{Unchanged: 4})
	ds.check("the rows applied by another run")
}

func sinkCrashBeforeCommit(t *testing.T, d SinkDriver) {
	ds := openSink(t, d)
	base := at(1, keys(1, 3)...)
	ds.apply(ds.batch("run-1", 1, base...), "apply the first batch")
	ds.expect(base...)

	// The worker dies after the sink's calls and before the batch's
	// transaction commits; the activity runs again.
	rows := []version{{"1", 2}, {"4", 1}, {"5", 1}}
	b := ds.batch("run-2", 1, rows...)
	ds.inWriter("apply a batch whose transaction is rolled back", false, func(w connector.Writer) (connector.Result, error) {
		return ds.sink.Apply(context.Background(), w, b)
	}, len(b.Rows))
	if ds.sink.Capabilities().Transactional {
		ds.check("a rolled back batch of a transactional sink")
	}
	res := ds.apply(b, "apply the batch again")
	wantTally(t, "the batch applied again", res, tally{Inserted: 2, Updated: 1})
	ds.expect(rows...)
	ds.check("the batch applied again and committed")
	res = ds.apply(b, "apply the batch a third time")
	wantTally(t, "the batch applied a third time", res, tally{Unchanged: 3})
	ds.check("the batch applied a third time")
}

func sinkDeletes(t *testing.T, d SinkDriver) {
	ds := openSink(t, d)
	base := at(1, keys(1, 5)...)
	ds.apply(ds.batch("run-1", 1, base...), "apply the rows")
	ds.expect(base...)
	gone := ds.batch("run-2", 1, at(1, "2", "4")...)
	if !ds.sink.Capabilities().Deletes {
		w := ds.fx.NewWriter()
		defer w.Rollback()
		_, err := ds.sink.Delete(context.Background(), w, gone)
		if err == nil || !failure.IsPermanent(err) {
			t.Fatalf("Delete on a sink without Capabilities().Deletes = %v, want a permanent error", err)
		}
		ds.check("a refused delete")
		t.Skip("Capabilities().Deletes is false: Delete is refused (checked), nothing is deleted")
	}
	ds.remove(gone, "delete keys 2 and 4")
	ds.expect(version{"2", 0}, version{"4", 0})
	ds.check("deleting keys 2 and 4")
	// A change event delivered twice deletes nothing more.
	ds.remove(gone, "delete keys 2 and 4 again")
	ds.check("deleting keys 2 and 4 again")
	ds.remove(ds.batch("run-3", 1, at(1, "99")...), "delete a key never written")
	ds.check("deleting a key never written")
	if ds.sink.Capabilities().Transactional {
		ds.inWriter("delete key 1 in a transaction rolled back", false, func(w connector.Writer) (connector.Result, error) {
			return ds.sink.Delete(context.Background(), w, ds.batch("run-4", 1, at(1, "1")...))
		}, 1)
		ds.check("a rolled back delete of a transactional sink")
	}
}

func sinkCompensation(t *testing.T, d SinkDriver) {
	ds := openSink(t, d)
	if !ds.sink.Capabilities().Compensation {
		t.Skip("Capabilities().Compensation is false: atomic integrations cannot use the sink")
	}
	base := at(1, keys(1, 4)...)
	ds.apply(ds.batch("run-0", 1, base...), "apply the state before the run")
	ds.expect(base...)
	before := ds.state()

	const run = "atomic-run"
	ds.lastImaged(run, 0, "no batch")
	// Batch 1 changes keys 1 and 2 and creates 5; batch 2 changes 2 and 5
	// again, changes 3 and creates 6.
	b1 := ds.batch(run, 1, version{"1", 2}, version{"2", 2}, version{"5", 1})
	b1.KeepImages = true
	ds.apply(b1, "apply batch 1 keeping images")
	afterB1 := ds.state()
	b2 := ds.batch(run, 2, version{"2", 3}, version{"3", 2}, version{"5", 2}, version{"6", 1})
	b2.KeepImages = true
	ds.apply(b2, "apply batch 2 keeping images")
	ds.expect(version{"1", 2}, version{"2", 3}, version{"3", 2}, version{"5", 2}, version{"6", 1})
	ds.check("batches 1 and 2")
	ds.lastImaged(run, 2, "batches 1 and 2")

	if n := ds.restore(run, 2); n == 0 {
		t.Errorf("Restore(batch 2) = 0 rows restored, want some")
	}
	// What batch 2 alone touched is as batch 1 left it. (Keys touched by
	// both batches may keep the run's first image, for Restore 1.)
	got := ds.state()
	for _, k := range []string{"3", "6"} {
		if err := diffRows(pick(afterB1, k), pick(got, k)); err != nil {
			t.Errorf("after Restore(batch 2), key %s: %v", k, err)
		}
	}
	ds.lastImaged(run, 1, "Restore(batch 2)")
	if n := ds.restore(run, 2); n != 0 {
		t.Errorf("Restore(batch 2) again = %d rows restored, want 0: restoring is idempotent", n)
	}
	if n := ds.restore(run, 1); n == 0 {
		t.Errorf("Restore(batch 1) = 0 rows restored, want some")
	}
	if err := diffRows(before, ds.state()); err != nil {
		t.Fatalf("after Restore 2 then 1, the destination is not as before the run: %v", err)
	}
	ds.lastImaged(run, 0, "Restore(batch 1)")
	if n := ds.restore(run, 1); n != 0 {
		t.Errorf("Restore(batch 1) again = %d rows restored, want 0", n)
	}
	ds.want = before
	ds.check("restoring every batch again")

	// A run that ended for good forgets its images: nothing to restore.
	const done = "finished-run"
	b := ds.batch(done, 1, version{"4", 2})
	b.KeepImages = true
	ds.apply(b, "apply a batch of a run that completes")
	ds.expect(version{"4", 2})
	ds.lastImaged(done, 1, "the completed run's batch")
	for range 2 { // Forget is idempotent
		if err := ds.sink.Forget(context.Background(), done); err != nil {
			t.Fatalf("Forget(%s): %v", done, err)
		}
	}
	ds.lastImaged(done, 0, "Forget")
	if n := ds.restore(done, 1); n != 0 {
		t.Errorf("Restore of a forgotten batch = %d rows restored, want 0", n)
	}
	ds.check("Forget and a Restore of the forgotten batch")
}

func sinkSweep(t *testing.T, d SinkDriver) {
	ds := openSink(t, d)
	if !ds.sink.Capabilities().Sweep {
		t.Skip("Capabilities().Sweep is false: batch refreshes cannot delete what the source no longer has")
	}
	sw, ok := ds.sink.(connector.Sweeper)
	if !ok {
		t.Fatalf("Capabilities().Sweep is true but %T is not a connector.Sweeper", ds.sink)
	}
	base := at(1, keys(1, 6)...)
	ds.apply(ds.batch("run-0", 1, base...), "apply the rows before the refresh")
	ds.expect(base...)
	before := ds.state()
	sweep := func(runID string, seq int, images bool, keep ...string) int {
		t.Helper()
		w := ds.fx.NewWriter()
		defer w.Rollback()
		tx, err := w.Tx(context.Background())
		if err != nil {
			t.Fatal(err)
		}
		n, err := sw.Sweep(context.Background(), tx, runID, seq, images, keep)
		if err != nil {
			t.Fatalf("Sweep(%s, %d): %v", runID, seq, err)
		}
		if err := w.Commit(); err != nil {
			t.Fatalf("Sweep(%s, %d): commit: %v", runID, seq, err)
		}
		return n
	}

	// A refresh of an atomic run reads keys 1 to 3 (2 changed) and
	// quarantines 6, which stays; 4 and 5 are gone from the source.
	const run = "refresh-run"
	b := ds.batch(run, 1, version{"1", 1}, version{"2", 2}, version{"3", 1})
	b.SeenRun, b.KeepImages = run, ds.sink.Capabilities().Compensation
	ds.apply(b, "apply the refresh's batch")
	if n := sweep(run, 2, b.KeepImages, "6"); n != 2 {
		t.Errorf("Sweep deleted %d rows, want 2 (keys 4 and 5)", n)
	}
	ds.expect(version{"2", 2}, version{"4", 0}, version{"5", 0})
	ds.check("the sweep")
	if n := sweep(run, 2, b.KeepImages, "6"); n != 0 {
		t.Errorf("Sweep again deleted %d rows, want 0", n)
	}
	ds.check("sweeping again")

	if b.KeepImages {
		ds.lastImaged(run, 2, "the sweep")
		ds.restore(run, 2)
		ds.restore(run, 1)
		ds.want = before
		ds.check("restoring the sweep and the refresh's batch")
	}
	for range 2 { // ForgetSeen is idempotent
		if err := sw.ForgetSeen(context.Background(), run); err != nil {
			t.Fatalf("ForgetSeen(%s): %v", run, err)
		}
	}
}

// pick is the row of key k in rows, alone (none when absent).
func pick(rows map[string]connector.Row, k string) map[string]connector.Row {
	out := map[string]connector.Row{}
	if r, ok := rows[k]; ok {
		out[k] = r
	}
	return out
}

func sinkBadRows(t *testing.T, d SinkDriver) {
	if len(d.BadRows) == 0 {
		t.Fatal("connectortest: the SinkDriver has no BadRows: every destination has data it cannot hold")
	}
	ds := openSink(t, d)
	// Good rows around every bad one.
	var b connector.Batch
	b.RunID, b.Seq = "run-1", 1
	var good []version
	bad := map[int]BadRow{}
	add := func(key string, row connector.Row) {
		b.Keys, b.Rows = append(b.Keys, key), append(b.Rows, row)
	}
	for i, br := range d.BadRows {
		k := strconv.Itoa(i + 1)
		good = append(good, version{k, 1})
		add(k, d.Row(k, 1))
		bad[len(b.Rows)] = br
		add(strconv.Itoa(100+i), br.Row(strconv.Itoa(100+i)))
	}
	k := strconv.Itoa(len(d.BadRows) + 1)
	good = append(good, version{k, 1})
	add(k, d.Row(k, 1))

	check := func(res connector.Result, what string, want tally) {
		t.Helper()
		wantTally(t, what, res, want)
		var refused []int
		for _, rf := range res.Refused {
			refused = append(refused, rf.Index)
			br, ok := bad[rf.Index]
			if !ok {
				t.Errorf("%s: good row %d (key %s) refused: %s %s", what, rf.Index, b.Keys[rf.Index], rf.Keyword, rf.Message)
				continue
			}
			if rf.Keyword == "" || !strings.Contains(strings.ToLower(rf.Message), strings.ToLower(br.Why)) {
				t.Errorf("%s: %s refused with keyword %q and message %q, want a keyword and a message naming %q", what, br.Name, rf.Keyword, rf.Message, br.Why)
			}
		}
		slices.Sort(refused)
		var wantRefused []int
		for i := range bad {
			wantRefused = append(wantRefused, i)
		}
		slices.Sort(wantRefused)
		if !slices.Equal(refused, wantRefused) {
			t.Errorf("%s: rows %v refused, want %v: a bad row is refused, never dropped silently", what, refused, wantRefused)
		}
	}
	res := ds.apply(b, "apply a batch with bad rows")
	check(res, "a batch with bad rows", tally{Inserted: len(good), Refused: len(bad)})
	ds.expect(good...)
	ds.check("a batch with bad rows")
	// A retry refuses the same rows again and writes nothing more.
	res = ds.apply(b, "apply the batch with bad rows again")
	check(res, "the batch with bad rows applied again", tally{Unchanged: len(good), Refused: len(bad)})
	ds.check("the batch with bad rows applied again")
}

func sinkBadConfig(t *testing.T, d SinkDriver) {
	if len(d.BadConfigs) == 0 {
		t.Fatal("connectortest: the SinkDriver has no BadConfigs")
	}
	fx := d.Open(t)
	open := func(cfg any) (connector.Sink, error) {
		return fx.Factory(connector.SinkSpec{Integration: integration, Destination: "acceptance", Config: cfg})
	}
	for _, bc := range d.BadConfigs {
		t.Run(bc.Name, func(t *testing.T) {
			sink, err := open(bc.Config)
			if err := checkConfigError(err, bc.Field); err != nil {
				t.Error(err)
			}
			if sink != nil {
				t.Errorf("the factory returned a sink (%T) with its error", sink)
			}
		})
	}
	t.Run("another connector's configuration", func(t *testing.T) {
		sink, err := open(otherConfig{})
		if err := checkConfigError(err, "otherConfig"); err != nil {
			t.Error(err)
		}
		if sink != nil {
			t.Errorf("the factory returned a sink (%T) with its error", sink)
		}
	})
}
