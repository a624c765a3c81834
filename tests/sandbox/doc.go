// Package sandbox is the source API that the demo, the integration tests and
// the benchmarks sync from: a realistic REST API of a small CRM with
// contacts and companies, served from memory.
//
// What flows in: Options (a seed, a size, the accepted credentials, a rate
// limit and the faults to inject), then HTTP requests, and mutations made by
// a test (Touch, Add, SetFaults) or through the /admin endpoints.
//
// What flows out: JSON pages of records under four pagination styles
// (page number, offset/limit, cursor token, RFC 8288 Link headers), with
// ETags, X-RateLimit-* headers, 401/403/429 answers and the injected
// faults; and, for the test that drives it, the records exactly as they are
// served (Contacts, Companies, InvalidContactIDs) and request counters
// (Stats), so expectations are computed from the same truth the API serves.
//
// The data is a pure function of Options.Seed and the sequence of
// mutations: two servers built with the same Options and mutated the same
// way serve the same bytes.
//
//	GET  /v1/contacts, /v1/companies   ?pagination=page|offset|cursor|link
//	                                   &updated_since=<RFC 3339>
//	POST /oauth/token                  (Auth.Mode "oauth2")
//	GET  /healthz
//	GET  /admin/stats, GET|POST /admin/faults,
//	POST /admin/{contacts|companies}/{touch|add}?count=N
package sandbox
