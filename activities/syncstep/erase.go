package syncstep

// EraseInput names the subject to erase: the record key of an
// integration's source records.
type EraseInput struct {
	Integration string `json:"integration"`
	Key         string `json:"key"`
	// Reason is kept in the audit (a request's reference).
	Reason string `json:"reason,omitempty"`
}

// Erased is what the erasure did in one place: a destination (by name) or
// a place of tether's own state.
type Erased struct {
	Place   string `json:"place"`
	Deleted int    `json:"deleted"`
	// Note says what was not done there, and what to do (a destination
	// that cannot delete: erase by hand).
	Note string `json:"note,omitempty"`
}

// EraseReport is the erasure's report, per place.
type EraseReport struct {
	Integration string   `json:"integration"`
	Key         string   `json:"key"`
	Places      []Erased `json:"places"`
	// Complete is false when some place could not be erased (its Note
	// says why).
	Complete bool `json:"complete"`
}

// The erasure's steps.
var (
	EraseDestinations = NewActivity[EraseInput, []Erased]("EraseDestinations")
	EraseState        = NewActivity[EraseInput, []Erased]("EraseState")
)
