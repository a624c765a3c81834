package integrations_test

import (
	"testing"

	"github.com/tetherflow/tether/activities/connector/httpsource"
	"github.com/tetherflow/tether/activities/connector/pgsink"
	"github.com/tetherflow/tether/activities/integration"
	"github.com/tetherflow/tether/activities/lib/mapping"
	"github.com/tetherflow/tether/workers/config"
)

// README: a Go integration (begin)

// ContactsCopy copies the CRM's contacts into contacts_copy, incrementally.
func ContactsCopy(crm config.Connection) integration.Definition {
	return integration.Definition{
		Name: "contacts-copy",
		Source: integration.Source{HTTP: &httpsource.Config{
			BaseURL: crm.BaseURL, Auth: crm.HTTPAuth(), Path: "/v1/contacts", RecordsPath: "data",
			Pagination:  httpsource.Pagination{Style: "page"},
			Incremental: httpsource.Incremental{Param: "updated_since"},
		}},
		Schema: "contacts.schema.json", KeyField: "id", CursorField: "updated_at",
		Mapping: mapping.Mapping{Fields: []mapping.Field{
			{To: "id", From: "id", Cast: "int", Required: true},
			{To: "email", From: "email", Normalize: []string{"email"}, Required: true},
			{To: "updated_at", From: "updated_at", Cast: "timestamp", Required: true},
		}},
		Destination: integration.Destination{Postgres: &pgsink.Table{
			Name: "contacts_copy", Key: []string{"id"}, VersionColumn: "updated_at",
			Columns: []pgsink.Column{{Name: "id", Type: "bigint"}, {Name: "email", Type: "text"}, {Name: "updated_at", Type: "timestamptz"}},
		}},
	}
}

// README: a Go integration (end)

// TestContactsCopy: the README's Go integration is one a worker accepts.
func TestContactsCopy(t *testing.T) {
	if _, err := integration.NewRegistry(ContactsCopy(config.Connection{BaseURL: "http://127.0.0.1:8081"})); err != nil {
		t.Fatal(err)
	}
}
