// Package webhook is the HTTP side of tether's signed webhook receiver:
// an http.Handler that takes a source's change notifications, checks them,
// and hands each accepted one to an Accepter that records it durably
// (TemporalAccepter: signal-with-start of the workflow of the entity's
// shard, workflows/events) before the sender gets its answer.
//
// In: POST /webhooks/{source} with a JSON body, a signature header and a
// delivery id header. Out: one Event per accepted request, given to
// Accepter.Accept, and an answer the sender can act on:
//
//	202 {"status":"accepted","delivery":"…"}          recorded; will be applied
//	202 {"status":"quarantined","delivery":"…","errors":[…]}
//	                                                   recorded with Event.Invalid set (on_invalid: quarantine)
//	200 {"status":"duplicate","delivery":"…"}         this delivery id was already recorded
//	400 {"error":"…"}                                 no delivery id, body not JSON, or (on_invalid: reject)
//	                                                   no entity key or version in the body
//	401 {"error":"…"}                                 missing, malformed or wrong signature; timestamp out of tolerance
//	404 {"error":"…","sources":[…]}                   no such source
//	405 {"error":"…"}                                 not a POST
//	413 {"error":"…"}                                 body over the source's max_body (default 1 MiB)
//	422 {"error":"…","errors":[…]}                    schema-invalid and on_invalid: reject
//	429 {"error":"…"} + Retry-After                   over the source's rate limit
//	503 {"error":"…"} + Retry-After                   the Accepter could not record the event, or
//	                                                   too many deliveries are being recorded (WithMaxInFlight)
//
// The checks run in this order, cheapest refusal first: source, rate
// limit, method, size, signature, delivery id, JSON, schema and entity key,
// then the Accepter. The Accepter is called only for an authentic request
// within the rate limit with a delivery id and a JSON body; every answer
// before it has recorded nothing, and a 503 has recorded nothing either,
// so nothing the receiver acknowledged (2xx) can be lost as long as the
// Accepter keeps its promise, and everything it refused the sender still
// holds and may deliver again (a sender that never retries leaves the gap
// to the periodic reconciliation).
//
// # Signature
//
// Each source has one or two shared secrets. The sender puts in the
// source's signature header (default X-Tether-Signature):
//
//	X-Tether-Signature: t=<unix seconds>,v1=<hex HMAC-SHA256(secret, t + "." + raw body)>
//
// t is the time of signing in decimal Unix seconds; the signed text is t
// exactly as written in the header, a full stop, and the body's bytes
// exactly as sent (no re-encoding). The MAC is lower- or upper-case hex.
// A header may carry several v1= entries (a sender rotating its secret
// signs with both); entries with other labels are ignored, and a source can
// rename the label (signature_scheme) and the header (signature_header).
// The request is authentic when one entry equals, compared in constant
// time (hmac.Equal), the MAC under one of the source's secrets, and t is
// within the source's tolerance (default 5 minutes) of the receiver's
// clock, in the past or the future. Anything else is 401 with the reason,
// and the Accepter is not called.
//
// A sender in shell (the delivery id must be the same on every retry of
// one event):
//
//	secret='the shared secret'
//	body='{"type":"contact.updated","data":{"id":42,"updated_at":"2026-11-23T10:15:00Z"}}'
//	t=$(date +%s)
//	sig=$(printf '%s.%s' "$t" "$body" | openssl dgst -sha256 -hmac "$secret" | awk '{print $NF}')
//	curl -sS http://127.0.0.1:8090/webhooks/crm \
//	  -H 'Content-Type: application/json' \
//	  -H "X-Tether-Delivery: evt-0001" \
//	  -H "X-Tether-Signature: t=$t,v1=$sig" \
//	  --data-binary "$body"
//
// Sign computes the same header in Go.
//
// Rotating a secret: add the new secret beside the old one (two at most),
// switch the sender to the new one, then remove the old one. In between,
// requests signed with either are authentic.
//
// Replays: a captured request is refused once its timestamp leaves the
// tolerance. Within it, a replay with the same delivery id is a duplicate
// (200, not applied again). The delivery id header is not covered by the
// signature, so a replay within the tolerance under a new delivery id is
// accepted again. It carries the same entity version, so the applying side
// must guard on versions, not only on delivery ids, and skip an event that
// is not newer than what the destination has.
//
// # Body
//
// The body is read up to max_body (413 beyond, without reading further
// when Content-Length says so), must be one JSON value (400), and is
// checked against the source's schema file from schemas/ (compiled once,
// by activities/lib/schema) when it names one. The entity key (key_path,
// e.g. "data.id") and version (version_path, e.g. "data.updated_at") are
// read from it by dot path; a segment that is a number indexes an array;
// the value must be a non-empty string or a number and is passed on as
// text.
//
// What happens to a JSON body that does not match the schema, or lacks
// its entity key or version, is the source's on_invalid choice:
//
//   - quarantine (default): 202, and the event goes to the Accepter with
//     Event.Invalid listing every reason (at most 100), to be kept in
//     quarantine. Nothing is lost, and a sender that retries refused
//     deliveries does not keep retrying one that can never succeed. The
//     event may have no entity key; the Accepter must quarantine it
//     without one.
//   - reject: 422 with the schema's errors (400 when the entity key or
//     version cannot be read), and nothing is recorded. For senders that
//     show refused deliveries to their users or expect 4xx for bad input;
//     the event then exists only at the sender.
//
// # Idempotency
//
// The delivery id header (default X-Tether-Delivery; 1 to 200 visible
// ASCII characters) is required (400 without it). The Accepter returns
// ErrDuplicate for an id it has already recorded, and the receiver answers
// 200 {"status":"duplicate"}: the sender stops redelivering and the event
// is applied once. An Accepter failing otherwise is answered 503 with
// Retry-After; the sender delivers again later. Accept runs with its own
// deadline (WithAcceptTimeout, default 5s) and is not cut short by the
// sender hanging up, so a recording is never abandoned half-way.
//
// # Rate limit
//
// Each source has a token bucket (rate_limit.per_second, default 100;
// rate_limit.burst, default twice that). Every answer for a source's path
// carries X-RateLimit-Limit (the bucket's size), X-RateLimit-Remaining
// (whole requests left now) and X-RateLimit-Reset (Unix seconds, rounded
// up, when the bucket is full again). Over the limit the answer is 429
// with Retry-After (seconds until the next request fits) and the Accepter
// is not called. The limit is taken before the body is read or the
// signature checked, so it bounds all the work a source's URL can cause,
// forged requests included; the price is that a flood of forged requests
// spends the source's budget and delays (429, redelivered later) the
// genuine ones. Put a per-client limit in front of the receiver where its
// URL is public.
//
// # Logging
//
// One slog record per answer (WithLogger): source, delivery id, status,
// reason, size, duration, remote address. Secrets, signatures' inputs,
// bodies, entity keys and schema error messages (which quote values) are
// never logged. Source's String and LogValue leave its secrets out.
//
// The server around the Receiver (the worker's webhook mode,
// workers/app.NewWebhookServer) sets
// its http.Server timeouts (ReadHeaderTimeout, ReadTimeout) and resolves
// the sources' secrets before calling New.
package webhook
