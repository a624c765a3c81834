package syncstep

import (
	"encoding/json"

	"github.com/tetherflow/tether/activities/lib/cursor"
	"github.com/tetherflow/tether/activities/lib/progress"
)

// Activity type names as they appear in event histories and the Web UI.
// They are a wire contract: never rename one.
const (
	StartRunName  = "StartRun"
	FetchPageName = "FetchPage"
	// FetchQuarantinedName reads a page of quarantined records (replay runs).
	FetchQuarantinedName = "FetchQuarantinedPage"
	// StageRecordsName stages records a workflow hands to the steps.
	StageRecordsName    = "StageRecords"
	ValidateBatchName   = "ValidateBatch"
	TransformBatchName  = "TransformBatch"
	ApplyBatchName      = "ApplyBatch"
	CompensateBatchName = "CompensateBatch"
	// BeginCompensationName fences a failed atomic run against late applies,
	// puts its checkpoint back, and says which batches to undo.
	BeginCompensationName = "BeginCompensation"
	FinishRunName         = "FinishRun"
	// SweepRefreshName ends a batch refresh: it deletes the destination
	// rows whose records the run did not see.
	SweepRefreshName = "SweepRefresh"
)

// Plan is what a run needs to know about its integration. StartRun returns
// it, so it is recorded in history: the definition is pinned for the run,
// and workflow code never reads configuration.
type Plan struct {
	Integration      string  `json:"integration"`
	Version          int     `json:"version"`
	BatchSize        int     `json:"batchSize"`
	PagesInFlight    int     `json:"pagesInFlight"`
	Atomic           bool    `json:"atomic"`
	InvalidThreshold float64 `json:"invalidThreshold"`
	// ShortRead is the integration's short-read policy ("fail" or
	// "warn"); empty in runs recorded before it existed (fail).
	ShortRead string `json:"shortRead,omitempty"`
	// Incremental is true when the integration reads by a cursor field:
	// every page is requested "since" the last (cursor, key) seen.
	Incremental bool `json:"incremental"`
	// FollowPages: an incremental read follows the source's pages from
	// Since to the end instead of asking again since every page's last
	// record (connector.Capabilities.FollowsPages).
	FollowPages bool `json:"followPages,omitempty"`
	// Since is where the read starts (incremental integrations).
	Since cursor.Checkpoint `json:"since"`
	// Start is the page to start from (full reads resuming an unfinished run).
	Start cursor.Position `json:"start"`
	// Resumed is true when the run continues where an unfinished run stopped.
	Resumed bool `json:"resumed"`
	// ReplayUpTo bounds a replay run: it replays records quarantined with an
	// ID up to this one (those it quarantines again come after it).
	ReplayUpTo int64 `json:"replayUpTo,omitempty"`
	// Steps names the destinations every batch is applied to, in order,
	// when there are several (a saga); empty means one destination.
	Steps []string `json:"steps,omitempty"`
	// Definition is the fingerprint of the integration's definition the run
	// is pinned to (pipeline.Fingerprint): every later step of the run gets
	// it and uses that version, even when the integration is changed (and
	// the worker reloads it) while the run goes on.
	Definition string `json:"definition,omitempty"`
}

// StartRunInput registers a run and asks for its plan.
type StartRunInput struct {
	Integration string `json:"integration"`
	RunID       string `json:"runId"`
	WorkflowID  string `json:"workflowId"`
	Kind        string `json:"kind"` // "sync", "replay", "refresh", "repair" or "records"
	// Full ignores the checkpoint and reads the whole source.
	Full bool `json:"full"`
	// Trigger says who started the run (shown to a run refused the lease).
	Trigger string `json:"trigger,omitempty"`
	// Owner is the run whose writer lease this run writes under: empty for
	// a run that takes the lease itself; a reconciliation's repair run
	// names its reconciliation.
	Owner string `json:"owner,omitempty"`
}

// StartRunOutput carries the run's plan.
type StartRunOutput struct {
	Plan Plan `json:"plan"`
	// Counts are the run's counts as of its last committed batch: zero for
	// a new run; for a run reset in the Web UI (the same run, a new
	// execution), what the reset execution goes on from.
	Counts progress.Counts `json:"counts,omitzero"`
	// StartedBy is the Temporal identity that started the run (or reset
	// it), and Act what it did: start, reset or replay; both empty when
	// not audited. The run shows them in its memo.
	StartedBy string `json:"startedBy,omitempty"`
	Act       string `json:"act,omitempty"`
}

// PageRef names a staged page: the claim-check that travels through history
// instead of the records.
type PageRef struct {
	RunID string `json:"runId"`
	Page  int    `json:"page"`
	// Stage is the token FetchPage staged the page under: unique per fetch
	// attempt, so a retried fetch, or a reset execution that numbers its
	// pages afresh, never reads records another fetch staged.
	Stage string `json:"stage,omitempty"`
}

// FetchPageInput asks for one page.
type FetchPageInput struct {
	Integration string            `json:"integration"`
	Ref         PageRef           `json:"ref"`
	Position    cursor.Position   `json:"position"`
	Since       cursor.Checkpoint `json:"since"`
	Limit       int               `json:"limit"`
	// Definition pins the run's version of the integration (Plan.Definition):
	// the step uses that version, even after the integration changed. Empty
	// (runs started before runs were pinned) means the current one.
	Definition string `json:"definition,omitempty"`
}

// FetchPageOutput describes the fetched page (never its records).
type FetchPageOutput struct {
	Ref         PageRef         `json:"ref"`
	Count       int             `json:"count"`
	Next        cursor.Position `json:"next"`
	Done        bool            `json:"done"`
	NotModified bool            `json:"notModified"`
	Status      int             `json:"status"`
	// Last is the (cursor, key) of the page's last record in source order;
	// zero when the integration is not incremental or the page is empty.
	Last cursor.Checkpoint `json:"last"`
	// Advanced is true when Last is strictly after the request's Since: the
	// read made progress and the next page can be asked "since" Last.
	Advanced bool `json:"advanced"`
	// Memo is what to remember about the page once it is committed (only
	// when the source sent a validator).
	Memo     *cursor.Memo `json:"memo,omitempty"`
	CacheKey string       `json:"cacheKey,omitempty"`
	// QuarantineIDs are the quarantine entries a replay page holds, in order.
	QuarantineIDs []int64 `json:"quarantineIds,omitempty"`
	// Total is the number of records the source announced for the read the
	// page belongs to (connector.Page.Total); 0 when none.
	Total int `json:"total,omitempty"`
}

// StageRecordsInput hands records a workflow already has (from its input,
// a signal or an update) to the steps as one page: they are staged like a
// fetched page's, and only the reference travels on.
type StageRecordsInput struct {
	Integration string            `json:"integration"`
	Ref         PageRef           `json:"ref"`
	Records     []json.RawMessage `json:"records"`
	// Definition pins the run's version of the integration (Plan.Definition).
	Definition string `json:"definition,omitempty"`
}

// FetchQuarantinedInput asks for the next page of pending quarantined
// records of an integration, after AfterID and up to UpTo.
type FetchQuarantinedInput struct {
	Integration string  `json:"integration"`
	Ref         PageRef `json:"ref"`
	AfterID     int64   `json:"afterId"`
	UpTo        int64   `json:"upTo"`
	Limit       int     `json:"limit"`
	// Definition pins the run's version of the integration (Plan.Definition):
	// the step uses that version, even after the integration changed. Empty
	// (runs started before runs were pinned) means the current one.
	Definition string `json:"definition,omitempty"`
}

// BatchInput names the staged page a step works on.
type BatchInput struct {
	Integration string  `json:"integration"`
	Ref         PageRef `json:"ref"`
	// Since: records at or before it were committed already and are skipped.
	Since cursor.Checkpoint `json:"since"`
	// Definition pins the run's version of the integration (Plan.Definition):
	// the step uses that version, even after the integration changed. Empty
	// (runs started before runs were pinned) means the current one.
	Definition string `json:"definition,omitempty"`
}

// ValidateOutput counts the page's records by outcome.
type ValidateOutput struct {
	Skipped int `json:"skipped"`
	Valid   int `json:"valid"`
	Invalid int `json:"invalid"`
}

// TransformOutput counts the records transformed and those quarantined.
type TransformOutput struct {
	Transformed int `json:"transformed"`
	Invalid     int `json:"invalid"`
	// Dropped counts, per field, the rows that carried a field no
	// destination stores (a Go Transform's extra fields): the values are
	// not written, and the worker logs a warning naming them.
	Dropped map[string]int `json:"dropped,omitempty"`
	// Unread counts, per row field, the records that lacked the source
	// path the mapping reads into it, where the schema does not describe
	// that path (a misspelt path reads null from every record): logged as
	// a warning too.
	Unread map[string]int `json:"unread,omitempty"`
}

// ApplyInput writes one transformed page to the destination.
type ApplyInput struct {
	BatchInput
	// Seq orders applied batches within the run (1-based); compensation
	// runs them in reverse.
	Seq    int  `json:"seq"`
	Atomic bool `json:"atomic"`
	// Checkpoint is saved in the same transaction as the batch.
	Checkpoint cursor.Checkpoint `json:"checkpoint"`
	// Next is the position of the following page, saved so an unfinished
	// full read resumes there.
	Next cursor.Position `json:"next"`
	// Memo, when set, is remembered under CacheKey after the commit.
	Memo     *cursor.Memo `json:"memo,omitempty"`
	CacheKey string       `json:"cacheKey,omitempty"`
	// Counts are the run's counters so far, stored with the batch so the
	// runs table shows live progress.
	Counts progress.Counts `json:"counts"`
	// Replay marks a replay run's batch: it leaves the integration's
	// checkpoint and page memos alone and marks replayed the entries of
	// QuarantineIDs (one per record of the page) whose records it applied;
	// records still invalid stay pending with their new errors.
	Replay        bool    `json:"replay,omitempty"`
	QuarantineIDs []int64 `json:"quarantineIds,omitempty"`
	// Kind is the run's kind when it is "refresh" (PostgreSQL steps record
	// the keys they see, for the sweep at the end), "repair" or "records"
	// (the batch leaves the checkpoint alone); empty otherwise.
	Kind string `json:"kind,omitempty"`
	// Step is the destination this apply writes to (index into the plan's
	// Steps). Only the last step saves the checkpoint.
	Step int `json:"step,omitempty"`
	// Skip lists the page's rows (positions among its transformed rows)
	// earlier steps refused: they were quarantined and are not sent on.
	Skip []int `json:"skip,omitempty"`
}

// ApplyOutput reports what the batch changed.
type ApplyOutput struct {
	Inserted   int `json:"inserted"`
	Updated    int `json:"updated"`
	Unchanged  int `json:"unchanged"`
	Stale      int `json:"stale"`
	Duplicates int `json:"duplicates"`
	// Rejected rows were refused by the destination and quarantined.
	Rejected int `json:"rejected"`
	// Replayed is true when the batch had been committed by an earlier
	// attempt and nothing was written this time.
	Replayed bool `json:"replayed"`
	// Refused lists the page's rows refused by this step or an earlier
	// one: the next step's Skip.
	Refused []int `json:"refused,omitempty"`
}

// CompensateInput undoes one applied batch of an atomic run, in one
// destination (Step).
type CompensateInput struct {
	Integration string `json:"integration"`
	RunID       string `json:"runId"`
	Seq         int    `json:"seq"`
	Step        int    `json:"step,omitempty"`
	// Definition pins the run's version of the integration (Plan.Definition):
	// the step uses that version, even after the integration changed. Empty
	// (runs started before runs were pinned) means the current one.
	Definition string `json:"definition,omitempty"`
}

// BeginCompensationInput starts undoing a run.
type BeginCompensationInput struct {
	Integration string `json:"integration"`
	Kind        string `json:"kind,omitempty"`
	RunID       string `json:"runId"`
	// Definition pins the run's version of the integration (Plan.Definition):
	// the step uses that version, even after the integration changed. Empty
	// (runs started before runs were pinned) means the current one.
	Definition string `json:"definition,omitempty"`
}

// BeginCompensationOutput says where compensation starts.
type BeginCompensationOutput struct {
	// LastBatch is the highest batch of the run with before-images left,
	// including batches an earlier execution applied before a reset.
	LastBatch int `json:"lastBatch"`
}

// CompensateOutput counts the rows restored.
type CompensateOutput struct {
	Restored int `json:"restored"`
}

// FinishRunInput records how a run ended.
type FinishRunInput struct {
	Integration string            `json:"integration"`
	Kind        string            `json:"kind,omitempty"` // "" or "sync", or "replay"
	RunID       string            `json:"runId"`
	Status      string            `json:"status"`
	Counts      progress.Counts   `json:"counts"`
	To          cursor.Checkpoint `json:"to"`
	Error       string            `json:"error,omitempty"`
	ErrorType   string            `json:"errorType,omitempty"`
	// Definition pins the run's version of the integration (Plan.Definition):
	// the step uses that version, even after the integration changed. Empty
	// (runs started before runs were pinned) means the current one.
	Definition string `json:"definition,omitempty"`
	// Owner is StartRunInput.Owner: a run writing under another run's
	// lease leaves it in place.
	Owner string `json:"owner,omitempty"`
}

// SweepRefreshInput ends a refresh run that read the whole source: every
// PostgreSQL destination drops the rows the run did not write, except the
// rows of records it quarantined. HTTP destinations are not swept.
type SweepRefreshInput struct {
	Integration string `json:"integration"`
	RunID       string `json:"runId"`
	// Seq is the batch number of the sweep, after the run's last batch: an
	// atomic run's compensation undoes it with the batches.
	Seq int `json:"seq"`
	// Atomic keeps the before-images of the rows deleted.
	Atomic bool `json:"atomic"`
	// Counts are the run's counters so far (the sweep records them with
	// its deletions, as a batch does).
	Counts progress.Counts `json:"counts"`
	// Next is the run's read position, recorded with the counters.
	Next cursor.Position `json:"next"`
	// Definition pins the run's version of the integration (Plan.Definition).
	Definition string `json:"definition,omitempty"`
}

// SweepRefreshOutput counts the rows deleted.
type SweepRefreshOutput struct {
	// Deleted is the number of rows deleted, over every destination.
	Deleted int `json:"deleted"`
	// Steps are the destinations swept, in the integration's order.
	Steps []SweptStep `json:"steps,omitempty"`
	// Replayed is true when an earlier attempt had committed the sweep and
	// nothing was deleted this time.
	Replayed bool `json:"replayed,omitempty"`
}

// SweptStep is what the sweep did in one destination.
type SweptStep struct {
	// Step is the destination's index in the plan's Steps; Name its name.
	Step    int    `json:"step"`
	Name    string `json:"name"`
	Deleted int    `json:"deleted"`
}
