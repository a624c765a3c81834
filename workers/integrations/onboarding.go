package integrations

import (
	"github.com/tetherflow/tether/activities/integration"
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
func Onboarding(crm config.Connection) integration.Definition {
	billing := billingStep(crm)
	billing.Identity = BillingCustomersIdentity
	return integration.Definition{
		Name:        "onboarding",
		Description: "one CRM contact → billing customer, then, once approved, a PostgreSQL link row (workflow code: OnboardCustomer)",
		Version:     1,
		Source:      contactsSource(crm),
		Schema:      "contacts.schema.json",
		KeyField:    "id",
		Mapping:     linkedCustomerMapping(),
		Destinations: []integration.Destination{
			billing,
			linksStep("onboarding_links"),
		},
		Atomic:    true,
		BatchSize: 100,
	}
}
