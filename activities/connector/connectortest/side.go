package connectortest

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"slices"
	"testing"
	"time"

	"github.com/tetherflow/tether/activities/connector"
)

// SideDriver is what a two-way side's test gives the acceptance suite.
type SideDriver struct {
	// Open opens a fresh, empty side (a table of its own, an API on
	// loopback with no records): its factory, a configuration that reads
	// PageSize records per feed page, and a way to edit records outside
	// tether.
	Open func(t *testing.T, pageSize int) SideFixture
	// Record is a valid record n (1, 2, ...) in the shared shape at
	// version v: records of different n or v differ, and a record of n
	// is unique on the side (e.g. its email).
	Record func(n, v int) connector.Row
	// Idem is the idempotency key of the create of record n (a side that
	// keys a created record by it, as a table does, may want a UUID);
	// nil: "create-<n>".
	Idem func(n int) string
	// DeletesInFeed says the side's feed shows deletions (an API's feed
	// with deleted records, a table with deleted_at); without it the
	// feed case for deletes is skipped with the reason.
	DeletesInFeed bool
	// BadConfigs are configurations the factory must refuse, each with
	// the setting its error names.
	BadConfigs []BadConfig
}

// SideFixture is one fresh side.
type SideFixture struct {
	Factory connector.SideFactory
	Config  any
	// Edit changes the record key to rec outside tether, as a person
	// using the system does (its version and change time move on).
	Edit func(t *testing.T, key string, rec connector.Row)
}

// Side runs the acceptance suite of a two-way side connector, each case
// as a subtest on a fresh side:
//   - created records are read back from the feed exactly, each once, with
//     a version and a cursor, over several pages;
//   - the feed resumes after any change's (cursor, key) with no later
//     change lost, and shows an edit made outside after where it was read
//     up to;
//   - a create sent again with its idempotency key creates nothing more;
//   - a write or delete conditional on a version that is no longer the
//     record's is refused with connector.ErrChanged and changes nothing,
//     whether the record changed through the side or outside it;
//   - a delete is seen in the feed (DeletesInFeed) and deleting a record
//     that is gone is no error;
//   - a bad configuration is a permanent failure.TypeConfig error naming
//     the setting.
func Side(t *testing.T, d SideDriver) {
	t.Helper()
	if d.Open == nil || d.Record == nil {
		t.Fatal("connectortest.SideDriver: Open and Record are required")
	}
	t.Run("created records read back over pages", func(t *testing.T) { sideReadBack(t, d) })
	t.Run("feed resumes after any change", func(t *testing.T) { sideResume(t, d) })
	t.Run("create is idempotent", func(t *testing.T) { sideIdempotentCreate(t, d) })
	t.Run("writes are conditional", func(t *testing.T) { sideConditional(t, d) })
	t.Run("deletes", func(t *testing.T) { sideDeletes(t, d) })
	t.Run("bad configuration", func(t *testing.T) { sideBadConfig(t, d) })
}

// sidePage is the feed's page size in the cases: small, so a handful of
// records spans pages.
const sidePage = 3

type side struct {
	t  *testing.T
	d  SideDriver
	fx SideFixture
	s  connector.Side
}

func openSide(t *testing.T, d SideDriver) *side {
	t.Helper()
	fx := d.Open(t, sidePage)
	if fx.Factory == nil {
		t.Fatal("SideFixture: Factory is required")
	}
	s, err := fx.Factory(connector.SideSpec{Integration: "acceptance", Side: "side", Config: fx.Config})
	if err != nil {
		t.Fatalf("open the side: %v", err)
	}
	return &side{t: t, d: d, fx: fx, s: s}
}

func sideCtx(t *testing.T) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	t.Cleanup(cancel)
	return ctx
}

func (s *side) idem(n int) string {
	if s.d.Idem != nil {
		return s.d.Idem(n)
	}
	return fmt.Sprintf("create-%d", n)
}

// create creates record n at version 1.
func (s *side) create(n int) connector.Written {
	s.t.Helper()
	w, err := s.s.Put(sideCtx(s.t), "", s.d.Record(n, 1), "", s.idem(n))
	if err != nil {
		s.t.Fatalf("create record %d: %v", n, err)
	}
	if w.Key == "" || w.Version == "" {
		s.t.Fatalf("create record %d: written %+v has no key or version", n, w)
	}
	return w
}

// feed reads the feed after (cursor, key) to its end.
func (s *side) feed(cursor, key string) []connector.Change {
	s.t.Helper()
	var all []connector.Change
	pages := 0
	err := s.s.Changes(sideCtx(s.t), cursor, key, func(p []connector.Change) error {
		if len(p) == 0 {
			return errors.New("an empty page was handed on")
		}
		pages++
		all = append(all, p...)
		return nil
	})
	if err != nil {
		s.t.Fatalf("read the feed after (%q, %q): %v", cursor, key, err)
	}
	return all
}

// latest is the last change of each key in changes.
func latest(changes []connector.Change) map[string]connector.Change {
	m := map[string]connector.Change{}
	for _, c := range changes {
		m[c.Key] = c
	}
	return m
}

// sameRecord says how got differs from want, field by field.
func sameRecord(want, got connector.Row) error {
	var diffs []string
	for _, f := range slices.Sorted(maps.Keys(want)) {
		w, _ := canonical(want[f])
		g, _ := canonical(got[f])
		if _, ok := got[f]; !ok || w != g {
			diffs = append(diffs, fmt.Sprintf("%s: want %s, got %s", f, w, g))
		}
	}
	for _, f := range slices.Sorted(maps.Keys(got)) {
		if _, ok := want[f]; !ok {
			diffs = append(diffs, fmt.Sprintf("%s: not a shared field written, got %v", f, got[f]))
		}
	}
	if len(diffs) > 0 {
		return errors.New(fmt.Sprint(diffs))
	}
	return nil
}

// expect checks the change of key in changes holds want (nil: deleted).
func (s *side) expect(changes []connector.Change, key string, want connector.Row, what string) connector.Change {
	s.t.Helper()
	c, ok := latest(changes)[key]
	switch {
	case !ok:
		s.t.Fatalf("%s: record %s is not in the feed", what, key)
	case want == nil && !c.Deleted:
		s.t.Fatalf("%s: record %s is in the feed as %v, want it deleted", what, key, c.Record)
	case want != nil && c.Deleted:
		s.t.Fatalf("%s: record %s is in the feed as deleted, want %v", what, key, want)
	case want != nil:
		if err := sameRecord(want, c.Record); err != nil {
			s.t.Fatalf("%s: record %s reads back wrong: %v", what, key, err)
		}
	}
	if c.Version == "" || c.Cursor == "" {
		s.t.Fatalf("%s: change of %s has no version or cursor: %+v", what, key, c)
	}
	return c
}

func sideReadBack(t *testing.T, d SideDriver) {
	s := openSide(t, d)
	if got := s.feed("", ""); len(got) != 0 {
		t.Fatalf("a fresh side's feed has %d changes, want none", len(got))
	}
	const n = 3*sidePage + 1
	written := map[string]int{}
	for i := 1; i <= n; i++ {
		written[s.create(i).Key] = i
	}
	if len(written) != n {
		t.Fatalf("%d creates gave %d distinct keys", n, len(written))
	}
	feed := s.feed("", "")
	seen := map[string]int{}
	for _, c := range feed {
		seen[c.Key]++
	}
	for k, times := range seen {
		if times != 1 {
			t.Errorf("record %s is %d times in one read of the feed", k, times)
		}
		if _, ok := written[k]; !ok {
			t.Errorf("record %s is in the feed but was not created", k)
		}
	}
	for k, i := range written {
		c := s.expect(feed, k, d.Record(i, 1), "read back")
		if c.At.IsZero() {
			t.Errorf("change of %s has no change time", k)
		}
	}
}

func sideResume(t *testing.T, d SideDriver) {
	s := openSide(t, d)
	const n = 2*sidePage + 2
	for i := 1; i <= n; i++ {
		s.create(i)
	}
	feed := s.feed("", "")
	if len(feed) != n {
		t.Fatalf("the feed has %d changes, want %d", len(feed), n)
	}
	for i, c := range feed {
		got := latest(s.feed(c.Cursor, c.Key))
		for _, later := range feed[i+1:] {
			if _, ok := got[later.Key]; !ok {
				t.Fatalf("read after the change of %s (cursor %q), the later %s is lost", c.Key, c.Cursor, later.Key)
			}
		}
	}
	// An edit made outside after the last read is in the feed after it.
	last := feed[len(feed)-1]
	first := feed[0]
	if s.fx.Edit == nil {
		t.Fatal("SideFixture: Edit is required (an edit made outside tether)")
	}
	edited := d.Record(1, 5)
	s.fx.Edit(t, first.Key, edited)
	c := s.expect(s.feed(last.Cursor, last.Key), first.Key, edited, "after an edit outside")
	if c.Version == first.Version {
		t.Errorf("the edit outside left the version at %q", c.Version)
	}
}

func sideIdempotentCreate(t *testing.T, d SideDriver) {
	s := openSide(t, d)
	w := s.create(1)
	again, err := s.s.Put(sideCtx(t), "", d.Record(1, 1), "", s.idem(1))
	switch {
	case errors.Is(err, connector.ErrChanged):
	case err != nil:
		t.Fatalf("the create sent again: %v (want the record made, or connector.ErrChanged)", err)
	case again.Key != w.Key:
		t.Fatalf("the create sent again made %s beside %s", again.Key, w.Key)
	}
	feed := s.feed("", "")
	if len(latest(feed)) != 1 {
		t.Fatalf("after a create sent twice the side has %d records, want 1", len(latest(feed)))
	}
	s.expect(feed, w.Key, d.Record(1, 1), "after a create sent twice")
}

func sideConditional(t *testing.T, d SideDriver) {
	s := openSide(t, d)
	ctx := sideCtx(t)
	w1 := s.create(1)
	w2, err := s.s.Put(ctx, w1.Key, d.Record(1, 2), w1.Version, "")
	if err != nil {
		t.Fatalf("update at the version read: %v", err)
	}
	if w2.Key != w1.Key || w2.Version == "" || w2.Version == w1.Version {
		t.Fatalf("update wrote %+v after %+v: want the same key and a new version", w2, w1)
	}
	c := s.expect(s.feed("", ""), w1.Key, d.Record(1, 2), "after an update")
	if c.Version != w2.Version {
		t.Errorf("the feed's version %q is not the one the update answered, %q", c.Version, w2.Version)
	}
	// A write at the old version: refused, nothing changed.
	if _, err := s.s.Put(ctx, w1.Key, d.Record(1, 3), w1.Version, ""); !errors.Is(err, connector.ErrChanged) {
		t.Fatalf("update at a stale version: %v, want connector.ErrChanged", err)
	}
	if err := s.s.Delete(ctx, w1.Key, w1.Version); !errors.Is(err, connector.ErrChanged) {
		t.Fatalf("delete at a stale version: %v, want connector.ErrChanged", err)
	}
	s.expect(s.feed("", ""), w1.Key, d.Record(1, 2), "after refused writes")
	// A person's edit outside: a write at the version read before it is
	// refused, and the edit is kept.
	if s.fx.Edit == nil {
		t.Fatal("SideFixture: Edit is required (an edit made outside tether)")
	}
	s.fx.Edit(t, w1.Key, d.Record(1, 4))
	if _, err := s.s.Put(ctx, w1.Key, d.Record(1, 3), w2.Version, ""); !errors.Is(err, connector.ErrChanged) {
		t.Fatalf("update at the version before an edit outside: %v, want connector.ErrChanged", err)
	}
	s.expect(s.feed("", ""), w1.Key, d.Record(1, 4), "after a write refused over an edit outside")
}

func sideDeletes(t *testing.T, d SideDriver) {
	s := openSide(t, d)
	ctx := sideCtx(t)
	w := s.create(1)
	keep := s.create(2)
	before := s.feed("", "")
	last := before[len(before)-1]
	if err := s.s.Delete(ctx, w.Key, w.Version); err != nil {
		t.Fatalf("delete at the version read: %v", err)
	}
	if err := s.s.Delete(ctx, w.Key, w.Version); err != nil {
		t.Fatalf("delete of a record that is gone: %v, want no error", err)
	}
	after := s.feed("", "")
	s.expect(after, keep.Key, d.Record(2, 1), "the other record after a delete")
	if !d.DeletesInFeed {
		if c, ok := latest(after)[w.Key]; ok && !c.Deleted {
			t.Fatalf("the deleted record %s is in the feed as %v", w.Key, c.Record)
		}
		t.Skip("the side's feed does not show deletions (DeletesInFeed)")
	}
	s.expect(s.feed(last.Cursor, last.Key), w.Key, nil, "after the delete")
}

func sideBadConfig(t *testing.T, d SideDriver) {
	if len(d.BadConfigs) == 0 {
		t.Fatal("SideDriver: list at least one bad configuration the factory must refuse")
	}
	fx := d.Open(t, sidePage)
	for _, bc := range d.BadConfigs {
		t.Run(bc.Name, func(t *testing.T) {
			_, err := fx.Factory(connector.SideSpec{Integration: "acceptance", Side: "side", Config: bc.Config})
			if err := checkConfigError(err, bc.Field); err != nil {
				t.Fatal(err)
			}
		})
	}
	t.Run("another connector's configuration", func(t *testing.T) {
		_, err := fx.Factory(connector.SideSpec{Integration: "acceptance", Side: "side", Config: struct{ Other string }{}})
		if err := checkConfigError(err, "configuration"); err != nil {
			t.Fatal(err)
		}
	})
}
