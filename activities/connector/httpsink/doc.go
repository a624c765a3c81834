// Package httpsink is the HTTP destination connector: it writes one
// integration's records to a JSON API, creating those the destination does
// not know yet and updating those it does.
//
// What flows in: Records, each a row (sent as the JSON body), its natural
// key, the destination's id of the record when the pipeline knows it, and
// the idempotency key of its create. What flows out: a Result with one
// RecordResult per record, in order: created (with the new id read at
// id_path, for the pipeline to store against the key), updated, conflict
// (409/412, or an update whose record is gone) or rejected (400/422: the
// destination refused the data; quarantine material with its message).
// Compensation uses Delete (404/410 count as deleted) and Restore (PUT the
// before-image back).
//
// Around each call:
//
//   - Paths are text/template over the row plus .external_id, parsed at
//     New, every value path-escaped ("/v1/customers/{{.external_id}}").
//   - Idempotency: every create carries an idempotency key header, the
//     same on every retry (IdempotencyKey derives it from the run, the key
//     and the content), so the destination never creates a record twice.
//   - Credentials, pacing and short retries come from package httpclient,
//     as for the HTTP source: one token bucket and one OAuth2 token per
//     Client, under the server's X-RateLimit-* and Retry-After.
//   - max_in_flight bounds the calls of the Client at once, across every
//     Apply running on the worker.
//   - A circuit breaker (sony/gobreaker) opens when too many calls fail
//     in its window; calls then fail fast with a throttled
//     failure.TypeCircuitOpen error whose next retry delay is the time left,
//     so the workflow waits durably instead of burning retries.
//   - Batch mode (batch.path) creates records in arrays of max_records,
//     read back item by item; updates stay one call each.
//   - Metrics (WithMetrics, WithDestination): the circuit's state and
//     changes and the calls by outcome, as Prometheus series labelled with
//     the integration and destination names.
//
// Errors that stop an Apply are classified with package failure at the top
// of the chain: permanent (credentials, missing endpoint, unreadable
// answer), throttled (429, 503 with Retry-After, open circuit) or transient
// (network, 5xx).
package httpsink
