package datasync

import (
	"fmt"
	"maps"
	"slices"
	"strings"
	"time"

	"go.temporal.io/sdk/workflow"

	"github.com/tetherflow/tether/activities/lib/cursor"
	"github.com/tetherflow/tether/activities/lib/progress"
	"github.com/tetherflow/tether/activities/syncstep"
)

func (r *run) report() (progress.Report, error) {
	cursor := r.st.Checkpoint.Cursor
	if r.st.Checkpoint.Key != "" {
		cursor = fmt.Sprintf("%s / %s", r.st.Checkpoint.Cursor, r.st.Checkpoint.Key)
	}
	if cursor == "" || cursor == " / " {
		cursor = positionString(r.st.Position)
	}
	return progress.Report{
		Integration:    r.in.Integration,
		RunID:          r.st.RunID,
		Status:         r.statusOr(progress.StatusRunning),
		Step:           r.step,
		Cursor:         cursor,
		Counts:         r.st.Counts,
		Destinations:   r.st.Destinations,
		PagesInFlight:  r.inFlight,
		Throttled:      r.throttled,
		LastError:      r.lastError,
		Warnings:       r.st.Warnings,
		StartedAt:      r.st.StartedAt,
		LastProgressAt: r.lastProgress,
		Done:           r.status != "",
		Retrying:       r.retries(),
	}, nil
}

// followRetries keeps what the worker says of retried steps
// (progress.SignalStepRetry): a failed attempt with its next try, or the
// step's recovery. It only feeds the progress query.
func (r *run) followRetries(ctx workflow.Context) {
	ch := workflow.GetSignalChannel(ctx, progress.SignalStepRetry)
	for {
		var rt progress.Retry
		if more := ch.Receive(ctx, &rt); !more {
			return
		}
		if r.retrying == nil {
			r.retrying = map[string]progress.Retry{}
		}
		if rt.NextAt.IsZero() {
			delete(r.retrying, rt.Key())
		} else {
			r.retrying[rt.Key()] = rt
		}
		workflow.SetCurrentDetails(ctx, r.details())
	}
}

// retries are the steps being retried, by step and page; none once the
// run has ended.
func (r *run) retries() []progress.Retry {
	if r.status != "" || len(r.retrying) == 0 {
		return nil
	}
	out := make([]progress.Retry, 0, len(r.retrying))
	for _, k := range slices.Sorted(maps.Keys(r.retrying)) {
		out = append(out, r.retrying[k])
	}
	return out
}

func (r *run) statusOr(s string) string {
	if r.status != "" {
		return r.status
	}
	return s
}

func positionString(p cursor.Position) string {
	switch {
	case p.NextURL != "":
		return p.NextURL
	case p.Token != "":
		return "token " + p.Token
	case p.Offset > 0:
		return fmt.Sprintf("offset %d", p.Offset)
	case p.Page > 0:
		return fmt.Sprintf("page %d", p.Page)
	}
	return "start"
}

// progressed records the step the run is at: the progress query's step,
// and the workflow's current details in the Web UI.
func (r *run) progressed(ctx workflow.Context, step string) {
	r.step = step
	r.lastProgress = workflow.Now(ctx)
	workflow.SetCurrentDetails(ctx, r.details())
}

// details says in Markdown what the run is doing and has done, for the
// Web UI's current details.
func (r *run) details() string {
	c := r.st.Counts
	doing := r.step
	if r.status != "" && r.status != progress.StatusRunning {
		doing = r.status
	}
	s := fmt.Sprintf("**%s** %s: %s\n\nfetched %d · valid %d · invalid %d · applied %d (inserted %d, updated %d) · unchanged %d · skipped %d",
		r.in.Integration, r.kind(), doing, c.Fetched, c.Valid, c.Invalid, c.Applied(), c.Inserted, c.Updated, c.Unchanged, c.Skipped)
	if c.Deleted > 0 {
		s += fmt.Sprintf(" · deleted %d", c.Deleted)
	}
	if r.throttled != "" {
		s += "\n\nwaiting: " + r.throttled
	}
	for _, rt := range r.retries() {
		s += fmt.Sprintf("\n\nretrying: %s %d, attempt %d failed, next try at %s: %s",
			rt.Step, rt.Page, rt.Attempt, rt.NextAt.UTC().Format(time.TimeOnly), rt.Error)
	}
	if r.lastError != "" {
		s += "\n\nlast error: " + r.lastError
	}
	return s
}

// fetchSummary names a source page in the Web UI's timeline: the records
// it should hold, and where the source is asked from.
func (r *run) fetchSummary(page int) string {
	from := r.st.Counts.Fetched + 1
	s := fmt.Sprintf("%s %d · records %d-%d", syncstep.FetchPageName, page, from, from+r.st.Plan.BatchSize-1)
	if at := r.where(); at != "" {
		s += " · " + at
	}
	return s
}

// where says where the source is asked next, as the source sees it:
// "page 3", "offset 2000", a next link, "since <cursor>"; "" at the start
// of a full read.
func (r *run) where() string {
	var parts []string
	switch at := positionString(r.st.Position); {
	case at != "start":
		parts = append(parts, at)
	case r.st.Since.Cursor != "":
		parts = append(parts, "first page")
	}
	if r.st.Since.Cursor != "" {
		parts = append(parts, "since "+r.st.Since.Cursor)
	}
	return strings.Join(parts, " ")
}
