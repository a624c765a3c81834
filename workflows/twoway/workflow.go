// Package twoway holds TwoWayWorkflow, which keeps the two sides of a
// two-way integration in sync: one long-lived workflow per integration
// (id "<integration>/twoway") runs a cycle every Definition.Every (or at
// once on the "sync-now" signal): the TwoWaySync step reads both sides'
// change feeds, resolves each changed record against its last synced
// state, and writes what must be written where. Conflicts a policy parks
// wait for a person, who resolves them with the "resolve" Update (the
// Temporal CLI, the Web UI, or tether conflicts resolve); the "progress"
// and "conflicts" queries show the counts and what waits.
package twoway

import (
	"fmt"
	"slices"
	"time"

	"go.temporal.io/sdk/temporal"
	"go.temporal.io/sdk/worker"
	"go.temporal.io/sdk/workflow"

	"github.com/tetherflow/tether/activities/syncstep"
)

// Names of the workflow and its handlers.
const (
	WorkflowType    = "TwoWayWorkflow"
	QueryProgress   = "progress"
	QueryConflicts  = "conflicts"
	UpdateResolve   = "resolve"
	SignalSyncNow   = "sync-now"
	maxCycles       = 500 // continue as new after this many cycles at most
	defaultInterval = 10 * time.Second
)

// WorkflowID is the id of an integration's two-way workflow.
func WorkflowID(integration string) string { return integration + "/twoway" }

// Progress is what the progress query answers.
type Progress struct {
	Integration string                    `json:"integration"`
	Sides       [2]string                 `json:"sides"`
	Cycles      int                       `json:"cycles"`
	Counts      syncstep.TwoWayCounts     `json:"counts"`
	Parked      []syncstep.ParkedConflict `json:"parked"`
	ParkedTotal int                       `json:"parkedTotal"`
	LastCycle   time.Time                 `json:"lastCycle,omitzero"`
	LastError   string                    `json:"lastError,omitempty"`
}

// cycleOptions: a cycle that fails three times in a row is shown in the
// progress (LastError), and the next one runs on the timer.
var cycleOptions = workflow.ActivityOptions{
	StartToCloseTimeout: 30 * time.Minute,
	HeartbeatTimeout:    10 * time.Second,
	RetryPolicy:         &temporal.RetryPolicy{InitialInterval: time.Second, BackoffCoefficient: 2, MaximumInterval: time.Minute, MaximumAttempts: 3},
}

var resolveOptions = workflow.ActivityOptions{
	StartToCloseTimeout: 2 * time.Minute,
	RetryPolicy: &temporal.RetryPolicy{InitialInterval: time.Second, BackoffCoefficient: 2, MaximumInterval: 30 * time.Second, MaximumAttempts: 10,
		NonRetryableErrorTypes: []string{syncstep.TypeNoConflict, syncstep.TypeBadResolution}},
}

// TwoWayWorkflow keeps in.Integration's sides in sync until cancelled.
func TwoWayWorkflow(ctx workflow.Context, in syncstep.TwoWayInput) error {
	if in.Integration == "" {
		return temporal.NewNonRetryableApplicationError(`input: "integration" is required`, "BadInput", nil)
	}
	p := &Progress{Integration: in.Integration, Cycles: in.Cycles, Counts: in.Totals}
	var fields []string
	busy := false // a cycle or a resolution is running: one at a time
	if err := workflow.SetQueryHandler(ctx, QueryProgress, func() (Progress, error) { return *p, nil }); err != nil {
		return err
	}
	if err := workflow.SetQueryHandler(ctx, QueryConflicts, func() ([]syncstep.ParkedConflict, error) { return p.Parked, nil }); err != nil {
		return err
	}
	err := workflow.SetUpdateHandlerWithOptions(ctx, UpdateResolve,
		func(ctx workflow.Context, r syncstep.ResolveInput) (syncstep.ResolveResult, error) {
			if err := workflow.Await(ctx, func() bool { return !busy }); err != nil {
				return syncstep.ResolveResult{}, err
			}
			busy = true
			defer func() { busy = false }()
			r.Integration, r.UpdateID = in.Integration, workflow.GetCurrentUpdateInfo(ctx).ID
			res, err := syncstep.ResolveConflict.Run(workflow.WithActivityOptions(ctx, resolveOptions), r)
			if err != nil {
				return res, err
			}
			p.Counts.ManuallyResolved++
			p.Parked = slices.DeleteFunc(p.Parked, func(c syncstep.ParkedConflict) bool { return c.ID == r.Conflict })
			p.ParkedTotal = max(p.ParkedTotal-1, len(p.Parked))
			return res, nil
		},
		workflow.UpdateHandlerOptions{Validator: func(r syncstep.ResolveInput) error {
			// The list shows the newest ones only when there are many: an
			// older one is checked by the step, before anything is written.
			if !slices.ContainsFunc(p.Parked, func(c syncstep.ParkedConflict) bool { return c.ID == r.Conflict }) && p.ParkedTotal <= len(p.Parked) {
				return fmt.Errorf("conflict %d is not waiting for a person in %s (the conflicts query lists those that are)", r.Conflict, in.Integration)
			}
			return syncstep.CheckChoice(r, fields)
		}})
	if err != nil {
		return err
	}
	wake := workflow.GetSignalChannel(ctx, SignalSyncNow)
	actx := workflow.WithActivityOptions(ctx, cycleOptions)
	for cycles := 0; ; cycles++ {
		if err := workflow.Await(ctx, func() bool { return !busy }); err != nil {
			return err
		}
		busy = true
		res, err := syncstep.TwoWaySync.Run(actx, syncstep.TwoWayInput{Integration: in.Integration})
		busy = false
		every := defaultInterval
		if err != nil {
			p.LastError = err.Error()
			workflow.GetLogger(ctx).Error("two-way cycle failed", "error", err)
		} else {
			p.LastError = ""
			p.Counts.Add(res.Counts)
			p.Parked, p.ParkedTotal, fields, p.Sides = res.Parked, res.ParkedTotal, res.Fields, res.Sides
			if res.Every > 0 {
				every = res.Every
			}
		}
		p.Cycles++
		p.LastCycle = workflow.Now(ctx)
		if cycles+1 >= maxCycles || workflow.GetInfo(ctx).GetContinueAsNewSuggested() {
			if err := workflow.Await(ctx, func() bool { return workflow.AllHandlersFinished(ctx) }); err != nil {
				return err
			}
			return workflow.NewContinueAsNewError(ctx, TwoWayWorkflow, syncstep.TwoWayInput{Integration: in.Integration, Totals: p.Counts, Cycles: p.Cycles})
		}
		timer := workflow.NewTimer(ctx, every)
		sel := workflow.NewSelector(ctx)
		sel.AddFuture(timer, func(workflow.Future) {})
		sel.AddReceive(wake, func(c workflow.ReceiveChannel, _ bool) {
			for c.ReceiveAsync(nil) {
			}
		})
		sel.Select(ctx)
		if ctx.Err() != nil {
			return ctx.Err()
		}
	}
}

// Register puts the workflow on a worker.
func Register(r worker.WorkflowRegistry) {
	r.RegisterWorkflowWithOptions(TwoWayWorkflow, workflow.RegisterOptions{Name: WorkflowType})
}
