package declarative

import (
	"encoding/json"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/tetherflow/tether/activities/integration"
)

// withSchedules is minimalYAML with a deleted_at column, and the
// schedules and reconcile section given (nil: none).
func withSchedules(t *testing.T, schedules []any, reconcile map[string]any) string {
	t.Helper()
	edits := map[string]any{"/destination/postgres/columns": []any{
		map[string]any{"name": "id", "type": "bigint", "not_null": true},
		map[string]any{"name": "email", "type": "text"},
		map[string]any{"name": "updated_at", "type": "timestamptz"},
		map[string]any{"name": "deleted_at", "type": "timestamptz"},
	}}
	if schedules != nil {
		edits["/schedules"] = schedules
	}
	if reconcile != nil {
		edits["/reconcile"] = reconcile
	}
	return edited(t, edits)
}

func TestLoad_SchedulesAndReconcile(t *testing.T) {
	p := writeFile(t, "", "people.yaml", withSchedules(t, []any{
		map[string]any{"kind": "sync", "every": "15m", "offset": "5m", "jitter": "30s", "catchup_window": "10m", "pause_on_failure": false},
		map[string]any{"kind": "reconcile", "cron": []any{"0 2 * * *", "@weekly"}, "time_zone": "Europe/Paris", "dry_run": true, "paused": true},
	}, map[string]any{"extras": "mark", "mark_column": "deleted_at", "chunks": 256}))
	s, err := Load(p)
	if err != nil {
		t.Fatal(err)
	}
	noPause := false
	want := []integration.Schedule{
		{Kind: "sync", Every: 15 * time.Minute, Offset: 5 * time.Minute, Jitter: 30 * time.Second, CatchupWindow: 10 * time.Minute, PauseOnFailure: &noPause},
		{Kind: "reconcile", Cron: []string{"0 2 * * *", "@weekly"}, TimeZone: "Europe/Paris", DryRun: true, Paused: true},
	}
	if len(s.Schedules) != len(want) {
		t.Fatalf("schedules %+v", s.Schedules)
	}
	for i, w := range want {
		got := s.Schedules[i]
		if got.Kind != w.Kind || !slices.Equal(got.Cron, w.Cron) || got.Every != w.Every || got.Offset != w.Offset || got.TimeZone != w.TimeZone ||
			got.Jitter != w.Jitter || got.CatchupWindow != w.CatchupWindow || got.PausesOnFailure() != w.PausesOnFailure() ||
			(got.PauseOnFailure == nil) != (w.PauseOnFailure == nil) || got.Paused != w.Paused || got.DryRun != w.DryRun {
			t.Errorf("schedules[%d] = %+v, want %+v", i, got, w)
		}
	}
	if r := s.Reconcile; r == nil || *r != (integration.Reconcile{Extras: "mark", MarkColumn: "deleted_at", Chunks: 256}) {
		t.Errorf("reconcile %+v", r)
	}

	res, err := s.Resolve(env(map[string]string{"PEOPLE_TOKEN": "t"}), noFiles, nil)
	if err != nil {
		t.Fatal(err)
	}
	d := res.Definition
	if len(d.Schedules) != 2 || d.Schedules[0].Every != 15*time.Minute || d.Schedules[1].TimeZone != "Europe/Paris" || d.Schedules[0].PausesOnFailure() {
		t.Errorf("the definition's schedules are %+v", d.Schedules)
	}
	if d.Reconcile != *s.Reconcile {
		t.Errorf("the definition's reconcile is %+v", d.Reconcile)
	}
	// The definition shares nothing with the spec.
	d.Schedules[1].Cron[0] = "changed"
	*d.Schedules[0].PauseOnFailure = true
	if s.Schedules[1].Cron[0] != "0 2 * * *" || *s.Schedules[0].PauseOnFailure {
		t.Error("changing the definition's schedules changed the spec's")
	}
}

func TestSpec_Hash_SchedulesCountOnlyWhenWritten(t *testing.T) {
	plain, err := Load(writeFile(t, "", "people.yaml", minimalYAML))
	if err != nil {
		t.Fatal(err)
	}
	// A file without the keys keeps the hash it had before they existed
	// (runs pinned to it on other workers stay pinned).
	b, _ := json.Marshal(plain)
	if strings.Contains(string(b), "schedules") || strings.Contains(string(b), "reconcile") {
		t.Errorf("a file without schedules has them in its JSON form: %s", b)
	}
	scheduled, err := Load(writeFile(t, "", "people.yaml", edited(t, map[string]any{"/schedules": []any{map[string]any{"kind": "sync", "every": "1h"}}})))
	if err != nil {
		t.Fatal(err)
	}
	retimed, err := Load(writeFile(t, "", "people.yaml", edited(t, map[string]any{"/schedules": []any{map[string]any{"kind": "sync", "every": "2h"}}})))
	if err != nil {
		t.Fatal(err)
	}
	if plain.Hash() == scheduled.Hash() || scheduled.Hash() == retimed.Hash() {
		t.Error("adding or changing a schedule does not change the spec's hash")
	}
}

func TestLoad_RefusesScheduleMistakes(t *testing.T) {
	sync := func(kv ...any) []any {
		m := map[string]any{"kind": "sync"}
		for i := 0; i+1 < len(kv); i += 2 {
			m[kv[i].(string)] = kv[i+1]
		}
		return []any{m}
	}
	tests := []struct {
		name        string
		schedules   []any
		reconcile   map[string]any
		saga        bool
		wantPointer string
		wantReason  string
	}{
		// What the schema refuses.
		{name: "unknown kind", schedules: []any{map[string]any{"kind": "hourly", "every": "1h"}},
			wantPointer: "/schedules/0/kind", wantReason: `"hourly" is not allowed: value must be one of "sync", "refresh", "reconcile"`},
		{name: "no kind", schedules: []any{map[string]any{"every": "1h"}},
			wantPointer: "/schedules/0/kind", wantReason: `required key "kind" is missing`},
		{name: "a cron string, not a list", schedules: sync("cron", "0 2 * * *"),
			wantPointer: "/schedules/0/cron", wantReason: `cron is a list of cron expressions, e.g. cron: ["0 2 * * *"]`},
		{name: "neither cron nor every", schedules: sync("paused", true),
			wantPointer: "/schedules/0", wantReason: "a schedule says when it runs: cron, every, or both"},
		{name: "a duration in words", schedules: sync("every", "15 minutes"),
			wantPointer: "/schedules/0/every", wantReason: "a duration such as 30s"},
		{name: "a duration as a number", schedules: sync("every", 900),
			wantPointer: "/schedules/0/every", wantReason: "a duration such as 30s"},
		{name: "a misspelt key", schedules: sync("every", "1h", "jiter", "1m"),
			wantPointer: "/schedules/0/jiter", wantReason: `unknown key "jiter" (did you mean "jitter"?)`},
		{name: "offset without every", schedules: sync("cron", []any{"@daily"}, "offset", "5m"),
			wantPointer: "/schedules/0/every", wantReason: `"every" is required when "offset" is set`},
		{name: "dry run of a sync", schedules: sync("every", "1h", "dry_run", true),
			wantPointer: "/schedules/0", wantReason: "dry_run is for a reconcile schedule"},
		{name: "schedules not a list", schedules: nil, reconcile: nil,
			wantPointer: "/schedules", wantReason: "expected array"},
		{name: "unknown extras", reconcile: map[string]any{"extras": "purge"},
			wantPointer: "/reconcile/extras", wantReason: `"purge" is not allowed: value must be one of "report", "delete", "mark"`},
		{name: "mark without its column", reconcile: map[string]any{"extras": "mark"},
			wantPointer: "/reconcile/mark_column", wantReason: "extras: mark needs mark_column"},
		{name: "too few chunks", reconcile: map[string]any{"chunks": 8},
			wantPointer: "/reconcile/chunks", wantReason: "a number of chunks from 16 to 65536"},
		// What the definition's check refuses, at load too.
		{name: "a bad cron", schedules: sync("cron", []any{"@daily", "0 2 * *"}),
			wantPointer: "/schedules/0/cron/1", wantReason: `"0 2 * *": 4 fields: want 5 (minute hour day-of-month month day-of-week)`},
		{name: "a cron out of range", schedules: sync("cron", []any{"0 24 * * *"}),
			wantPointer: "/schedules/0/cron/0", wantReason: `hour "24": 24 is out of range 0-23`},
		{name: "an unknown time zone", schedules: sync("every", "1h", "time_zone", "Europe/Pariss"),
			wantPointer: "/schedules/0/time_zone", wantReason: `"Europe/Pariss" is not an IANA time zone`},
		{name: "every under a second", schedules: sync("every", "500ms"),
			wantPointer: "/schedules/0/every", wantReason: "shorter than 1s"},
		{name: "catch-up under 10s", schedules: sync("every", "1h", "catchup_window", "5s"),
			wantPointer: "/schedules/0/catchup_window", wantReason: "shorter than 10s, the shortest catch-up window Temporal honours"},
		{name: "two syncs", schedules: []any{map[string]any{"kind": "sync", "every": "1h"}, map[string]any{"kind": "sync", "cron": []any{"@daily"}}},
			wantPointer: "/schedules/1/kind", wantReason: `a second "sync" schedule (schedules[0] is one)`},
		{name: "a mark column that is text", reconcile: map[string]any{"extras": "mark", "mark_column": "email"},
			wantPointer: "/reconcile/mark_column", wantReason: `"email" is a text column; the mark column is timestamptz`},
		{name: "a mark column that is not there", reconcile: map[string]any{"extras": "mark", "mark_column": "removed_at"},
			wantPointer: "/reconcile/mark_column", wantReason: `"removed_at" is not a column of table "people" (its columns: id, email, updated_at, deleted_at)`},
		{name: "delete in a saga", saga: true, reconcile: map[string]any{"extras": "delete"},
			wantPointer: "/reconcile/extras", wantReason: `"delete" needs the integration to have exactly one destination, a PostgreSQL table; it has 3`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			body := withSchedules(t, tt.schedules, tt.reconcile)
			switch {
			case tt.schedules == nil && tt.reconcile == nil:
				body = editedYAML(t, body, map[string]any{"/schedules": map[string]any{"sync": "hourly"}})
			case tt.saga:
				body = editedYAML(t, readFile(t, sagaFile), map[string]any{"/reconcile": tt.reconcile})
			}
			p := writeFile(t, "", "people.yaml", body)
			_, err := Load(p)
			if err == nil {
				t.Fatal("Load() accepted the file")
			}
			ps := problemsOf(t, err)
			got := findProblem(ps, tt.wantPointer, tt.wantReason)
			if got == nil {
				t.Fatalf("no problem at %s containing %q; got:\n%v", tt.wantPointer, tt.wantReason, err)
			}
			if len(ps) != 1 {
				t.Errorf("want one problem, got:\n%v", err)
			}
			if got.File != p || got.Line == 0 {
				t.Errorf("problem names file %q line %d, want %q and a line", got.File, got.Line, p)
			}
		})
	}
}
