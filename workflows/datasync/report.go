package datasync

import (
	"fmt"

	"go.temporal.io/sdk/workflow"

	"github.com/tetherflow/tether/activities/lib/cursor"
	"github.com/tetherflow/tether/activities/lib/progress"
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
		StartedAt:      r.st.StartedAt,
		LastProgressAt: r.lastProgress,
		Done:           r.status != "",
	}, nil
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

func (r *run) progressed(ctx workflow.Context, step string) {
	r.step = step
	r.lastProgress = workflow.Now(ctx)
}
