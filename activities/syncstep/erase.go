package syncstep

// EraseInput names the subject to erase: the record key of an
// integration's source records.
type EraseInput struct {
	Integration string `json:"integration"`
	Key         string `json:"key"`
	// Reason is kept in the audit (a request's reference).
	Reason string `json:"reason,omitempty"`
	// Only keeps the erasure to Integration; otherwise every integration
	// that reads the same source and has run is erased too.
	Only bool `json:"only,omitempty"`
	// Of is the integration the erasure was asked for, when this one is
	// erased because it reads the same source (set by the workflow).
	Of string `json:"of,omitempty"`
}

// Erased is what the erasure did in one place: a destination (by name) or
// a place of tether's own state.
type Erased struct {
	// Integration is whose place it is, when not the one asked for.
	Integration string `json:"integration,omitempty"`
	Place       string `json:"place"`
	Deleted     int    `json:"deleted"`
	// Note says what was not done there, and what to do (a destination
	// that cannot delete: erase by hand).
	Note string `json:"note,omitempty"`
}

// EraseReport is the erasure's report, per place.
type EraseReport struct {
	Integration string `json:"integration"`
	Key         string `json:"key"`
	// Related are the other integrations erased because they read the
	// same source and have run.
	Related []string `json:"related,omitempty"`
	Places  []Erased `json:"places"`
	// Complete is false when some place could not be erased (its Note
	// says why).
	Complete bool `json:"complete"`
}

// The erasure's steps.
var (
	EraseRelated      = NewActivity[EraseInput, []string]("EraseRelated")
	EraseDestinations = NewActivity[EraseInput, []Erased]("EraseDestinations")
	EraseState        = NewActivity[EraseInput, []Erased]("EraseState")
)
