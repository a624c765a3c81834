package app

import (
	"strings"
	"testing"

	"github.com/tetherflow/tether/activities/integration"
	"github.com/tetherflow/tether/activities/integration/declarative"
	"github.com/tetherflow/tether/workers/schedules"
)

// TestSchedules_Reloaded: after the integration files change, the
// schedules are queued for applying only once the worker runs the new
// definitions (ReloadIntegrations took them); a reload that did not take
// queues nothing; only the latest change waits.
func TestSchedules_Reloaded(t *testing.T) {
	dir := t.TempDir()
	writeFile(t, dir, "crm-contacts-yaml.yaml", readTwin(t))
	cfg := loadConfig(t, dir)
	w := newReloadWorker(t, cfg)
	s := &Schedules{
		p:       SchedulesParams{Config: cfg, GoDefs: w.goDefs, Schemas: w.sch, Catalog: w.cat},
		pending: make(chan []integration.Definition, 1),
		opts:    schedules.Options{TaskQueue: cfg.Temporal.TaskQueue, Logger: w.log},
	}
	load := func(every string) []declarative.Spec {
		t.Helper()
		writeFile(t, dir, "crm-contacts-yaml.yaml", readTwin(t)+"schedules:\n  - {kind: sync, every: "+every+"}\n")
		specs, err := declarative.LoadDir(dir)
		if err != nil {
			t.Fatal(err)
		}
		return specs
	}
	queued := func() []integration.Definition {
		t.Helper()
		select {
		case defs := <-s.pending:
			return defs
		default:
			return nil
		}
	}
	scheduleOf := func(defs []integration.Definition) string {
		for _, d := range defs {
			if d.Name == "crm-contacts-yaml" && len(d.Schedules) == 1 {
				return d.Schedules[0].Every.String()
			}
		}
		return ""
	}

	// The worker did not take the change (as when it does not compile).
	s.reloaded(load("1h"))
	if defs := queued(); defs != nil {
		t.Errorf("a change the worker did not take queued %d definitions", len(defs))
	}
	if !strings.Contains(w.logs.String(), "the worker kept its previous integrations: their schedules stay as they are") {
		t.Errorf("not logged:\n%s", w.logs)
	}

	// It took the change: queued, with the new schedule.
	specs := load("1h")
	if err := ReloadIntegrations(cfg, w.goDefs, specs, w.sch, w.cat, w.log); err != nil {
		t.Fatal(err)
	}
	s.reloaded(specs)
	if got := scheduleOf(queued()); got != "1h0m0s" {
		t.Errorf("queued schedule %q, want every 1h", got)
	}

	// Two changes before the first is applied: the latest waits alone.
	for _, every := range []string{"2h", "3h"} {
		specs := load(every)
		if err := ReloadIntegrations(cfg, w.goDefs, specs, w.sch, w.cat, w.log); err != nil {
			t.Fatal(err)
		}
		s.reloaded(specs)
	}
	if got := scheduleOf(queued()); got != "3h0m0s" {
		t.Errorf("queued schedule %q, want the latest, every 3h", got)
	}
	if defs := queued(); defs != nil {
		t.Error("an older change is still queued")
	}
}
