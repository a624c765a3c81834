package integrations

import (
	"github.com/tetherflow/tether/activities/connector/pgsink"
	"github.com/tetherflow/tether/activities/integration"
	"github.com/tetherflow/tether/activities/lib/mapping"
	"github.com/tetherflow/tether/workers/config"
)

// Onboarding is the integration the customer onboarding workflow
// (workflows/onboarding) runs its steps with, one contact at a time: the
// contact becomes a billing customer (an upsert in the billing API, in the
// identity map every integration writing billing customers shares), and,
// once a person approved it, a link row (contact id → customer id) in
// PostgreSQL. Atomic: a rejected or unanswered onboarding deletes the
// customer it created. Its source is the CRM's contacts, which a sync of it
// would read; the workflow hands it the contact instead.
func Onboarding(crm config.CRM) integration.Definition {
	return integration.Definition{
		Name:        "onboarding",
		Description: "one CRM contact → billing customer, then, once approved, a PostgreSQL link row (workflow code: OnboardCustomer)",
		Version:     1,
		Source:      contactsSource(crm),
		Schema:      "contacts.schema.json",
		KeyField:    "id",
		Mapping: mapping.Mapping{Fields: append(customerMapping("id").Fields,
			mapping.Field{To: "contact_id", From: "id", Cast: "int", Required: true},
			mapping.Field{To: "updated_at", From: "updated_at", Cast: "timestamp", Required: true})},
		Destinations: []integration.Destination{
			{
				Name:     "billing",
				HTTP:     billingAPI(crm),
				Identity: BillingCustomersIdentity,
				Mapping: mapping.Mapping{Fields: []mapping.Field{{To: "email", From: "email"}, {To: "name", From: "name"},
					{To: "external_ref", From: "external_ref"}, {To: "lead_score", From: "lead_score"}, {To: "lifecycle", From: "lifecycle"}}},
			},
			{
				Name: "links",
				IDs:  map[string]string{"billing_customer_id": "billing"},
				Postgres: &pgsink.Table{
					Name: "onboarding_links",
					Columns: []pgsink.Column{
						{Name: "contact_id", Type: "bigint", NotNull: true},
						{Name: "billing_customer_id", Type: "text", NotNull: true},
						{Name: "email", Type: "text", NotNull: true},
						{Name: "updated_at", Type: "timestamptz"},
					},
					Key:           []string{"contact_id"},
					VersionColumn: "updated_at",
				},
			},
		},
		Atomic:    true,
		BatchSize: 100,
	}
}
