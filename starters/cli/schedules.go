package cli

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"os"
	"strings"
	"text/tabwriter"

	"go.temporal.io/api/serviceerror"
	"go.temporal.io/sdk/client"

	"github.com/tetherflow/tether/activities/integration"
	"github.com/tetherflow/tether/activities/integration/declarative"
	"github.com/tetherflow/tether/activities/store"
	"github.com/tetherflow/tether/workers/app"
	"github.com/tetherflow/tether/workers/config"
	"github.com/tetherflow/tether/workers/integrations"
	"github.com/tetherflow/tether/workers/schedules"
)

// cmdSchedules lists tether's Temporal Schedules, or (apply) makes them
// those the worker's integrations declare, as a worker does at start.
func cmdSchedules(ctx context.Context, e *env, args []string) error {
	fs := e.flags("schedules")
	owner := fs.String("owner", "", "list: only this owner's schedules; apply: the owner (default schedules.owner, else the task queue)")
	file := fs.String("config", os.Getenv("TETHER_CONFIG"), "apply: the worker's configuration file (TETHER_CONFIG)")
	dir := fs.String("dir", "", "apply: directory of integration files (default the configuration's integrations_dir, TETHER_INTEGRATIONS_DIR)")
	pos, err := parse(fs, args)
	if err != nil {
		return err
	}
	switch {
	case len(pos) == 0:
		return listSchedules(ctx, e, *owner)
	case len(pos) == 1 && pos[0] == "apply":
		return applySchedules(ctx, e, fs, *file, *dir, *owner)
	}
	return usageError{fmt.Errorf("unknown schedules command %q (want: apply)", strings.Join(pos, " "))}
}

// loadIntegrations reads the worker's configuration (file) and builds its
// integrations: the Go ones and the files of dir (default the
// configuration's integrations_dir). The Temporal flags not given take the
// configuration's values.
func (e *env) loadIntegrations(fs *flag.FlagSet, file, dir string) (config.Config, *integration.Registry, error) {
	cfg, err := config.Load(file)
	if err != nil {
		return cfg, nil, err
	}
	set := map[string]bool{}
	fs.Visit(func(f *flag.Flag) { set[f.Name] = true })
	if !set["address"] {
		e.address = cfg.Temporal.Address
	}
	if !set["namespace"] {
		e.namespace = cfg.Temporal.Namespace
	}
	if !set["task-queue"] {
		e.taskQueue = cfg.Temporal.TaskQueue
	}
	if dir != "" {
		cfg.IntegrationsDir = dir
	}
	var specs []declarative.Spec
	if cfg.IntegrationsDir != "" {
		if specs, err = declarative.LoadDir(cfg.IntegrationsDir); err != nil {
			return cfg, nil, fmt.Errorf("integrations_dir %s:\n%w", cfg.IntegrationsDir, err)
		}
	}
	sch, err := app.NewSchemas()
	if err != nil {
		return cfg, nil, err
	}
	reg, err := app.BuildRegistry(cfg, integrations.For(cfg.Connections), specs, sch)
	return cfg, reg, err
}

// listSchedules prints every schedule tether manages (of owner, when
// given): what it runs, when, whether it is paused, and its last run.
func listSchedules(ctx context.Context, e *env, owner string) error {
	c, err := e.dial(ctx)
	if err != nil {
		return err
	}
	defer c.Close()
	listed, err := schedules.List(ctx, c)
	if err != nil {
		return err
	}
	tw := tabwriter.NewWriter(e.out, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "SCHEDULE\tINTEGRATION\tKIND\tOWNER\tSPEC\tPAUSED\tNEXT RUN\tLAST RUN")
	n := 0
	var notes []string
	for _, l := range listed {
		if owner != "" && l.Stamp.Owner != owner {
			continue
		}
		desc, err := c.ScheduleClient().GetHandle(ctx, l.ID).Describe(ctx)
		var nf *serviceerror.NotFound
		if errors.As(err, &nf) {
			continue // deleted since it was listed
		}
		if err != nil {
			return fmt.Errorf("schedule %s: describe: %w", l.ID, err)
		}
		n++
		spec := schedules.CurrentOf(desc).Action.Spec
		paused := "no"
		if st := desc.Schedule.State; st != nil && st.Paused {
			paused = "yes"
			notes = append(notes, fmt.Sprintf("  %s is paused: %s", l.ID, st.Note))
		}
		next := "-"
		if times := desc.Info.NextActionTimes; len(times) > 0 {
			next = stamp(times[0])
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n", l.ID, l.Stamp.Integration, l.Stamp.Kind, l.Stamp.Owner,
			orDash(spec), paused, next, lastRun(ctx, c, desc.Info.RecentActions))
	}
	if err := tw.Flush(); err != nil {
		return err
	}
	for _, s := range notes {
		fmt.Fprintln(e.out, s)
	}
	if n == 0 {
		fmt.Fprintln(e.out, "no schedules (declare them under schedules: in an integration; workers create them)")
	}
	return nil
}

// lastRun is the status and start time of the latest run a schedule
// started, following continue-as-new to its current execution.
func lastRun(ctx context.Context, c client.Client, recent []client.ScheduleActionResult) string {
	if len(recent) == 0 {
		return "-"
	}
	a := recent[len(recent)-1]
	at := stamp(a.ActualTime)
	if a.StartWorkflowResult == nil {
		return at
	}
	d, err := c.DescribeWorkflowExecution(ctx, a.StartWorkflowResult.WorkflowID, "")
	if err != nil {
		return at + " (status unknown: " + err.Error() + ")"
	}
	return d.GetWorkflowExecutionInfo().GetStatus().String() + " " + at
}

// applySchedules applies the schedules of the integrations the shipped
// worker runs with its configuration (file, environment), as a worker does
// at start. The connection flags, when given, win over the configuration.
func applySchedules(ctx context.Context, e *env, fs *flag.FlagSet, file, dir, owner string) error {
	cfg, reg, err := e.loadIntegrations(fs, file, dir)
	if err != nil {
		return err
	}
	if owner == "" {
		owner = cfg.Schedules.Owner
	}
	c, err := e.dial(ctx)
	if err != nil {
		return err
	}
	defer c.Close()
	opts := schedules.Options{TaskQueue: e.taskQueue, Owner: owner}
	res, applyErr := schedules.Apply(ctx, c, opts, reg.All())
	if res.Changed() {
		if db, err := e.db(ctx); err != nil {
			fmt.Fprintf(e.errOut, "warning: the schedule changes are not audited: %v\n", err)
		} else {
			if err := app.AuditScheduleChanges(ctx, c, store.New(db), app.CLIIdentity(), "tether schedules apply", res); err != nil {
				fmt.Fprintf(e.errOut, "warning: the schedule changes are not audited: %v\n", err)
			}
			db.Close()
		}
	}
	tw := tabwriter.NewWriter(e.out, 0, 4, 2, ' ', 0)
	for _, r := range []struct {
		what string
		ids  []string
	}{{"created", res.Created}, {"updated", res.Updated}, {"deleted", res.Deleted}, {"unchanged", res.Unchanged}} {
		for _, id := range r.ids {
			fmt.Fprintf(tw, "%s\t%s\n", r.what, id)
		}
	}
	if err := tw.Flush(); err != nil {
		return err
	}
	if owner == "" {
		owner = e.taskQueue
	}
	fmt.Fprintf(e.out, "schedules of owner %s (runs on task queue %s, namespace %s): %d created, %d updated, %d deleted, %d unchanged\n",
		owner, e.taskQueue, e.namespace, len(res.Created), len(res.Updated), len(res.Deleted), len(res.Unchanged))
	return applyErr
}
