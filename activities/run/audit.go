package run

import (
	"context"

	enumspb "go.temporal.io/api/enums/v1"
	historypb "go.temporal.io/api/history/v1"
	"go.temporal.io/sdk/activity"
	"go.temporal.io/sdk/client"

	"github.com/tetherflow/tether/activities/lib/progress"
	"github.com/tetherflow/tether/activities/store"
	"github.com/tetherflow/tether/activities/syncstep"
)

// History reads a workflow execution's history: the Temporal client.
type History interface {
	GetWorkflowHistory(ctx context.Context, workflowID, runID string, isLongPoll bool, filterType enumspb.HistoryEventFilterType) client.HistoryEventIterator
}

// Acts are what the history of a step's execution says about who acted
// on it: who started it, who reset it (each reset the history holds, the
// last one made this execution), whether it continues an earlier
// execution (continue-as-new: no new act), and who asked to cancel it:
// Temporal identities.
type Acts struct {
	StartedBy, CancelledBy string
	Resets                 []Reset
	Continued              bool
}

// serverIdentity is the identity the Temporal server writes on a reset's
// event instead of the caller's.
const serverIdentity = "history-service"

// Reset is one reset of the workflow: who made it, why, and which
// execution it made from which.
type Reset struct {
	By, Reason, BaseRun, NewRun string
}

// Reset is the reset that made the execution runID, if one did.
func (a Acts) Reset(runID string) (Reset, bool) {
	for _, r := range a.Resets {
		if r.NewRun == runID {
			return r, true
		}
	}
	return Reset{}, false
}

// ReadActs reads the acts from the history of the step's execution.
func ReadActs(ctx context.Context, h History) (Acts, error) {
	info := activity.GetInfo(ctx)
	var a Acts
	iter := h.GetWorkflowHistory(ctx, info.WorkflowExecution.ID, info.WorkflowExecution.RunID, false, enumspb.HISTORY_EVENT_FILTER_TYPE_ALL_EVENT)
	for iter.HasNext() {
		ev, err := iter.Next()
		if err != nil {
			return a, err
		}
		a.note(ev)
	}
	return a, nil
}

func (a *Acts) note(ev *historypb.HistoryEvent) {
	switch ev.GetEventType() {
	case enumspb.EVENT_TYPE_WORKFLOW_EXECUTION_STARTED:
		at := ev.GetWorkflowExecutionStartedEventAttributes()
		a.StartedBy, a.Continued = at.GetIdentity(), at.GetContinuedExecutionRunId() != ""
	case enumspb.EVENT_TYPE_WORKFLOW_TASK_FAILED:
		if at := ev.GetWorkflowTaskFailedEventAttributes(); at.GetCause() == enumspb.WORKFLOW_TASK_FAILED_CAUSE_RESET_WORKFLOW {
			by := at.GetIdentity()
			if by == serverIdentity {
				by = "" // the server's own: it keeps no identity of who reset
			}
			a.Resets = append(a.Resets, Reset{By: by, Reason: at.GetFailure().GetMessage(),
				BaseRun: at.GetBaseRunId(), NewRun: at.GetNewRunId()})
		}
	case enumspb.EVENT_TYPE_WORKFLOW_EXECUTION_CANCEL_REQUESTED:
		a.CancelledBy = ev.GetWorkflowExecutionCancelRequestedEventAttributes().GetIdentity()
	}
}

// auditStart records who started, reset or replayed the run, and returns
// who and what for the run's memo; nothing without a history reader, or
// for an execution that continues an earlier one.
func (a *Activities) auditStart(ctx context.Context, in syncstep.StartRunInput) (actor, action string, err error) {
	if a.History == nil {
		return "", "", nil
	}
	acts, err := ReadActs(ctx, a.History)
	if err != nil || acts.Continued {
		return "", "", err
	}
	info := activity.GetInfo(ctx)
	if r, ok := acts.Reset(info.WorkflowExecution.RunID); ok {
		// A reset to the run's start: the resets are recorded as such.
		return r.By, store.AuditReset, a.auditResets(ctx, in.Integration, acts)
	}
	actor, action = acts.StartedBy, store.AuditStart
	if in.Kind == store.KindReplay {
		action = store.AuditReplay
	}
	err = a.Store.RecordAudit(ctx, store.AuditEntry{Actor: actor, Via: in.Trigger, Action: action, Integration: in.Integration,
		Target: info.WorkflowExecution.ID, TargetRun: info.WorkflowExecution.RunID,
		Details: map[string]any{"runId": in.RunID, "kind": in.Kind, "full": in.Full}})
	return actor, action, err
}

// auditResets records each reset the run's history holds, once: a reset
// to the run's start is recorded by its start step, one to a later point
// (the start step does not run again) by its finish step.
func (a *Activities) auditResets(ctx context.Context, integration string, acts Acts) error {
	id := activity.GetInfo(ctx).WorkflowExecution.ID
	for _, r := range acts.Resets {
		if err := a.Store.RecordAudit(ctx, store.AuditEntry{Actor: r.By, Action: store.AuditReset, Integration: integration,
			Target: id, TargetRun: r.NewRun, Details: map[string]any{"reason": r.Reason, "baseRun": r.BaseRun}}); err != nil {
			return err
		}
	}
	return nil
}

// auditFinish records the resets of a run that finished, and who asked to
// cancel a run that ended cancelled.
func (a *Activities) auditFinish(ctx context.Context, in syncstep.FinishRunInput) error {
	if a.History == nil {
		return nil
	}
	acts, err := ReadActs(ctx, a.History)
	if err != nil {
		return err
	}
	if err := a.auditResets(ctx, in.Integration, acts); err != nil {
		return err
	}
	if acts.CancelledBy == "" || (in.Status != progress.StatusCancelled && in.Status != progress.StatusCompensated) {
		return nil
	}
	info := activity.GetInfo(ctx)
	return a.Store.RecordAudit(ctx, store.AuditEntry{Actor: acts.CancelledBy, Action: store.AuditCancel, Integration: in.Integration,
		Target: info.WorkflowExecution.ID, TargetRun: info.WorkflowExecution.RunID, Details: map[string]any{"runId": in.RunID, "status": in.Status}})
}
