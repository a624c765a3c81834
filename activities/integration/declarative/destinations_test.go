package declarative

import (
	"errors"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/tetherflow/tether/activities/connector/httpsink"
	"github.com/tetherflow/tether/activities/connector/httpsource"
	"github.com/tetherflow/tether/activities/connector/pgsink"
	"github.com/tetherflow/tether/activities/connector/pgsource"
	"github.com/tetherflow/tether/activities/integration"
	"github.com/tetherflow/tether/activities/lib/httpclient"
	"github.com/tetherflow/tether/activities/lib/mapping"
)

// Fixtures in testdata/.
const (
	sagaFile     = "testdata/billing-customers.yaml"
	postgresFile = "testdata/people-postgres.yaml"
)

// sagaEnv and sagaFiles hold the fixture saga's secrets.
var sagaEnv = map[string]string{"CRM_TOKEN": "crm-tok", "HOOK_KEY": "hook-key"}

func sagaFiles(p string) ([]byte, error) {
	if p == filepath.Join("testdata", "billing_client_secret") {
		return []byte("billing-secret\n"), nil
	}
	return noFiles(p)
}

// withoutCompute returns the mapping's fields with Compute dropped (a
// func is never DeepEqual), and which fields had one.
func withoutCompute(m mapping.Mapping) ([]mapping.Field, []string) {
	var computed []string
	out := make([]mapping.Field, len(m.Fields))
	for i, f := range m.Fields {
		if f.Compute != nil {
			computed = append(computed, f.To)
			f.Compute = nil
		}
		out[i] = f
	}
	return out, computed
}

func TestResolve_DestinationsSaga(t *testing.T) {
	s, err := Load(sagaFile)
	if err != nil {
		t.Fatal(err)
	}
	r, err := s.Resolve(env(sagaEnv), sagaFiles, nil)
	if err != nil {
		t.Fatal(err)
	}
	got := r.Definition

	fields, computed := withoutCompute(got.Mapping)
	if want := []mapping.Field{
		{To: "id", From: "id", Cast: "int", Required: true},
		{To: "full_name", Normalize: []string{"collapse_spaces"}},
		{To: "email", From: "email", Normalize: []string{"email"}, Required: true},
		{To: "updated_at", From: "updated_at", Cast: "timestamp", Required: true},
	}; !reflect.DeepEqual(fields, want) {
		t.Errorf("mapping\n got %+v\nwant %+v", fields, want)
	}
	if !reflect.DeepEqual(computed, []string{"full_name"}) {
		t.Errorf("computed fields %q, want the join full_name", computed)
	}
	row, err := mustCompile(t, got.Mapping)(mapping.Record{"id": 7, "first_name": "Ada", "last_name": "Lovelace", "email": "ADA@example.com", "updated_at": "2024-01-02T03:04:05Z"})
	if err != nil || row["full_name"] != "Ada Lovelace" {
		t.Errorf("mapped row %v, %v", row, err)
	}

	if want := (&httpsource.Config{
		BaseURL:     "https://crm.example.com",
		Path:        "/v1/customers",
		RecordsPath: "data",
		Pagination:  httpsource.Pagination{Style: "cursor", CursorParam: "cursor", NextCursorPath: "meta.next"},
		Incremental: httpsource.Incremental{Param: "updated_since"},
		Auth:        httpclient.Auth{Kind: "bearer", Token: "crm-tok"},
	}); !reflect.DeepEqual(got.Source.HTTP, want) {
		t.Errorf("source\n got %+v\nwant %+v", got.Source.HTTP, want)
	}

	if len(got.Destinations) != 3 {
		t.Fatalf("%d destinations, want 3: %+v", len(got.Destinations), got.Destinations)
	}
	if got.Destination.Kind() != "" {
		t.Errorf("destination %+v set beside destinations", got.Destination)
	}

	billing := got.Destinations[0]
	billingFields, _ := withoutCompute(billing.Mapping)
	billing.Mapping = mapping.Mapping{}
	if want := (integration.Destination{
		Name: "billing",
		HTTP: &httpsink.Config{
			BaseURL: "https://billing.example.com",
			Headers: map[string]string{"X-Tenant": "acme"},
			Auth: httpclient.Auth{Kind: "oauth2", TokenURL: "https://auth.example.com/token", ClientID: "tether",
				ClientSecret: "billing-secret", Scopes: []string{"customers.write"}},
			Timeout: 10 * time.Second,
			Retry:   httpclient.Retry{Max: 3, WaitMin: 200 * time.Millisecond, WaitMax: 5 * time.Second},
			Create:  httpsink.Endpoint{Method: "POST", Path: "/v1/customers"},
			Update:  httpsink.Endpoint{Method: "PATCH", Path: "/v1/customers/{{.external_id}}"},
			Delete:  httpsink.Endpoint{Method: "DELETE", Path: "/v1/customers/{{.external_id}}"},
			Batch: httpsink.Batch{Path: "/v1/customers/batch", MaxRecords: 50, IdempotencyKeyField: "idempotency_key",
				StatusPath: "status", IDPath: "customer.id", ErrorPath: "error.message"},
			IDPath:            "customer.id",
			IdempotencyHeader: "X-Idempotency-Key",
			RateLimit:         httpclient.RateLimit{RequestsPerSecond: 5, Burst: 2},
			MaxInFlight:       8,
			CircuitBreaker:    httpsink.CircuitBreaker{FailureRate: 0.25, MinRequests: 20, Window: time.Minute, OpenFor: 45 * time.Second},
		},
		Mode:     integration.ModeUpsert,
		Identity: "billing/customers",
	}); !reflect.DeepEqual(billing, want) {
		t.Errorf("step billing\n got %+v\nwant %+v\n got http %+v\nwant http %+v", billing, want, billing.HTTP, want.HTTP)
	}
	if want := []mapping.Field{
		{To: "name", From: "full_name"},
		{To: "email", From: "email"},
		{To: "external_ref", From: "id", Cast: "string"},
	}; !reflect.DeepEqual(billingFields, want) {
		t.Errorf("step billing mapping\n got %+v\nwant %+v", billingFields, want)
	}

	link := got.Destinations[1]
	if want := (integration.Destination{
		Name: "link",
		Postgres: &pgsink.Table{
			Name: "billing_customer_links",
			Columns: []pgsink.Column{
				{Name: "id", Type: "bigint", NotNull: true},
				{Name: "billing_id", Type: "text", NotNull: true},
				{Name: "updated_at", Type: "timestamptz"},
			},
			Key:           []string{"id"},
			VersionColumn: "updated_at",
		},
		IDs: map[string]string{"billing_id": "billing"},
		Mapping: mapping.Mapping{Fields: []mapping.Field{
			{To: "id", From: "id", Required: true},
			{To: "billing_id", From: "billing_id", Required: true},
			{To: "updated_at", From: "updated_at"},
		}},
	}); !reflect.DeepEqual(link, want) {
		t.Errorf("step link\n got %+v\nwant %+v", link, want)
	}

	notify := got.Destinations[2]
	if want := (integration.Destination{
		Name: "notify",
		HTTP: &httpsink.Config{
			BaseURL: "https://hooks.example.com",
			Auth:    httpclient.Auth{Kind: "api_key", Header: "X-Hook-Key", APIKey: "hook-key"},
			Create:  httpsink.Endpoint{Path: "/v1/customer-events"},
		},
		Mode:     integration.ModeNotify,
		IDs:      map[string]string{"billing_id": "billing"},
		Reversal: &httpsink.Endpoint{Method: "POST", Path: "/v1/customer-events/reversals"},
	}); !reflect.DeepEqual(notify, want) {
		t.Errorf("step notify\n got %+v\nwant %+v", notify, want)
	}

	if want := (&integration.Match{Fields: []string{"email"}, Normalize: []string{"trim", "lower"}, Policy: integration.MatchQuarantine}); !reflect.DeepEqual(got.Match, want) {
		t.Errorf("match %+v, want %+v", got.Match, want)
	}
	if got.Name != "billing-customers" || got.Version != 2 || !got.Atomic || got.BatchSize != 200 ||
		got.KeyField != "id" || got.CursorField != "updated_at" || got.Schema != "contacts.schema.json" {
		t.Errorf("definition %+v", got)
	}
	// Normalised: defaults filled.
	if got.InvalidThreshold != integration.DefaultInvalidThreshold || got.PagesInFlight != integration.DefaultPagesInFlight ||
		got.InitialCursor != integration.DefaultInitialCursor {
		t.Errorf("not normalised: %+v", got)
	}
	// The steps in apply order, with the defaults a run uses.
	steps := got.Steps()
	if steps[0].Identity != "billing/customers" || steps[2].Identity != "billing-customers/notify" || steps[2].HTTP.Update.Path != "/v1/customer-events" {
		t.Errorf("steps %+v", steps)
	}

	// It registers beside the Go integrations.
	if _, err := integration.NewRegistry(r.Definition); err != nil {
		t.Errorf("NewRegistry: %v", err)
	}

	// The definition does not share the spec's maps and slices.
	got.Destinations[1].IDs["billing_id"] = "changed"
	got.Destinations[0].HTTP.Headers["X-Tenant"] = "changed"
	got.Match.Fields[0] = "changed"
	if s.Destinations[1].IDs["billing_id"] != "billing" || s.Destinations[0].HTTP.Headers["X-Tenant"] != "acme" || s.Match.Fields[0] != "email" {
		t.Error("the definition shares the spec's maps or slices")
	}
}

func mustCompile(t *testing.T, m mapping.Mapping) func(mapping.Record) (mapping.Record, error) {
	t.Helper()
	fn, err := m.Compile()
	if err != nil {
		t.Fatal(err)
	}
	return fn
}

func TestResolve_DestinationsSaga_Secrets(t *testing.T) {
	s, err := Load(sagaFile)
	if err != nil {
		t.Fatal(err)
	}
	_, err = s.Resolve(env(map[string]string{"CRM_TOKEN": "crm-tok"}), noFiles, nil)
	ps := problemsOf(t, err)
	want := []struct{ pointer, reason string }{
		{"/destinations/0/http/auth/client_secret", "secret file " + filepath.Join("testdata", "billing_client_secret") + ": no such file or directory"},
		{"/destinations/2/http/auth/api_key", "environment variable HOOK_KEY is not set"},
	}
	for _, w := range want {
		p := findProblem(ps, w.pointer, w.reason)
		if p == nil {
			t.Errorf("no problem at %s containing %q; got:\n%v", w.pointer, w.reason, err)
			continue
		}
		if !strings.HasPrefix(p.Error(), sagaFile+": "+w.pointer+": ") {
			t.Errorf("Error() = %q, want it to name the file and pointer", p.Error())
		}
	}
	if len(ps) != len(want) {
		t.Errorf("%d problems, want %d:\n%v", len(ps), len(want), err)
	}
	if strings.Contains(err.Error(), "crm-tok") {
		t.Errorf("the error shows a secret: %v", err)
	}
}

func TestResolve_PostgresSource(t *testing.T) {
	s, err := Load(postgresFile)
	if err != nil {
		t.Fatal(err)
	}
	const dsn = "postgres://reader:s3cr3t@replica/crm"
	r, err := s.Resolve(env(map[string]string{"CRM_REPLICA_DSN": dsn}), noFiles, nil)
	if err != nil {
		t.Fatal(err)
	}
	// {env: NAME} becomes dsn_env: the source reads the variable when it
	// connects, so the connection string is not in the definition.
	want := &pgsource.Config{
		DSNEnv:       "CRM_REPLICA_DSN",
		Schema:       "crm",
		Table:        "people",
		Columns:      []string{"id", "email", "first_name", "last_name", "updated_at"},
		Key:          []string{"id"},
		CursorColumn: "updated_at",
		Where:        "deleted_at IS NULL",
		MaxOpenConns: 2,
	}
	d := r.Definition
	if !reflect.DeepEqual(d.Source.HTTP, (*httpsource.Config)(nil)) || !reflect.DeepEqual(d.Source.Postgres, want) {
		t.Errorf("source\n got %+v\nwant %+v", d.Source.Postgres, want)
	}
	if d.Destination.Postgres == nil || d.Destination.Postgres.Name != "people_copy" || len(d.Destinations) != 0 {
		t.Errorf("destination %+v", d.Destination)
	}
	if _, err := integration.NewRegistry(d); err != nil {
		t.Errorf("NewRegistry: %v", err)
	}
	// The definition does not share the spec's slices.
	d.Source.Postgres.Key[0] = "changed"
	if s.Source.Postgres.Key[0] != "id" {
		t.Error("the definition shares the spec's key")
	}

	t.Run("dsn from a file", func(t *testing.T) {
		dir := t.TempDir()
		writeFile(t, dir, "replica.dsn", dsn+"\n")
		s := load(t, dir, editedYAML(t, readFile(t, postgresFile), map[string]any{"/source/postgres/dsn": map[string]any{"file": "replica.dsn"}}))
		r, err := s.Resolve(env(nil), os.ReadFile, nil)
		if err != nil {
			t.Fatal(err)
		}
		if pg := r.Definition.Source.Postgres; pg.DSN != dsn || pg.DSNEnv != "" {
			t.Errorf("dsn %q dsn_env %q, want the file's content", pg.DSN, pg.DSNEnv)
		}
	})

	tests := []struct {
		name        string
		edits       map[string]any
		env         map[string]string
		readFile    func(string) ([]byte, error)
		wantPointer string
		wantReason  string
	}{
		{name: "variable not set", env: map[string]string{"OTHER": dsn},
			wantPointer: "/source/postgres/dsn", wantReason: "environment variable CRM_REPLICA_DSN is not set"},
		{name: "variable empty", env: map[string]string{"CRM_REPLICA_DSN": ""},
			wantPointer: "/source/postgres/dsn", wantReason: "environment variable CRM_REPLICA_DSN is empty"},
		{name: "not a postgres URL in the variable", env: map[string]string{"CRM_REPLICA_DSN": "mysql://reader:s3cr3t@replica/crm"},
			wantPointer: "/source/postgres/dsn", wantReason: `environment variable CRM_REPLICA_DSN: dsn: scheme "mysql" is not postgres or postgresql`},
		{name: "not a postgres URL in the file", edits: map[string]any{"/source/postgres/dsn": map[string]any{"file": "/run/secrets/dsn"}},
			readFile:    func(string) ([]byte, error) { return []byte("mysql://reader:s3cr3t@replica/crm"), nil },
			wantPointer: "/source/postgres", wantReason: `dsn: scheme "mysql" is not postgres or postgresql`},
		{name: "cursor_field is not cursor_column", edits: map[string]any{"/cursor_field": "email"}, env: map[string]string{"CRM_REPLICA_DSN": dsn},
			wantPointer: "/cursor_field", wantReason: `"email" must name source.postgres.cursor_column ("updated_at")`},
		{name: "key_field is not the key", edits: map[string]any{"/key_field": "email"}, env: map[string]string{"CRM_REPLICA_DSN": dsn},
			wantPointer: "/key_field", wantReason: `"email" must name the source.postgres.key column ("id")`},
		{name: "columns without the key", edits: map[string]any{"/source/postgres/columns": []any{"email", "updated_at"}}, env: map[string]string{"CRM_REPLICA_DSN": dsn},
			wantPointer: "/source/postgres", wantReason: `columns: must include key column "id"`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s := load(t, "", editedYAML(t, readFile(t, postgresFile), tt.edits))
			rf := tt.readFile
			if rf == nil {
				rf = noFiles
			}
			_, err := s.Resolve(env(tt.env), rf, nil)
			ps := problemsOf(t, err)
			p := findProblem(ps, tt.wantPointer, tt.wantReason)
			if p == nil {
				t.Fatalf("no problem at %s containing %q; got:\n%v", tt.wantPointer, tt.wantReason, err)
			}
			if want := s.File + ": " + tt.wantPointer + ": "; p.File != s.File || !strings.HasPrefix(p.Error(), want) {
				t.Errorf("Error() = %q, want it to start with %q", p.Error(), want)
			}
			if strings.Contains(err.Error(), "s3cr3t") {
				t.Errorf("the error shows a secret: %v", err)
			}
		})
	}
}

// TestLoad_RefusesDestinationMistakes: what the schema refuses in sources,
// destinations and match, each problem naming the file, the pointer and
// the reason.
func TestLoad_RefusesDestinationMistakes(t *testing.T) {
	saga := readFile(t, sagaFile)
	pg := readFile(t, postgresFile)
	step := map[string]any{"postgres": map[string]any{"name": "people", "columns": []any{map[string]any{"name": "id", "type": "bigint"}}, "key": []any{"id"}}}
	tests := []struct {
		name        string
		base        string
		give        map[string]any
		wantPointer string
		wantReason  string
	}{
		{name: "inline dsn", base: pg, give: map[string]any{"/source/postgres/dsn": "postgres://reader:s3cr3t@replica/crm"},
			wantPointer: "/source/postgres/dsn", wantReason: "a secret is given by reference, never inline: {env: NAME} (an environment variable) or {file: /path/to/file}"},
		{name: "dsn_env is not a key", base: pg, give: map[string]any{"/source/postgres/dsn": nil, "/source/postgres/dsn_env": "CRM_REPLICA_DSN"},
			wantPointer: "/source/postgres/dsn_env", wantReason: "an integration file names the variable holding the connection string as dsn: {env: NAME}"},
		{name: "no dsn", base: pg, give: map[string]any{"/source/postgres/dsn": nil},
			wantPointer: "/source/postgres/dsn", wantReason: `required key "dsn" is missing`},
		{name: "bad table name", base: pg, give: map[string]any{"/source/postgres/table": "crm.people"},
			wantPointer: "/source/postgres/table", wantReason: "a plain SQL identifier"},
		{name: "inline http destination token", base: saga, give: map[string]any{"/destinations/2/http/auth": map[string]any{"kind": "bearer", "token": "s3cr3t-token"}},
			wantPointer: "/destinations/2/http/auth/token", wantReason: "a secret is given by reference, never inline"},
		{name: "inline http destination client secret", base: saga, give: map[string]any{"/destinations/0/http/auth/client_secret": "s3cr3t"},
			wantPointer: "/destinations/0/http/auth/client_secret", wantReason: "never inline"},
		{name: "destination and destinations", base: saga, give: map[string]any{"/destination": step},
			wantPointer: "/destinations", wantReason: "destination and destinations are exclusive"},
		{name: "neither destination nor destinations", base: saga, give: map[string]any{"/destinations": nil},
			wantPointer: "/destination", wantReason: `required key "destination" is missing: write where rows go under destination (one step), or list the steps under destinations`},
		{name: "no steps", base: saga, give: map[string]any{"/destinations": []any{}},
			wantPointer: "/destinations", wantReason: "minimum 1 items required"},
		{name: "postgres and http in one step", base: saga, give: map[string]any{"/destinations/1/http": map[string]any{"base_url": "https://x.example.com", "create": map[string]any{"path": "/x"}}},
			wantPointer: "/destinations/1", wantReason: "set exactly one destination kind: postgres, http or connector"},
		{name: "table key not a column", base: pg, give: map[string]any{"/destination/postgres/key": []any{"uid"}},
			wantPointer: "/destination/postgres", wantReason: `key[0]: "uid" is not a declared column`},
		{name: "anonymise the key", base: pg, give: map[string]any{"/destination/postgres/on_erase": "anonymise", "/destination/postgres/anonymise": map[string]any{"id": "0"}},
			wantPointer: "/destination/postgres", wantReason: `anonymise.id: "id" is the key or the version: an anonymised row keeps them`},
		{name: "mode of a postgres step", base: saga, give: map[string]any{"/destinations/1/mode": "upsert"},
			wantPointer: "/destinations/1/mode", wantReason: "mode belongs to http destinations"},
		{name: "unknown mode", base: saga, give: map[string]any{"/destinations/0/mode": "create"},
			wantPointer: "/destinations/0/mode", wantReason: `"create" is not allowed: value must be one of "upsert", "notify"`},
		{name: "reversal of an upsert step", base: saga, give: map[string]any{"/destinations/0/reversal": map[string]any{"path": "/r"}},
			wantPointer: "/destinations/0/mode", wantReason: "only a notify step sends reversals"},
		{name: "reversal without mode", base: saga, give: map[string]any{"/destinations/2/mode": nil},
			wantPointer: "/destinations/2/mode", wantReason: "only a notify step sends reversals"},
		{name: "bad reversal method", base: saga, give: map[string]any{"/destinations/2/reversal/method": "DELETE"},
			wantPointer: "/destinations/2/reversal/method", wantReason: `"DELETE" is not allowed: value must be one of "POST", "PUT"`},
		{name: "reversal without path", base: saga, give: map[string]any{"/destinations/2/reversal/path": nil},
			wantPointer: "/destinations/2/reversal/path", wantReason: `required key "path" is missing`},
		{name: "upsert without update", base: saga, give: map[string]any{"/destinations/0/http/update": nil},
			wantPointer: "/destinations/0/http/update", wantReason: "an upsert step needs update"},
		{name: "bad update method", base: saga, give: map[string]any{"/destinations/0/http/update/method": "POST"},
			wantPointer: "/destinations/0/http/update/method", wantReason: `"POST" is not allowed: value must be one of "PUT", "PATCH"`},
		{name: "bad step name", base: saga, give: map[string]any{"/destinations/0/name": "Billing"},
			wantPointer: "/destinations/0/name", wantReason: "a step name is lower-case letters"},
		{name: "ids naming a bad step name", base: saga, give: map[string]any{"/destinations/1/ids/billing_id": "Billing"},
			wantPointer: "/destinations/1/ids/billing_id", wantReason: "a step name is lower-case letters"},
		{name: "bad circuit breaker window", base: saga, give: map[string]any{"/destinations/0/http/circuit_breaker/window": "a minute"},
			wantPointer: "/destinations/0/http/circuit_breaker/window", wantReason: "a duration such as 30s"},
		{name: "unknown http destination key", base: saga, give: map[string]any{"/destinations/2/http/url": "https://x.example.com"},
			wantPointer: "/destinations/2/http/url", wantReason: `unknown key "url"`},
		{name: "unknown step key", base: saga, give: map[string]any{"/destinations/1/idz": map[string]any{}},
			wantPointer: "/destinations/1/idz", wantReason: `unknown key "idz" (did you mean "ids"?)`},
		{name: "match without fields", base: saga, give: map[string]any{"/match/fields": nil},
			wantPointer: "/match/fields", wantReason: `required key "fields" is missing`},
		{name: "unknown match policy", base: saga, give: map[string]any{"/match/policy": "drop"},
			wantPointer: "/match/policy", wantReason: `"drop" is not allowed`},
		{name: "unknown match normaliser", base: saga, give: map[string]any{"/match/normalize": []any{"soundex"}},
			wantPointer: "/match/normalize/0", wantReason: `"soundex" is not allowed`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			p := writeFile(t, "", "billing.yaml", editedYAML(t, tt.base, tt.give))
			_, err := Load(p)
			if err == nil {
				t.Fatal("Load() accepted the file")
			}
			ps := problemsOf(t, err)
			got := findProblem(ps, tt.wantPointer, tt.wantReason)
			if got == nil {
				t.Fatalf("no problem at %s containing %q; got:\n%v", tt.wantPointer, tt.wantReason, err)
			}
			if want := p + ": " + tt.wantPointer + ": "; got.File != p || !strings.HasPrefix(got.Error(), want) {
				t.Errorf("Error() = %q, want it to start with %q", got.Error(), want)
			}
			if strings.Contains(err.Error(), "s3cr3t") {
				t.Errorf("the error repeats an inline secret:\n%v", err)
			}
		})
	}
}

// TestResolve_DestinationProblems: what integration.Definition.Validate
// refuses in the steps is reported at the step's pointer.
func TestResolve_DestinationProblems(t *testing.T) {
	saga := readFile(t, sagaFile)
	tests := []struct {
		name        string
		give        map[string]any
		wantPointer string
		wantReason  string
	}{
		{name: "ids from a later step", give: map[string]any{"/destinations/0/ids": map[string]any{"notify_id": "notify"}},
			wantPointer: "/destinations/0/ids/notify_id", wantReason: `"notify" is not an earlier step`},
		{name: "ids from a postgres step", give: map[string]any{"/destinations/2/ids": map[string]any{"link_id": "link"}},
			wantPointer: "/destinations/2/ids/link_id", wantReason: `step "link" is a postgres destination`},
		{name: "two steps with one name", give: map[string]any{"/destinations/2/name": "billing"},
			wantPointer: "/destinations/2/name", wantReason: `"billing" is also the name of step 0`},
		{name: "an http setting the sink refuses", give: map[string]any{"/destinations/0/http/headers": map[string]any{"X-Idempotency-Key": "x"}},
			wantPointer: "/destinations/0/http", wantReason: `headers: "X-Idempotency-Key" is set by the sink (idempotency_header)`},
		{name: "a step mapping the transform refuses", give: map[string]any{"/destinations/1/mapping/2/to": "id"},
			wantPointer: "/destinations/1/mapping", wantReason: `"id"`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s := load(t, "", editedYAML(t, saga, tt.give))
			_, err := s.Resolve(env(sagaEnv), func(string) ([]byte, error) { return []byte("billing-secret"), nil }, nil)
			ps := problemsOf(t, err)
			p := findProblem(ps, tt.wantPointer, tt.wantReason)
			if p == nil {
				t.Fatalf("no problem at %s containing %q; got:\n%v", tt.wantPointer, tt.wantReason, err)
			}
			if want := s.File + ": " + tt.wantPointer + ": "; !strings.HasPrefix(p.Error(), want) {
				t.Errorf("Error() = %q, want it to start with %q", p.Error(), want)
			}
		})
	}
}

// TestDefinitionProblem_Pointers: Validate's field names become pointers.
func TestDefinitionProblem_Pointers(t *testing.T) {
	tests := []struct{ give, wantPointer, wantReason string }{
		{give: `integration "x": source.http: base_url: required`, wantPointer: "/source/http", wantReason: "base_url: required"},
		{give: `integration "x": destinations[1].ids.billing_id: "b" is not an earlier step`, wantPointer: "/destinations/1/ids/billing_id", wantReason: `"b" is not an earlier step`},
		{give: `integration "x": destinations[0]: no destination set`, wantPointer: "/destinations/0", wantReason: "no destination set"},
		{give: `integration "x": something else`, wantPointer: "", wantReason: "something else"},
	}
	for _, tt := range tests {
		var p *Problem
		if !errors.As(definitionProblem("f.yaml", "x", errors.New(tt.give)), &p) || p.Pointer != tt.wantPointer || p.Reason != tt.wantReason {
			t.Errorf("definitionProblem(%q) = %+v, want pointer %q reason %q", tt.give, p, tt.wantPointer, tt.wantReason)
		}
	}
}
