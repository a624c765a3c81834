package cli

import (
	"context"
	"errors"
	"fmt"
	"io"
	"strings"
	"time"

	"go.temporal.io/sdk/client"

	"github.com/tetherflow/tether/activities/syncstep"
	"github.com/tetherflow/tether/workflows/reconcile"
)

// StartReconcile starts a reconciliation and returns its handle.
func StartReconcile(ctx context.Context, c client.Client, taskQueue string, in reconcile.Input) (client.WorkflowRun, error) {
	if in.Trigger == "" {
		in.Trigger = "cli"
	}
	kind := "reconcile"
	if in.DryRun {
		kind = "reconcile-dry-run"
	}
	return c.ExecuteWorkflow(ctx, startOptions(in.Integration, kind, in.Trigger, taskQueue), reconcile.WorkflowType, in)
}

func cmdReconcile(ctx context.Context, e *env, args []string) error {
	fs := e.flags("reconcile")
	dryRun := fs.Bool("dry-run", false, "report the differences, repair nothing")
	extras := fs.String("extras", "", "what to do with rows the source no longer has: report, delete or mark (default: the integration's reconcile.extras)")
	wait := fs.Bool("wait", false, "queue behind a run writing the integration instead of failing")
	watch := fs.Bool("watch", false, "show the phases until the reconciliation ends, then its report")
	pos, err := parse(fs, args)
	if err != nil {
		return err
	}
	if len(pos) != 1 {
		return usageError{errors.New("want exactly one INTEGRATION, e.g. tether reconcile crm-contacts --dry-run")}
	}
	switch *extras {
	case "", "report", "delete", "mark":
	default:
		return usageError{fmt.Errorf("--extras %q: want report, delete or mark", *extras)}
	}
	c, err := e.dial(ctx)
	if err != nil {
		return err
	}
	defer c.Close()
	run, err := StartReconcile(ctx, c, e.taskQueue, reconcile.Input{Integration: pos[0], DryRun: *dryRun, Extras: *extras, Wait: *wait})
	if err != nil {
		return fmt.Errorf("start reconciliation of %s: %w", pos[0], err)
	}
	fmt.Fprintf(e.out, "started reconciliation of %s\n  workflow id: %s\n  Web UI:      %s\n",
		pos[0], run.GetID(), RunLink(e.uiURL, e.namespace, run.GetID(), run.GetRunID()))
	if !*watch {
		return nil
	}
	rep, err := WatchReconcile(ctx, c, e.out, run.GetID())
	PrintReconcileReport(e.out, rep)
	return err
}

// WatchReconcile prints the reconciliation's phase as it changes, until
// it ends, and returns its report.
func WatchReconcile(ctx context.Context, c client.Client, out io.Writer, workflowID string) (syncstep.ReconcileReport, error) {
	done := make(chan struct{})
	var rep syncstep.ReconcileReport
	var runErr error
	go func() {
		defer close(done)
		runErr = c.GetWorkflow(ctx, workflowID, "").Get(ctx, &rep)
	}()
	tick := time.NewTicker(500 * time.Millisecond)
	defer tick.Stop()
	last := ""
	for {
		select {
		case <-done:
			return rep, runErr
		case <-ctx.Done():
			return rep, ctx.Err()
		case <-tick.C:
			v, err := c.QueryWorkflow(ctx, workflowID, "", reconcile.QueryProgress)
			if err != nil {
				continue
			}
			var p syncstep.ReconcileReport
			if v.Get(&p) != nil || p.Phase == last {
				continue
			}
			last = p.Phase
			fmt.Fprintf(out, "  %s (source read %d, chunks differing %d)\n", p.Phase, p.SourceRead, p.ChunksDiffering)
		}
	}
}

// PrintReconcileReport prints what a reconciliation found and did.
func PrintReconcileReport(w io.Writer, r syncstep.ReconcileReport) {
	mode := "repair"
	if r.DryRun {
		mode = "dry run"
	}
	fmt.Fprintf(w, "\n%s: %s (%s, extras: %s)\n", r.Integration, r.Status, mode, r.Extras)
	fmt.Fprintf(w, "  source records %d (read %d), destination rows %d, chunks %d of which %d differ, %d rows compared by key\n",
		r.SourceRecords, r.SourceRead, r.DestinationRows, r.Chunks, r.ChunksDiffering, r.RowsCompared)
	for _, c := range []struct {
		name string
		n    int
	}{{"missing", r.Missing}, {"changed", r.Changed}, {"extra", r.Extra}, {"invalid", r.Invalid}} {
		line := fmt.Sprintf("  %-8s %d", c.name, c.n)
		if s := r.Samples[c.name]; len(s) > 0 {
			line += "   e.g. " + strings.Join(s, ", ")
		}
		fmt.Fprintln(w, line)
	}
	if !r.DryRun {
		fmt.Fprintf(w, "  repaired %d rows (run %s), extras handled %d\n", r.Repaired, r.RepairRun, r.ExtrasHandled)
	}
	if r.Error != "" {
		fmt.Fprintf(w, "  error: %s\n", r.Error)
	}
}
