package transform_test

import (
	"bytes"
	"context"
	"encoding/json"
	"log/slog"
	"maps"
	"strings"
	"testing"
	"testing/fstest"

	"go.temporal.io/sdk/log"
	"go.temporal.io/sdk/testsuite"

	"github.com/tetherflow/tether/activities/catalog"
	"github.com/tetherflow/tether/activities/connector/builtin"
	"github.com/tetherflow/tether/activities/connector/httpsource"
	"github.com/tetherflow/tether/activities/connector/pgsink"
	"github.com/tetherflow/tether/activities/integration"
	"github.com/tetherflow/tether/activities/lib/mapping"
	"github.com/tetherflow/tether/activities/lib/schema"
	"github.com/tetherflow/tether/activities/pages"
	"github.com/tetherflow/tether/activities/store"
	"github.com/tetherflow/tether/activities/syncstep"
	"github.com/tetherflow/tether/activities/transform"
	"github.com/tetherflow/tether/tests/pgtest"
)

// enriched is a Go integration whose Transform adds a field, "score",
// that its table does not declare, and whose mapping reads "nickname", a
// path its schema does not describe.
func enriched() integration.Definition {
	return integration.Definition{
		Name:     "people",
		Source:   integration.Source{HTTP: &httpsource.Config{BaseURL: "http://127.0.0.1:1", Path: "/people"}},
		Schema:   "people.schema.json",
		KeyField: "id",
		Mapping: mapping.Mapping{Fields: []mapping.Field{
			{To: "id", From: "id", Cast: "int", Required: true},
			{To: "nick", From: "nickname"},
		}},
		Transform: func(r mapping.Record) (mapping.Record, error) {
			out := maps.Clone(r)
			if r["id"] != int64(3) {
				out["score"] = 10
			}
			return out, nil
		},
		Destination: integration.Destination{Postgres: &pgsink.Table{
			Name:    "people",
			Columns: []pgsink.Column{{Name: "id", Type: pgsink.TypeBigint, NotNull: true}, {Name: "nick", Type: pgsink.TypeText}},
			Key:     []string{"id"},
		}},
	}
}

// TestTransformBatch_CountsAndLogsLostValues: a field a Go Transform adds
// that no destination stores, and a record lacking a path the schema does
// not describe, are counted per field in the step's result and named in a
// warning, never lost without a word.
func TestTransformBatch_CountsAndLogsLostValues(t *testing.T) {
	db := pgtest.New(t)
	ctx := context.Background()
	if err := store.Migrate(ctx, db.DB); err != nil {
		t.Fatal(err)
	}
	sch, err := schema.NewRegistry(fstest.MapFS{"people.schema.json": {Data: []byte(`{"type": "object", "properties": {"id": {"type": "integer"}}}`)}})
	if err != nil {
		t.Fatal(err)
	}
	st := store.New(db.DB)
	var logs bytes.Buffer
	logger := slog.New(slog.NewJSONHandler(&logs, nil))
	cat := catalog.New(catalog.Options{Schemas: sch, Logger: logger,
		Connectors: builtin.Registry(builtin.Options{DB: db.DB, Memos: st, Identities: st, Logger: logger})})
	reg, err := integration.NewRegistry(enriched())
	if err != nil {
		t.Fatal(err)
	}
	if _, err := cat.Reload(reg, nil); err != nil {
		t.Fatal(err)
	}
	ps := pages.New(st, 0)
	ref := syncstep.PageRef{RunID: "run-1", Page: 1, Stage: pages.NewToken()}
	records := []json.RawMessage{[]byte(`{"id": 1, "nickname": "ann"}`), []byte(`{"id": 2}`), []byte(`{"id": 3}`)}
	if err := ps.Stage(ctx, ref, records); err != nil {
		t.Fatal(err)
	}

	var suite testsuite.WorkflowTestSuite
	suite.SetLogger(log.NewStructuredLogger(logger))
	env := suite.NewTestActivityEnvironment()
	a := &transform.Activities{Catalog: cat, Pages: ps, Store: st}
	transform.Register(env, a)
	val, err := env.ExecuteActivity(syncstep.TransformBatch.Name(), syncstep.BatchInput{Integration: "people", Ref: ref})
	if err != nil {
		t.Fatal(err)
	}
	var out syncstep.TransformOutput
	if err := val.Get(&out); err != nil {
		t.Fatal(err)
	}
	if out.Transformed != 3 || out.Invalid != 0 {
		t.Errorf("transformed %d, invalid %d; want 3, 0", out.Transformed, out.Invalid)
	}
	if want := map[string]int{"score": 2}; !maps.Equal(out.Dropped, want) {
		t.Errorf("Dropped = %v, want %v", out.Dropped, want)
	}
	if want := map[string]int{"nick": 2}; !maps.Equal(out.Unread, want) {
		t.Errorf("Unread = %v, want %v", out.Unread, want)
	}
	if !warned(logs.String(), "no destination stores", `"score":2`) {
		t.Errorf("no warning naming the dropped field; logs:\n%s", logs.String())
	}
	if !warned(logs.String(), "the schema does not describe", `"nick":2`) {
		t.Errorf("no warning naming the records lacking the path; logs:\n%s", logs.String())
	}
}

// warned reports whether the JSON logs hold a warning about integration
// people whose message contains msg and whose line contains detail.
func warned(logs, msg, detail string) bool {
	for _, line := range strings.Split(strings.TrimSpace(logs), "\n") {
		var entry map[string]any
		if err := json.Unmarshal([]byte(line), &entry); err != nil {
			continue
		}
		m, _ := entry["msg"].(string)
		if entry["level"] == "WARN" && strings.Contains(m, msg) && entry["integration"] == "people" && strings.Contains(line, detail) {
			return true
		}
	}
	return false
}
