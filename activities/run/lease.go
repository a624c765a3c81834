package run

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"time"

	"go.temporal.io/api/enums/v1"
	"go.temporal.io/api/serviceerror"
	"go.temporal.io/api/workflowservice/v1"

	"github.com/tetherflow/tether/activities/lib/failure"
	"github.com/tetherflow/tether/activities/store"
	"github.com/tetherflow/tether/activities/syncstep"
)

// WorkflowDescriber is the part of the Temporal client the writer lease
// uses (client.Client has it).
type WorkflowDescriber interface {
	DescribeWorkflowExecution(ctx context.Context, workflowID, runID string) (*workflowservice.DescribeWorkflowExecutionResponse, error)
}

// Lease is an integration's writer lease: one run (sync, refresh, replay,
// repair or reconciliation) writes an integration at a time.
type Lease struct {
	Store *store.Store
	// Temporal tells whether the run holding a lease still runs (a
	// workflow terminated from the Web UI leaves its lease behind). Nil
	// trusts the lease until the run records its end.
	Temporal WorkflowDescriber
	Logger   *slog.Logger
}

// Acquire takes the integration's writer lease for the run (or checks the
// run's owner holds it), or fails with failure.TypeBusy naming the run
// that writes the integration now.
func (l *Lease) Acquire(ctx context.Context, in syncstep.StartRunInput) error {
	owner := in.Owner
	if owner == "" {
		owner = in.RunID
	}
	w := store.Writer{Integration: in.Integration, RunID: owner, WorkflowID: in.WorkflowID, Kind: in.Kind, Trigger: in.Trigger}
	if in.Owner != "" && in.Owner != in.RunID {
		// A repair run writes under its reconciliation's lease, which
		// must still be held by it.
		holder, ok, err := l.Store.CurrentWriter(ctx, in.Integration)
		if err != nil {
			return err
		}
		if ok && holder.RunID == owner {
			return nil
		}
		if ok {
			return busyError(in, holder)
		}
		if i := strings.LastIndex(owner, "/"); i > 0 {
			w.WorkflowID = owner[:i]
		}
	}
	holder, acquired, err := l.Store.AcquireWriter(ctx, w, l.alive)
	if err != nil {
		return err
	}
	if !acquired {
		return busyError(in, holder)
	}
	if holder.RunID != owner && l.Logger != nil {
		l.Logger.Warn("took over the writer lease of a run that no longer runs",
			"integration", in.Integration, "run", owner, "previous", holder.RunID, "previousWorkflow", holder.WorkflowID)
	}
	return nil
}

// Release gives the lease back (a no-op when the run does not hold it).
func (l *Lease) Release(ctx context.Context, integration, runID string) error {
	return l.Store.ReleaseWriter(ctx, integration, runID)
}

// busyError says which run writes the integration and what to do.
func busyError(in syncstep.StartRunInput, holder store.Writer) error {
	by := holder.Kind
	if holder.Trigger != "" {
		by += " started by " + holder.Trigger
	}
	return failure.Permanent(failure.TypeBusy, fmt.Errorf(
		"integration %q is being written by another run: %s (workflow %q, a %s, since %s); only one run writes an integration at a time, so this %s run did nothing. Wait for that run to end (tether watch %s), cancel it, or start this one with wait (tether start --wait) to queue behind it",
		in.Integration, holder.RunID, holder.WorkflowID, by, holder.AcquiredAt.UTC().Format(time.RFC3339), in.Kind, holder.WorkflowID))
}

// alive asks Temporal whether the workflow holding a lease still runs.
func (l *Lease) alive(ctx context.Context, holder store.Writer) (bool, error) {
	if l.Temporal == nil || holder.WorkflowID == "" {
		return true, nil
	}
	resp, err := l.Temporal.DescribeWorkflowExecution(ctx, holder.WorkflowID, "")
	var notFound *serviceerror.NotFound
	if errors.As(err, &notFound) {
		return false, nil
	}
	if err != nil {
		return true, err
	}
	info := resp.GetWorkflowExecutionInfo()
	if info.GetStatus() != enums.WORKFLOW_EXECUTION_STATUS_RUNNING {
		return false, nil
	}
	// The same workflow id may run again later: the lease's run id is
	// "<workflow id>/<first run id>".
	if first := info.GetFirstRunId(); first != "" && holder.RunID != holder.WorkflowID+"/"+first {
		return false, nil
	}
	return true, nil
}
