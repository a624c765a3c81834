package cli

import (
	"context"
	"errors"
	"fmt"

	commonpb "go.temporal.io/api/common/v1"
	enumspb "go.temporal.io/api/enums/v1"
	"go.temporal.io/api/workflowservice/v1"
	"go.temporal.io/sdk/client"
	"go.temporal.io/sdk/converter"

	"github.com/tetherflow/tether/activities/store"
	"github.com/tetherflow/tether/workers/app"
	"github.com/tetherflow/tether/workflows/datasync"
)

// cmdReset resets a run, as the Web UI's Reset does, and audits who did
// it: the Temporal server keeps no identity for a reset, so one made in
// the Web UI or with the Temporal CLI is audited as unknown.
func cmdReset(ctx context.Context, e *env, args []string) error {
	fs := e.flags("reset")
	runID := fs.String("run", "", "the run id (default: the latest run of the workflow id)")
	eventID := fs.Int64("event-id", 0, "reset to the end of the workflow task completed at this event (default: the first workflow task: the run starts again from its checkpoint)")
	reason := fs.String("reason", "", "why (required; kept in the history and the audit)")
	watch := fs.Bool("watch", false, "show a progress bar until the new run ends")
	pos, err := parse(fs, args)
	if err != nil {
		return err
	}
	if len(pos) != 1 {
		return usageError{errors.New("want exactly one WORKFLOW_ID, e.g. tether reset crm-contacts/sync/cli/20261207T101500.000Z --reason \"source fixed\"")}
	}
	if *reason == "" {
		return usageError{errors.New("--reason is required: say why the run is reset")}
	}
	c, err := e.dial(ctx)
	if err != nil {
		return err
	}
	defer c.Close()
	desc, err := c.DescribeWorkflowExecution(ctx, pos[0], *runID)
	if err != nil {
		return fmt.Errorf("run %s: %w", pos[0], err)
	}
	base := desc.GetWorkflowExecutionInfo().GetExecution().GetRunId()
	if *eventID == 0 {
		if *eventID, err = firstTaskCompleted(ctx, c, pos[0], base); err != nil {
			return err
		}
	}
	identity := app.CLIIdentity()
	resp, err := c.ResetWorkflowExecution(ctx, &workflowservice.ResetWorkflowExecutionRequest{
		Namespace:                 e.namespace,
		WorkflowExecution:         &commonpb.WorkflowExecution{WorkflowId: pos[0], RunId: base},
		Reason:                    *reason,
		WorkflowTaskFinishEventId: *eventID,
		RequestId:                 fmt.Sprintf("tether-reset-%s-%d", base, *eventID),
		Identity:                  identity,
	})
	if err != nil {
		return fmt.Errorf("reset %s: %w", pos[0], err)
	}
	newRun := resp.GetRunId()
	fmt.Fprintf(e.out, "reset %s\n  from run:   %s (event %d)\n  new run id: %s\n  Web UI:     %s\n",
		pos[0], base, *eventID, newRun, RunLink(e.uiURL, e.namespace, pos[0], newRun))
	if db, err := e.db(ctx); err != nil {
		fmt.Fprintf(e.errOut, "warning: the reset is audited without who made it: %v\n", err)
	} else {
		err := store.New(db).RecordAudit(ctx, store.AuditEntry{Actor: identity, Via: "tether reset", Action: store.AuditReset,
			Integration: integrationOf(desc), Target: pos[0], TargetRun: newRun,
			Details: map[string]any{"reason": *reason, "baseRun": base}})
		db.Close()
		if err != nil {
			fmt.Fprintf(e.errOut, "warning: the reset is audited without who made it: %v\n", err)
		}
	}
	if !*watch {
		return nil
	}
	return e.watch(ctx, c, pos[0], newRun, false)
}

// firstTaskCompleted is the event id of the run's first completed workflow
// task: the Web UI's "Reset → first workflow task".
func firstTaskCompleted(ctx context.Context, c client.Client, workflowID, runID string) (int64, error) {
	iter := c.GetWorkflowHistory(ctx, workflowID, runID, false, enumspb.HISTORY_EVENT_FILTER_TYPE_ALL_EVENT)
	for iter.HasNext() {
		ev, err := iter.Next()
		if err != nil {
			return 0, fmt.Errorf("read the history of %s: %w", workflowID, err)
		}
		if ev.GetEventType() == enumspb.EVENT_TYPE_WORKFLOW_TASK_COMPLETED {
			return ev.GetEventId(), nil
		}
	}
	return 0, fmt.Errorf("run %s of %s has no completed workflow task to reset to", runID, workflowID)
}

// integrationOf is the integration a run syncs, from its search
// attribute; empty when it has none.
func integrationOf(desc *workflowservice.DescribeWorkflowExecutionResponse) string {
	var name string
	p := desc.GetWorkflowExecutionInfo().GetSearchAttributes().GetIndexedFields()[datasync.IntegrationAttr.GetName()]
	if p != nil {
		_ = converter.GetDefaultDataConverter().FromPayload(p, &name)
	}
	return name
}
