package declarative

import (
	"encoding/json"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"

	"github.com/tetherflow/tether/activities/integration"
	"github.com/tetherflow/tether/activities/lib/httpclient"
	"github.com/tetherflow/tether/activities/lib/mapping"
	"github.com/tetherflow/tether/activities/lib/schema"
)

func load(t *testing.T, dir, body string) Spec {
	t.Helper()
	s, err := Load(writeFile(t, dir, "people.yaml", body))
	if err != nil {
		t.Fatal(err)
	}
	return s
}

func TestSpec_Resolve(t *testing.T) {
	s := load(t, "", minimalYAML)
	r, err := s.Resolve(env(map[string]string{"PEOPLE_TOKEN": "tok-123"}), noFiles, nil)
	if err != nil {
		t.Fatal(err)
	}
	d := r.Definition
	if d.Source.HTTP.Auth.Token != "tok-123" || d.Source.HTTP.Auth.Kind != "bearer" {
		t.Errorf("auth %+v", d.Source.HTTP.Auth)
	}
	// Normalised: defaults filled.
	if d.Version != 1 || d.BatchSize != integration.DefaultBatchSize || d.InitialCursor != integration.DefaultInitialCursor || d.InvalidThreshold != integration.DefaultInvalidThreshold {
		t.Errorf("not normalised: %+v", d)
	}
	if d.Schema != "contacts.schema.json" || r.Schema != nil {
		t.Errorf("schema %q %q", d.Schema, r.Schema)
	}
	if d.Destination.Postgres.Name != "people" || len(d.Mapping.Fields) != 3 {
		t.Errorf("definition %+v", d)
	}
	// The definition does not share the spec's slices.
	d.Destination.Postgres.Columns[0].Name = "changed"
	if s.Destination.Postgres.Columns[0].Name != "id" {
		t.Error("the definition shares the spec's columns")
	}
}

func TestSpec_Resolve_Secrets(t *testing.T) {
	dir := t.TempDir()
	writeFile(t, dir, "client_secret", "file-secret\n")
	abs := writeFile(t, dir, "abs_key", "abs-key")
	oauth := edited(t, map[string]any{"/source/http/auth": map[string]any{
		"kind": "oauth2", "token_url": "https://auth.example.com/token", "client_id": "tether",
		"client_secret": map[string]any{"file": "client_secret"},
	}})
	apiKey := edited(t, map[string]any{"/source/http/auth": map[string]any{"kind": "api_key", "api_key": map[string]any{"file": abs}}})

	s := load(t, dir, oauth)
	r, err := s.Resolve(env(nil), os.ReadFile, nil)
	if err != nil {
		t.Fatal(err)
	}
	if got := r.Definition.Source.HTTP.Auth.ClientSecret; got != "file-secret" {
		t.Errorf("client secret from a file relative to the integration file = %q", got)
	}
	s = load(t, dir, apiKey)
	if r, err = s.Resolve(env(nil), os.ReadFile, nil); err != nil || r.Definition.Source.HTTP.Auth.APIKey != "abs-key" {
		t.Errorf("api key from an absolute path = %q, %v", r.Definition.Source.HTTP.Auth.APIKey, err)
	}

	tests := []struct {
		name     string
		give     string
		env      map[string]string
		wantErr  string
		mustNot  string
		readFile func(string) ([]byte, error)
	}{
		{name: "missing env var", give: minimalYAML, env: map[string]string{"OTHER": "tok-123"},
			wantErr: ": /source/http/auth/token: environment variable PEOPLE_TOKEN is not set", mustNot: "tok-123"},
		{name: "empty env var", give: minimalYAML, env: map[string]string{"PEOPLE_TOKEN": ""},
			wantErr: ": /source/http/auth/token: environment variable PEOPLE_TOKEN is empty"},
		{name: "unreadable file", give: oauth,
			wantErr: ": /source/http/auth/client_secret: secret file " + filepath.Join(dir, "client_secret") + ": no such file or directory", readFile: noFiles},
		{name: "empty file", give: oauth, wantErr: ": /source/http/auth/client_secret: secret file " + filepath.Join(dir, "client_secret") + " is empty",
			readFile: func(string) ([]byte, error) { return []byte("\n"), nil }},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s := load(t, dir, tt.give)
			rf := tt.readFile
			if rf == nil {
				rf = os.ReadFile
			}
			_, err := s.Resolve(env(tt.env), rf, nil)
			if err == nil || !strings.Contains(err.Error(), s.File+tt.wantErr) {
				t.Fatalf("Resolve() error = %v, want one containing %q", err, s.File+tt.wantErr)
			}
			if tt.mustNot != "" && strings.Contains(err.Error(), tt.mustNot) {
				t.Errorf("the error shows a secret: %v", err)
			}
			if len(problemsOf(t, err)) != 1 {
				t.Errorf("want one problem, got:\n%v", err)
			}
		})
	}
}

func TestSpec_Resolve_SchemaFile(t *testing.T) {
	dir := t.TempDir()
	const doc = `{"$schema": "https://json-schema.org/draft/2020-12/schema", "type": "object", "required": ["id", "email"]}`
	writeFile(t, dir, "people.schema.json", doc)
	s := load(t, dir, edited(t, map[string]any{"/schema": "./people.schema.json"}))
	r, err := s.Resolve(env(map[string]string{"PEOPLE_TOKEN": "t"}), os.ReadFile, nil)
	if err != nil {
		t.Fatal(err)
	}
	if string(r.Schema) != doc {
		t.Errorf("schema document %q", r.Schema)
	}
	if want := "people.schema.json@" + s.SchemaSHA256[:12]; r.Definition.Schema != want {
		t.Errorf("schema name %q, want %q", r.Definition.Schema, want)
	}
	// The caller registers it, and records are validated against it.
	reg, err := schema.NewRegistry(os.DirFS(t.TempDir()))
	if err != nil {
		t.Fatal(err)
	}
	if err := reg.Add(r.Definition.Schema, r.Schema); err != nil {
		t.Fatal(err)
	}
	v, err := reg.Get(r.Definition.Schema)
	if err != nil {
		t.Fatal(err)
	}
	if errs := v.Validate(map[string]any{"id": json.Number("1")}); len(errs) != 1 || errs[0].Pointer != "/email" {
		t.Errorf("validation with the schema file: %v", errs)
	}

	// A schema file changed after Load is refused: the spec's hash no
	// longer says what would run.
	writeFile(t, dir, "people.schema.json", `{"type": "object"}`)
	if _, err := s.Resolve(env(map[string]string{"PEOPLE_TOKEN": "t"}), os.ReadFile, nil); err == nil || !strings.Contains(err.Error(), "/schema: schema file "+filepath.Join(dir, "people.schema.json")+" changed since") {
		t.Errorf("Resolve() error = %v", err)
	}
}

func TestSpec_Resolve_DefinitionProblems(t *testing.T) {
	tests := []struct {
		name string
		give map[string]any
		want string
	}{
		{name: "cursor without incremental param", give: map[string]any{"/source/http/incremental": nil},
			want: ": /source/http/incremental/param: required when cursor_field is set"},
		{name: "colliding parameters", give: map[string]any{"/source/http/query": map[string]any{"page": "1"}},
			want: `: /source/http: query: parameter "page" is set by pagination.page_param`},
		{name: "postgres source without its cursor", give: map[string]any{"/source": map[string]any{"postgres": map[string]any{"dsn": map[string]any{"env": "PEOPLE_TOKEN"}, "table": "people", "key": []any{"id"}}}},
			want: `: /cursor_field: "updated_at" must name source.postgres.cursor_column ("")`},
		{name: "http destination refused by the sink", give: map[string]any{"/destination": map[string]any{"http": map[string]any{"base_url": "https://x.example.com",
			"create": map[string]any{"path": "/v1/people"}, "update": map[string]any{"path": "/v1/people/{{.external_id"}}}},
			want: ": /destination/http: update.path: "},
		{name: "ids without an earlier step", give: map[string]any{"/destination/ids": map[string]any{"email": "billing"}},
			want: `: /destination/ids/email: "billing" is not an earlier step`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s := load(t, "", edited(t, tt.give))
			_, err := s.Resolve(env(map[string]string{"PEOPLE_TOKEN": "t"}), noFiles, nil)
			if err == nil || !strings.Contains(err.Error(), s.File+tt.want) {
				t.Fatalf("Resolve() error = %v, want one containing %q", err, s.File+tt.want)
			}
			problemsOf(t, err)
		})
	}
}

func TestJoin(t *testing.T) {
	comma := ", "
	tests := []struct {
		name    string
		join    []string
		sep     *string
		norm    []string
		give    mapping.Record
		want    any
		wantErr string
	}{
		{name: "both", join: []string{"first", "last"}, give: mapping.Record{"first": "Ada", "last": "Lovelace"}, want: "Ada Lovelace"},
		{name: "absent, null and empty left out", join: []string{"first", "middle", "nick", "last"},
			give: mapping.Record{"first": "Ada", "middle": nil, "nick": "", "last": "Lovelace"}, want: "Ada Lovelace"},
		{name: "nothing", join: []string{"first", "last"}, give: mapping.Record{}, want: ""},
		{name: "separator and nested paths", join: []string{"address.city", "address.country", "tags.0"}, sep: &comma,
			give: mapping.Record{"address": map[string]any{"city": "London", "country": "GB"}, "tags": []any{"vip"}}, want: "London, GB, vip"},
		{name: "numbers and booleans", join: []string{"id", "ok"}, give: mapping.Record{"id": json.Number("42"), "ok": true}, want: "42 true"},
		{name: "normalised after", join: []string{"first", "last"}, norm: []string{"collapse_spaces"},
			give: mapping.Record{"first": "  Ada  ", "last": "Lovelace "}, want: "Ada Lovelace"},
		{name: "an object", join: []string{"address"}, give: mapping.Record{"address": map[string]any{}}, wantErr: `field "x": compute: join address: an object, not a scalar`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			fn, err := fileMapping([]Field{{To: "x", Join: tt.join, Separator: tt.sep, Normalize: tt.norm}}).Compile()
			if err != nil {
				t.Fatal(err)
			}
			got, err := fn(tt.give)
			if tt.wantErr != "" {
				if err == nil || err.Error() != tt.wantErr {
					t.Fatalf("error = %v, want %q", err, tt.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if !reflect.DeepEqual(got["x"], tt.want) {
				t.Errorf("x = %#v, want %#v", got["x"], tt.want)
			}
		})
	}
}

func TestSpec_Hash(t *testing.T) {
	base := load(t, "", minimalYAML)
	h := base.Hash()
	if len(h) != 64 {
		t.Fatalf("Hash() = %q", h)
	}

	// The same integration written another way: keys in another order,
	// flow style, comments, another file.
	reordered := `# the same, reordered
destination:
  postgres: {key: [id], version_column: updated_at, name: people, columns: [{name: id, not_null: true, type: bigint}, {type: text, name: email}, {name: updated_at, type: timestamptz}]}
mapping:
  - {required: true, cast: int, from: id, to: id}
  - {normalize: [email], from: email, to: email}
  - {cast: timestamp, to: updated_at, from: updated_at}
cursor_field: updated_at
key_field: id
schema: contacts.schema.json
source:
  http:
    auth: {token: {env: PEOPLE_TOKEN}, kind: bearer}
    incremental: {param: updated_since}
    pagination: {style: page}
    records_path: data
    path: /v1/people
    base_url: https://api.example.com
description: people from a test API
name: people
`
	if got := load(t, "", reordered).Hash(); got != h {
		t.Errorf("Hash changes with key order: %s != %s", got, h)
	}
	// A JSON round trip keeps it.
	b, err := json.Marshal(base)
	if err != nil {
		t.Fatal(err)
	}
	var back Spec
	if err := json.Unmarshal(b, &back); err != nil {
		t.Fatal(err)
	}
	if back.Hash() != h {
		t.Errorf("Hash changes through JSON:\n%s", b)
	}
	if strings.Contains(string(b), base.File) {
		t.Errorf("the JSON form holds the file path: %s", b)
	}

	changes := []map[string]any{
		{"/description": "other"},
		{"/mapping/1/normalize": []any{"trim"}},
		{"/source/http/auth/token": map[string]any{"env": "OTHER_TOKEN"}},
		{"/destination/postgres/columns/1/not_null": true},
		{"/batch_size": 10},
		{"/mapping/2/default": "1970-01-01T00:00:00Z"},
		{"/destination/name": "people"},
		{"/match": map[string]any{"fields": []any{"email"}}},
	}
	for _, c := range changes {
		if got := load(t, "", edited(t, c)).Hash(); got == h {
			t.Errorf("Hash does not change with %v", c)
		}
	}

	// A schema file named by path is part of it.
	dir := t.TempDir()
	writeFile(t, dir, "p.json", `{"type": "object"}`)
	withFile := edited(t, map[string]any{"/schema": "./p.json"})
	h1 := load(t, dir, withFile).Hash()
	writeFile(t, dir, "p.json", `{"type": "object", "required": ["id"]}`)
	if load(t, dir, withFile).Hash() == h1 {
		t.Error("Hash does not change with the schema file")
	}
}

// TestSpec_Resolve_Connection: an HTTP source or destination naming a
// connection the worker configures takes its base URL, credentials and
// pace from it; one it does not know, or a file that also sets them, is
// refused naming the key.
func TestSpec_Resolve_Connection(t *testing.T) {
	conns := map[string]httpclient.Connection{"crm": {BaseURL: "https://crm.example.com",
		Auth: httpclient.Auth{Kind: "bearer", Token: "conn-token"}, RateLimit: httpclient.RateLimit{RequestsPerSecond: 5, Burst: 1}}}
	viaConnection := map[string]any{"/source/http/base_url": nil, "/source/http/auth": nil, "/source/http/connection": "crm"}
	s := load(t, "", edited(t, viaConnection))
	r, err := s.Resolve(env(nil), noFiles, conns)
	if err != nil {
		t.Fatal(err)
	}
	src := r.Definition.Source.HTTP
	if src.BaseURL != "https://crm.example.com" || src.Auth.Token != "conn-token" || src.RateLimit.RequestsPerSecond != 5 {
		t.Errorf("source %+v: want the connection's base URL, token and rate limit", src)
	}

	tests := []struct {
		name  string
		edits map[string]any
		conns map[string]httpclient.Connection
		want  []string
	}{
		{"unknown connection", viaConnection, nil,
			[]string{"/source/http/connection", `connection "crm" is not configured in the worker`, "TETHER_CONNECTIONS_CRM_BASE_URL"}},
		{"base_url besides", map[string]any{"/source/http/auth": nil, "/source/http/connection": "crm"}, conns,
			[]string{"/source/http/base_url", `set by connection "crm"`}},
		{"auth besides", map[string]any{"/source/http/base_url": nil, "/source/http/connection": "crm"}, conns,
			[]string{"/source/http/auth", `set by connection "crm"`}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s := load(t, "", edited(t, tt.edits))
			_, err := s.Resolve(env(map[string]string{"PEOPLE_TOKEN": "t"}), noFiles, tt.conns)
			if err == nil {
				t.Fatal("resolved")
			}
			for _, w := range tt.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("error does not say %q:\n%v", w, err)
				}
			}
		})
	}

	// Neither base_url nor connection: the file is refused as it loads.
	_, err = Load(writeFile(t, t.TempDir(), "people.yaml", edited(t, map[string]any{"/source/http/base_url": nil})))
	if err == nil || !strings.Contains(err.Error(), "set base_url, or connection") {
		t.Errorf("a source with neither base_url nor connection: %v", err)
	}
}
