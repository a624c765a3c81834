package catalog

import (
	"errors"
	"io"
	"log/slog"
	"strings"
	"testing"
	"testing/fstest"
	"time"

	"go.temporal.io/sdk/temporal"

	"github.com/tetherflow/tether/activities/connector/builtin"
	"github.com/tetherflow/tether/activities/connector/httpsource"
	"github.com/tetherflow/tether/activities/connector/pgsink"
	"github.com/tetherflow/tether/activities/connector/pgsource"
	"github.com/tetherflow/tether/activities/integration"
	"github.com/tetherflow/tether/activities/lib/failure"
	"github.com/tetherflow/tether/activities/lib/mapping"
	"github.com/tetherflow/tether/activities/lib/schema"
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

// newCatalog compiles defs without a database: enough for sources and
// sinks that connect only when used.
func newCatalog(t *testing.T, o Options, env func(string) (string, bool), defs ...integration.Definition) *Catalog {
	t.Helper()
	if o.Schemas == nil {
		o.Schemas = testSchemas(t)
	}
	o.Logger = slog.New(slog.NewTextHandler(io.Discard, nil))
	o.Connectors = builtin.Registry(builtin.Options{Logger: o.Logger, LookupEnv: env})
	c := New(o)
	if _, err := c.Reload(registry(t, defs...), nil); err != nil {
		t.Fatal(err)
	}
	return c
}

func fingerprint(t *testing.T, c *Catalog, name string) string {
	t.Helper()
	fp, ok := c.Current(name)
	if !ok {
		t.Fatalf("no current definition of %s", name)
	}
	return fp
}

// status maps a record with the version of people a run pinned to def
// uses, and returns the status the mapping wrote.
func status(t *testing.T, c *Catalog, def string) string {
	t.Helper()
	in, err := c.Get("people", def)
	if err != nil {
		t.Fatalf("Get(people, %q): %v", def, err)
	}
	row, err := in.Transform(mapping.Record{"id": 7, "status": "Active"})
	if err != nil {
		t.Fatalf("transform (definition %q): %v", def, err)
	}
	return row["status"].(string)
}

func TestCatalog_Reload_NewRunsGetTheNewDefinitionPinnedRunsKeepTheirs(t *testing.T) {
	a := newCatalog(t, Options{}, nil, people("lower"))
	old := fingerprint(t, a, "people")

	ch, err := a.Reload(registry(t, people("upper")), nil)
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

	if got := status(t, a, old); got != "active" {
		t.Errorf("a run pinned to the old definition mapped status to %q, want %q (the old mapping)", got, "active")
	}
	if got := status(t, a, cur); got != "ACTIVE" {
		t.Errorf("a run pinned to the new definition mapped status to %q, want %q", got, "ACTIVE")
	}
	if got := status(t, a, ""); got != "ACTIVE" {
		t.Errorf("a run without a pinned definition mapped status to %q, want the current mapping's %q", got, "ACTIVE")
	}

	// The same definition again changes nothing and keeps its compiled form.
	before, _ := a.Get("people", cur)
	ch, err = a.Reload(registry(t, people("upper")), nil)
	if err != nil || !ch.Empty() {
		t.Fatalf("reload of the same definitions: %+v, %v", ch, err)
	}
	if after, _ := a.Get("people", cur); after != before {
		t.Error("an unchanged definition was compiled again")
	}

	// Put back as it was: the old version is current again, as it was compiled.
	oldCompiled, _ := a.Get("people", old)
	if _, err := a.Reload(registry(t, people("lower")), nil); err != nil {
		t.Fatal(err)
	}
	if fingerprint(t, a, "people") != old {
		t.Error("the restored definition has another fingerprint")
	}
	if c, _ := a.Get("people", ""); c != oldCompiled {
		t.Error("the restored definition was compiled again instead of reusing the version kept")
	}
	if got := status(t, a, cur); got != "ACTIVE" {
		t.Errorf("a run pinned to the replaced definition mapped status to %q, want %q", got, "ACTIVE")
	}
}

func TestCatalog_Reload_BadReloadKeepsTheOldSet(t *testing.T) {
	a := newCatalog(t, Options{}, func(string) (string, bool) { return "", false }, people("lower"))
	old := fingerprint(t, a, "people")

	noSchema := people("upper")
	noSchema.Schema = "missing.schema.json"
	noDSN := people("lower")
	noDSN.Name = "people-table"
	noDSN.Source = integration.Source{Postgres: &pgsource.Config{DSNEnv: "TETHER_TEST_NO_SUCH_DSN", Table: "people", Key: []string{"id"}}}
	_, err := a.Reload(registry(t, noSchema, noDSN), nil)
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
	if _, ok := a.Current("people-table"); ok {
		t.Error("an integration of the failed reload was added")
	}
	if got := status(t, a, ""); got != "active" {
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

func TestCatalog_Get_UnknownPinnedDefinition(t *testing.T) {
	// A run started on a worker that ran the old mapping; this one was
	// started (or restarted) with the new one.
	before := newCatalog(t, Options{}, nil, people("lower"))
	pinned := fingerprint(t, before, "people")
	a := newCatalog(t, Options{}, nil, people("upper"))
	cur := fingerprint(t, a, "people")

	_, err := a.Get("people", pinned)
	configError(t, err, `integration "people"`, pinned, cur, "Start a new run", "restore the integration")

	// The current definition serves a run pinned to its fingerprint, and
	// runs started before runs were pinned.
	for _, def := range []string{cur, ""} {
		if _, err := a.Get("people", def); err != nil {
			t.Errorf("Get(people, %q): %v", def, err)
		}
	}
	_, err = a.Get("nobody", "")
	configError(t, err, `unknown integration "nobody"`, "people")

	// An integration removed by a reload still serves the runs pinned to
	// it, not new ones.
	if _, err := a.Reload(registry(t), nil); err != nil {
		t.Fatal(err)
	}
	if _, err := a.Get("people", cur); err != nil {
		t.Errorf("a run pinned to a removed integration's definition: %v", err)
	}
	_, err = a.Get("people", "")
	configError(t, err, `unknown integration "people"`)
	_, err = a.Get("people", pinned)
	configError(t, err, pinned, "no longer runs it")
}

func TestCatalog_Reload_PreviousVersionsAreBounded(t *testing.T) {
	now := time.Date(2030, 1, 1, 0, 0, 0, 0, time.UTC)
	a := newCatalog(t, Options{KeepVersions: 2, RetainUnused: time.Hour, Now: func() time.Time { return now }}, nil, people("lower"))

	var fps []string
	for i, norm := range []string{"upper", "trim", "email", "collapse_spaces"} {
		fps = append(fps, fingerprint(t, a, "people"))
		if i == 1 {
			// A run pinned to the first version still uses it.
			if _, err := a.Get("people", fps[0]); err != nil {
				t.Fatal(err)
			}
		}
		now = now.Add(time.Minute)
		if _, err := a.Reload(registry(t, people(norm)), nil); err != nil {
			t.Fatal(err)
		}
	}
	// Four versions replaced, two kept: the most recently used.
	have := func(fp string) bool { _, err := a.Get("people", fp); return err == nil }
	if !have(fps[3]) || !have(fps[2]) || have(fps[1]) || have(fps[0]) {
		t.Errorf("kept %v %v %v %v of versions 1-4, want only 3 and 4", have(fps[0]), have(fps[1]), have(fps[2]), have(fps[3]))
	}
	if n := len(a.previous["people"]); n != 2 {
		t.Errorf("%d previous versions kept, want 2", n)
	}

	// Versions unused for longer than RetainUnused go at the next reload;
	// one a run used lately stays.
	now = now.Add(50 * time.Minute)
	if !have(fps[3]) {
		t.Fatal("version 4 is gone")
	}
	now = now.Add(20 * time.Minute)
	if _, err := a.Reload(registry(t, people("lower")), nil); err != nil {
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

// TestCatalog_Reload_ChecksSourcePaths: a Go integration whose mapping
// reads a path no valid record holds does not load; one reading a path
// the schema does not describe loads, with a warning, and the path is
// watched by the transform step.
func TestCatalog_Reload_ChecksSourcePaths(t *testing.T) {
	sch, err := schema.NewRegistry(fstest.MapFS{"people.schema.json": {Data: []byte(
		`{"type": "object", "properties": {"id": {"type": "integer"}, "status": {"type": "string"}}}`)}})
	if err != nil {
		t.Fatal(err)
	}
	var logs strings.Builder
	log := slog.New(slog.NewTextHandler(&logs, nil))
	c := New(Options{Schemas: sch, Logger: log, Connectors: builtin.Registry(builtin.Options{Logger: log})})

	intoString := people("lower")
	intoString.Mapping.Fields[1].From = "status.code"
	_, err = c.Reload(registry(t, intoString), nil)
	if err == nil || !strings.Contains(err.Error(), `mapping[1].from: no record valid for people.schema.json has "status.code", so the value would be null in every row`) {
		t.Fatalf("Reload() = %v, want the path named", err)
	}

	undescribed := people("lower")
	undescribed.Mapping.Fields[1].From = "stauts"
	if _, err := c.Reload(registry(t, undescribed), nil); err != nil {
		t.Fatal(err)
	}
	if want := `people.schema.json does not describe \"stauts\" (did you mean \"status\"?)`; !strings.Contains(logs.String(), want) {
		t.Errorf("no warning %s in the logs:\n%s", want, logs.String())
	}
	in, err := c.Get("people", "")
	if err != nil {
		t.Fatal(err)
	}
	if len(in.Unread) != 1 || in.Unread[0].Field != "status" || strings.Join(in.Unread[0].Path, ".") != "stauts" {
		t.Errorf("Unread = %+v, want the status field read from stauts", in.Unread)
	}
}
