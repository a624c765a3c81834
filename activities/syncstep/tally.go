package syncstep

import "github.com/tetherflow/tether/activities/lib/progress"

// Tallied is a step's output that says what the step did to the records,
// by outcome; the worker's interceptor (workers/telemetry) adds it to
// tether_records_total when the step succeeds. A step that repeats work an
// earlier attempt committed (Replayed) tallies nothing, so a retried batch
// counts once.
type Tallied interface {
	Tally() map[string]int
}

// Record outcomes of tether_records_total.
const (
	RecordsFetched   = "fetched"
	RecordsValid     = "valid"
	RecordsInvalid   = "invalid"
	RecordsSkipped   = "skipped"
	RecordsApplied   = "applied"
	RecordsUnchanged = "unchanged"
	RecordsRejected  = "rejected"
	RecordsDeleted   = "deleted"
)

// Tally implements Tallied.
func (o FetchPageOutput) Tally() map[string]int { return map[string]int{RecordsFetched: o.Count} }

// Tally implements Tallied.
func (o ValidateOutput) Tally() map[string]int {
	return map[string]int{RecordsValid: o.Valid, RecordsInvalid: o.Invalid, RecordsSkipped: o.Skipped}
}

// Tally implements Tallied: records the transform refused are invalid.
func (o TransformOutput) Tally() map[string]int { return map[string]int{RecordsInvalid: o.Invalid} }

// Tally implements Tallied.
func (o ApplyOutput) Tally() map[string]int {
	if o.Replayed {
		return nil
	}
	return map[string]int{
		RecordsApplied: o.Inserted + o.Updated, RecordsUnchanged: o.Unchanged,
		RecordsSkipped: o.Stale + o.Duplicates, RecordsRejected: o.Rejected,
	}
}

// Tally implements Tallied.
func (o SweepRefreshOutput) Tally() map[string]int {
	if o.Replayed {
		return nil
	}
	return map[string]int{RecordsDeleted: o.Deleted}
}

// ErrorTypeWarning is FinishRunInput.ErrorType of a run that completed
// with warnings (its Error starts "warning: ").
const ErrorTypeWarning = "Warning"

// Run outcomes of tether_runs_total.
const (
	RunCompleted = "completed"
	RunWarned    = "warned"
	RunFailed    = "failed"
	RunCanceled  = "canceled"
)

// RunOutcome is the outcome a run finished by this FinishRun has, for
// tether_runs_total: completed, warned (completed with warnings), failed
// (compensated or not) or canceled; "" while the run goes on.
func (in FinishRunInput) RunOutcome() string {
	switch in.Status {
	case progress.StatusCompleted:
		if in.ErrorType == ErrorTypeWarning {
			return RunWarned
		}
		return RunCompleted
	case progress.StatusFailed, progress.StatusCompensated:
		return RunFailed
	case progress.StatusCancelled:
		return RunCanceled
	}
	return ""
}
