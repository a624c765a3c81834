package httpsink_test

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http/httptest"
	"testing"
	"time"

	"github.com/tetherflow/tether/activities/connector"
	"github.com/tetherflow/tether/activities/connector/connectortest"
	"github.com/tetherflow/tether/activities/connector/httpsink"
	"github.com/tetherflow/tether/activities/lib/httpclient"
	"github.com/tetherflow/tether/activities/lib/postgres"
	"github.com/tetherflow/tether/activities/store"
	"github.com/tetherflow/tether/starters/sandbox"
	"github.com/tetherflow/tether/tests/pgtest"
)

// TestSink_Acceptance runs the connector acceptance suite against the
// sandbox billing API's customers on loopback, creating them one call per
// record and in batches, with the identity map in a PostgreSQL schema of
// its own.
func TestSink_Acceptance(t *testing.T) {
	tests := []struct {
		name  string
		batch httpsink.Batch
	}{
		{name: "per record"},
		{name: "batch", batch: httpsink.Batch{Path: "/v1/customers/batch", IdempotencyKeyField: "idempotency_key", IDPath: "customer.id"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			connectortest.Sink(t, customersDriver(tt.batch))
		})
	}
}

// customersDriver writes customers keyed by external_ref.
func customersDriver(batch httpsink.Batch) connectortest.SinkDriver {
	valid := httpsink.Config{
		BaseURL: "http://127.0.0.1:1",
		Create:  httpsink.Endpoint{Path: "/v1/customers"},
		Update:  httpsink.Endpoint{Path: "/v1/customers/{{.external_id}}"},
	}
	bad := func(change func(*httpsink.Destination)) httpsink.Destination {
		d := httpsink.Destination{Name: "customers", Config: valid}
		change(&d)
		return d
	}
	return connectortest.SinkDriver{
		Open: func(t *testing.T) connectortest.SinkFixture {
			pg := pgtest.New(t)
			if err := store.Migrate(context.Background(), pg.DB); err != nil {
				t.Fatal(err)
			}
			sb, err := sandbox.New(sandbox.Options{Seed: 7, Contacts: 1})
			if err != nil {
				t.Fatal(err)
			}
			srv := httptest.NewServer(sb.Handler())
			t.Cleanup(srv.Close)
			cfg := valid
			cfg.BaseURL = srv.URL
			cfg.Batch = batch
			cfg.Retry = httpclient.Retry{WaitMin: time.Millisecond, WaitMax: 10 * time.Millisecond}
			return connectortest.SinkFixture{
				Factory:   httpsink.Factory(store.New(pg.DB), pg.DB),
				Config:    httpsink.Destination{Name: "customers", Config: cfg, Mode: httpsink.ModeUpsert},
				NewWriter: func() connectortest.CommitWriter { return postgres.NewLazyTx(pg.DB, "acceptance batch") },
				State: func(t *testing.T) []connectortest.StoredRow {
					var out []connectortest.StoredRow
					for _, c := range sb.Customers() {
						out = append(out, connectortest.StoredRow{Key: c.ExternalRef, Row: customerRow(t, c)})
					}
					return out
				},
			}
		},
		Row: func(key string, v int) connector.Row {
			return connector.Row{
				"external_ref": key,
				"email":        fmt.Sprintf("customer-%s@example.com", key),
				"name":         fmt.Sprintf("Customer %s v%d", key, v),
				"plan":         sandbox.CustomerPlans()[v%len(sandbox.CustomerPlans())],
				"seats":        v,
			}
		},
		BadRows: []connectortest.BadRow{
			{Name: "email not an address", Row: func(key string) connector.Row {
				return connector.Row{"external_ref": key, "email": "customer " + key}
			}, Why: "email"},
			{Name: "no email", Row: func(key string) connector.Row {
				return connector.Row{"external_ref": key, "name": "Nobody"}
			}, Why: "email"},
			{Name: "unknown plan", Row: func(key string) connector.Row {
				return connector.Row{"external_ref": key, "email": fmt.Sprintf("customer-%s@example.com", key), "plan": "platinum"}
			}, Why: "plan"},
		},
		BadConfigs: []connectortest.BadConfig{
			{Name: "base URL not HTTP", Config: bad(func(d *httpsink.Destination) { d.Config.BaseURL = "ftp://127.0.0.1" }), Field: "base_url"},
			{Name: "no create path", Config: bad(func(d *httpsink.Destination) { d.Config.Create.Path = "" }), Field: "create.path"},
			{Name: "update by POST", Config: bad(func(d *httpsink.Destination) { d.Config.Update.Method = "POST" }), Field: "update.method"},
			{Name: "unclosed path template", Config: bad(func(d *httpsink.Destination) { d.Config.Update.Path = "/v1/customers/{{.external_id" }), Field: "update.path"},
			{Name: "unknown mode", Config: bad(func(d *httpsink.Destination) { d.Mode = "replace" }), Field: "mode"},
		},
	}
}

// customerRow is the customer as the suite's rows spell it: what was sent,
// without what the API adds (id, version, timestamps).
func customerRow(t *testing.T, c sandbox.Customer) connector.Row {
	row := connector.Row{"external_ref": c.ExternalRef, "email": c.Email}
	if c.Name != "" {
		row["name"] = c.Name
	}
	if c.Plan != "" {
		row["plan"] = c.Plan
	}
	for k, raw := range c.Extra {
		var v any
		if err := json.Unmarshal(raw, &v); err != nil {
			t.Fatalf("customer %s: member %s: %v", c.ID, k, err)
		}
		row[k] = v
	}
	return row
}
