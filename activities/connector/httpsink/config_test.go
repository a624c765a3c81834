package httpsink

import (
	"strings"
	"testing"
	"time"

	"github.com/tetherflow/tether/activities/lib/failure"
	"github.com/tetherflow/tether/activities/lib/httpclient"
	"github.com/tetherflow/tether/activities/lib/httpclient/httpclienttest"
)

func TestConfig_Validate(t *testing.T) {
	tests := []struct {
		name string
		give Config
		want []string // every problem, in order
	}{
		{
			name: "minimal is valid",
			give: Config{BaseURL: "http://127.0.0.1:8082", Create: Endpoint{Path: "/v1/customers"}, Update: Endpoint{Path: "/v1/customers/{{.external_id}}"}},
		},
		{
			name: "everything set is valid",
			give: Config{
				BaseURL:           "https://api.example.com/base",
				Headers:           map[string]string{"X-Tenant": "t1"},
				Auth:              httpclient.Auth{Kind: "oauth2", TokenURL: "https://id.example.com/token", ClientID: "a", ClientSecret: "b"},
				Timeout:           time.Second,
				Retry:             httpclient.Retry{Max: -1},
				Create:            Endpoint{Method: "put", Path: "/v1/customers/{{.email}}"},
				Update:            Endpoint{Method: "PATCH", Path: "/v1/customers/{{.external_id}}?expand=all"},
				Delete:            Endpoint{Method: "DELETE", Path: "/v1/customers/{{.external_id}}"},
				Batch:             Batch{Path: "/v1/customers/batch", MaxRecords: 50, IdempotencyKeyField: "idempotency_key", StatusPath: "status", IDPath: "customer.id", ErrorPath: "error.message"},
				IDPath:            "data.id",
				IdempotencyHeader: "X-Request-Id",
				RateLimit:         httpclient.RateLimit{RequestsPerSecond: 5, Burst: 2},
				MaxInFlight:       8,
				CircuitBreaker:    CircuitBreaker{FailureRate: 1, MinRequests: 1, Window: time.Minute, OpenFor: time.Second},
			},
		},
		{
			name: "everything wrong at once",
			give: Config{
				BaseURL:           "ftp://example.com",
				Headers:           map[string]string{"X Bad": "x"},
				Auth:              httpclient.Auth{Kind: "basic"},
				Timeout:           -time.Second,
				Retry:             httpclient.Retry{Max: 50},
				Create:            Endpoint{Method: "GET", Path: "/v1/{{.id"},
				Update:            Endpoint{Method: "POST"},
				Delete:            Endpoint{Method: "POST", Path: "/x/{{end}}"},
				Batch:             Batch{Path: "/b/{{.id}}", MaxRecords: -1, StatusPath: "a..b", IDPath: ".x", ErrorPath: "y."},
				IDPath:            "a..",
				IdempotencyHeader: "Bad Header",
				RateLimit:         httpclient.RateLimit{RequestsPerSecond: -1, Burst: -2},
				MaxInFlight:       -1,
				CircuitBreaker:    CircuitBreaker{FailureRate: 1.5, MinRequests: -1, Window: -time.Second, OpenFor: -time.Second},
			},
			want: []string{
				`base_url: scheme "ftp" is not http or https`,
				`headers: "X Bad" is not a valid header name`,
				`auth.kind: unknown kind "basic" (want none, bearer, api_key or oauth2)`,
				`timeout: must not be negative, got -1s`,
				`retry.max: 50 is out of range`,
				`create.method: "GET" is not POST or PUT`,
				`create.path: template: create.path:1: `,
				`update.method: "POST" is not PUT or PATCH`,
				`update.path: required (e.g. "/v1/customers/{{.external_id}}")`,
				`delete.method: "POST" is not DELETE`,
				`delete.path: template: delete.path:1: unexpected {{end}}`,
				`batch.path: "/b/{{.id}}" is not a template`,
				`batch.max_records: must not be negative, got -1`,
				`id_path: "a.." has an empty segment at position 2`,
				`batch.status_path: "a..b" has an empty segment at position 2`,
				`batch.id_path: ".x" has an empty segment at position 1`,
				`batch.error_path: "y." has an empty segment at position 2`,
				`idempotency_header: "Bad Header" is not a valid header name`,
				`rate_limit.requests_per_second: must not be negative, got -1`,
				`rate_limit.burst: must not be negative, got -2`,
				`max_in_flight: -1 is out of range`,
				`circuit_breaker.failure_rate: 1.5 is not between 0 and 1`,
				`circuit_breaker.min_requests: must not be negative, got -1`,
				`circuit_breaker.window: must not be negative, got -1s`,
				`circuit_breaker.open_for: must not be negative, got -1s`,
			},
		},
		{
			name: "nothing set",
			give: Config{},
			want: []string{
				`base_url: required`,
				`create.path: required (e.g. "/v1/customers")`,
				`update.path: required (e.g. "/v1/customers/{{.external_id}}")`,
			},
		},
		{
			name: "a header the sink sets, credentials in the URL, a batch path elsewhere",
			give: Config{
				BaseURL: "https://user:pw@api.example.com",
				Headers: map[string]string{"idempotency-key": "fixed"},
				Auth:    httpclient.Auth{Kind: "bearer"},
				Create:  Endpoint{Path: "/v1/customers"},
				Update:  Endpoint{Path: "/v1/customers/{{.external_id}}"},
				Batch:   Batch{Path: "https://elsewhere.example/batch"},
			},
			want: []string{
				`base_url: credentials in the URL are not allowed (use auth)`,
				`headers: "idempotency-key" is set by the sink (idempotency_header)`,
				`auth.token: required for auth kind bearer`,
				`batch.path: "https://elsewhere.example/batch" is not a path below base_url`,
			},
		},
		{
			name: "max_in_flight and failure_rate bounds",
			give: Config{
				BaseURL:        "http://x",
				Create:         Endpoint{Path: "/c"},
				Update:         Endpoint{Path: "/c/{{.external_id}}"},
				MaxInFlight:    1000,
				CircuitBreaker: CircuitBreaker{FailureRate: -0.1},
			},
			want: []string{
				`max_in_flight: 1000 is out of range (want 0 for the default 4, up to 256)`,
				`circuit_breaker.failure_rate: -0.1 is not between 0 and 1`,
			},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			httpclienttest.WantProblems(t, tt.give.Validate(), tt.want)
			_, err := NewClient("x", tt.give)
			if len(tt.want) == 0 {
				if err != nil {
					t.Fatalf("NewClient() = %v", err)
				}
				return
			}
			if !failure.IsType(err, failure.TypeConfig) || !failure.IsPermanent(err) {
				t.Errorf("NewClient() = %v, want a permanent config error", err)
			}
			if strings.Contains(err.Error(), "user:pw") {
				t.Errorf("NewClient() leaks the URL's credentials: %v", err)
			}
		})
	}
}
