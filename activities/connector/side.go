package connector

import (
	"context"
	"errors"
	"maps"
	"slices"
	"time"
)

// Side is one side of a two-way integration: a system's change feed and
// its single-record writes, in the pair's shared shape (the side maps its
// own records to the shared fields and back). Writes are conditional on
// the version read, and a create carries an idempotency key, so that a
// retried step neither loses an edit nor creates twice. Every side passes
// connectortest.Side.
type Side interface {
	// Changes reads the feed after (cursor, key): every change after it,
	// in (Cursor, Key) order, and possibly some at or before it (a re-read
	// is harmless: the comparison is by content). fn gets each page.
	Changes(ctx context.Context, cursor, key string, fn func([]Change) error) error
	// Put writes rec as the record key, when its version is still expect
	// (else ErrChanged); key "" creates it, idem naming the create: sent
	// again, it creates nothing more (it answers the record made, or
	// ErrChanged: the record is in the feed).
	Put(ctx context.Context, key string, rec Row, expect, idem string) (Written, error)
	// Delete deletes the record key, when its version is still expect
	// (else ErrChanged); a record already gone is no error.
	Delete(ctx context.Context, key, expect string) error
}

// Change is one record a side's change feed gives: a record created,
// changed or deleted since the feed was last read.
type Change struct {
	// Key is the record's key on its side.
	Key string
	// Record is the record in the pair's shared shape; nil when deleted.
	Record Row
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

// Written is what a write did: the record's key (new for a created one),
// its version and change time after the write.
type Written struct {
	Key, Version string
	At           time.Time
}

// ErrChanged is a conditional write refused because the record changed
// after it was read (or was deleted, or a create was already made): the
// change is in the side's feed, and the pair is resolved again with it.
var ErrChanged = errors.New("the record changed since it was read")

// SideSpec is what a two-way side is opened from.
type SideSpec struct {
	// Integration names the two-way integration, Side the side within it
	// ("crm"): logs, metrics, idempotency keys.
	Integration, Side string
	// Config is the connector's own configuration (e.g. *pgside.Config).
	Config any
}

// SideFactory opens a two-way side; a bad configuration is a permanent
// failure.TypeConfig error naming what is wrong.
type SideFactory func(SideSpec) (Side, error)

// SideFactoryOf is the factory of sides open builds from a configuration
// of type C (what names it in errors: "postgres side").
func SideFactoryOf[C any, S Side](what string, open func(spec SideSpec, cfg C) (S, error)) SideFactory {
	return func(spec SideSpec) (Side, error) {
		cfg, err := Configured[C](what, spec.Config)
		if err != nil {
			return nil, err
		}
		s, err := open(spec, cfg)
		if err != nil {
			return nil, err
		}
		return s, nil
	}
}

// RegisterSide makes kind open two-way sides with f; it panics like
// RegisterSource.
func (r *Registry) RegisterSide(kind string, f SideFactory) *Registry {
	register(r.sides, "two-way side", kind, f)
	return r
}

// OpenSide opens a two-way side of the given kind.
func (r *Registry) OpenSide(kind string, spec SideSpec) (Side, error) {
	f, ok := r.sides[kind]
	if !ok {
		return nil, unknown("two-way side", kind, r.SideKinds())
	}
	return f(spec)
}

// SideKinds lists the registered two-way side kinds, sorted.
func (r *Registry) SideKinds() []string { return slices.Sorted(maps.Keys(r.sides)) }
