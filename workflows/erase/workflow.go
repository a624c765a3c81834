// Package erase is the erasure workflow: a subject (an integration's
// record key) is deleted from every destination of the integration and
// from tether's own state, durably, with a report per place. Start it with
// `tether erase --integration NAME --key KEY`, or from any tool:
//
//	temporal workflow start --task-queue tether-sync --type EraseWorkflow \
//	  --input '{"integration":"crm-contacts","key":"42","reason":"request 2026-118"}'
package erase

import (
	"fmt"
	"time"

	"go.temporal.io/sdk/temporal"
	"go.temporal.io/sdk/worker"
	"go.temporal.io/sdk/workflow"

	"github.com/tetherflow/tether/activities/lib/failure"
	"github.com/tetherflow/tether/activities/syncstep"
)

// WorkflowType is the erasure workflow's registered name.
const WorkflowType = "EraseWorkflow"

// options: every step retried with backoff until it is done, or for a day.
var options = workflow.ActivityOptions{
	StartToCloseTimeout:    5 * time.Minute,
	ScheduleToCloseTimeout: 24 * time.Hour,
	RetryPolicy:            &temporal.RetryPolicy{InitialInterval: time.Second, BackoffCoefficient: 2, MaximumInterval: 5 * time.Minute},
}

// EraseWorkflow erases in.Key from in.Integration's destinations, then from
// tether's own state (which also audits the erasure), and likewise in every
// other integration that reads the same source and has run (unless
// in.Only), and returns what was done where. A place that cannot be erased
// (a destination that cannot delete, a step that failed for good) is in
// the report with why, and the report is then not Complete; the other
// places are still erased.
func EraseWorkflow(ctx workflow.Context, in syncstep.EraseInput) (syncstep.EraseReport, error) {
	if in.Integration == "" || in.Key == "" {
		return syncstep.EraseReport{}, temporal.NewNonRetryableApplicationError(
			`input: "integration" and "key" are required, e.g. {"integration":"crm-contacts","key":"42"}`, failure.TypeConfig, nil)
	}
	ctx = workflow.WithActivityOptions(ctx, options)
	rep := syncstep.EraseReport{Integration: in.Integration, Key: in.Key, Complete: true}
	if v := workflow.GetVersion(ctx, "erase-related", workflow.DefaultVersion, 1); v == 1 && !in.Only {
		related, err := syncstep.EraseRelated.Run(ctx, in)
		if err != nil {
			rep.Places = append(rep.Places, syncstep.Erased{Place: "integrations reading the same source", Note: fmt.Sprintf("not looked for: %v", err)})
		}
		rep.Related = related
	}
	for _, name := range append([]string{in.Integration}, rep.Related...) {
		sub := in
		if name != in.Integration {
			sub.Integration, sub.Of = name, in.Integration
		}
		for _, step := range []struct {
			what string
			act  syncstep.Activity[syncstep.EraseInput, []syncstep.Erased]
		}{{"destinations", syncstep.EraseDestinations}, {"tether's state", syncstep.EraseState}} {
			done, err := step.act.Run(ctx, sub)
			if err != nil {
				done = []syncstep.Erased{{Place: step.what, Note: fmt.Sprintf("not erased: %v", err)}}
			}
			for i := range done {
				if sub.Of != "" {
					done[i].Integration = name
				}
			}
			rep.Places = append(rep.Places, done...)
		}
	}
	for _, p := range rep.Places {
		if p.Note != "" {
			rep.Complete = false
		}
	}
	workflow.GetLogger(ctx).Info("erasure done", "complete", rep.Complete, "places", len(rep.Places))
	return rep, nil
}

// Register puts the workflow on a worker.
func Register(r worker.WorkflowRegistry) {
	r.RegisterWorkflowWithOptions(EraseWorkflow, workflow.RegisterOptions{Name: WorkflowType})
}
