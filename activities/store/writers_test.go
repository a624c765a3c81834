package store

import (
	"context"
	"errors"
	"testing"

	"github.com/tetherflow/tether/activities/lib/cursor"
	"github.com/tetherflow/tether/activities/lib/progress"
)

func TestAcquireWriter(t *testing.T) {
	t.Parallel()
	ctx := t.Context()
	s := newStore(t)
	alive := map[string]bool{}
	liveness := func(_ context.Context, w Writer) (bool, error) { return alive[w.RunID], nil }
	acquire := func(run string) (Writer, bool) {
		t.Helper()
		h, ok, err := s.AcquireWriter(ctx, Writer{Integration: "crm", RunID: run, WorkflowID: "wf-" + run, Kind: "sync", Trigger: "cli"}, liveness)
		if err != nil {
			t.Fatal(err)
		}
		return h, ok
	}

	alive["a"] = true
	if _, ok := acquire("a"); !ok {
		t.Fatal("a free lease was refused")
	}
	if _, ok := acquire("a"); !ok {
		t.Fatal("the holder could not take its own lease again (a retry)")
	}
	if h, ok := acquire("b"); ok || h.RunID != "a" || h.WorkflowID != "wf-a" || h.Trigger != "cli" {
		t.Fatalf("b got the lease of a running a: holder %+v, acquired %v", h, ok)
	}
	// a's workflow is gone (terminated): b takes the lease over.
	alive["a"] = false
	if h, ok := acquire("b"); !ok || h.RunID != "a" {
		t.Fatalf("b did not take over a dead run's lease: holder %+v, acquired %v", h, ok)
	}
	if w, ok, err := s.CurrentWriter(ctx, "crm"); err != nil || !ok || w.RunID != "b" {
		t.Fatalf("current writer %+v %v %v, want b", w, ok, err)
	}
	// A holder recorded as finished is dead whatever Temporal says.
	alive["b"] = true
	if err := s.BeginRun(ctx, Run{RunID: "b", Integration: "crm"}); err != nil {
		t.Fatal(err)
	}
	if err := s.FinishRun(ctx, "b", progress.StatusFailed, progress.Counts{}, cursor.Checkpoint{}, "boom", ""); err != nil {
		t.Fatal(err)
	}
	if _, ok := acquire("c"); !ok {
		t.Fatal("c could not take the lease of a finished run")
	}
	// Release is by holder only.
	if err := s.ReleaseWriter(ctx, "crm", "b"); err != nil {
		t.Fatal(err)
	}
	if w, ok, _ := s.CurrentWriter(ctx, "crm"); !ok || w.RunID != "c" {
		t.Fatalf("b released c's lease: %+v %v", w, ok)
	}
	if err := s.ReleaseWriter(ctx, "crm", "c"); err != nil {
		t.Fatal(err)
	}
	if _, ok, _ := s.CurrentWriter(ctx, "crm"); ok {
		t.Fatal("the lease is still held after its holder released it")
	}
	// A liveness error counts as alive: never two writers on a doubt.
	alive["d"] = true
	acquire("d")
	_, ok, err := s.AcquireWriter(ctx, Writer{Integration: "crm", RunID: "e"}, func(context.Context, Writer) (bool, error) {
		return false, errors.New("temporal unreachable")
	})
	if err != nil || ok {
		t.Fatalf("e got the lease while d's liveness was unknown: %v %v", ok, err)
	}
}
