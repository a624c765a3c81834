package app

import (
	"bytes"
	"log/slog"
	"os"
	"strings"
	"sync"
	"testing"
	"time"

	"go.uber.org/fx/fxtest"

	"github.com/tetherflow/tether/activities/catalog"
	"github.com/tetherflow/tether/activities/integration"
	"github.com/tetherflow/tether/activities/lib/schema"
	"github.com/tetherflow/tether/workers/config"
	"github.com/tetherflow/tether/workers/integrations"
)

// syncBuffer is a log destination written by the watcher's goroutine and
// read by the test.
type syncBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *syncBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *syncBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}

// reloadWorker is a worker's integrations and catalog as NewCatalog
// builds them, with its log captured.
type reloadWorker struct {
	goDefs []integration.Definition
	logs   *syncBuffer
	log    *slog.Logger
	lc     *fxtest.Lifecycle
	sch    *schema.Registry
	cat    *catalog.Catalog
}

func newReloadWorker(t *testing.T, cfg config.Config) reloadWorker {
	t.Helper()
	w := reloadWorker{goDefs: integrations.For(cfg.Connections), logs: &syncBuffer{}, lc: fxtest.NewLifecycle(t)}
	w.log = slog.New(slog.NewTextHandler(w.logs, nil))
	set, err := NewDeclared(w.lc, cfg, w.goDefs, w.log)
	if err != nil {
		t.Fatal(err)
	}
	if w.sch, err = NewSchemas(); err != nil {
		t.Fatal(err)
	}
	reg, err := NewIntegrations(cfg, w.goDefs, set, w.sch)
	if err != nil {
		t.Fatal(err)
	}
	conns := NewConnectors(ConnectorsParams{Config: cfg, Logger: w.log})
	if w.cat, err = NewCatalog(CatalogParams{Lifecycle: w.lc, Config: cfg, Connectors: conns, Schemas: w.sch,
		Integrations: reg, GoDefs: w.goDefs, Declared: set, Logger: w.log}); err != nil {
		t.Fatal(err)
	}
	return w
}

// TestNewCatalog_ReloadsChangedIntegrationFiles: while the worker runs,
// a changed integration file is compiled and its new fingerprint is the one
// new runs get; a file that does not load changes nothing; the Go
// integrations are left as they are.
func TestNewCatalog_ReloadsChangedIntegrationFiles(t *testing.T) {
	dir := t.TempDir()
	writeFile(t, dir, "crm-contacts-yaml.yaml", readTwin(t))
	cfg := loadConfig(t, dir)
	w := newReloadWorker(t, cfg)
	logs, lc, cat := w.logs, w.lc, w.cat
	fingerprint := func(name string) string {
		t.Helper()
		fp, ok := cat.Current(name)
		if !ok {
			t.Fatalf("%s is not running", name)
		}
		return fp
	}
	first, goFirst := fingerprint("crm-contacts-yaml"), fingerprint("crm-contacts")
	lc.RequireStart()
	defer lc.RequireStop()

	// The watcher may not be up yet: write until the change is seen.
	upper := strings.Replace(readTwin(t), "{to: status, from: status, normalize: [lower]}", "{to: status, from: status, normalize: [upper]}", 1)
	deadline := time.Now().Add(5 * time.Second)
	for fingerprint("crm-contacts-yaml") == first {
		if time.Now().After(deadline) {
			t.Fatalf("the changed file was not reloaded within 5s; logs:\n%s", logs)
		}
		writeFile(t, dir, "crm-contacts-yaml.yaml", upper)
		time.Sleep(300 * time.Millisecond)
	}
	changed := fingerprint("crm-contacts-yaml")
	if fingerprint("crm-contacts") != goFirst {
		t.Error("reloading the files changed a Go integration's fingerprint")
	}
	if want := "changed=[crm-contacts-yaml@" + changed + "]"; !strings.Contains(logs.String(), want) {
		t.Errorf("the reload is not logged with %q:\n%s", want, logs)
	}

	// A broken file is refused: the last good definitions stay.
	writeFile(t, dir, "crm-contacts-yaml.yaml", strings.Replace(upper, "cast: int,", "cast: integer,", 1))
	time.Sleep(700 * time.Millisecond)
	if got := fingerprint("crm-contacts-yaml"); got != changed {
		t.Errorf("a broken file changed the definition to %s", got)
	}
	if !strings.Contains(logs.String(), "the last good ones stay") {
		t.Errorf("the broken file is not logged:\n%s", logs)
	}

	// A removed file removes its integration for new runs.
	if err := os.Remove(dir + "/crm-contacts-yaml.yaml"); err != nil {
		t.Fatal(err)
	}
	// The reload is logged once it returns, just after the catalog changed.
	for deadline := time.Now().Add(5 * time.Second); ; time.Sleep(100 * time.Millisecond) {
		_, running := cat.Current("crm-contacts-yaml")
		if !running && strings.Contains(logs.String(), "removed=[crm-contacts-yaml]") {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("the removed file's integration still runs (%v) or its removal is not logged; logs:\n%s", running, logs)
		}
	}
}

// TestReloadIntegrations_ProblemsKeepTheIntegrations: a set of files the
// worker cannot run (here worker.integrations names one they no longer
// declare) is reported and changes nothing.
func TestReloadIntegrations_ProblemsKeepTheIntegrations(t *testing.T) {
	dir := t.TempDir()
	writeFile(t, dir, "crm-contacts-yaml.yaml", readTwin(t))
	cfg := loadConfig(t, dir)
	cfg.Worker.Integrations = []string{"crm-contacts-yaml"}
	w := newReloadWorker(t, cfg)
	goDefs, logs, log, sch, cat := w.goDefs, w.logs, w.log, w.sch, w.cat
	before, _ := cat.Current("crm-contacts-yaml")

	err := ReloadIntegrations(cfg, goDefs, nil, sch, cat, log)
	if err == nil || !strings.Contains(err.Error(), `unknown integration "crm-contacts-yaml"`) {
		t.Fatalf("ReloadIntegrations without the file = %v, want the unknown integration reported", err)
	}
	if after, ok := cat.Current("crm-contacts-yaml"); !ok || after != before {
		t.Errorf("a failed reload changed the integration: %s, %v", after, ok)
	}
	if !strings.Contains(logs.String(), "the previous definitions stay in use") {
		t.Errorf("the failed reload is not logged:\n%s", logs)
	}
}

// TestShippedIntegrationsHaveFingerprints: every Go integration shipped
// can be pinned, and its fingerprint does not depend on its secrets.
func TestShippedIntegrationsHaveFingerprints(t *testing.T) {
	cfg := loadConfig(t, "")
	crm := cfg.Connections[integrations.CRM]
	crm.Auth, crm.Token = "bearer", "one"
	rotated := crm
	rotated.Token = "two"
	for i, def := range integrations.All(crm) {
		a, err := catalog.Fingerprint(def.Normalize(), "")
		if err != nil {
			t.Errorf("%s: %v", def.Name, err)
			continue
		}
		b, err := catalog.Fingerprint(integrations.All(rotated)[i].Normalize(), "")
		if err != nil || a != b {
			t.Errorf("%s: fingerprint %s with one token, %s (%v) with another", def.Name, a, b, err)
		}
	}
}
