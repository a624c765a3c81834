package declarative

import (
	"strings"
	"testing"
)

func TestLoad_AcceptsGoodFiles(t *testing.T) {
	tests := []struct {
		name string
		give string
	}{
		{name: "minimal", give: minimalYAML},
		{name: "the shipped crm-contacts twin", give: readExample(t)},
		{name: "every http source key", give: edited(t, map[string]any{
			"/source/http": map[string]any{
				"base_url": "https://api.example.com/prefix", "path": "/v1/people",
				"query": map[string]any{"pageSize": "10"}, "headers": map[string]any{"X-Tenant": "a"},
				"records_path": "result.items",
				"pagination": map[string]any{"style": "cursor", "page_param": "p", "start_page": 0, "size_param": "n",
					"offset_param": "o", "limit_param": "l", "cursor_param": "c", "next_cursor_path": "meta.next"},
				"incremental": map[string]any{"param": "since"},
				"auth": map[string]any{"kind": "oauth2", "token_url": "https://auth.example.com/token", "client_id": "tether",
					"client_secret": map[string]any{"file": "/run/secrets/client_secret"}, "scopes": []any{"read"}},
				"conditional_requests": true,
				"rate_limit":           map[string]any{"requests_per_second": 2.5, "burst": 3},
				"timeout":              "1m30s", "max_body_bytes": 1 << 20,
				"retry": map[string]any{"max": -1, "wait_min": "50ms", "wait_max": "2s"},
			},
		})},
		{name: "api key from a file", give: edited(t, map[string]any{
			"/source/http/auth": map[string]any{"kind": "api_key", "header": "X-Key", "api_key": map[string]any{"file": "key.txt"}},
		})},
		{name: "postgres source with a dsn reference", give: edited(t, map[string]any{
			"/source": map[string]any{"postgres": map[string]any{"dsn": map[string]any{"file": "/run/secrets/dsn"}, "table": "people", "key": []any{"id"}}},
		})},
		{name: "the postgres source fixture", give: readFile(t, postgresFile)},
		{name: "the saga fixture", give: readFile(t, sagaFile)},
		{name: "one http destination, notify", give: edited(t, map[string]any{
			"/destination": map[string]any{"name": "hook", "mode": "notify", "http": map[string]any{"base_url": "https://hooks.example.com", "create": map[string]any{"path": "/v1/events"}}},
		})},
		{name: "match", give: edited(t, map[string]any{"/match": map[string]any{"fields": []any{"email"}}})},
		{name: "schedules and reconcile", give: edited(t, map[string]any{
			"/schedules": []any{
				map[string]any{"kind": "sync", "every": "15m", "offset": "5m", "jitter": "1m", "catchup_window": "10m", "pause_on_failure": false},
				map[string]any{"kind": "reconcile", "cron": []any{"0 2 * * *", "@weekly"}, "time_zone": "Europe/Paris", "dry_run": true, "paused": true},
				map[string]any{"kind": "refresh", "cron": []any{"0 3 * * SUN"}, "every": "24h"},
			},
			"/reconcile": map[string]any{"extras": "delete", "chunks": 4096},
		})},
		{name: "join with a separator, default only", give: edited(t, map[string]any{
			"/mapping/1": map[string]any{"to": "label", "join": []any{"first_name", "address.city"}, "separator": " / "},
			"/mapping/2": map[string]any{"to": "source", "default": "crm"},
			"/destination/postgres/columns": []any{
				map[string]any{"name": "id", "type": "bigint", "not_null": true},
				map[string]any{"name": "label", "type": "text"},
				map[string]any{"name": "source", "type": "text"},
			},
			"/destination/postgres/version_column": nil,
		})},
		{name: "policies", give: edited(t, map[string]any{"/atomic": true, "/invalid_threshold": 1, "/batch_size": 10000, "/pages_in_flight": 32, "/version": 3, "/initial_cursor": "2024-01-01T00:00:00Z"})},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			p := writeFile(t, "", "x.yaml", tt.give)
			if _, err := Load(p); err != nil {
				t.Fatalf("Load() error:\n%v", err)
			}
		})
	}
}

func TestLoad_RefusesMistakes(t *testing.T) {
	tests := []struct {
		name        string
		give        map[string]any
		wantPointer string
		wantReason  string
	}{
		{name: "unknown top-level key", give: map[string]any{"/key_feild": "id"},
			wantPointer: "/key_feild", wantReason: `unknown key "key_feild" (did you mean "key_field"?)`},
		{name: "unknown nested key", give: map[string]any{"/source/http/pagination/stlye": "page"},
			wantPointer: "/source/http/pagination/stlye", wantReason: `did you mean "style"?`},
		{name: "unknown key far from any", give: map[string]any{"/destination/postgres/indexes": []any{"email"}},
			wantPointer: "/destination/postgres/indexes", wantReason: "known keys: anonymise, columns, key, name, on_erase, schema, version_column"},
		{name: "wrong type", give: map[string]any{"/batch_size": "lots"},
			wantPointer: "/batch_size", wantReason: "expected integer, but got string"},
		{name: "wrong type in a list", give: map[string]any{"/mapping/0/required": "yes"},
			wantPointer: "/mapping/0/required", wantReason: "expected boolean, but got string"},
		{name: "inline bearer token", give: map[string]any{"/source/http/auth/token": "s3cr3t-token"},
			wantPointer: "/source/http/auth/token", wantReason: "never inline: {env: NAME} (an environment variable) or {file: /path/to/file}"},
		{name: "inline api key", give: map[string]any{"/source/http/auth": map[string]any{"kind": "api_key", "api_key": "s3cr3t-token"}},
			wantPointer: "/source/http/auth/api_key", wantReason: "never inline"},
		{name: "inline client secret", give: map[string]any{"/source/http/auth": map[string]any{"kind": "oauth2", "token_url": "https://a.example.com/t", "client_id": "x", "client_secret": "s3cr3t-token"}},
			wantPointer: "/source/http/auth/client_secret", wantReason: "never inline"},
		{name: "inline dsn", give: map[string]any{"/source": map[string]any{"postgres": map[string]any{"dsn": "postgres://u:s3cr3t-token@db/x"}}},
			wantPointer: "/source/postgres/dsn", wantReason: "never inline"},
		{name: "secret with both references", give: map[string]any{"/source/http/auth/token": map[string]any{"env": "A", "file": "/b"}},
			wantPointer: "/source/http/auth/token", wantReason: "never inline"},
		{name: "bearer without a token", give: map[string]any{"/source/http/auth/token": nil},
			wantPointer: "/source/http/auth/token", wantReason: `required key "token" is missing`},
		{name: "bad cast name", give: map[string]any{"/mapping/0/cast": "integer"},
			wantPointer: "/mapping/0/cast", wantReason: `"integer" is not allowed: value must be one of "", "string", "int"`},
		{name: "bad normaliser", give: map[string]any{"/mapping/1/normalize": []any{"email", "titlecase"}},
			wantPointer: "/mapping/1/normalize/1", wantReason: `"titlecase" is not allowed`},
		{name: "missing key_field", give: map[string]any{"/key_field": nil},
			wantPointer: "/key_field", wantReason: `required key "key_field" is missing`},
		{name: "bad name", give: map[string]any{"/name": "People"},
			wantPointer: "/name", wantReason: "lower-case letters, digits and dashes"},
		{name: "two source kinds", give: map[string]any{"/source/postgres": map[string]any{}},
			wantPointer: "/source", wantReason: "exactly one source kind"},
		{name: "no destination kind", give: map[string]any{"/destination": map[string]any{}},
			wantPointer: "/destination", wantReason: "exactly one destination kind"},
		{name: "field without a source", give: map[string]any{"/mapping/1": map[string]any{"to": "email"}},
			wantPointer: "/mapping/1", wantReason: "a field needs a source"},
		{name: "from and join", give: map[string]any{"/mapping/1": map[string]any{"to": "email", "from": "a", "join": []any{"b"}}},
			wantPointer: "/mapping/1", wantReason: "from and join are exclusive"},
		{name: "separator without join", give: map[string]any{"/mapping/1/separator": ","},
			wantPointer: "/mapping/1/join", wantReason: `"join" is required when "separator" is set`},
		{name: "empty path segment", give: map[string]any{"/mapping/1/from": "address..city"},
			wantPointer: "/mapping/1/from", wantReason: "no empty segment"},
		{name: "zero threshold", give: map[string]any{"/invalid_threshold": 0},
			wantPointer: "/invalid_threshold", wantReason: "above 0 and at most 1"},
		{name: "bad duration", give: map[string]any{"/source/http/timeout": "30 seconds"},
			wantPointer: "/source/http/timeout", wantReason: "a duration such as 30s"},
		{name: "bad column type", give: map[string]any{"/destination/postgres/columns/0/type": "int8"},
			wantPointer: "/destination/postgres/columns/0/type", wantReason: `"int8" is not allowed`},
		{name: "credentials in the base url", give: map[string]any{"/source/http/base_url": "https://u:p@api.example.com"},
			wantPointer: "/source/http/base_url", wantReason: "without credentials"},
		{name: "initial cursor without cursor field", give: map[string]any{"/cursor_field": nil, "/initial_cursor": "0"},
			wantPointer: "/cursor_field", wantReason: `"cursor_field" is required when "initial_cursor" is set`},
		{name: "a mapping target the table does not declare", give: map[string]any{"/mapping/1/to": "e_mail"},
			wantPointer: "/mapping/1/to", wantReason: `"e_mail" is stored by no destination (it is not a column of table people (did you mean "email"?)), so its value would be dropped from every row`},
		{name: "a not_null column nothing maps", give: map[string]any{"/destination/postgres/columns/1/not_null": true, "/mapping": []any{
			map[string]any{"to": "id", "from": "id"}, map[string]any{"to": "updated_at", "from": "updated_at"}}},
			wantPointer: "/destination/postgres/columns/1", wantReason: `column "email" is not_null but nothing maps a value to it`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			p := writeFile(t, "", "people.yaml", edited(t, tt.give))
			_, err := Load(p)
			if err == nil {
				t.Fatal("Load() accepted the file")
			}
			ps := problemsOf(t, err)
			got := findProblem(ps, tt.wantPointer, tt.wantReason)
			if got == nil {
				t.Fatalf("no problem at %s containing %q; got:\n%v", tt.wantPointer, tt.wantReason, err)
			}
			// A key missing from the document has no line; any other has.
			if topLevelMissing := strings.Count(tt.wantPointer, "/") == 1 && strings.Contains(tt.wantReason, "required"); got.File != p || (got.Line == 0) != topLevelMissing {
				t.Errorf("problem names file %q line %d, want %q and a line unless a top-level key is missing", got.File, got.Line, p)
			}
			if want := p + ": " + tt.wantPointer + ": "; !strings.HasPrefix(got.Error(), want) {
				t.Errorf("Error() = %q, want it to start with %q", got.Error(), want)
			}
			if strings.Contains(err.Error(), "s3cr3t") {
				t.Errorf("the error repeats an inline secret:\n%v", err)
			}
		})
	}
}
