package integrations

import (
	"github.com/tetherflow/tether/activities/connector/httpsink"
	"github.com/tetherflow/tether/activities/connector/pgsink"
	"github.com/tetherflow/tether/activities/connector/pgsource"
	"github.com/tetherflow/tether/activities/integration"
	"github.com/tetherflow/tether/activities/lib/mapping"
	"github.com/tetherflow/tether/workers/config"
)

// BillingCustomersIdentity is the identity map shared by every integration
// that writes the billing API's customers: a contact id maps to one
// customer, whichever integration sent it first.
const BillingCustomersIdentity = "billing-customers"

// CRMBillingCustomers is API to API: the CRM's contacts become customers
// of the billing API (the sandbox serves both). A contact is created once
// (POST with an idempotency key), then updated under the customer id the
// API gave it (PUT), which the identity map keeps; an unchanged contact is
// not sent again. Atomic: a run that fails for good deletes the customers
// it created and puts back those it changed.
func CRMBillingCustomers(crm config.Connection) integration.Definition {
	return integration.Definition{
		Name:        "crm-billing-customers",
		Description: "CRM contacts → billing API customers (API to API), incremental, identity map, atomic",
		Version:     1,
		Source:      contactsSource(crm),
		Schema:      "contacts.schema.json",
		KeyField:    "id",
		CursorField: "updated_at",
		Mapping:     customerMapping("id"),
		Destination: integration.Destination{
			Name:     "billing",
			HTTP:     billingAPI(crm),
			Identity: BillingCustomersIdentity,
		},
		Atomic:        true,
		BatchSize:     200,
		PagesInFlight: 2,
	}
}

// PGContactsBilling is PostgreSQL to API: the crm_contacts table (which
// crm-contacts fills) is read incrementally by (updated_at, id) and each
// row becomes a billing customer. It shares crm-billing-customers'
// identity map, so a contact either integration sent is updated, never
// created twice. The table is read with the worker's own DATABASE_URL.
func PGContactsBilling(crm config.Connection) integration.Definition {
	return integration.Definition{
		Name:        "pg-contacts-billing",
		Description: "PostgreSQL crm_contacts → billing API customers (PostgreSQL to API), incremental",
		Version:     1,
		Source: integration.Source{Postgres: &pgsource.Config{
			DSNEnv:       "DATABASE_URL",
			Table:        "crm_contacts",
			Columns:      []string{"id", "full_name", "email", "status", "score", "updated_at"},
			Key:          []string{"id"},
			CursorColumn: "updated_at",
		}},
		Schema:      "contacts-table.schema.json",
		KeyField:    "id",
		CursorField: "updated_at",
		Mapping: mapping.Mapping{Fields: []mapping.Field{
			{To: "email", From: "email", Normalize: []string{"email"}, Required: true},
			{To: "name", From: "full_name", Normalize: []string{"collapse_spaces"}},
			{To: "external_ref", From: "id", Cast: "string", Required: true},
			{To: "lead_score", From: "score", Cast: "int", Default: 0},
			{To: "lifecycle", From: "status", Normalize: []string{"lower"}},
		}},
		Destination: integration.Destination{
			Name:     "billing",
			HTTP:     billingAPI(crm),
			Identity: BillingCustomersIdentity,
		},
		Atomic:    true,
		BatchSize: 500,
	}
}

// CustomerOnboarding is a saga across three systems: each CRM contact is
// created as a billing customer, then a link row (contact id → customer
// id) is written in PostgreSQL, then a notification is posted. If a later
// step fails for good, or the run is cancelled, the steps done are undone
// in reverse: the notifications get a reversal, the link rows their
// previous image, the customers created are deleted and those updated
// restored.
func CustomerOnboarding(crm config.Connection) integration.Definition {
	notify := billingAPI(crm)
	notify.Create = httpsink.Endpoint{Path: "/v1/notifications"}
	notify.Update = httpsink.Endpoint{}
	return integration.Definition{
		Name:        "customer-onboarding",
		Description: "CRM contacts → billing customer, then PostgreSQL link row, then notification (saga, atomic)",
		Version:     1,
		Source:      contactsSource(crm),
		Schema:      "contacts.schema.json",
		KeyField:    "id",
		CursorField: "updated_at",
		Mapping:     linkedCustomerMapping(),
		Destinations: []integration.Destination{
			billingStep(crm),
			linksStep("customer_links"),
			{
				Name: "notify",
				Mode: integration.ModeNotify,
				HTTP: notify,
				IDs:  map[string]string{"billing_customer_id": "billing"},
				Mapping: mapping.Mapping{Fields: []mapping.Field{{To: "event", Default: "customer.onboarded"}, {To: "contact_id", From: "contact_id"},
					{To: "billing_customer_id", From: "billing_customer_id"}, {To: "email", From: "email"}, {To: "lead_score", From: "lead_score"}}},
				Reversal: &httpsink.Endpoint{Path: "/v1/notifications"},
			},
		},
		Atomic:    true,
		BatchSize: 100,
	}
}

// contactsSource is the CRM's contacts, read incrementally by updated_at.
func contactsSource(crm config.Connection) integration.Source {
	return CRMContacts(crm).Source
}

// customerMapping maps a CRM contact to a billing customer: the API's
// own fields, and the contact's lead score and lifecycle stage as extra
// members the billing API keeps.
func customerMapping(idField string) mapping.Mapping {
	return mapping.Mapping{Fields: []mapping.Field{
		{To: "email", From: "email", Normalize: []string{"email"}, Required: true},
		{To: "name", Compute: fullName, Normalize: []string{"collapse_spaces"}},
		{To: "external_ref", From: idField, Cast: "string", Required: true},
		{To: "lead_score", From: "score", Cast: "int", Default: 0},
		{To: "lifecycle", From: "status", Normalize: []string{"lower"}},
	}}
}

// billingAPI is the billing API's customers endpoint (served by the
// sandbox, beside the CRM, with the same credentials).
func billingAPI(crm config.Connection) *httpsink.Config {
	return &httpsink.Config{
		BaseURL:     crm.BaseURL,
		Auth:        crm.HTTPAuth(),
		Create:      httpsink.Endpoint{Method: "POST", Path: "/v1/customers"},
		Update:      httpsink.Endpoint{Method: "PUT", Path: "/v1/customers/{{.external_id}}"},
		RateLimit:   crm.HTTPRateLimit(),
		MaxInFlight: 4,
		CircuitBreaker: httpsink.CircuitBreaker{
			FailureRate: 0.5,
			// Low: a run retrying one failing batch adds only a few
			// failures per attempt, and the circuit should still open.
			MinRequests: 4,
		},
	}
}

// linkedCustomerMapping maps a CRM contact to a billing customer, with the
// contact's id and version a link row keeps.
func linkedCustomerMapping() mapping.Mapping {
	return mapping.Mapping{Fields: append(customerMapping("id").Fields,
		mapping.Field{To: "contact_id", From: "id", Cast: "int", Required: true},
		mapping.Field{To: "updated_at", From: "updated_at", Cast: "timestamp", Required: true})}
}

// billingStep writes the customer's own fields to the billing API, the
// first step of a saga.
func billingStep(crm config.Connection) integration.Destination {
	return integration.Destination{
		Name: "billing",
		HTTP: billingAPI(crm),
		Mapping: mapping.Mapping{Fields: []mapping.Field{{To: "email", From: "email"}, {To: "name", From: "name"},
			{To: "external_ref", From: "external_ref"}, {To: "lead_score", From: "lead_score"}, {To: "lifecycle", From: "lifecycle"}}},
	}
}

// linksStep writes, in table, the row linking a contact to the customer
// the billing step created for it.
func linksStep(table string) integration.Destination {
	return integration.Destination{
		Name: "links",
		IDs:  map[string]string{"billing_customer_id": "billing"},
		Postgres: &pgsink.Table{
			Name: table,
			Columns: []pgsink.Column{
				{Name: "contact_id", Type: "bigint", NotNull: true},
				{Name: "billing_customer_id", Type: "text", NotNull: true},
				{Name: "email", Type: "text", NotNull: true},
				{Name: "updated_at", Type: "timestamptz"},
			},
			Key:           []string{"contact_id"},
			VersionColumn: "updated_at",
		},
	}
}
