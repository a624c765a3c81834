// Package sandbox is the API that the demo, the integration tests and the
// benchmarks sync from and to, served from memory: a realistic REST API of
// a small CRM with contacts and companies to read, and a billing API shaped
// like Stripe or Chargebee, with customers and notifications to write.
//
// What flows in: Options (a seed, a size, the accepted credentials, a rate
// limit and the faults to inject), then HTTP requests, and mutations made by
// a test (Touch, Add, SeedCustomers, ResetCustomers, SetFaults) or through
// the /admin endpoints.
//
// What flows out: JSON pages of records under four pagination styles
// (page number, offset/limit, cursor token, RFC 8288 Link headers), with
// ETags, X-RateLimit-* headers, 401/403/429 answers and the injected
// faults; the answers of the write API (201 with an ETag, Idempotency-Key
// replays, 409 conflicts, 412 on a stale If-Match, 422 validation errors,
// injected refusals and lost responses); and, for the test that drives it,
// the records exactly as they are served (Contacts, Companies,
// InvalidContactIDs, Customers, Notifications) and request counters (Stats,
// WriteStats), so expectations are computed from the same truth the API
// serves.
//
// The data is a pure function of Options.Seed and the sequence of
// mutations: two servers built with the same Options and mutated the same
// way serve the same bytes. Customer ids come from a counter (cus_00000001,
// cus_00000002, ...), not from randomness; timestamps from Options.Now.
//
// Read API (errors are {"error": "message"}):
//
//	GET  /v1/contacts, /v1/companies   ?pagination=page|offset|cursor|link
//	                                   &updated_since=<RFC 3339>
//	POST /oauth/token                  (Auth.Mode "oauth2")
//
// Write API (same auth and rate limit; errors are {"error": APIError} with
// a type, a message and, where it applies, the field and the existing_id):
//
//	POST   /v1/customers              JSON object {email (required, unique without regard
//	                                  to case), name, external_ref, plan, ...any other
//	                                  members, kept}: 201, the customer with its id and
//	                                  version 1, ETag "v1", Location; 409 duplicate email
//	                                  (existing_id); 422 missing or invalid member (field);
//	                                  400 body not a JSON object
//	POST   /v1/customers/batch        JSON array of 1 to 100 such objects, each with an
//	                                  optional "idempotency_key" member: 200, an array of
//	                                  {status, customer | error, replayed} in order
//	GET    /v1/customers              ?email=&external_ref=&limit=(10, at most 100)
//	                                  &starting_after=<id>: {data, has_more}, by id
//	GET    /v1/customers/{id}         200 with ETag (304 on If-None-Match), 404
//	PUT    /v1/customers/{id}         full replace; PATCH: RFC 7386 merge patch. Both take
//	PATCH  /v1/customers/{id}         If-Match (412 when it is not the current ETag), bump
//	                                  version, 404 unknown, 409 email of another customer
//	DELETE /v1/customers/{id}         204 (If-Match honoured), then 404
//	POST   /v1/notifications          any JSON: 202 {id, status}, kept in order
//
// Every write honours an Idempotency-Key header: the same key with the same
// request (method, path and body, compared as JSON) within 24h replays the
// first successful answer with "Idempotent-Replayed: true"; with another
// request it is a 422 of type idempotency_mismatch. Only successes are
// remembered. Faults.Writes refuses writes before they happen (every Nth,
// the next N, a rate; narrowed to a resource or a method), delays them, or
// processes them and answers 500 ("the response was lost").
//
// Not limited or counted:
//
//	GET  /healthz
//	GET  /admin/stats, GET|POST /admin/faults,
//	POST /admin/{contacts|companies}/{touch|add}?count=N
//	GET  /admin/customers, POST /admin/customers/reset, POST /admin/customers/seed,
//	GET  /admin/notifications, GET /admin/writes
package sandbox
