// Package connector is the contract between tether's steps and the systems
// they read and write: a Source reads pages of raw JSON records from a
// position, a Sink applies batches of rows idempotently (and deletes and
// restores them), and a Registry opens the connectors a worker knows by
// kind. Connectors live in sub-packages (httpsource, pgsource, httpsink,
// pgsink); the steps only see this contract, and every connector passes
// the one acceptance suite in connectortest.
package connector

import (
	"context"
	"encoding/json"

	"github.com/tetherflow/tether/activities/lib/cursor"
)

// Request asks a source for one page.
type Request struct {
	// Integration names the integration (used for ETag caching and logs).
	Integration string
	// Position is where to read; the zero Position means "first page".
	Position cursor.Position
	// Since, when set, asks for records changed at or after Since.Cursor
	// (incremental read). The connector sends it in the source's own filter
	// parameter; the pipeline drops records at or before Since.
	Since cursor.Checkpoint
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
	Next cursor.Position
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
	// Total is the number of records the source announces for the whole
	// read this page belongs to (an X-Total-Count header, a total in the
	// body), 0 when it announces none. A read that ends with fewer is a
	// short read (the integration's short_read policy).
	Total int
	// ETag is the validator the source sent for this page, if any. The
	// pipeline remembers it (see Memo) only after the page's records are
	// committed, so a crash can never make a later run skip an unapplied page.
	ETag string
}

// MemoStore recalls the memo of a page by integration and cache key. The
// pipeline's state store implements it; connectors only read from it.
type MemoStore interface {
	Recall(ctx context.Context, integration, cacheKey string) (cursor.Memo, bool, error)
}

// Source reads pages of raw records from a position. Implementations are
// safe for concurrent use and classify their errors with package failure.
//
// Reading is repeatable: the same Request answers the same records while
// the source does not change, so a run that crashed between a read and its
// apply reads the page again and applies it once (the apply is
// idempotent). Pages come in a stable order, and Page.Next (or, for an
// incremental read, the last record's (cursor, key)) is where the next
// page starts.
type Source interface {
	// Capabilities says what the source supports.
	Capabilities() Capabilities
	// Fetch reads one page.
	Fetch(ctx context.Context, req Request) (Page, error)
}
