package run_test

import (
	"context"
	"io"
	"log/slog"
	"testing"
	"testing/fstest"

	"github.com/tetherflow/tether/activities/catalog"
	"github.com/tetherflow/tether/activities/connector/builtin"
	"github.com/tetherflow/tether/activities/connector/httpsource"
	"github.com/tetherflow/tether/activities/connector/pgsink"
	"github.com/tetherflow/tether/activities/integration"
	"github.com/tetherflow/tether/activities/lib/mapping"
	"github.com/tetherflow/tether/activities/lib/schema"
	"github.com/tetherflow/tether/activities/pages"
	"github.com/tetherflow/tether/activities/run"
	"github.com/tetherflow/tether/activities/store"
	"github.com/tetherflow/tether/activities/syncstep"
	"github.com/tetherflow/tether/tests/pgtest"
)

// people is an integration whose status mapping a reload changes.
func people(normalize string) integration.Definition {
	return integration.Definition{
		Name: "people", Version: 1,
		Source:   integration.Source{HTTP: &httpsource.Config{BaseURL: "http://127.0.0.1:1", Path: "/people"}},
		Schema:   "people.schema.json",
		KeyField: "id",
		Mapping: mapping.Mapping{Fields: []mapping.Field{
			{To: "id", From: "id", Cast: "int", Required: true},
			{To: "status", From: "status", Normalize: []string{normalize}},
		}},
		Destination: integration.Destination{Postgres: &pgsink.Table{
			Name:    "people",
			Columns: []pgsink.Column{{Name: "id", Type: "bigint", NotNull: true}, {Name: "status", Type: "text"}},
			Key:     []string{"id"},
		}},
	}
}

func registry(t *testing.T, defs ...integration.Definition) *integration.Registry {
	t.Helper()
	reg, err := integration.NewRegistry(defs...)
	if err != nil {
		t.Fatal(err)
	}
	return reg
}

// TestActivities_StartRun_PinsTheCurrentDefinition: StartRun puts the
// current definition's fingerprint in the plan, before and after a reload,
// and makes the destination table.
func TestActivities_StartRun_PinsTheCurrentDefinition(t *testing.T) {
	db := pgtest.New(t)
	ctx := context.Background()
	if err := store.Migrate(ctx, db.DB); err != nil {
		t.Fatal(err)
	}
	sch, err := schema.NewRegistry(fstest.MapFS{"people.schema.json": {Data: []byte(`{"type": "object"}`)}})
	if err != nil {
		t.Fatal(err)
	}
	st := store.New(db.DB)
	log := slog.New(slog.NewTextHandler(io.Discard, nil))
	cat := catalog.New(catalog.Options{Schemas: sch, Logger: log,
		Connectors: builtin.Registry(builtin.Options{DB: db.DB, Memos: st, Identities: st, Logger: log})})
	if _, err := cat.Reload(registry(t, people("lower")), nil); err != nil {
		t.Fatal(err)
	}
	a := &run.Activities{Catalog: cat, Store: st, Lease: &run.Lease{Store: st, Logger: log}, Pages: pages.New(st, 0)}
	start := func(runID string) syncstep.Plan {
		t.Helper()
		out, err := a.StartRun(ctx, syncstep.StartRunInput{Integration: "people", RunID: runID, WorkflowID: runID, Kind: store.KindSync})
		if err != nil {
			t.Fatal(err)
		}
		// As FinishRun does: the next run may take the writer lease.
		if err := a.Lease.Release(ctx, "people", runID); err != nil {
			t.Fatal(err)
		}
		return out.Plan
	}
	current := func() string {
		fp, _ := cat.Current("people")
		return fp
	}
	if got, want := start("r1").Definition, current(); got == "" || got != want {
		t.Errorf("plan pinned to %q, want the current %q", got, want)
	}
	var tables int
	if err := db.DB.QueryRow(`SELECT count(*) FROM pg_tables WHERE schemaname = $1 AND tablename = 'people'`, db.Name).Scan(&tables); err != nil || tables != 1 {
		t.Errorf("StartRun did not make the destination table (%d, %v)", tables, err)
	}
	if _, err := cat.Reload(registry(t, people("upper")), nil); err != nil {
		t.Fatal(err)
	}
	if got, want := start("r2").Definition, current(); got != want {
		t.Errorf("after a reload the plan is pinned to %q, want the new %q", got, want)
	}
}
