package config

import (
	"reflect"
	"strings"
	"testing"
	"time"
)

// crmSource is a webhook source as written in a worker's config file.
const crmSource = `
    - name: crm
      integration: crm-contacts
      secrets_env: [TEST_CRM_HOOK_SECRET, TEST_CRM_HOOK_SECRET_OLD]
      key_path: data.id
      version_path: data.updated_at
      record_path: data
      type_path: type
      delete_types: [contact.deleted]
      tolerance: 2m
      rate_limit: {per_second: 50, burst: 10}
`

func TestLoad_Webhooks(t *testing.T) {
	t.Setenv("TEST_CRM_HOOK_SECRET", "whsec-new")
	t.Setenv("TEST_CRM_HOOK_SECRET_OLD", "whsec-old")
	t.Setenv("TEST_BILLING_HOOK_SECRET", "whsec-billing")
	p := writeFile(t, "webhooks:\n  listen: 127.0.0.1:8090\n  sources:"+crmSource+`
    - name: billing
      integration: billing-invoices
      secrets_env: [TEST_BILLING_HOOK_SECRET]
      key_path: id
`)
	cfg, err := Load(p)
	if err != nil {
		t.Fatal(err)
	}
	w := cfg.Webhooks
	if w.Listen != "127.0.0.1:8090" || len(w.Sources) != 2 {
		t.Fatalf("webhooks = %+v", w)
	}
	crm := w.Sources[0]
	if !reflect.DeepEqual(crm.Secrets, []string{"whsec-new", "whsec-old"}) {
		t.Errorf("crm secrets not resolved from secrets_env in order: %d secrets", len(crm.Secrets))
	}
	if crm.Name != "crm" || crm.Integration != "crm-contacts" || crm.KeyPath != "data.id" || crm.VersionPath != "data.updated_at" ||
		crm.RecordPath != "data" || crm.TypePath != "type" || !reflect.DeepEqual(crm.DeleteTypes, []string{"contact.deleted"}) ||
		crm.Tolerance != 2*time.Minute || crm.RateLimit.PerSecond != 50 || crm.RateLimit.Burst != 10 {
		t.Errorf("crm source = %v %+v", crm, crm.Source.RateLimit)
	}
	if b := w.Sources[1]; b.Name != "billing" || !reflect.DeepEqual(b.Secrets, []string{"whsec-billing"}) || b.Integration != "billing-invoices" {
		t.Errorf("billing source = %v", b)
	}
	// A printed source does not show its secrets.
	for _, s := range []string{crm.String(), crm.Source.String()} {
		if strings.Contains(s, "whsec") {
			t.Errorf("a source prints its secret: %s", s)
		}
	}
}

func TestLoad_WebhooksOffByDefault(t *testing.T) {
	cfg, err := Load("")
	if err != nil {
		t.Fatal(err)
	}
	if cfg.Webhooks.Listen != "" || len(cfg.Webhooks.Sources) != 0 {
		t.Errorf("webhooks = %+v, want off", cfg.Webhooks)
	}
	if !strings.Contains(strings.Join(EnvNames(), " "), "TETHER_WEBHOOKS_LISTEN") {
		t.Error("EnvNames lacks TETHER_WEBHOOKS_LISTEN")
	}
}

func TestLoad_WebhooksListenFromEnvironment(t *testing.T) {
	t.Setenv("TEST_CRM_HOOK_SECRET", "whsec-new")
	t.Setenv("TEST_CRM_HOOK_SECRET_OLD", "whsec-old")
	t.Setenv("TETHER_WEBHOOKS_LISTEN", "0.0.0.0:9000")
	p := writeFile(t, "webhooks:\n  listen: 127.0.0.1:8090\n  sources:"+crmSource)
	cfg, err := Load(p)
	if err != nil {
		t.Fatal(err)
	}
	if cfg.Webhooks.Listen != "0.0.0.0:9000" || len(cfg.Webhooks.Sources) != 1 {
		t.Errorf("webhooks = listen %q, %d sources; want the environment's listen and the file's source", cfg.Webhooks.Listen, len(cfg.Webhooks.Sources))
	}
}

func TestLoad_WebhooksProblems(t *testing.T) {
	tests := []struct {
		name    string
		give    string
		env     map[string]string
		want    []string
		notWant []string
	}{
		{
			name: "secret variable not set",
			give: "webhooks:\n  listen: 127.0.0.1:8090\n  sources:" + crmSource,
			env:  map[string]string{"TEST_CRM_HOOK_SECRET": "whsec-new"},
			want: []string{"webhooks.sources[0] (crm): secrets_env: environment variable TEST_CRM_HOOK_SECRET_OLD is not set"},
			// The set one is not named missing, and never printed.
			notWant: []string{"TEST_CRM_HOOK_SECRET is not set", "whsec-new"},
		},
		{
			name: "secret variable set but empty",
			give: "webhooks:\n  listen: 127.0.0.1:8090\n  sources:" + crmSource,
			env:  map[string]string{"TEST_CRM_HOOK_SECRET": "whsec-new", "TEST_CRM_HOOK_SECRET_OLD": ""},
			want: []string{"webhooks.sources[0] (crm): secrets[1]: empty"},
		},
		{
			name:    "secret with a trailing newline",
			give:    "webhooks:\n  listen: 127.0.0.1:8090\n  sources:" + crmSource,
			env:     map[string]string{"TEST_CRM_HOOK_SECRET": "whsec-new\n", "TEST_CRM_HOOK_SECRET_OLD": "whsec-old"},
			want:    []string{"webhooks.sources[0] (crm): secrets[0]: has leading or trailing whitespace"},
			notWant: []string{"whsec-new"},
		},
		{
			name:    "inline secrets refused",
			give:    "webhooks:\n  listen: 127.0.0.1:8090\n  sources:\n    - name: crm\n      integration: crm-contacts\n      secrets: [whsec-inline]\n      key_path: data.id\n",
			want:    []string{"webhooks.sources[0] (crm): secrets: never inline; name the environment variables in secrets_env"},
			notWant: []string{"whsec-inline"},
		},
		{
			name:    "inline secrets refused also beside secrets_env",
			give:    "webhooks:\n  listen: 127.0.0.1:8090\n  sources:\n    - name: crm\n      integration: crm-contacts\n      secrets: [whsec-inline]\n      secrets_env: [TEST_CRM_HOOK_SECRET]\n      key_path: data.id\n",
			env:     map[string]string{"TEST_CRM_HOOK_SECRET": "whsec-new"},
			want:    []string{"webhooks.sources[0] (crm): secrets: never inline"},
			notWant: []string{"whsec-inline", "whsec-new"},
		},
		{
			name: "no secrets_env",
			give: "webhooks:\n  listen: 127.0.0.1:8090\n  sources:\n    - name: crm\n      integration: crm-contacts\n      key_path: data.id\n",
			want: []string{"webhooks.sources[0] (crm): secrets_env: required"},
		},
		{
			name: "missing integration",
			give: "webhooks:\n  listen: 127.0.0.1:8090\n  sources:\n    - name: crm\n      secrets_env: [TEST_CRM_HOOK_SECRET]\n      key_path: data.id\n",
			env:  map[string]string{"TEST_CRM_HOOK_SECRET": "whsec-new"},
			want: []string{"webhooks.sources[0] (crm): integration: required"},
		},
		{
			name: "bad listen",
			give: "webhooks:\n  listen: localhost\n  sources:" + crmSource,
			env:  map[string]string{"TEST_CRM_HOOK_SECRET": "a", "TEST_CRM_HOOK_SECRET_OLD": "b"},
			want: []string{`webhooks.listen (TETHER_WEBHOOKS_LISTEN): "localhost" is not host:port`},
		},
		{
			name: "bad listen from the environment",
			env:  map[string]string{"TETHER_WEBHOOKS_LISTEN": "8090"},
			want: []string{`webhooks.listen (TETHER_WEBHOOKS_LISTEN): "8090" is not host:port`},
		},
		{
			name: "listen without sources",
			give: "webhooks:\n  listen: 127.0.0.1:8090\n",
			want: []string{`webhooks.sources: the receiver is on (webhooks.listen is "127.0.0.1:8090") but no source is configured`},
		},
		{
			name: "a source's own settings are checked, naming the source",
			give: "webhooks:\n  listen: 127.0.0.1:8090\n  sources:\n    - name: crm\n      integration: crm-contacts\n      secrets_env: [TEST_CRM_HOOK_SECRET]\n      delete_types: [gone]\n" +
				"    - name: \"bad name\"\n      integration: crm-contacts\n      secrets_env: [TEST_CRM_HOOK_SECRET]\n      key_path: id\n      on_invalid: drop\n",
			env: map[string]string{"TEST_CRM_HOOK_SECRET": "whsec-new"},
			want: []string{"webhooks.sources[0] (crm): key_path: required", "webhooks.sources[0] (crm): delete_types: needs type_path",
				`webhooks.sources[1] (bad name): name: "bad name" must be`, `webhooks.sources[1] (bad name): on_invalid: unknown choice "drop"`},
		},
		{
			name: "typo in a source key",
			give: "webhooks:\n  listen: 127.0.0.1:8090\n  sources:\n    - name: crm\n      integration: crm-contacts\n      secret_env: [TEST_CRM_HOOK_SECRET]\n      key_path: data.id\n",
			want: []string{"secret_env"},
		},
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
			if p != "" && !strings.Contains(err.Error(), p) {
				t.Errorf("error does not name the file %s:\n%v", p, err)
			}
			for _, w := range tt.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("error does not say %q:\n%v", w, err)
				}
			}
			for _, w := range tt.notWant {
				if strings.Contains(err.Error(), w) {
					t.Errorf("error says %q:\n%v", w, err)
				}
			}
		})
	}
}

// TestLoad_WebhookSecretProblemsDoNotHideOtherProblems: Load promises
// every problem in one error; an unset secret variable must not hide the
// rest of the file's problems (the user would fix them one run at a time).
func TestLoad_WebhookSecretProblemsDoNotHideOtherProblems(t *testing.T) {
	p := writeFile(t, "log:\n  level: loud\nwebhooks:\n  listen: nope\n  sources:\n"+
		"    - name: crm\n      secrets_env: [TEST_UNSET_HOOK_SECRET]\n      key_path: data.id\n"+
		"    - name: billing\n      integration: billing-invoices\n      secrets: [whsec-inline]\n      key_path: id\n")
	_, err := Load(p)
	if err == nil {
		t.Fatal("want an error")
	}
	for _, w := range []string{
		"webhooks.sources[0] (crm): secrets_env: environment variable TEST_UNSET_HOOK_SECRET is not set",
		"webhooks.sources[1] (billing): secrets: never inline",
		"webhooks.sources[0] (crm): integration: required",
		`webhooks.listen (TETHER_WEBHOOKS_LISTEN): "nope" is not host:port`,
		"log.level",
	} {
		if !strings.Contains(err.Error(), w) {
			t.Errorf("error does not say %q:\n%v", w, err)
		}
	}
	if strings.Contains(err.Error(), "whsec-inline") {
		t.Errorf("error prints an inline secret:\n%v", err)
	}
}
