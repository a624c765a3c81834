package httpsource_test

import (
	"net/http/httptest"
	"strconv"
	"testing"
	"time"

	"github.com/tetherflow/tether/activities/connector/connectortest"
	"github.com/tetherflow/tether/activities/connector/httpsource"
	"github.com/tetherflow/tether/activities/lib/failure"
	"github.com/tetherflow/tether/activities/lib/httpclient"
	"github.com/tetherflow/tether/starters/sandbox"
)

// TestSource_Acceptance runs the connector acceptance suite against the
// sandbox CRM API on loopback, in each pagination style it serves.
func TestSource_Acceptance(t *testing.T) {
	for _, style := range []string{httpsource.StylePage, httpsource.StyleOffset, httpsource.StyleCursor, httpsource.StyleLink} {
		t.Run(style, func(t *testing.T) {
			connectortest.Source(t, sandboxDriver(style))
		})
	}
}

// sandboxDriver reads the sandbox's contacts, paginated in style, and
// incrementally by updated_at.
func sandboxDriver(style string) connectortest.SourceDriver {
	return connectortest.SourceDriver{
		Open: func(t *testing.T) connectortest.SourceFixture {
			// A fixed clock: the records a change touches get the same
			// updated_at on every run.
			now := time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)
			sb, err := sandbox.New(sandbox.Options{Seed: 7, Contacts: 23, Now: func() time.Time { return now }})
			if err != nil {
				t.Fatal(err)
			}
			srv := httptest.NewServer(sb.Handler())
			t.Cleanup(srv.Close)
			var ids []string
			for _, c := range sb.Contacts() {
				ids = append(ids, strconv.FormatInt(c.ID, 10))
			}
			return connectortest.SourceFixture{
				Factory: httpsource.Factory(),
				Config: httpsource.Config{
					BaseURL:     srv.URL,
					Path:        "/v1/contacts",
					Query:       map[string]string{"pagination": style},
					RecordsPath: "data",
					Pagination:  httpsource.Pagination{Style: style},
					Incremental: httpsource.Incremental{Param: "updated_since"},
					Retry:       httpclient.Retry{WaitMin: time.Millisecond, WaitMax: 10 * time.Millisecond},
				},
				Keys: ids,
				Change: func(*testing.T) []string {
					var changed []string
					for _, id := range append(sb.Touch(sandbox.ResourceContacts, 3), sb.Add(sandbox.ResourceContacts, 2)...) {
						changed = append(changed, strconv.FormatInt(id, 10))
					}
					return changed
				},
				Breaks: []connectortest.Break{
					{
						Name:      "HTML error page with status 200",
						Do:        func(*testing.T) { sb.SetFaults(sandbox.Faults{NonJSONNext: 1}) },
						Type:      failure.TypeSourceMalformed,
						Transient: true,
					},
					{
						Name:      "truncated JSON",
						Do:        func(*testing.T) { sb.SetFaults(sandbox.Faults{MalformedRate: 1}) },
						Type:      failure.TypeSourceMalformed,
						Transient: true,
					},
					{
						Name: "credentials refused",
						Do:   func(*testing.T) { sb.SetFaults(sandbox.Faults{FailNext: 1, FailStatus: 401}) },
						Type: failure.TypeSourceAuth,
					},
					{
						Name: "server failing",
						Do: func(*testing.T) {
							// 500, not 503: a 503 with Retry-After is throttling.
							sb.SetFaults(sandbox.Faults{FailNext: httpclient.DefaultRetryMax + 1, FailStatus: 500})
						},
						Type:      failure.TypeSourceUnavailable,
						Transient: true,
					},
				},
			}
		},
		KeyField:    "id",
		CursorField: "updated_at",
		PageSize:    5,
		BadConfigs: []connectortest.BadConfig{
			{Name: "base URL not HTTP", Config: httpsource.Config{BaseURL: "ftp://127.0.0.1/"}, Field: "base_url"},
			{Name: "unknown pagination style", Config: httpsource.Config{BaseURL: "http://127.0.0.1", Pagination: httpsource.Pagination{Style: "sideways"}}, Field: "pagination.style"},
			{Name: "static query sets the page parameter", Config: &httpsource.Config{BaseURL: "http://127.0.0.1", Query: map[string]string{"page": "2"}, Pagination: httpsource.Pagination{Style: httpsource.StylePage}}, Field: "query"},
			{Name: "cursor style with a bad next cursor path", Config: httpsource.Config{BaseURL: "http://127.0.0.1", Pagination: httpsource.Pagination{Style: httpsource.StyleCursor, NextCursorPath: "a..b"}}, Field: "pagination.next_cursor_path"},
		},
	}
}
