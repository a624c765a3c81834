// Package source defines what every source connector provides to the sync
// pipeline: pages of raw JSON records read from a position, and the position
// to read from next. Connectors live in sub-packages (httpsource, later
// pgsource); the pipeline only sees this contract.
package source

import (
	"context"
	"encoding/json"
)

// Position says where a read stands. It is small, JSON-serialisable and
// travels through workflow history (continue-as-new carries it), so it never
// holds records. Which fields are used depends on the pagination style.
type Position struct {
	// Page is the next page number to request (page-number pagination), 1-based.
	Page int `json:"page,omitempty"`
	// Offset is the next offset to request (offset/limit pagination).
	Offset int `json:"offset,omitempty"`
	// Token is the next cursor token taken from the previous body (token pagination).
	Token string `json:"token,omitempty"`
	// NextURL is the next page's absolute URL (RFC 8288 Link rel="next").
	NextURL string `json:"nextUrl,omitempty"`
}

// Checkpoint is the durable (cursor, key) position of the last record
// committed to the destination by an incremental integration. Reads resume
// strictly after it: records at or before it are skipped.
type Checkpoint struct {
	// Cursor is the value of the integration's cursor field (e.g. updated_at).
	Cursor string `json:"cursor,omitempty"`
	// Key is the record key that breaks ties between equal cursor values.
	Key string `json:"key,omitempty"`
}

// IsZero reports whether no checkpoint has been recorded yet.
func (c Checkpoint) IsZero() bool { return c.Cursor == "" && c.Key == "" }

// Request asks a source for one page.
type Request struct {
	// Integration names the integration (used for ETag caching and logs).
	Integration string
	// Position is where to read; the zero Position means "first page".
	Position Position
	// Since, when set, asks for records changed at or after Since.Cursor
	// (incremental read). The connector sends it in the source's own filter
	// parameter; the pipeline drops records at or before Since.
	Since Checkpoint
	// Limit is the number of records per page to ask for.
	Limit int
	// Unconditional asks for the records even when a page memo would let
	// the source answer "not modified" (a reconciliation must see them).
	Unconditional bool
}

// Page is one page read from a source.
type Page struct {
	// Records are the raw records, exactly as the source sent them.
	Records []json.RawMessage
	// Next is the position of the following page; meaningful when !Done.
	Next Position
	// Done is true when this was the last page.
	Done bool
	// NotModified is true when the source answered 304 to a conditional
	// request: the page is unchanged since it was last read, and Records is
	// empty. RecordCount then tells how many records the cached page had.
	NotModified bool
	// RecordCount is len(Records), or the cached page's count when NotModified.
	RecordCount int
	// StatusCode is the HTTP status (or 0 for non-HTTP sources), for progress and logs.
	StatusCode int
	// CacheKey identifies the request (its URL) for conditional requests.
	CacheKey string
	// ETag is the validator the source sent for this page, if any. The
	// pipeline remembers it (see Memo) only after the page's records are
	// committed, so a crash can never make a later run skip an unapplied page.
	ETag string
}

// Memo is what is remembered about a page that was fully applied, so that a
// later conditional request answered 304 can skip it and still know where the
// next page is.
type Memo struct {
	ETag        string   `json:"etag"`
	Next        Position `json:"next"`
	Done        bool     `json:"done"`
	RecordCount int      `json:"recordCount"`
}

// MemoStore recalls the memo of a page by integration and cache key. The
// pipeline's state store implements it; connectors only read from it.
type MemoStore interface {
	Recall(ctx context.Context, integration, cacheKey string) (Memo, bool, error)
}

// Source reads pages. Implementations are safe for concurrent use and
// classify their errors with package failure.
type Source interface {
	Fetch(ctx context.Context, req Request) (Page, error)
}
