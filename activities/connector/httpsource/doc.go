// Package httpsource is the HTTP source connector: it reads one
// integration's records from a JSON API, one page per Fetch.
//
// What flows in: a source.Request (where to read, the page size, and for
// incremental reads the checkpoint's cursor). What flows out: a source.Page
// holding the raw JSON records found at Config.RecordsPath, exactly as the
// API sent them, plus the position of the next page and whether this was the
// last one. Pagination styles: page numbers, offset/limit, cursor tokens
// from the body, and RFC 8288 Link rel="next" headers.
//
// Around each request:
//
//   - Credentials: a bearer token, an API-key header, or an OAuth2 client
//     credentials token that is cached, refreshed before expiry and fetched
//     anew once when the API answers 401. Secrets never reach logs or errors.
//   - Pacing: a token bucket shared by every Fetch of the Source, under the
//     server's own word (X-RateLimit-Remaining/Reset, Retry-After). A pause
//     longer than Retry.WaitMax is not slept in process: Fetch returns a
//     throttled error whose next retry delay is that pause, so Temporal owns
//     the long wait.
//   - Retries: short inner retries (go-retryablehttp) for network errors and
//     5xx only. Every error is classified with package failure (permanent,
//     transient or throttled, with a stable type) and names the method, URL,
//     status and the start of the body.
//   - Conditional requests: with a MemoStore, If-None-Match carries the ETag
//     the pipeline remembered once the page was committed; a 304 comes back
//     as a NotModified page with the remembered next position. The Source
//     only reads memos, never writes them.
//
// Records are never decoded beyond their bytes: a 1,000-record page costs
// one validating scan plus a split into json.RawMessage elements.
package httpsource
