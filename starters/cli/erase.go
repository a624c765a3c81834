package cli

import (
	"context"
	"errors"
	"fmt"
	"strings"
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
	fs.BoolVar(&in.Only, "only", false, "erase in this integration only, not also in the others that read the same source")
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
	if len(rep.Related) > 0 {
		fmt.Fprintf(e.out, "also erased in the integrations that read the same source: %s\n", strings.Join(rep.Related, ", "))
	}
	w := tabwriter.NewWriter(e.out, 0, 4, 2, ' ', 0)
	fmt.Fprintln(w, "INTEGRATION\tPLACE\tDELETED\tNOTE")
	for _, p := range rep.Places {
		of := p.Integration
		if of == "" {
			of = in.Integration
		}
		fmt.Fprintf(w, "%s\t%s\t%d\t%s\n", of, p.Place, p.Deleted, p.Note)
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
