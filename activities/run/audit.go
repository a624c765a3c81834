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
// on it: who started it (or, for a reset execution, reset it), whether it
// continues an earlier execution (continue-as-new: no new act), and who
// asked to cancel it: Temporal identities.
type Acts struct {
	StartedBy, ResetBy, CancelledBy string
	Continued                       bool
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
			a.ResetBy = at.GetIdentity()
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
	actor, action = acts.StartedBy, store.AuditStart
	switch {
	case acts.ResetBy != "":
		actor, action = acts.ResetBy, store.AuditReset
	case in.Kind == store.KindReplay:
		action = store.AuditReplay
	}
	info := activity.GetInfo(ctx)
	err = a.Store.RecordAudit(ctx, store.AuditEntry{Actor: actor, Via: in.Trigger, Action: action, Integration: in.Integration,
		Target: info.WorkflowExecution.ID, TargetRun: info.WorkflowExecution.RunID,
		Details: map[string]any{"runId": in.RunID, "kind": in.Kind, "full": in.Full}})
	return actor, action, err
}

// auditCancel records who asked to cancel a run that ended cancelled.
func (a *Activities) auditCancel(ctx context.Context, in syncstep.FinishRunInput) error {
	if a.History == nil || (in.Status != progress.StatusCancelled && in.Status != progress.StatusCompensated) {
		return nil
	}
	acts, err := ReadActs(ctx, a.History)
	if err != nil || acts.CancelledBy == "" {
		return err
	}
	info := activity.GetInfo(ctx)
	return a.Store.RecordAudit(ctx, store.AuditEntry{Actor: acts.CancelledBy, Action: store.AuditCancel, Integration: in.Integration,
		Target: info.WorkflowExecution.ID, TargetRun: info.WorkflowExecution.RunID, Details: map[string]any{"runId": in.RunID, "status": in.Status}})
}
