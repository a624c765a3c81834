package declarative

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/tetherflow/tether/activities/connector"
	"github.com/tetherflow/tether/activities/connector/httpside"
	"github.com/tetherflow/tether/activities/connector/pgside"
	"github.com/tetherflow/tether/activities/lib/httpclient"
	"github.com/tetherflow/tether/activities/twoway"
)

var billingConns = map[string]httpclient.Connection{"billing": {BaseURL: "https://billing.example.com"}}

func TestLoadTwoWay_ReadsTheFile(t *testing.T) {
	const p = "testdata/accounts-billing.twoway.yaml"
	if !IsTwoWay(p) {
		t.Fatal("IsTwoWay = false")
	}
	d, err := LoadTwoWay(p, env(map[string]string{"BILLING_TOKEN": "t0k"}), os.ReadFile, billingConns)
	if err != nil {
		t.Fatal(err)
	}
	if d.Name != "accounts-billing" || d.A.Postgres.Table != "accounts" || d.B.HTTP.BaseURL != "https://billing.example.com" ||
		d.B.HTTP.Auth.Token != "t0k" || d.Policy.Kind != twoway.Merge || d.Policy.Owners["plan"] != twoway.B || d.Every != 15*time.Second {
		t.Errorf("definition %+v", d)
	}
	// Without lookups (tether validate without --resolve) nothing is read.
	if _, err := LoadTwoWay(p, nil, nil, nil); err != nil {
		t.Errorf("unresolved: %v", err)
	}
}

func TestLoadTwoWay_RefusesMistakes(t *testing.T) {
	good, err := os.ReadFile("testdata/accounts-billing.twoway.yaml")
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name, from, to string
		want           []string
	}{
		{"a typo, with its line", "    updated_at: updated_at\n", "    updatd_at: updated_at\n", []string{"line 11: field updatd_at not found"}},
		{"an unknown policy", "policy: merge", "policy: newest", []string{`conflicts.policy: "newest" is not one of`}},
		{"a shared field one side lacks", "fields: {email: email, name: name, plan: plan}\nb:", "fields: {email: email, name: name}\nb:", []string{`shared field "plan" of b has no member on a`}},
		{"an inline token", "token: {env: BILLING_TOKEN}", "token: s3cr3t", []string{"cannot unmarshal"}},
		{"an unset secret", "BILLING_TOKEN", "NO_SUCH_TOKEN", []string{"b.http.auth.token: environment variable NO_SUCH_TOKEN is not set"}},
		{"an unknown connection", "connection: billing", "connection: biling", []string{`b.http.connection: "biling" is not a connection of the worker`}},
		{"a bad duration", "every: 15s", "every: often", []string{`every: "often" is not a duration`}},
		{"tombstones on an API", "deletes: propagate", "deletes: tombstone", []string{"b.http: deletes: tombstone needs a side that marks deleted records"}},
		{"an unknown cast", "b:\n  name: billing\n", "b:\n  name: billing\n  casts: {plan: dollars}\n", []string{`b.casts.plan: no cast "dollars"`}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			p := filepath.Join(t.TempDir(), "x.yaml")
			if err := os.WriteFile(p, []byte(strings.Replace(string(good), tc.from, tc.to, 1)), 0o644); err != nil {
				t.Fatal(err)
			}
			_, err := LoadTwoWay(p, env(map[string]string{"BILLING_TOKEN": "t0k"}), os.ReadFile, billingConns)
			for _, w := range tc.want {
				if err == nil || !strings.Contains(err.Error(), w) || !strings.Contains(err.Error(), p) {
					t.Errorf("error %v, want it to name %s and say %q", err, p, w)
				}
			}
		})
	}
}

func TestFiles_TwoWayFilesApart(t *testing.T) {
	dir := t.TempDir()
	for name, body := range map[string]string{"one.yaml": "name: one\n", "two.yaml": "kind: two-way\nname: two\n"} {
		if err := os.WriteFile(filepath.Join(dir, name), []byte(body), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	one, err1 := Files(dir)
	two, err2 := TwoWayFiles(dir)
	if err1 != nil || err2 != nil || len(one) != 1 || !strings.HasSuffix(one[0], "one.yaml") || len(two) != 1 || !strings.HasSuffix(two[0], "two.yaml") {
		t.Errorf("Files = %v, TwoWayFiles = %v (%v, %v)", one, two, err1, err2)
	}
}

// TestLoadTwoWay_ASideOfARegisteredKind: a side of a kind registered on
// the worker in Go is declared with kind, its settings as written and the
// shared fields it maps; opened through a registry, the settings are
// decoded by the connector (a mistyped one named).
func TestLoadTwoWay_ASideOfARegisteredKind(t *testing.T) {
	body := `kind: two-way
name: accounts-crm
a:
  name: app
  postgres: {table: accounts, key: id, updated_at: updated_at, fields: {email: email, name: name}}
b:
  name: crm
  kind: crm-api
  config: {base_url: "https://crm.example.com", path: /v2/people, fields: {email: mail, name: display_name}, page_size: 50}
  shared: [email, name]
conflicts: {policy: last_writer_wins}
`
	p := filepath.Join(t.TempDir(), "accounts-crm.yaml")
	if err := os.WriteFile(p, []byte(body), 0o644); err != nil {
		t.Fatal(err)
	}
	d, err := LoadTwoWay(p, env(nil), os.ReadFile, nil)
	if err != nil {
		t.Fatal(err)
	}
	if d.B.Kind != "crm-api" || len(d.B.Fields()) != 2 {
		t.Fatalf("side b: %+v", d.B)
	}
	var opened httpside.Config
	conns := connector.NewRegistry().RegisterSide(twoway.KindPostgres, pgside.Factory(nil)).
		RegisterSide("crm-api", connector.SideFactoryOf("crm-api side", func(spec connector.SideSpec, cfg httpside.Config) (connector.Side, error) {
			opened = cfg
			return httpside.Open(spec.Integration+"/"+spec.Side, cfg, nil)
		}))
	reg, err := twoway.NewRegistry(d)
	if err != nil {
		t.Fatal(err)
	}
	if err := reg.Check(conns); err != nil {
		t.Fatal(err)
	}
	if opened.Path != "/v2/people" || opened.Fields["name"] != "display_name" || opened.PageSize != 50 {
		t.Errorf("the connector got %+v", opened)
	}

	if err := os.WriteFile(p, []byte(strings.Replace(body, "page_size: 50", "page_sise: 50", 1)), 0o644); err != nil {
		t.Fatal(err)
	}
	if d, err = LoadTwoWay(p, env(nil), os.ReadFile, nil); err != nil {
		t.Fatal(err)
	}
	reg, err = twoway.NewRegistry(d)
	if err != nil {
		t.Fatal(err)
	}
	if err := reg.Check(conns); err == nil || !strings.Contains(err.Error(), "page_sise") || !strings.Contains(err.Error(), "side crm") {
		t.Errorf("a mistyped setting: %v; want it named, with the side", err)
	}
}
