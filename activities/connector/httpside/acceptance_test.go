package httpside_test

import (
	"bytes"
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"testing"

	"github.com/tetherflow/tether/activities/connector"
	"github.com/tetherflow/tether/activities/connector/connectortest"
	"github.com/tetherflow/tether/activities/connector/httpside"
	"github.com/tetherflow/tether/starters/sandbox"
)

func customers(url string) httpside.Config {
	return httpside.Config{BaseURL: url, Path: "/v1/customers",
		Fields: map[string]string{"email": "email", "name": "name", "plan": "plan"}}
}

// TestSide_Acceptance runs the two-way side acceptance suite on the
// sandbox's billing customers on loopback: a change feed with deletions,
// ETags, Idempotency-Key.
func TestSide_Acceptance(t *testing.T) {
	noURL := customers("")
	noPath := customers("http://127.0.0.1:1")
	noPath.Path = "v1/customers"
	ifMatch := customers("http://127.0.0.1:1")
	ifMatch.IfMatch = "v"
	connectortest.Side(t, connectortest.SideDriver{
		Open: func(t *testing.T, pageSize int) connectortest.SideFixture {
			sb, err := sandbox.New(sandbox.Options{Seed: 7, Contacts: 1})
			if err != nil {
				t.Fatal(err)
			}
			srv := httptest.NewServer(sb.Handler())
			t.Cleanup(srv.Close)
			cfg := customers(srv.URL)
			cfg.PageSize = pageSize
			return connectortest.SideFixture{
				Factory: httpside.Factory(nil),
				Config:  cfg,
				Edit: func(t *testing.T, key string, rec connector.Row) {
					body, _ := json.Marshal(rec)
					req, _ := http.NewRequest(http.MethodPatch, srv.URL+"/v1/customers/"+key, bytes.NewReader(body))
					req.Header.Set("Content-Type", "application/json")
					res, err := http.DefaultClient.Do(req)
					if err != nil {
						t.Fatal(err)
					}
					res.Body.Close()
					if res.StatusCode != http.StatusOK {
						t.Fatalf("edit %s: %s", key, res.Status)
					}
				},
			}
		},
		Record: func(n, v int) connector.Row {
			plans := sandbox.CustomerPlans()
			return connector.Row{"email": fmt.Sprintf("c%d@example.com", n), "name": fmt.Sprintf("Customer %d v%d", n, v), "plan": plans[(n+v)%len(plans)]}
		},
		DeletesInFeed: true,
		BadConfigs: []connectortest.BadConfig{
			{Name: "no base URL", Config: noURL, Field: "base_url"},
			{Name: "relative path", Config: noPath, Field: "path"},
			{Name: "if_match without the version", Config: ifMatch, Field: "if_match"},
		},
	})
}
