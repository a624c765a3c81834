// Package httpclient is what the HTTP connectors (the source
// httpsource and the destination httpsink) share about talking to a JSON
// API: credentials, pacing, short retries and error classification.
//
// What flows in: a method, a URL on the API, an optional JSON body and the
// headers of one call. What flows out: the API's response, whatever its
// status, for the connector to read; or a classified error (package
// failure) when no usable answer came. StatusError classifies the statuses a
// connector does not handle itself.
//
// Around each request:
//
//   - Credentials (Auth): a bearer token, an API-key header, or an OAuth2
//     client credentials token that is cached, refreshed before expiry and
//     fetched anew once when the API answers 401. Secrets never reach logs
//     or errors: Quote and RedactURL blank them out of bodies and URLs.
//   - Pacing (Pacer): a token bucket (RateLimit) shared by every request of
//     the Client, under the server's own word (X-RateLimit-Remaining/Reset,
//     Retry-After on 429 and 503). A pause longer than Retry.WaitMax is not
//     slept in process: the request fails at once with a throttled error
//     whose next retry delay is that pause, so Temporal owns the long wait.
//   - Retries (Retry): short inner retries with go-retryablehttp, for
//     network errors and 5xx (but 501), and for 429/503 whose Retry-After is
//     short; every attempt goes through the pacer.
//
// The failure types of the errors are the connector's (ErrorTypes), so an
// operator reads "SourceThrottled" or "SinkThrottled" and knows which side
// of an integration is pushing back.
package httpclient
