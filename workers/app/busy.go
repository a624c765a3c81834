package app

import (
	"context"
	"errors"
	"time"

	"go.temporal.io/api/enums/v1"
	"go.temporal.io/api/serviceerror"
	"go.temporal.io/api/workflowservice/v1"
	"google.golang.org/grpc"
	"google.golang.org/grpc/status"
)

// Bounds of retryBusyWorkflow's own retries.
const (
	busyRetryFor      = 2 * time.Second
	busyRetryFirst    = 2 * time.Millisecond
	busyRetryInterval = 20 * time.Millisecond
)

// busyRetried are the calls retryBusyWorkflow retries: the signals the
// webhook receiver and the CLI send.
var busyRetried = map[string]bool{
	workflowservice.WorkflowService_SignalWithStartWorkflowExecution_FullMethodName: true,
	workflowservice.WorkflowService_SignalWorkflowExecution_FullMethodName:          true,
}

// retryBusyWorkflow is a gRPC client interceptor that sends again, after
// a few milliseconds, a signal the server refused because its workflow
// is closing. That happens when a signal races a continue-as-new: the
// workflow task that continues as new fails on the signal, and until the
// task after it has continued as new, the server refuses the workflow's
// signals (ResourceExhausted, cause BusyWorkflow; temporalio/temporal#4137).
// The SDK retries such a refusal too, but 200 ms later and doubling: every
// webhook delivery of that moment was answered 0.3-0.5 s late. A refused
// signal was not recorded, and it is sent again with its request id, so
// the server records it once. It retries for busyRetryFor at most, then
// leaves the error to the SDK's retry.
func retryBusyWorkflow(ctx context.Context, method string, req, reply any, cc *grpc.ClientConn, invoker grpc.UnaryInvoker, opts ...grpc.CallOption) error {
	if !busyRetried[method] {
		return invoker(ctx, method, req, reply, cc, opts...)
	}
	deadline := time.Now().Add(busyRetryFor)
	wait := busyRetryFirst
	for {
		err := invoker(ctx, method, req, reply, cc, opts...)
		if !isBusyWorkflow(err) || time.Now().Add(wait).After(deadline) {
			return err
		}
		t := time.NewTimer(wait)
		select {
		case <-ctx.Done():
			t.Stop()
			return err
		case <-t.C:
		}
		wait = min(2*wait, busyRetryInterval)
	}
}

// isBusyWorkflow says err is the server refusing an operation because
// the workflow is busy or closing.
func isBusyWorkflow(err error) bool {
	if err == nil {
		return false
	}
	var re *serviceerror.ResourceExhausted
	if !errors.As(err, &re) && !errors.As(serviceerror.FromStatus(status.Convert(err)), &re) {
		return false
	}
	return re.Cause == enums.RESOURCE_EXHAUSTED_CAUSE_BUSY_WORKFLOW
}
