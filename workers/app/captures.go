package app

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"strings"

	enumspb "go.temporal.io/api/enums/v1"
	"go.temporal.io/api/serviceerror"
	"go.temporal.io/api/workflowservice/v1"
	"go.temporal.io/sdk/client"

	"github.com/tetherflow/tether/activities/integration"
	"github.com/tetherflow/tether/workflows/capture"
)

// CaptureClient is the part of the Temporal client ApplyCaptures uses.
type CaptureClient interface {
	ExecuteWorkflow(ctx context.Context, options client.StartWorkflowOptions, workflow any, args ...any) (client.WorkflowRun, error)
	ListWorkflow(ctx context.Context, request *workflowservice.ListWorkflowExecutionsRequest) (*workflowservice.ListWorkflowExecutionsResponse, error)
	SignalWorkflow(ctx context.Context, workflowID, runID, signalName string, arg any) error
}

// CaptureResult says what ApplyCaptures did.
type CaptureResult struct {
	Started, Running, Removed []string
}

// ApplyCaptures keeps the capture workflows of the task queue in step
// with the integrations: every integration with events.capture has a
// running CaptureWorkflow (started if missing), and the capture of an
// integration that no longer has it (removed, or capture turned off) is
// told to remove itself, which drops its trigger, function and outbox.
func ApplyCaptures(ctx context.Context, c CaptureClient, namespace, taskQueue string, defs []integration.Definition) (CaptureResult, error) {
	var res CaptureResult
	want := map[string]bool{}
	var errs []error
	for _, d := range defs {
		if !d.Events.Capture {
			continue
		}
		want[d.Name] = true
		id := capture.WorkflowID(d.Name)
		_, err := c.ExecuteWorkflow(ctx, client.StartWorkflowOptions{
			ID: id, TaskQueue: taskQueue,
			WorkflowIDConflictPolicy: enumspb.WORKFLOW_ID_CONFLICT_POLICY_USE_EXISTING,
		}, capture.WorkflowType, capture.Input{Integration: d.Name})
		if err != nil {
			errs = append(errs, fmt.Errorf("start the change capture of %q (%s): %w", d.Name, id, err))
			continue
		}
		res.Running = append(res.Running, d.Name)
	}
	query := fmt.Sprintf("WorkflowType = '%s' AND ExecutionStatus = 'Running' AND TaskQueue = '%s'", capture.WorkflowType, strings.ReplaceAll(taskQueue, "'", "''"))
	var token []byte
	for {
		resp, err := c.ListWorkflow(ctx, &workflowservice.ListWorkflowExecutionsRequest{Namespace: namespace, Query: query, NextPageToken: token})
		if err != nil {
			errs = append(errs, fmt.Errorf("list the running change captures: %w", err))
			break
		}
		for _, ex := range resp.GetExecutions() {
			id := ex.GetExecution().GetWorkflowId()
			name, ok := strings.CutSuffix(id, "/capture")
			if !ok || want[name] {
				continue
			}
			err := c.SignalWorkflow(ctx, id, "", capture.SignalRemove, nil)
			var nf *serviceerror.NotFound
			if err != nil && !errors.As(err, &nf) {
				errs = append(errs, fmt.Errorf("remove the change capture of %q: %w", name, err))
				continue
			}
			res.Removed = append(res.Removed, name)
		}
		if token = resp.GetNextPageToken(); len(token) == 0 {
			break
		}
	}
	return res, errors.Join(errs...)
}

// applyCapturesLogged runs ApplyCaptures and logs what it did.
func applyCapturesLogged(ctx context.Context, c CaptureClient, namespace, taskQueue string, defs []integration.Definition, log *slog.Logger) error {
	res, err := ApplyCaptures(ctx, c, namespace, taskQueue, defs)
	if len(res.Running) > 0 || len(res.Removed) > 0 {
		log.Info("change capture applied", "capturing", res.Running, "removing", res.Removed)
	}
	return err
}
