package integration

import (
	"context"
	"io"
	"log/slog"
	"testing"

	"github.com/tetherflow/tether/activities/integration"
	"github.com/tetherflow/tether/activities/lib/progress"
	"github.com/tetherflow/tether/activities/lib/schema"
	"github.com/tetherflow/tether/activities/syncstep"
	"github.com/tetherflow/tether/schemas"
	"github.com/tetherflow/tether/starters/sandbox"
	"github.com/tetherflow/tether/workers/app"
)

// TestClaimCheck_StepsOnAnotherWorkerRebuildThePageFromTheStagedCopy runs
// FetchPage on one worker's activities and the later steps on another's
// (empty cache), as happens when steps land on different workers or after a
// crash: the second rebuilds the page from PostgreSQL and applies the same
// rows, with the same quarantine, as a single worker would.
func TestClaimCheck_StepsOnAnotherWorkerRebuildThePageFromTheStagedCopy(t *testing.T) {
	s := newStack(t, stackOptions{sandbox: sandbox.Options{Seed: 10, Contacts: 1500, Faults: sandbox.Faults{InvalidRate: 0.04}}, noWorker: true})
	newActs := func() *app.Activities {
		reg, err := integration.NewRegistry(s.defs...)
		if err != nil {
			t.Fatal(err)
		}
		sch, err := schema.NewRegistry(schemas.FS())
		if err != nil {
			t.Fatal(err)
		}
		a, err := app.Build(app.BuildOptions{DB: s.schema.DB, Store: s.store, Integrations: reg, Schemas: sch, Logger: slog.New(slog.NewTextHandler(io.Discard, nil)), LookupEnv: s.lookupEnv})
		if err != nil {
			t.Fatal(err)
		}
		return a
	}
	fetcher, applier := newActs(), newActs()
	ctx := context.Background()
	start, err := fetcher.Run.StartRun(ctx, syncstep.StartRunInput{Integration: "crm-contacts", RunID: "claim-check", Kind: "sync"})
	if err != nil {
		t.Fatal(err)
	}
	plan := start.Plan
	since := plan.Since
	var counts progress.Counts
	for page, seq := 1, 1; ; page++ {
		ref := syncstep.PageRef{RunID: "claim-check", Page: page}
		out, err := fetcher.Fetch.FetchPage(ctx, syncstep.FetchPageInput{Integration: "crm-contacts", Ref: ref, Since: since, Limit: plan.BatchSize})
		if err != nil {
			t.Fatal(err)
		}
		in := syncstep.BatchInput{Integration: "crm-contacts", Ref: out.Ref, Since: since}
		v, err := applier.Validate.ValidateBatch(ctx, in)
		if err != nil {
			t.Fatalf("validate on the other worker: %v", err)
		}
		tr, err := applier.Transform.TransformBatch(ctx, in)
		if err != nil {
			t.Fatalf("transform on the other worker: %v", err)
		}
		a, err := applier.Apply.ApplyBatch(ctx, syncstep.ApplyInput{BatchInput: in, Seq: seq, Checkpoint: out.Last})
		if err != nil {
			t.Fatalf("apply on the other worker: %v", err)
		}
		counts = counts.Add(progress.Counts{Fetched: out.Count, Skipped: v.Skipped, Invalid: v.Invalid + tr.Invalid, Inserted: a.Inserted})
		seq++
		if out.Done {
			break
		}
		since = out.Last
	}
	invalid := len(s.sandbox.InvalidContactIDs())
	if counts.Invalid != invalid || counts.Inserted != 1500-invalid {
		t.Errorf("counts %+v, want %d invalid and %d inserted", counts, invalid, 1500-invalid)
	}
	checkContacts(t, s)
}
