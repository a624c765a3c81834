package datasync

import (
	"errors"
	"fmt"
	"strings"
	"time"

	"go.temporal.io/sdk/temporal"
	"go.temporal.io/sdk/workflow"

	"github.com/tetherflow/tether/activities/lib/progress"
	"github.com/tetherflow/tether/activities/syncstep"
	"github.com/tetherflow/tether/workflows/steps"
)

// sweepStep runs a refresh's sweep: one transaction over whole tables, so
// a longer budget than a batch, with heartbeats to notice a lost worker; a
// cancelled run waits for it to commit or roll back before compensating.
var sweepStep = workflow.ActivityOptions{
	StartToCloseTimeout: 30 * time.Minute,
	HeartbeatTimeout:    steps.HeartbeatTimeout,
	WaitForCancellation: true,
	RetryPolicy: &temporal.RetryPolicy{
		InitialInterval:    time.Second,
		BackoffCoefficient: 2,
		MaximumInterval:    time.Minute,
		MaximumAttempts:    8,
	},
}

// sweep ends a refresh that read the whole source: SweepRefresh deletes the
// destination rows the run did not see, as the run's last batch (so an
// atomic run's compensation undoes it with the others). A refresh stopped
// by MaxPages did not see the whole source and deletes nothing.
func (r *run) sweep(ctx workflow.Context) {
	if r.in.MaxPages > 0 && r.st.Counts.Pages >= r.in.MaxPages {
		r.log.Warn("refresh stopped at maxPages, maybe before the end of the source: no row is deleted",
			"pages", r.st.Counts.Pages, "maxPages", r.in.MaxPages)
		return
	}
	r.st.Seq++
	seq := r.st.Seq
	r.st.ApplyStarted = seq
	r.st.ApplyStep = len(r.steps()) - 1
	r.progressed(ctx, syncstep.SweepRefreshName)
	out, err := syncstep.SweepRefresh.Run(steps.WithSummary(ctx, sweepStep, syncstep.SweepRefreshName+" · delete the rows the source no longer has"), syncstep.SweepRefreshInput{
		Integration: r.in.Integration,
		RunID:       r.st.RunID,
		Seq:         seq,
		Atomic:      r.st.Plan.Atomic,
		Counts:      r.st.Counts,
		Next:        r.st.Position,
		Definition:  r.st.Plan.Definition,
	})
	if err != nil {
		r.failUnlessCancelled(ctx, syncstep.SweepRefreshName, err)
		return
	}
	r.st.Counts.Deleted += out.Deleted
	if len(r.st.Plan.Steps) > 0 {
		for _, sw := range out.Steps {
			if r.st.Destinations == nil {
				r.st.Destinations = map[string]progress.Counts{}
			}
			r.st.Destinations[sw.Name] = r.st.Destinations[sw.Name].Add(progress.Counts{Deleted: sw.Deleted})
		}
	}
	r.applyNext = seq + 1
	r.log.Info("refresh swept", "integration", r.in.Integration, "deleted", out.Deleted)
}

func (r *run) finish(ctx workflow.Context, errMsg string) error {
	errType := ""
	var appErr *temporal.ApplicationError
	if errors.As(r.err, &appErr) {
		errType = appErr.Type()
	}
	if errMsg == "" && len(r.st.Warnings) > 0 {
		// tether runs shows a completed run's warnings where a failed
		// run's error is.
		errMsg, errType = "warning: "+strings.Join(r.st.Warnings, "; "), syncstep.ErrorTypeWarning
	}
	_ = workflow.UpsertTypedSearchAttributes(ctx, StatusAttr.ValueSet(r.status))
	details := r.details()
	if errMsg != "" {
		details += "\n\nwhy: " + errMsg
	}
	workflow.SetCurrentDetails(ctx, details)
	_, err := syncstep.FinishRun.Run(steps.WithSummary(ctx, shortStep, fmt.Sprintf("%s · %s", syncstep.FinishRunName, r.status)), syncstep.FinishRunInput{
		Integration: r.in.Integration,
		Kind:        r.kind(),
		RunID:       r.st.RunID,
		Status:      r.status,
		Counts:      r.st.Counts,
		To:          r.st.Checkpoint,
		Error:       errMsg,
		ErrorType:   errType,
		Definition:  r.st.Plan.Definition,
		Owner:       r.in.Repair,
	})
	return err
}
