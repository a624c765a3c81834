package app

import (
	"context"
	"errors"
	"testing"

	"go.temporal.io/api/enums/v1"
	"go.temporal.io/api/serviceerror"
	"go.temporal.io/api/workflowservice/v1"
	"google.golang.org/grpc"
)

// invokerFailing answers the first n calls with err, then succeeds, and
// counts the calls.
func invokerFailing(n int, err error, calls *int) grpc.UnaryInvoker {
	return func(context.Context, string, any, any, *grpc.ClientConn, ...grpc.CallOption) error {
		*calls++
		if *calls <= n {
			return err
		}
		return nil
	}
}

func TestRetryBusyWorkflow(t *testing.T) {
	// As they come off the wire: gRPC status errors with the details.
	busy := serviceerror.ToStatus(serviceerror.NewResourceExhausted(enums.RESOURCE_EXHAUSTED_CAUSE_BUSY_WORKFLOW,
		"workflow operation can not be applied because workflow is closing")).Err()
	rps := serviceerror.ToStatus(serviceerror.NewResourceExhausted(enums.RESOURCE_EXHAUSTED_CAUSE_RPS_LIMIT,
		"namespace rate limit exceeded")).Err()
	signalWithStart := workflowservice.WorkflowService_SignalWithStartWorkflowExecution_FullMethodName
	tests := []struct {
		name      string
		method    string
		failures  int
		err       error
		wantCalls int
		wantErr   error
	}{
		{"a signal refused while its workflow closes is sent again until taken", signalWithStart, 4, busy, 5, nil},
		{"so is a plain signal", workflowservice.WorkflowService_SignalWorkflowExecution_FullMethodName, 1, busy, 2, nil},
		{"another refusal is left to the SDK's retry", signalWithStart, 1, rps, 1, rps},
		{"other calls are not retried here", workflowservice.WorkflowService_StartWorkflowExecution_FullMethodName, 1, busy, 1, busy},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			calls := 0
			err := retryBusyWorkflow(context.Background(), tt.method, nil, nil, nil, invokerFailing(tt.failures, tt.err, &calls))
			if calls != tt.wantCalls {
				t.Errorf("%d calls, want %d", calls, tt.wantCalls)
			}
			if tt.wantErr == nil && err != nil || tt.wantErr != nil && !errors.Is(err, tt.wantErr) {
				t.Errorf("error %v, want %v", err, tt.wantErr)
			}
		})
	}

	t.Run("it gives up after busyRetryFor and returns the refusal", func(t *testing.T) {
		calls := 0
		err := retryBusyWorkflow(context.Background(), signalWithStart, nil, nil, nil, invokerFailing(1<<30, busy, &calls))
		if !isBusyWorkflow(err) {
			t.Errorf("error %v, want the busy refusal", err)
		}
		// 2, 4, 8, 16, then every 20 ms within 2 s: about 100 calls.
		if max := int(busyRetryFor/busyRetryInterval) + 6; calls < 10 || calls > max {
			t.Errorf("%d calls in %s, want 10 to %d", calls, busyRetryFor, max)
		}
	})

	t.Run("it stops when the call's context ends", func(t *testing.T) {
		ctx, cancel := context.WithCancel(context.Background())
		calls := 0
		invoker := func(context.Context, string, any, any, *grpc.ClientConn, ...grpc.CallOption) error {
			calls++
			cancel()
			return busy
		}
		if err := retryBusyWorkflow(ctx, signalWithStart, nil, nil, nil, invoker); !isBusyWorkflow(err) || calls != 1 {
			t.Errorf("error %v after %d calls, want the refusal after 1", err, calls)
		}
	})
}
