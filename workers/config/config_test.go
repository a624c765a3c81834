package config

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

func writeFile(t *testing.T, body string) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), "worker.yaml")
	if err := os.WriteFile(p, []byte(body), 0o644); err != nil {
		t.Fatal(err)
	}
	return p
}

func TestLoad_Defaults(t *testing.T) {
	cfg, err := Load("")
	if err != nil {
		t.Fatal(err)
	}
	if cfg.Temporal.Address != "127.0.0.1:7233" || cfg.Temporal.TaskQueue != "tether-sync" || cfg.Worker.GracefulStop != 30*time.Second {
		t.Errorf("defaults: %+v", cfg)
	}
}

func TestLoad_EnvironmentOverridesFile(t *testing.T) {
	p := writeFile(t, "temporal:\n  address: file:7233\n  namespace: from-file\nworker:\n  integrations: [crm-contacts]\n")
	t.Setenv("TEMPORAL_ADDRESS", "env:7233")
	t.Setenv("DATABASE_URL", "postgres://u:secret@db:5432/x")
	t.Setenv("TETHER_WORKER_CACHE_PAGES", "7")
	cfg, err := Load(p)
	if err != nil {
		t.Fatal(err)
	}
	if cfg.Temporal.Address != "env:7233" {
		t.Errorf("TEMPORAL_ADDRESS not honoured: %q", cfg.Temporal.Address)
	}
	if cfg.Temporal.Namespace != "from-file" {
		t.Errorf("file value lost: %q", cfg.Temporal.Namespace)
	}
	if cfg.Database.URL != "postgres://u:secret@db:5432/x" || cfg.Worker.CachePages != 7 {
		t.Errorf("env: %+v", cfg)
	}
	if len(cfg.Worker.Integrations) != 1 || cfg.Worker.Integrations[0] != "crm-contacts" {
		t.Errorf("integrations %v", cfg.Worker.Integrations)
	}
	if strings.Contains(cfg.Database.Redacted(), "secret") {
		t.Errorf("Redacted leaks the password: %s", cfg.Database.Redacted())
	}
}

func TestLoad_ReportsEveryProblem(t *testing.T) {
	tests := []struct {
		name string
		give string
		env  map[string]string
		want []string
	}{
		{name: "typo in a key", give: "temporal:\n  adress: x:1\n", want: []string{"adress"}},
		{name: "several bad values at once", give: "log:\n  level: loud\n  format: xml\nworker:\n  max_concurrent_activities: 0\n",
			want: []string{"log.level", "log.format", "worker.max_concurrent_activities"}},
		{name: "bad address", env: map[string]string{"TEMPORAL_ADDRESS": "nohostport"}, want: []string{"temporal.address (TEMPORAL_ADDRESS)"}},
		{name: "bad database url", env: map[string]string{"DATABASE_URL": "mysql://u:pw@x/y"}, want: []string{"database.url (DATABASE_URL)", "xxxxx"}},
		{name: "bearer without token", give: "connections:\n  crm:\n    base_url: http://crm\n    auth: bearer\n", want: []string{"connections.crm.token"}},
		{name: "unknown auth", give: "connections:\n  crm:\n    base_url: http://crm\n    auth: magic\n", want: []string{"connections.crm.auth"}},
		{name: "connection without a base URL", give: "connections:\n  billing:\n    auth: none\n", want: []string{"connections.billing.base_url"}},
		{name: "bad connection name", give: "connections:\n  Billing_API:\n    base_url: http://x\n", want: []string{"connections.billing_api: a connection's name"}},
		{name: "the old sources.crm in a file", give: "sources:\n  crm:\n    base_url: http://crm\n", want: []string{"invalid keys: sources"}},
		{name: "the old sources.crm variables", env: map[string]string{"TETHER_SOURCES_CRM_BASE_URL": "http://crm"},
			want: []string{"TETHER_SOURCES_CRM_BASE_URL: sources.crm is now a named connection: set TETHER_CONNECTIONS_CRM_BASE_URL"}},
		{name: "not a connection setting", env: map[string]string{"TETHER_CONNECTIONS_CRM_URL": "http://crm"},
			want: []string{"TETHER_CONNECTIONS_CRM_URL: not a connection setting"}},
		{name: "not yaml", give: "temporal: [x\n", want: []string{"config file"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			for k, v := range tt.env {
				t.Setenv(k, v)
			}
			p := ""
			if tt.give != "" {
				p = writeFile(t, tt.give)
			}
			_, err := Load(p)
			if err == nil {
				t.Fatal("want an error")
			}
			for _, w := range tt.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("error does not mention %q:\n%v", w, err)
				}
			}
			if strings.Contains(err.Error(), "pw@") {
				t.Errorf("error leaks a password: %v", err)
			}
		})
	}
}

func TestLoad_MissingFile(t *testing.T) {
	_, err := Load(filepath.Join(t.TempDir(), "nope.yaml"))
	if err == nil || !strings.Contains(err.Error(), "nope.yaml") {
		t.Fatalf("want an error naming the file, got %v", err)
	}
}

func TestEnvNames_IncludeEcosystemVariables(t *testing.T) {
	names := strings.Join(EnvNames(), " ")
	for _, want := range []string{"TEMPORAL_ADDRESS", "TEMPORAL_NAMESPACE", "DATABASE_URL", "TETHER_WORKER_GRACEFUL_STOP"} {
		if !strings.Contains(names, want) {
			t.Errorf("EnvNames lacks %s", want)
		}
	}
}

func TestLoad_IntegrationsDir(t *testing.T) {
	dir := t.TempDir()
	t.Setenv("TETHER_INTEGRATIONS_DIR", dir)
	cfg, err := Load("")
	if err != nil {
		t.Fatal(err)
	}
	if cfg.IntegrationsDir != dir {
		t.Errorf("IntegrationsDir = %q, want %q", cfg.IntegrationsDir, dir)
	}
	if !strings.Contains(strings.Join(EnvNames(), " "), "TETHER_INTEGRATIONS_DIR") {
		t.Error("EnvNames lacks TETHER_INTEGRATIONS_DIR")
	}

	tests := []struct {
		name string
		give string
		want string
	}{
		{name: "missing", give: filepath.Join(dir, "nope"), want: "integrations_dir (TETHER_INTEGRATIONS_DIR): \"" + filepath.Join(dir, "nope") + "\": no such file or directory"},
		{name: "a file", give: writeFile(t, "x: 1\n"), want: "is not a directory"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			p := writeFile(t, "integrations_dir: "+tt.give+"\n")
			t.Setenv("TETHER_INTEGRATIONS_DIR", "")
			_, err := Load(p)
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Errorf("Load() error = %v, want one containing %q", err, tt.want)
			}
		})
	}
}

func TestLoad_ConnectionsFromFileAndEnvironment(t *testing.T) {
	p := writeFile(t, `connections:
  crm:
    base_url: http://file-crm
    auth: bearer
    token: from-file
  billing-api:
    base_url: http://billing
    auth: api_key
    api_key: k
    rate_limit: 5
`)
	t.Setenv("TETHER_CONNECTIONS_CRM_BASE_URL", "http://env-crm")
	t.Setenv("TETHER_CONNECTIONS_BILLING_API_RATE_LIMIT", "2.5")
	t.Setenv("TETHER_CONNECTIONS_LEDGER_BASE_URL", "http://ledger")
	cfg, err := Load(p)
	if err != nil {
		t.Fatal(err)
	}
	crm, billing, ledger := cfg.Connections["crm"], cfg.Connections["billing-api"], cfg.Connections["ledger"]
	if crm.BaseURL != "http://env-crm" || crm.Token != "from-file" || crm.HTTPAuth().Kind != "bearer" {
		t.Errorf("crm %+v: want the environment's base URL over the file's, the file's token", crm)
	}
	if billing.RateLimit != 2.5 || billing.HTTPRateLimit().RequestsPerSecond != 2.5 || billing.HTTPAuth().Header != "X-API-Key" {
		t.Errorf("billing-api %+v", billing)
	}
	if ledger.BaseURL != "http://ledger" || ledger.HTTPAuth().Kind != "none" {
		t.Errorf("a connection set by the environment alone: %+v", ledger)
	}
	for _, name := range []string{"TETHER_CONNECTIONS_CRM_BASE_URL", "TETHER_CONNECTIONS_BILLING_API_API_KEY", "TEMPORAL_ADDRESS"} {
		if !ReadsEnv(name) {
			t.Errorf("ReadsEnv(%s) = false", name)
		}
	}
	if ReadsEnv("TETHER_CONNECTIONS_CRM") || ReadsEnv("TETHER_NOPE") {
		t.Error("ReadsEnv accepts a variable the configuration does not read")
	}
}
