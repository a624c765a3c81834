package integrations

import (
	"strings"

	"github.com/tetherflow/tether/activities/connector/httpsource"
	"github.com/tetherflow/tether/activities/connector/pgsink"
	"github.com/tetherflow/tether/activities/integration"
	"github.com/tetherflow/tether/activities/lib/mapping"
	"github.com/tetherflow/tether/workers/config"
)

// CRMContacts copies the CRM's contacts into the crm_contacts table,
// incrementally by updated_at: each run reads only what changed since the
// last committed (updated_at, id). Not atomic: a failed run keeps the
// batches it committed and the next run resumes from the checkpoint.
func CRMContacts(crm config.Connection) integration.Definition {
	return integration.Definition{
		Name:        "crm-contacts",
		Description: "CRM contacts → PostgreSQL crm_contacts, incremental by updated_at",
		Version:     1,
		Source: integration.Source{HTTP: &httpsource.Config{
			BaseURL:     crm.BaseURL,
			Path:        "/v1/contacts",
			RecordsPath: "data",
			Pagination:  httpsource.Pagination{Style: "page", PageParam: "page", SizeParam: "per_page"},
			Incremental: httpsource.Incremental{Param: "updated_since"},
			Auth:        crm.HTTPAuth(),
			RateLimit:   crm.HTTPRateLimit(),
		}},
		Schema:      "contacts.schema.json",
		KeyField:    "id",
		CursorField: "updated_at",
		Mapping: mapping.Mapping{Fields: []mapping.Field{
			{To: "id", From: "id", Cast: "int", Required: true},
			{To: "uuid", From: "uuid", Cast: "string"},
			{To: "first_name", From: "first_name", Normalize: []string{"trim", "collapse_spaces"}},
			{To: "last_name", From: "last_name", Normalize: []string{"trim", "collapse_spaces"}},
			{To: "full_name", Compute: fullName},
			{To: "email", From: "email", Normalize: []string{"email"}, Required: true},
			{To: "phone", From: "phone", Normalize: []string{"trim"}},
			{To: "company_id", From: "company_id", Cast: "int"},
			{To: "status", From: "status", Normalize: []string{"lower"}},
			{To: "score", From: "score", Cast: "int", Default: 0},
			{To: "opt_in", From: "opt_in", Cast: "bool", Default: false},
			{To: "opt_in_at", From: "opt_in_at", Cast: "timestamp"},
			{To: "website", From: "website"},
			{To: "city", From: "address.city", Normalize: []string{"trim"}},
			{To: "country", From: "address.country", Normalize: []string{"upper"}},
			{To: "tags", From: "tags", Cast: "json"},
			{To: "created_at", From: "created_at", Cast: "timestamp", Required: true},
			{To: "updated_at", From: "updated_at", Cast: "timestamp", Required: true},
		}},
		Destination: integration.Destination{Postgres: &pgsink.Table{
			Name: "crm_contacts",
			Columns: []pgsink.Column{
				{Name: "id", Type: "bigint", NotNull: true},
				{Name: "uuid", Type: "uuid"},
				{Name: "first_name", Type: "text"},
				{Name: "last_name", Type: "text"},
				{Name: "full_name", Type: "text"},
				{Name: "email", Type: "text", NotNull: true},
				{Name: "phone", Type: "text"},
				{Name: "company_id", Type: "bigint"},
				{Name: "status", Type: "text"},
				{Name: "score", Type: "integer"},
				{Name: "opt_in", Type: "boolean"},
				{Name: "opt_in_at", Type: "timestamptz"},
				{Name: "website", Type: "text"},
				{Name: "city", Type: "text"},
				{Name: "country", Type: "text"},
				{Name: "tags", Type: "text[]"},
				{Name: "created_at", Type: "timestamptz"},
				{Name: "updated_at", Type: "timestamptz"},
			},
			Key:           []string{"id"},
			VersionColumn: "updated_at",
		}},
		InvalidThreshold: 0.05,
		BatchSize:        1000,
		PagesInFlight:    4,
	}
}

// fullName is a computed field: any Go function of the source record.
func fullName(rec mapping.Record) (any, error) {
	first, _ := rec["first_name"].(string)
	last, _ := rec["last_name"].(string)
	return strings.Join(strings.Fields(first+" "+last), " "), nil
}
