package integrations

import (
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"

	"github.com/tetherflow/tether/activities/integration"
	"github.com/tetherflow/tether/activities/integration/declarative"
	"github.com/tetherflow/tether/activities/lib/mapping"
	"github.com/tetherflow/tether/activities/lib/schema"
	"github.com/tetherflow/tether/workers/config"
)

// twinFile is the YAML twin of CRMContacts.
const twinFile = "yaml/crm-contacts-yaml.yaml"

// resolveTwin loads the twin, with edit applied to its text, and resolves
// it with env.
func resolveTwin(t *testing.T, edit func(string) string, env map[string]string) integration.Definition {
	t.Helper()
	b, err := os.ReadFile(twinFile)
	if err != nil {
		t.Fatal(err)
	}
	p := filepath.Join(t.TempDir(), "twin.yaml")
	if err := os.WriteFile(p, []byte(edit(string(b))), 0o644); err != nil {
		t.Fatal(err)
	}
	spec, err := declarative.Load(p)
	if err != nil {
		t.Fatal(err)
	}
	r, err := spec.Resolve(func(k string) (string, bool) { v, ok := env[k]; return v, ok }, os.ReadFile, nil)
	if err != nil {
		t.Fatal(err)
	}
	return r.Definition
}

// withoutFuncs returns d without what only differs between the twins: the
// name, description, table and the Go functions. A computed column is kept
// as its name only: how it is computed (a Go function, or join and
// normalisers) is compared by running the mappings.
func withoutFuncs(d integration.Definition) integration.Definition {
	d.Name, d.Description, d.Transform = "", "", nil
	table := *d.Destination.Postgres
	table.Name = ""
	d.Destination.Postgres = &table
	fields := make([]mapping.Field, len(d.Mapping.Fields))
	for i, f := range d.Mapping.Fields {
		if f.Compute != nil {
			f = mapping.Field{To: f.To, Required: f.Required}
		}
		fields[i] = f
	}
	d.Mapping.Fields = fields
	return d
}

// TestYAMLTwin_EqualsCRMContacts: the shipped YAML file expresses the Go
// integration crm-contacts completely: the same definition but for its
// name, description and table, and the same rows from the same records.
func TestYAMLTwin_EqualsCRMContacts(t *testing.T) {
	tests := []struct {
		name string
		crm  config.Connection
		edit func(string) string
		env  map[string]string
	}{
		{name: "as shipped", crm: config.Connection{BaseURL: "http://127.0.0.1:8081", Auth: "none"}, edit: func(s string) string { return s }},
		{name: "bearer token from the environment", crm: config.Connection{BaseURL: "http://127.0.0.1:8081", Auth: "bearer", Token: "tok-123"},
			edit: func(s string) string {
				return strings.Replace(s, "kind: none", "kind: bearer\n      token: {env: CRM_TOKEN}", 1)
			},
			env: map[string]string{"CRM_TOKEN": "tok-123"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			goDef := CRMContacts(tt.crm).Normalize()
			yamlDef := resolveTwin(t, tt.edit, tt.env)

			if yamlDef.Name != "crm-contacts-yaml" || yamlDef.Destination.Postgres.Name != "crm_contacts_yaml" {
				t.Errorf("twin is named %q, table %q", yamlDef.Name, yamlDef.Destination.Postgres.Name)
			}
			g, y := reflect.ValueOf(withoutFuncs(goDef)), reflect.ValueOf(withoutFuncs(yamlDef))
			for i := 0; i < g.NumField(); i++ {
				if gf, yf := g.Field(i).Interface(), y.Field(i).Interface(); !reflect.DeepEqual(gf, yf) {
					t.Errorf("%s differs:\ngo:   %s\nyaml: %s", g.Type().Field(i).Name, show(gf), show(yf))
				}
			}

			goMap := mapping.Chain(mustCompile(t, goDef.Mapping), goDef.Transform)
			yamlMap := mapping.Chain(mustCompile(t, yamlDef.Mapping), yamlDef.Transform)
			mapped := 0
			for i, rec := range twinRecords {
				g, gErr := goMap(decode(t, rec))
				if gErr == nil {
					mapped++
				}
				y, yErr := yamlMap(decode(t, rec))
				if (gErr == nil) != (yErr == nil) || gErr != nil && gErr.Error() != yErr.Error() {
					t.Errorf("record %d: errors differ: go %v, yaml %v", i, gErr, yErr)
				}
				if !reflect.DeepEqual(g, y) {
					t.Errorf("record %d: rows differ:\ngo:   %v\nyaml: %v", i, g, y)
				}
			}
			if mapped != len(twinRecords)-1 {
				t.Errorf("%d of %d records mapped, want all but the last", mapped, len(twinRecords))
			}
		})
	}
}

// show renders a definition's field for a message.
func show(v any) string {
	b, err := json.Marshal(v)
	if err != nil {
		return fmt.Sprintf("%+v", v)
	}
	return string(b)
}

func mustCompile(t *testing.T, m mapping.Mapping) mapping.Func {
	t.Helper()
	fn, err := m.Compile()
	if err != nil {
		t.Fatal(err)
	}
	return fn
}

func decode(t *testing.T, s string) map[string]any {
	t.Helper()
	v, err := schema.Decode([]byte(s))
	if err != nil {
		t.Fatal(err)
	}
	return v.(map[string]any)
}

// twinRecords are contacts as the CRM sends them, with the quirks the
// mappings smooth over, and some they refuse.
var twinRecords = []string{
	`{"id": 42, "uuid": "3f2b8c1e-9a4d-4e6f-8b7a-1c2d3e4f5a6b", "first_name": "Ada", "last_name": "Lovelace",
	  "email": " Ada.Lovelace@Example.com ", "phone": " +44 20 7946 0958 ", "company_id": 7, "status": "Customer",
	  "score": 87, "opt_in": true, "opt_in_at": "2025-03-04T05:06:07.123Z", "website": "https://ada.example.com",
	  "address": {"city": " London ", "country": "gb"}, "tags": ["vip", "newsletter"],
	  "created_at": "2024-01-02T03:04:05.000Z", "updated_at": "2025-03-04T05:06:07.123+01:00"}`,
	`{"id": 43, "first_name": "  Grace   Brewster ", "last_name": "Hopper", "email": "grace@example.com",
	  "created_at": "2024-01-02T03:04:05Z", "updated_at": "2024-01-02T03:04:05Z"}`,
	`{"id": 44, "first_name": null, "last_name": "Only", "email": "o@example.com", "score": null, "opt_in": null,
	  "address": null, "created_at": "2024-01-02T03:04:05Z", "updated_at": "2024-01-02T03:04:05Z"}`,
	`{"id": 45, "email": "nameless@example.com", "created_at": "2024-01-02T03:04:05Z", "updated_at": "2024-01-02T03:04:05Z"}`,
	`{"id": 46, "first_name": "", "last_name": "", "email": "e@example.com", "created_at": "2024-01-02T03:04:05Z", "updated_at": "2024-01-02T03:04:05Z"}`,
	`{"id": "x", "email": null, "score": "high", "created_at": "yesterday", "updated_at": "2024-01-02T03:04:05Z"}`,
}
