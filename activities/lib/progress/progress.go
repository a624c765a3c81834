// Package progress holds the counters and progress report of a sync run. The
// types are plain data: they travel through workflow history, the progress
// query, the runs table and the starter's progress bar, so this package
// imports nothing that does I/O.
package progress

import (
	"fmt"
	"time"
)

// Counts are the record counters of a run (cumulative across
// continue-as-new).
type Counts struct {
	Pages       int `json:"pages"`       // pages read (including 304 pages)
	Fetched     int `json:"fetched"`     // records received from the source
	Skipped     int `json:"skipped"`     // records at or before the checkpoint (already applied)
	Checked     int `json:"checked"`     // records validated (fetched minus skipped, once processed)
	Valid       int `json:"valid"`       // records that passed validation and transformation
	Invalid     int `json:"invalid"`     // records quarantined (validation, transform or apply)
	Inserted    int `json:"inserted"`    // rows inserted in the destination
	Updated     int `json:"updated"`     // rows updated in the destination
	Unchanged   int `json:"unchanged"`   // rows identical to the destination (not rewritten), incl. 304 pages
	Stale       int `json:"stale"`       // rows older than the destination's version (skipped)
	Duplicates  int `json:"duplicates"`  // duplicate keys collapsed inside a batch (last one won)
	NotModified int `json:"notModified"` // pages answered 304 Not Modified
	// Deleted counts the destination rows a batch refresh removed because
	// the source no longer has their records.
	Deleted int `json:"deleted,omitempty"`
}

// Applied is the number of rows written (inserted or updated).
func (c Counts) Applied() int { return c.Inserted + c.Updated }

// Add returns the field-wise sum of c and o.
func (c Counts) Add(o Counts) Counts {
	return Counts{
		Pages:       c.Pages + o.Pages,
		Fetched:     c.Fetched + o.Fetched,
		Skipped:     c.Skipped + o.Skipped,
		Checked:     c.Checked + o.Checked,
		Valid:       c.Valid + o.Valid,
		Invalid:     c.Invalid + o.Invalid,
		Inserted:    c.Inserted + o.Inserted,
		Updated:     c.Updated + o.Updated,
		Unchanged:   c.Unchanged + o.Unchanged,
		Stale:       c.Stale + o.Stale,
		Duplicates:  c.Duplicates + o.Duplicates,
		NotModified: c.NotModified + o.NotModified,
		Deleted:     c.Deleted + o.Deleted,
	}
}

// Sub returns the field-wise difference c - o.
func (c Counts) Sub(o Counts) Counts {
	return Counts{
		Pages:       c.Pages - o.Pages,
		Fetched:     c.Fetched - o.Fetched,
		Skipped:     c.Skipped - o.Skipped,
		Checked:     c.Checked - o.Checked,
		Valid:       c.Valid - o.Valid,
		Invalid:     c.Invalid - o.Invalid,
		Inserted:    c.Inserted - o.Inserted,
		Updated:     c.Updated - o.Updated,
		Unchanged:   c.Unchanged - o.Unchanged,
		Stale:       c.Stale - o.Stale,
		Duplicates:  c.Duplicates - o.Duplicates,
		NotModified: c.NotModified - o.NotModified,
		Deleted:     c.Deleted - o.Deleted,
	}
}

// InvalidShare is the fraction of checked records that were quarantined;
// 0 when nothing was checked.
func (c Counts) InvalidShare() float64 {
	if c.Checked <= 0 {
		return 0
	}
	return float64(c.Invalid) / float64(c.Checked)
}

// Run statuses, as stored in the runs table and shown in the SyncStatus
// search attribute.
const (
	StatusRunning     = "Running"
	StatusCompleted   = "Completed"
	StatusFailed      = "Failed"
	StatusCompensated = "Compensated" // failed or cancelled, destination restored
	// StatusCompensating: the run failed or was cancelled and its applied
	// batches are being undone; no further batch may commit.
	StatusCompensating = "Compensating"
	StatusCancelled    = "Cancelled"
)

// Report is the answer to the sync workflow's "progress" query.
type Report struct {
	Integration string `json:"integration"`
	RunID       string `json:"runId"`
	Status      string `json:"status"`
	Step        string `json:"step"`   // what the run is doing now, e.g. "FetchPage 12"
	Cursor      string `json:"cursor"` // (cursor, key) of the last committed record, or the page position
	Counts      Counts `json:"counts"`
	// Destinations counts what each destination of a saga did, by name.
	Destinations  map[string]Counts `json:"destinations,omitempty"`
	PagesInFlight int               `json:"pagesInFlight"`
	Throttled     string            `json:"throttled,omitempty"` // last throttling answer from the source, or an open destination circuit
	LastError     string            `json:"lastError,omitempty"`
	// Warnings are what the run found doubtful but went on with (a short
	// read under short_read: warn).
	Warnings       []string  `json:"warnings,omitempty"`
	StartedAt      time.Time `json:"startedAt"`
	LastProgressAt time.Time `json:"lastProgressAt"`
	Done           bool      `json:"done"`
	// Retrying are the steps being retried now, with their last error.
	Retrying []Retry `json:"retrying,omitempty"`
}

// SignalStepRetry is the signal a worker sends a run when one of its
// steps failed an attempt that Temporal will retry (Retry.NextAt set), and
// again when a retried step succeeds (Retry.NextAt zero: it recovered).
const SignalStepRetry = "tether-step-retry"

// Retry is a step being retried: which, the attempt that failed, its
// error, and when the next attempt is due.
type Retry struct {
	Step    string    `json:"step"`
	Page    int       `json:"page,omitempty"`
	Attempt int32     `json:"attempt"`
	Error   string    `json:"error,omitempty"`
	At      time.Time `json:"at"`
	NextAt  time.Time `json:"nextAt,omitzero"`
}

// Key names the step a Retry is of.
func (r Retry) Key() string { return fmt.Sprintf("%s/%d", r.Step, r.Page) }
