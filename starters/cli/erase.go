package cli

import (
	"context"
	"errors"
	"fmt"
	"text/tabwriter"
	"time"

	"go.temporal.io/sdk/client"

	"github.com/tetherflow/tether/activities/syncstep"
	"github.com/tetherflow/tether/workflows/erase"
)

// cmdErase erases a subject: starts the erasure workflow and prints what
// it did where.
func cmdErase(ctx context.Context, e *env, args []string) error {
	fs := e.flags("erase")
	var in syncstep.EraseInput
	fs.StringVar(&in.Integration, "integration", "", "the integration whose records hold the subject")
	fs.StringVar(&in.Key, "key", "", "the subject's record key (the integration's key field)")
	fs.StringVar(&in.Reason, "reason", "", "a reference kept in the audit (e.g. the request's number)")
	if _, err := parse(fs, args); err != nil {
		return err
	}
	if in.Integration == "" || in.Key == "" {
		return usageError{errors.New("--integration and --key are required")}
	}
	c, err := e.dial(ctx)
	if err != nil {
		return err
	}
	defer c.Close()
	id := fmt.Sprintf("erase/%s/%s", in.Integration, time.Now().UTC().Format("20060102T150405.000Z"))
	run, err := c.ExecuteWorkflow(ctx, client.StartWorkflowOptions{ID: id, TaskQueue: e.taskQueue}, erase.WorkflowType, in)
	if err != nil {
		return fmt.Errorf("start erasure: %w", err)
	}
	fmt.Fprintf(e.out, "erasing %s's record %q: workflow %s\n", in.Integration, in.Key, run.GetID())
	var rep syncstep.EraseReport
	if err := run.Get(ctx, &rep); err != nil {
		return fmt.Errorf("erasure %s: %w", run.GetID(), err)
	}
	w := tabwriter.NewWriter(e.out, 0, 4, 2, ' ', 0)
	fmt.Fprintln(w, "PLACE\tDELETED\tNOTE")
	for _, p := range rep.Places {
		fmt.Fprintf(w, "%s\t%d\t%s\n", p.Place, p.Deleted, p.Note)
	}
	if err := w.Flush(); err != nil {
		return err
	}
	if !rep.Complete {
		return errors.New("the erasure is not complete: see the notes above")
	}
	fmt.Fprintln(e.out, "erased everywhere tether keeps it (audited: tether audit --integration "+in.Integration+")")
	return nil
}
