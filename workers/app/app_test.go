package app

import (
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"go.uber.org/fx"
	"go.uber.org/fx/fxtest"

	"github.com/tetherflow/tether/activities/integration"
	"github.com/tetherflow/tether/activities/integration/declarative"
	"github.com/tetherflow/tether/activities/lib/schema"
	"github.com/tetherflow/tether/schemas"
	"github.com/tetherflow/tether/workers/config"
	"github.com/tetherflow/tether/workers/integrations"
)

// twin is the shipped YAML twin of crm-contacts.
const twin = "../integrations/yaml/crm-contacts-yaml.yaml"

func readTwin(t *testing.T) string {
	t.Helper()
	b, err := os.ReadFile(twin)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

func writeFile(t *testing.T, dir, name, body string) string {
	t.Helper()
	p := filepath.Join(dir, name)
	if err := os.WriteFile(p, []byte(body), 0o644); err != nil {
		t.Fatal(err)
	}
	return p
}

// loadConfig loads the worker configuration with nothing reachable: a
// test that got past the integrations would fail connecting.
func loadConfig(t *testing.T, dir string) config.Config {
	t.Helper()
	t.Setenv("TETHER_INTEGRATIONS_DIR", dir)
	t.Setenv("DATABASE_URL", "postgres://tether@127.0.0.1:1/nowhere?sslmode=disable&connect_timeout=1")
	t.Setenv("TEMPORAL_ADDRESS", "127.0.0.1:1")
	t.Setenv("TETHER_TEMPORAL_CONNECT_TIMEOUT", "1s")
	t.Setenv("TETHER_CONNECTIONS_CRM_BASE_URL", "http://127.0.0.1:8081") // the demo's integrations
	cfg, err := config.Load("")
	if err != nil {
		t.Fatal(err)
	}
	return cfg
}

func TestNew_BadIntegrationFilesStopTheWorkerBeforeItConnects(t *testing.T) {
	dir := t.TempDir()
	bad := writeFile(t, dir, "bad.yaml", strings.NewReplacer(
		"name: crm-contacts-yaml", "name: crm-contacts-bad",
		"key_field: id\n", "",
		"cast: int, required: true}", "cast: integer, required: true}",
		"kind: none", "kind: bearer\n      token: s3cr3t",
	).Replace(readTwin(t)))
	clash := writeFile(t, dir, "clash.yaml", strings.Replace(readTwin(t), "name: crm-contacts-yaml", "name: crm-contacts", 1))
	unresolved := writeFile(t, dir, "unresolved.yaml", strings.NewReplacer(
		"name: crm-contacts-yaml", "name: crm-contacts-unresolved",
		"kind: none", "kind: bearer\n      token: {env: TETHER_TEST_NO_SUCH_TOKEN}",
	).Replace(readTwin(t)))
	writeFile(t, dir, "good.yaml", readTwin(t))

	start := time.Now()
	a := New(loadConfig(t, dir))
	err := StartError(a.Err())
	if err == nil {
		t.Fatal("the worker was built with broken integration files")
	}
	msg := err.Error()
	for _, want := range []string{
		"integrations_dir " + dir + ":\n",
		bad + `: /key_field: required key "key_field" is missing` + "\n",
		bad + ": /source/http/auth/token: a secret is given by reference, never inline",
		bad + `: /mapping/0/cast: "integer" is not allowed`,
		clash + `: /name: integration "crm-contacts" is also defined in Go (workers/integrations)`,
		unresolved + ": /source/http/auth/token: environment variable TETHER_TEST_NO_SUCH_TOKEN is not set",
	} {
		if !strings.Contains(msg, want) {
			t.Errorf("the error lacks %q:\n%s", want, msg)
		}
	}
	for _, notWant := range []string{"s3cr3t", "good.yaml", "database", "temporal", "could not build"} {
		if strings.Contains(msg, notWant) {
			t.Errorf("the error mentions %q:\n%s", notWant, msg)
		}
	}
	if time.Since(start) > 5*time.Second {
		t.Errorf("took %v: something was dialled", time.Since(start))
	}
}

func TestNewIntegrations_GoAndFiles(t *testing.T) {
	dir := t.TempDir()
	writeFile(t, dir, "crm-contacts-yaml.yaml", readTwin(t))
	writeFile(t, dir, "people.schema.json", `{"type": "object", "required": ["id"]}`)
	writeFile(t, dir, "people.yaml", strings.NewReplacer(
		"name: crm-contacts-yaml", "name: people",
		"name: crm_contacts_yaml", "name: people",
		"schema: contacts.schema.json", "schema: ./people.schema.json",
	).Replace(readTwin(t)))
	cfg := loadConfig(t, dir)
	goDefs := integrations.For(cfg.Connections)
	log := slog.New(slog.NewTextHandler(io.Discard, nil))

	set, err := NewDeclared(fxtest.NewLifecycle(t), cfg, goDefs, log)
	if err != nil {
		t.Fatal(err)
	}
	sch, err := schema.NewRegistry(schemas.FS())
	if err != nil {
		t.Fatal(err)
	}
	reg, err := NewIntegrations(cfg, goDefs, set, sch)
	if err != nil {
		t.Fatal(err)
	}
	if got := strings.Join(reg.Names(), ","); got != "crm-billing-customers,crm-companies,crm-contacts,crm-contacts-yaml,customer-onboarding,onboarding,people,pg-contacts-billing" {
		t.Errorf("registered %s", got)
	}
	people, err := reg.Get("people")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := sch.Get(people.Schema); err != nil || !strings.HasPrefix(people.Schema, "people.schema.json@") {
		t.Errorf("the schema file was not registered as %q: %v", people.Schema, err)
	}

	// worker.integrations picks among both kinds.
	cfg.Worker.Integrations = []string{"crm-contacts", "crm-contacts-yaml"}
	reg, err = NewIntegrations(cfg, goDefs, set, sch)
	if err != nil {
		t.Fatal(err)
	}
	if got := strings.Join(reg.Names(), ","); got != "crm-contacts,crm-contacts-yaml" {
		t.Errorf("registered %s", got)
	}
}

func TestNewDeclared_NoDirectory(t *testing.T) {
	cfg := loadConfig(t, "")
	set, err := NewDeclared(fxtest.NewLifecycle(t), cfg, nil, slog.New(slog.NewTextHandler(io.Discard, nil)))
	if err != nil || len(set.Current()) != 0 {
		t.Fatalf("NewDeclared() = %v, %v", set.Current(), err)
	}
}

// TestNewDeclared_Watches: while the worker runs, good changes replace the
// set and bad ones (a broken file, a clash with a Go integration) do not.
func TestNewDeclared_Watches(t *testing.T) {
	dir := t.TempDir()
	p := writeFile(t, dir, "crm-contacts-yaml.yaml", readTwin(t))
	cfg := loadConfig(t, dir)
	lc := fxtest.NewLifecycle(t)
	goDefs := []integration.Definition{{Name: "crm-contacts"}}
	set, err := NewDeclared(lc, cfg, goDefs, slog.New(slog.NewTextHandler(io.Discard, nil)))
	if err != nil {
		t.Fatal(err)
	}
	changed := make(chan []declarative.Spec, 4)
	set.Subscribe(func(s []declarative.Spec) { changed <- s })
	lc.RequireStart()
	defer lc.RequireStop()

	// Wait until the watcher runs: a change is then reported.
	deadline := time.After(5 * time.Second)
	for v := 2; ; v++ {
		writeFile(t, dir, "crm-contacts-yaml.yaml", strings.Replace(readTwin(t), "version: 1", "version: "+strconv.Itoa(v), 1))
		select {
		case s := <-changed:
			if len(s) != 1 || s[0].Version < 2 {
				t.Fatalf("changed to %+v", s)
			}
		case <-time.After(500 * time.Millisecond):
			continue
		case <-deadline:
			t.Fatal("no change seen within 5s")
		}
		break
	}
	good := set.Current()

	for _, bad := range []string{
		strings.Replace(readTwin(t), "cast: int,", "cast: integer,", 1),
		strings.Replace(readTwin(t), "name: crm-contacts-yaml", "name: crm-contacts", 1),
	} {
		writeFile(t, dir, filepath.Base(p), bad)
		time.Sleep(600 * time.Millisecond)
		if cur := set.Current(); len(cur) != 1 || cur[0].Hash() != good[0].Hash() {
			t.Errorf("a bad change replaced the set: %+v", cur)
		}
	}
	select {
	case s := <-changed:
		t.Errorf("subscribers were told of a bad change: %+v", s)
	default:
	}
}

// TestWithIntegrations_AddsGoIntegrations: a worker built with
// WithIntegrations runs those beside the demo's.
func TestWithIntegrations_AddsGoIntegrations(t *testing.T) {
	cfg := loadConfig(t, "")
	mine := integrations.CRMContacts(cfg.Connections[integrations.CRM])
	mine.Name = "my-contacts"
	var reg *integration.Registry
	a := New(cfg, WithIntegrations(mine), fx.Populate(&reg))
	if err := StartError(a.Err()); err != nil {
		t.Fatal(err)
	}
	if _, err := reg.Get("my-contacts"); err != nil {
		t.Error(err)
	}
	if _, err := reg.Get("crm-contacts"); err != nil {
		t.Errorf("the demo's integrations are gone: %v", err)
	}
}
