package pipeline

import (
	"context"
	"encoding/json"
	"errors"
	"io"
	"log/slog"
	"reflect"
	"strings"
	"testing"
	"testing/fstest"
	"time"

	"go.temporal.io/sdk/temporal"
	"go.temporal.io/sdk/testsuite"

	"github.com/tetherflow/tether/activities/connector/httpsource"
	"github.com/tetherflow/tether/activities/connector/pgsink"
	"github.com/tetherflow/tether/activities/connector/pgsource"
	"github.com/tetherflow/tether/activities/integration"
	"github.com/tetherflow/tether/activities/lib/failure"
	"github.com/tetherflow/tether/activities/lib/mapping"
	"github.com/tetherflow/tether/activities/lib/schema"
	"github.com/tetherflow/tether/activities/store"
	"github.com/tetherflow/tether/activities/syncstep"
	"github.com/tetherflow/tether/tests/pgtest"
)

// people is a small integration whose status mapping tests change: the
// status is written as normalize says ("lower" or "upper").
func people(normalize string) integration.Definition {
	return integration.Definition{
		Name:    "people",
		Version: 1,
		Source: integration.Source{HTTP: &httpsource.Config{
			BaseURL: "http://127.0.0.1:1", Path: "/people",
			Auth: httpsource.Auth{Kind: "bearer", Token: "s3cr3t"},
		}},
		Schema:   "people.schema.json",
		KeyField: "id",
		Mapping: mapping.Mapping{Fields: []mapping.Field{
			{To: "id", From: "id", Cast: "int", Required: true},
			{To: "status", From: "status", Normalize: []string{normalize}},
		}},
		Destination: integration.Destination{Postgres: &pgsink.Table{
			Name: "people",
			Columns: []pgsink.Column{
				{Name: "id", Type: "bigint", NotNull: true},
				{Name: "status", Type: "text"},
			},
			Key: []string{"id"},
		}},
	}
}

func testSchemas(t *testing.T) *schema.Registry {
	t.Helper()
	sch, err := schema.NewRegistry(fstest.MapFS{"people.schema.json": {Data: []byte(
		`{"$schema": "https://json-schema.org/draft/2020-12/schema", "type": "object", "required": ["id"]}`)}})
	if err != nil {
		t.Fatal(err)
	}
	return sch
}

func registry(t *testing.T, defs ...integration.Definition) *integration.Registry {
	t.Helper()
	reg, err := integration.NewRegistry(defs...)
	if err != nil {
		t.Fatal(err)
	}
	return reg
}

// newTestActivities builds Activities without a database: enough for the
// steps that find their page in the cache.
func newTestActivities(t *testing.T, d Deps, defs ...integration.Definition) *Activities {
	t.Helper()
	d.Integrations = registry(t, defs...)
	if d.Schemas == nil {
		d.Schemas = testSchemas(t)
	}
	d.Logger = slog.New(slog.NewTextHandler(io.Discard, nil))
	a, err := New(d)
	if err != nil {
		t.Fatal(err)
	}
	return a
}

func fingerprint(t *testing.T, a *Activities, name string) string {
	t.Helper()
	fp, ok := CurrentDefinition(a, name)
	if !ok {
		t.Fatalf("no current definition of %s", name)
	}
	return fp
}

// transformedStatus runs TransformBatch on a one-record page of a run
// pinned to def and returns the status the mapping wrote.
func transformedStatus(t *testing.T, a *Activities, runID, def string) string {
	t.Helper()
	ref := syncstep.PageRef{RunID: runID, Page: 1, Stage: "s"}
	a.cache.put(ref, &pageEntry{raw: []json.RawMessage{json.RawMessage(`{"id": 7, "status": "Active"}`)}})
	out, err := a.TransformBatch(context.Background(), syncstep.BatchInput{Integration: "people", Ref: ref, Definition: def})
	if err != nil {
		t.Fatalf("TransformBatch (run %s, definition %q): %v", runID, def, err)
	}
	e, _ := a.cache.get(ref)
	if out.Transformed != 1 || len(e.rows) != 1 {
		t.Fatalf("TransformBatch (run %s): %+v", runID, out)
	}
	return e.rows[0]["status"].(string)
}

func TestReload_NewRunsGetTheNewDefinitionPinnedRunsKeepTheirs(t *testing.T) {
	a := newTestActivities(t, Deps{}, people("lower"))
	old := fingerprint(t, a, "people")

	ch, err := Reload(a, registry(t, people("upper")), nil)
	if err != nil {
		t.Fatal(err)
	}
	if len(ch.Changed) != 1 || ch.Changed[0] != "people" || len(ch.Added)+len(ch.Removed) != 0 {
		t.Errorf("changes %+v, want people changed", ch)
	}
	cur := fingerprint(t, a, "people")
	if cur == old {
		t.Fatalf("the fingerprint did not change with the mapping: %s", cur)
	}

	if got := transformedStatus(t, a, "started-before", old); got != "active" {
		t.Errorf("a run pinned to the old definition mapped status to %q, want %q (the old mapping)", got, "active")
	}
	if got := transformedStatus(t, a, "started-after", cur); got != "ACTIVE" {
		t.Errorf("a run pinned to the new definition mapped status to %q, want %q", got, "ACTIVE")
	}
	if got := transformedStatus(t, a, "not-pinned", ""); got != "ACTIVE" {
		t.Errorf("a run without a pinned definition mapped status to %q, want the current mapping's %q", got, "ACTIVE")
	}

	// The same definition again changes nothing and keeps its compiled form.
	before, _ := a.get("people", cur)
	ch, err = Reload(a, registry(t, people("upper")), nil)
	if err != nil || !ch.Empty() {
		t.Fatalf("reload of the same definitions: %+v, %v", ch, err)
	}
	if after, _ := a.get("people", cur); after != before {
		t.Error("an unchanged definition was compiled again")
	}

	// Put back as it was: the old version is current again, as it was compiled.
	oldCompiled, _ := a.get("people", old)
	if _, err := Reload(a, registry(t, people("lower")), nil); err != nil {
		t.Fatal(err)
	}
	if fingerprint(t, a, "people") != old {
		t.Error("the restored definition has another fingerprint")
	}
	if c, _ := a.get("people", ""); c != oldCompiled {
		t.Error("the restored definition was compiled again instead of reusing the version kept")
	}
	if got := transformedStatus(t, a, "pinned-to-upper", cur); got != "ACTIVE" {
		t.Errorf("a run pinned to the replaced definition mapped status to %q, want %q", got, "ACTIVE")
	}
}

func TestReload_BadReloadKeepsTheOldSet(t *testing.T) {
	a := newTestActivities(t, Deps{LookupEnv: func(string) (string, bool) { return "", false }}, people("lower"))
	old := fingerprint(t, a, "people")

	noSchema := people("upper")
	noSchema.Schema = "missing.schema.json"
	noDSN := people("lower")
	noDSN.Name = "people-table"
	noDSN.Source = integration.Source{Postgres: &pgsource.Config{DSNEnv: "TETHER_TEST_NO_SUCH_DSN", Table: "people", Key: []string{"id"}}}
	_, err := Reload(a, registry(t, noSchema, noDSN), nil)
	if err == nil {
		t.Fatal("a reload with integrations that do not compile succeeded")
	}
	for _, want := range []string{`integration "people"`, "missing.schema.json", `integration "people-table"`, "TETHER_TEST_NO_SUCH_DSN"} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("reload error does not mention %s:\n%v", want, err)
		}
	}
	if got := fingerprint(t, a, "people"); got != old {
		t.Errorf("current definition %s after a failed reload, want the old %s", got, old)
	}
	if _, ok := CurrentDefinition(a, "people-table"); ok {
		t.Error("an integration of the failed reload was added")
	}
	if got := transformedStatus(t, a, "r", ""); got != "active" {
		t.Errorf("after a failed reload new runs map status to %q, want the old mapping's %q", got, "active")
	}
}

// configError checks err is the clear, permanent configuration error a
// step gets for a pinned definition the worker does not have.
func configError(t *testing.T, err error, wants ...string) {
	t.Helper()
	var appErr *temporal.ApplicationError
	if !errors.As(err, &appErr) {
		t.Fatalf("want an application error, got %v", err)
	}
	if appErr.Type() != failure.TypeConfig || !appErr.NonRetryable() {
		t.Errorf("type %s, non-retryable %v: want a non-retryable %s", appErr.Type(), appErr.NonRetryable(), failure.TypeConfig)
	}
	for _, want := range wants {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("error does not say %q:\n%v", want, err)
		}
	}
}

func TestGet_UnknownPinnedDefinition(t *testing.T) {
	// A run started on a worker that ran the old mapping; this one was
	// started (or restarted) with the new one.
	before := newTestActivities(t, Deps{}, people("lower"))
	pinned := fingerprint(t, before, "people")
	a := newTestActivities(t, Deps{}, people("upper"))
	cur := fingerprint(t, a, "people")

	ref := syncstep.PageRef{RunID: "r", Page: 1, Stage: "s"}
	a.cache.put(ref, &pageEntry{raw: []json.RawMessage{json.RawMessage(`{"id": 1}`)}})
	_, err := a.ValidateBatch(context.Background(), syncstep.BatchInput{Integration: "people", Ref: ref, Definition: pinned})
	configError(t, err, `integration "people"`, pinned, cur, "Start a new run", "restore the integration")

	// The current definition serves a run pinned to its fingerprint, and
	// runs started before runs were pinned.
	for _, def := range []string{cur, ""} {
		if _, err := a.get("people", def); err != nil {
			t.Errorf("get(people, %q): %v", def, err)
		}
	}
	_, err = a.get("nobody", "")
	configError(t, err, `unknown integration "nobody"`, "people")

	// An integration removed by a reload still serves the runs pinned to
	// it, not new ones.
	if _, err := Reload(a, registry(t), nil); err != nil {
		t.Fatal(err)
	}
	if _, err := a.get("people", cur); err != nil {
		t.Errorf("a run pinned to a removed integration's definition: %v", err)
	}
	_, err = a.get("people", "")
	configError(t, err, `unknown integration "people"`)
	_, err = a.get("people", pinned)
	configError(t, err, pinned, "no longer runs it")
}

func TestReload_PreviousVersionsAreBounded(t *testing.T) {
	a := newTestActivities(t, Deps{KeepVersions: 2, RetainUnused: time.Hour}, people("lower"))
	now := time.Date(2030, 1, 1, 0, 0, 0, 0, time.UTC)
	a.defs.now = func() time.Time { return now }

	var fps []string
	for i, norm := range []string{"upper", "trim", "email", "collapse_spaces"} {
		fps = append(fps, fingerprint(t, a, "people"))
		if i == 1 {
			// A run pinned to the first version still uses it.
			if _, err := a.get("people", fps[0]); err != nil {
				t.Fatal(err)
			}
		}
		now = now.Add(time.Minute)
		if _, err := Reload(a, registry(t, people(norm)), nil); err != nil {
			t.Fatal(err)
		}
	}
	// Four versions replaced, two kept: the most recently used.
	have := func(fp string) bool { _, err := a.get("people", fp); return err == nil }
	if !have(fps[3]) || !have(fps[2]) || have(fps[1]) || have(fps[0]) {
		t.Errorf("kept %v %v %v %v of versions 1-4, want only 3 and 4", have(fps[0]), have(fps[1]), have(fps[2]), have(fps[3]))
	}
	if n := len(a.defs.previous["people"]); n != 2 {
		t.Errorf("%d previous versions kept, want 2", n)
	}

	// Versions unused for longer than RetainUnused go at the next reload;
	// one a run used lately stays.
	now = now.Add(50 * time.Minute)
	if !have(fps[3]) {
		t.Fatal("version 4 is gone")
	}
	now = now.Add(20 * time.Minute)
	if _, err := Reload(a, registry(t, people("lower")), nil); err != nil {
		t.Fatal(err)
	}
	if !have(fps[3]) || have(fps[2]) {
		t.Errorf("after an hour: version 3 kept %v (want false), version 4 kept %v (want true)", have(fps[2]), have(fps[3]))
	}
}

func TestFingerprint(t *testing.T) {
	fp := func(def integration.Definition, declared string) string {
		t.Helper()
		s, err := Fingerprint(def.Normalize(), declared)
		if err != nil {
			t.Fatal(err)
		}
		return s
	}
	base := fp(people("lower"), "")
	if !strings.HasPrefix(base, "v1-") || base != fp(people("lower"), "") {
		t.Errorf("fingerprint %q: want a stable v1-... one", base)
	}

	rotated := people("lower")
	rotated.Source.HTTP.Auth.Token = "rotated"
	if fp(rotated, "") != base {
		t.Error("rotating the token changed the fingerprint")
	}
	computed := people("lower")
	computed.Mapping.Fields[1].Compute = func(mapping.Record) (any, error) { return "x", nil }
	if fp(computed, "") != base {
		t.Error("a Go function is in the fingerprint")
	}
	withTransform := people("lower")
	withTransform.Transform = func(r mapping.Record) (mapping.Record, error) { return r, nil }
	bumped := people("lower")
	bumped.Version = 2
	batch := people("lower")
	batch.BatchSize = 10
	for name, def := range map[string]integration.Definition{
		"mapping": people("upper"), "transform": withTransform, "version": bumped, "batch size": batch,
	} {
		if fp(def, "") == base {
			t.Errorf("changing the %s left the fingerprint as it was", name)
		}
	}

	// A declared integration's fingerprint is its file's hash (with the
	// name and version), whatever its definition compiles to.
	if a, b := fp(people("lower"), "hash1"), fp(people("upper"), "hash1"); a != b || a == base {
		t.Errorf("declared fingerprints %s, %s: want equal, and not the Go one", a, b)
	}
	if fp(people("lower"), "hash1") == fp(people("lower"), "hash2") {
		t.Error("another file hash left the fingerprint as it was")
	}
}

// TestStartRun_PinsTheCurrentDefinition: StartRun puts the current
// definition's fingerprint in the plan, before and after a reload.
func TestStartRun_PinsTheCurrentDefinition(t *testing.T) {
	db := pgtest.New(t)
	ctx := context.Background()
	if err := store.Migrate(ctx, db.DB); err != nil {
		t.Fatal(err)
	}
	a := newTestActivities(t, Deps{DB: db.DB, Store: store.New(db.DB)}, people("lower"))
	start := func(runID string) syncstep.Plan {
		t.Helper()
		out, err := a.StartRun(ctx, syncstep.StartRunInput{Integration: "people", RunID: runID, WorkflowID: runID, Kind: store.KindSync})
		if err != nil {
			t.Fatal(err)
		}
		// As FinishRun does: the next run may take the writer lease.
		if err := a.store.ReleaseWriter(ctx, "people", runID); err != nil {
			t.Fatal(err)
		}
		return out.Plan
	}
	if got, want := start("r1").Definition, fingerprint(t, a, "people"); got == "" || got != want {
		t.Errorf("plan pinned to %q, want the current %q", got, want)
	}
	if _, err := Reload(a, registry(t, people("upper")), nil); err != nil {
		t.Fatal(err)
	}
	if got, want := start("r2").Definition, fingerprint(t, a, "people"); got != want {
		t.Errorf("after a reload the plan is pinned to %q, want the new %q", got, want)
	}
}

// TestActivities_RegisterAsSteps: a worker registers every exported method
// of Activities as an activity, so reloading is not one of them.
func TestActivities_RegisterAsSteps(t *testing.T) {
	a := newTestActivities(t, Deps{}, people("lower"))
	env := (&testsuite.WorkflowTestSuite{}).NewTestActivityEnvironment()
	env.RegisterActivity(a) // panics on a method that is not an activity
	for _, name := range []string{"Reload", "CurrentDefinition"} {
		if _, ok := reflect.TypeOf(a).MethodByName(name); ok {
			t.Errorf("Activities has a method %s: a worker would run it as an activity", name)
		}
	}
}
