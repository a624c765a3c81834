// Package cursor says where a read of a source stands: the Position of the
// next page, and the (cursor, key) Checkpoint of the last record committed.
// Both are small plain data that travel through workflow history, so
// workflows, steps and connectors share them; Compare orders checkpoints
// the same way everywhere.
package cursor

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

// Memo is what is remembered about a page that was fully applied, so that a
// later conditional request answered 304 can skip it and still know where the
// next page is.
type Memo struct {
	ETag        string   `json:"etag"`
	Next        Position `json:"next"`
	Done        bool     `json:"done"`
	RecordCount int      `json:"recordCount"`
}
