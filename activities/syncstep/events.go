package syncstep

import (
	"encoding/json"
	"time"
)

// ApplyEventsName is the activity that applies a batch of change events
// (webhooks, captured row changes) to an integration's destinations.
const ApplyEventsName = "ApplyEvents"

// Event is one change of one entity, as a webhook or change capture
// delivers it.
type Event struct {
	// Source names who delivered it: a webhook source's name, or
	// "capture" for PostgreSQL change capture. With DeliveryID it is the
	// idempotency key.
	Source string `json:"source"`
	// DeliveryID is the deliverer's id of the event, the same on every
	// redelivery.
	DeliveryID string `json:"deliveryId"`
	// Key is the entity's key, as text.
	Key string `json:"key"`
	// Version orders the entity's changes (a timestamp or a number, as
	// text); empty when the deliverer gives none, then arrival order
	// decides.
	Version string `json:"version,omitempty"`
	// Delete says the entity was deleted.
	Delete bool `json:"delete,omitempty"`
	// Record is the entity's record as the integration's schema describes
	// it (for a deletion: whatever the deliverer sent about it, possibly
	// nothing).
	Record json.RawMessage `json:"record,omitempty"`
	// Invalid lists why the receiver found the event invalid: it is
	// quarantined with these reasons, never applied.
	Invalid []string `json:"invalid,omitempty"`
	// ReceivedAt is when the event reached tether (the webhook request,
	// the captured change's commit).
	ReceivedAt time.Time `json:"receivedAt"`
	// Sender is who delivered it, as the ingress authenticated it (a
	// webhook's source, signing secret and peer address); empty for
	// change capture. The deliveries log keeps it for the audit.
	Sender string `json:"sender,omitempty"`
}

// ApplyEventsInput is one batch of events for one integration, in arrival
// order.
type ApplyEventsInput struct {
	Integration string  `json:"integration"`
	Events      []Event `json:"events"`
	// Ref names the batch in quarantine entries: the applying workflow's
	// id and run (RunID) and the batch's number (Page).
	Ref PageRef `json:"ref"`
}

// EventCounts says what happened to a batch's events; every event is
// counted once.
type EventCounts struct {
	Received int `json:"received"`
	// Inserted, Updated and Deleted changed the destination; Unchanged
	// found it as the event describes (or a deletion found no row).
	Inserted  int `json:"inserted"`
	Updated   int `json:"updated"`
	Deleted   int `json:"deleted"`
	Unchanged int `json:"unchanged"`
	// Stale events were older than another event of the entity in the
	// batch or than the destination's row, and were skipped.
	Stale int `json:"stale"`
	// Superseded events were followed, in the same batch, by a later
	// event of the entity with the same or no version.
	Superseded int `json:"superseded"`
	// Duplicates were deliveries applied before (redelivered).
	Duplicates int `json:"duplicates"`
	// Quarantined events were invalid and kept with their reasons.
	Quarantined int `json:"quarantined"`
}

// Add returns the sum of c and d.
func (c EventCounts) Add(d EventCounts) EventCounts {
	return EventCounts{
		Received: c.Received + d.Received, Inserted: c.Inserted + d.Inserted, Updated: c.Updated + d.Updated,
		Deleted: c.Deleted + d.Deleted, Unchanged: c.Unchanged + d.Unchanged, Stale: c.Stale + d.Stale,
		Superseded: c.Superseded + d.Superseded, Duplicates: c.Duplicates + d.Duplicates, Quarantined: c.Quarantined + d.Quarantined,
	}
}

// ApplyEventsOutput is what a batch did.
type ApplyEventsOutput struct {
	Counts EventCounts `json:"counts"`
	// AppliedAt is when the batch's transaction committed.
	AppliedAt time.Time `json:"appliedAt"`
}
