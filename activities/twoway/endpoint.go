package twoway

import (
	"context"
	"errors"
	"time"
)

// Change is one record a side's change feed gives: a record created,
// changed or deleted since the feed was last read.
type Change struct {
	// Key is the record's key on its side.
	Key string
	// Record is the record in the pair's shared shape; nil when deleted.
	Record Record
	// Deleted says the side deleted it.
	Deleted bool
	// At is the side's trusted time of the change (last writer wins).
	At time.Time
	// Version is what a conditional write to the record expects (an ETag's
	// version, an updated_at), so that no edit made after the read is lost.
	Version string
	// Cursor orders the feed, with Key: the next read starts after the
	// last (Cursor, Key) read.
	Cursor string
	// Invalid says why the record cannot be read into the shared form (a
	// value its cast refuses): it waits for a person, and is not written.
	Invalid string
}

// Observed is the change as the resolution sees it.
func (c Change) Observed() *Observed {
	return &Observed{Record: c.Record, Deleted: c.Deleted, At: c.At}
}

// Written is what a write did: the record's key (new for a created one),
// its version and change time after the write.
type Written struct {
	Key, Version string
	At           time.Time
}

// ErrChanged is a conditional write refused because the record changed
// after it was read (or was deleted): the change is in the side's feed,
// and the pair is resolved again with it.
var ErrChanged = errors.New("the record changed since it was read")

// Endpoint is one side of a two-way integration: its change feed and its
// single-record writes, in the pair's shared shape. Writes are
// conditional on the version read, and a create carries an idempotency
// key, so that a retried step neither loses an edit nor creates twice.
type Endpoint interface {
	// Changes reads the feed after (cursor, key): every change after it,
	// and possibly some at or before it (a re-read is harmless: the
	// comparison is by content). fn gets each page.
	Changes(ctx context.Context, cursor, key string, fn func([]Change) error) error
	// Put writes rec as the record key, when its version is still expect;
	// key "" creates it (idem names the create: sent again, it creates
	// nothing more).
	Put(ctx context.Context, key string, rec Record, expect, idem string) (Written, error)
	// Delete deletes the record key, when its version is still expect; a
	// record already gone is no error.
	Delete(ctx context.Context, key, expect string) error
}
