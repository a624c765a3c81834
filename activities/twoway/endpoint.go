package twoway

import (
	"github.com/tetherflow/tether/activities/connector"
	"github.com/tetherflow/tether/activities/connector/httpside"
	"github.com/tetherflow/tether/activities/connector/pgside"
)

// The two-way side contract is package connector's (connector.Side, the
// acceptance suite connectortest.Side); these are its names here.
type (
	// Endpoint is one side of a two-way integration: its change feed and
	// its conditional single-record writes, in the pair's shared shape.
	Endpoint = connector.Side
	// Change is one record a side's change feed gives.
	Change = connector.Change
	// Written is what a write did.
	Written = connector.Written
	// PostgresSide is a table as a side (package pgside).
	PostgresSide = pgside.Config
	// HTTPSide is a REST resource as a side (package httpside).
	HTTPSide = httpside.Config
)

// ErrChanged is a conditional write refused because the record changed
// after it was read: the pair is resolved again with the change.
var ErrChanged = connector.ErrChanged

// observedOf is the change as the resolution sees it.
func observedOf(c Change) *Observed {
	return &Observed{Record: c.Record, Deleted: c.Deleted, At: c.At}
}
