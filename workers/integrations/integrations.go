// Package integrations holds the integrations this repository ships, one Go
// file each. A worker registers them explicitly (see workers/app); to add
// your own, copy crm_contacts.go, change what differs, and add it to All.
package integrations

import (
	"github.com/tetherflow/tether/activities/connector/httpsource"
	"github.com/tetherflow/tether/activities/integration"
	"github.com/tetherflow/tether/workers/config"
)

// All returns every shipped integration, configured for the given CRM.
func All(crm config.CRM) []integration.Definition {
	return []integration.Definition{
		CRMContacts(crm),
		CRMCompanies(crm),
		CRMBillingCustomers(crm),
		PGContactsBilling(crm),
		CustomerOnboarding(crm),
		Onboarding(crm),
	}
}

// crmAuth turns the worker's CRM settings into the HTTP source's auth.
func crmAuth(crm config.CRM) httpsource.Auth {
	switch crm.Auth {
	case "bearer":
		return httpsource.Auth{Kind: "bearer", Token: crm.Token}
	case "api_key":
		return httpsource.Auth{Kind: "api_key", Header: "X-API-Key", APIKey: crm.APIKey}
	case "oauth2":
		return httpsource.Auth{Kind: "oauth2", TokenURL: crm.BaseURL + "/oauth/token", ClientID: crm.ClientID, ClientSecret: crm.ClientSecret}
	}
	return httpsource.Auth{Kind: "none"}
}

func crmRateLimit(crm config.CRM) httpsource.RateLimit {
	if crm.RateLimit <= 0 {
		return httpsource.RateLimit{}
	}
	return httpsource.RateLimit{RequestsPerSecond: crm.RateLimit, Burst: 1}
}
