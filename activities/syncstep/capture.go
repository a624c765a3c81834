package syncstep

import "time"

// Activity names of PostgreSQL change capture.
const (
	// CaptureChangesName reads an integration's captured changes and
	// applies them as they commit, for a while, then returns.
	CaptureChangesName = "CaptureChanges"
	// RemoveCaptureName drops the capture's trigger, function and outbox.
	RemoveCaptureName = "RemoveCapture"
)

// CaptureInput runs change capture for one integration.
type CaptureInput struct {
	Integration string `json:"integration"`
	// Definition pins the integration's version (RemoveCapture finds the
	// source of an integration removed since).
	Definition string `json:"definition,omitempty"`
	// RunFor is how long the activity captures before it returns its
	// figures (default 1 minute); the workflow starts it again.
	RunFor time.Duration `json:"runFor,omitempty"`
	// WorkflowID names the batches in quarantine entries.
	WorkflowID string `json:"workflowId"`
}

// CaptureOutput is what one CaptureChanges did, and the lag when it
// returned.
type CaptureOutput struct {
	Definition string      `json:"definition"`
	Counts     EventCounts `json:"counts"`
	Batches    int         `json:"batches"`
	// Pending is how many changes wait in the outbox; Oldest is when the
	// oldest of them was made (zero when none).
	Pending       int64     `json:"pending"`
	Oldest        time.Time `json:"oldest,omitzero"`
	LastAppliedAt time.Time `json:"lastAppliedAt,omitzero"`
}
