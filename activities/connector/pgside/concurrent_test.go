package pgside_test

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"testing"

	"github.com/tetherflow/tether/activities/connector"
)

// TestSide_ConcurrentWritesEachGetTheirOwnResult: writes made at once are
// committed in groups, yet each gets its own answer: a write at the
// version read is made, one at a stale version is refused with
// ErrChanged, one the table refuses (a seat count that is not a number)
// fails alone, and the table holds exactly the writes that were made.
func TestSide_ConcurrentWritesEachGetTheirOwnResult(t *testing.T) {
	fx := open(false)(t, 100)
	side, err := fx.Factory(connector.SideSpec{Integration: "t", Side: "app", Config: fx.Config})
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	const n = 60
	written := make([]connector.Written, n)
	for i := range n {
		if written[i], err = side.Put(ctx, "", record(i, 1), "", fmt.Sprintf("acc-%d", i)); err != nil {
			t.Fatal(err)
		}
	}
	stale := func(i int) bool { return i%5 == 0 }
	bad := func(i int) bool { return i == 7 || i == 31 }
	// Make the stale ones stale: changed since they were written.
	for i := range n {
		if stale(i) {
			fx.Edit(t, written[i].Key, record(i, 9))
		}
	}
	errs := make([]error, n)
	var wg sync.WaitGroup
	for i := range n {
		wg.Go(func() {
			rec := record(i, 2)
			if bad(i) {
				rec["seats"] = "many"
			}
			_, errs[i] = side.Put(ctx, written[i].Key, rec, written[i].Version, "")
		})
	}
	wg.Wait()
	for i, err := range errs {
		switch {
		case stale(i) && !errors.Is(err, connector.ErrChanged):
			t.Errorf("record %d, stale: %v; want ErrChanged", i, err)
		case bad(i) && (err == nil || errors.Is(err, connector.ErrChanged)):
			t.Errorf("record %d, bad: %v; want its own error", i, err)
		case !stale(i) && !bad(i) && err != nil:
			t.Errorf("record %d: %v", i, err)
		}
	}
	var feed []connector.Change
	if err := side.Changes(ctx, "", "", func(p []connector.Change) error { feed = append(feed, p...); return nil }); err != nil {
		t.Fatal(err)
	}
	got := map[string]string{}
	for _, c := range feed {
		got[c.Key] = fmt.Sprint(c.Record["name"])
	}
	for i := range n {
		want := record(i, 2)["name"]
		switch {
		case stale(i):
			want = record(i, 9)["name"]
		case bad(i):
			want = record(i, 1)["name"]
		}
		if got[written[i].Key] != want {
			t.Errorf("record %d holds %q, want %q", i, got[written[i].Key], want)
		}
	}
}
