// Package integrations holds the demo's Go integrations, one file each:
// the sandbox CRM's contacts and companies into PostgreSQL, its contacts
// into the sandbox billing API, a saga across both, and the integration
// the customer onboarding workflow runs. They reach the CRM and billing
// APIs through the worker's "crm" connection (connections.crm), and a
// worker runs them only when it has one (For). To add your own, copy
// crm_contacts.go, change what differs, and register it with your worker.
package integrations

import (
	"github.com/tetherflow/tether/activities/integration"
	"github.com/tetherflow/tether/workers/config"
)

// CRM names the connection the demo's integrations reach the CRM and
// billing APIs through.
const CRM = "crm"

// For returns the demo's integrations when the worker has a "crm"
// connection, else none.
func For(conns map[string]config.Connection) []integration.Definition {
	crm, ok := conns[CRM]
	if !ok {
		return nil
	}
	return All(crm)
}

// All returns every demo integration, reaching the CRM through crm.
func All(crm config.Connection) []integration.Definition {
	return []integration.Definition{
		CRMContacts(crm),
		CRMCompanies(crm),
		CRMBillingCustomers(crm),
		PGContactsBilling(crm),
		CustomerOnboarding(crm),
		Onboarding(crm),
	}
}
