// Package cli is tether's starter command line: start a sync and watch its
// progress bar, list runs and quarantined records, and bring up the whole
// development stack with a demo (`tether up`).
package cli

import (
	"context"
	"database/sql"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net/url"
	"os"
	"strings"
	"text/tabwriter"
	"time"

	"go.temporal.io/sdk/client"
	"go.temporal.io/sdk/temporal"

	"github.com/tetherflow/tether/activities/lib/postgres"
	"github.com/tetherflow/tether/activities/lib/progress"
	"github.com/tetherflow/tether/activities/store"
	"github.com/tetherflow/tether/workers/app"
	"github.com/tetherflow/tether/workers/config"
	"github.com/tetherflow/tether/workflows/datasync"
)

const usage = `tether — durable integration syncs on Temporal

Usage:
  tether up [--exit] [--contacts N]        run the dev stack (Temporal dev server + Web UI,
                                            sandbox CRM API, a worker) and a demo sync
  tether start INTEGRATION [--watch] [--full] [--refresh] [--wait] [--max-pages N]
                                            start a sync run (and show its progress bar);
                                            --refresh also deletes the destination rows the
                                            source no longer has (batch refresh); --wait queues
                                            behind a run already writing the integration
  tether reconcile INTEGRATION [--dry-run] [--extras report|delete|mark] [--wait] [--watch]
                                            compare source and destination, repair the drift
  tether watch WORKFLOW_ID                  progress bar of a running sync until it ends
  tether reset WORKFLOW_ID --reason TEXT [--run RUN_ID] [--event-id N] [--watch]
                                            reset a run (default: to its first workflow task, so it
                                            goes on from its checkpoint), audited as TETHER_IDENTITY
  tether integrations [--dir DIR]           the integrations the shipped worker runs: Go ones and
                                            integration files (TETHER_INTEGRATIONS_DIR)
  tether validate [--resolve] [FILE|DIR...] check integration files (default: TETHER_INTEGRATIONS_DIR);
                                            --resolve also reads their secrets and schema files
  tether runs [--integration NAME]          recent runs with their counts (from PostgreSQL)
  tether quarantine [--integration NAME] [--run RUN_ID]
                                            quarantined records and why
  tether quarantine replay --integration NAME [--watch]
                                            after fixing the schema or mapping: run the pending
                                            quarantined records through validate/transform/apply
  tether schedules [--owner OWNER]          tether's Temporal Schedules: integration, kind, times,
                                            paused, next run, last run and its status
  tether schedules apply [--config FILE] [--dir DIR] [--owner OWNER]
                                            make the schedules those the worker's integrations
                                            declare, as workers do at start (for workers run with
                                            schedules.manage: false)
  tether events INTEGRATION [--config FILE] [--dir DIR]
                                            webhook events of an integration: every shard workflow's
                                            pending events and what was applied, stale or quarantined
  tether capture INTEGRATION [--config FILE] [--dir DIR]
                                            PostgreSQL change capture: status, changes applied, lag
  tether capture sql INTEGRATION [--remove] the SQL that installs (or removes) the capture, for the
                                            table's owner to run when the worker may not

  tether audit [--integration NAME] [--actor ID] [--since 24h] [--deliveries] [--json]
                                            who started, reset, replayed, cancelled or paused which
                                            run or schedule, when (the Temporal identity of the
                                            caller; the CLI's is TETHER_IDENTITY, default user@host);
                                            --deliveries: each applied webhook event by its sender
  tether erase --integration NAME --key KEY [--reason REF]
                                            erase a subject from the integration's destinations and
                                            tether's state (quarantine, staged pages, deliveries,
                                            identity maps), durably, with a report; audited
  tether conflicts [--integration NAME] [--all] [--json] [ID]
                                            two-way conflicts waiting for a person (--all: every
                                            one); with ID, one field by field: base, a and b
  tether conflicts resolve ID --choose a|b|merge|values [--prefer a|b] [--set FIELD=VALUE...]
                                            resolve a parked conflict (the workflow's resolve
                                            Update), as TETHER_IDENTITY
  tether codec-server [--listen ADDR] [--origin URL,...]
                                            serve the Temporal codec endpoints (/encode, /decode) for
                                            the Web UI and the Temporal CLI with the workers' keys
                                            (TETHER_ENCRYPTION_*); TETHER_CODEC_TOKEN requires a token

Common flags (and environment):
  --address    Temporal host:port (TEMPORAL_ADDRESS, default 127.0.0.1:7233)
  --namespace  Temporal namespace (TEMPORAL_NAMESPACE, default "default")
  --task-queue task queue of the workers (TETHER_TEMPORAL_TASK_QUEUE, default tether-sync)
  --database-url PostgreSQL URL (DATABASE_URL)
  --ui         Temporal Web UI base URL for links (TETHER_UI_URL, default http://localhost:8233)
`

// Run executes the command line args (without the program name) and
// returns the process exit status.
func Run(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	if len(args) == 0 || args[0] == "-h" || args[0] == "--help" || args[0] == "help" {
		fmt.Fprint(stdout, usage)
		if len(args) == 0 {
			return 2
		}
		return 0
	}
	cmds := map[string]func(context.Context, *env, []string) error{
		"up":           cmdUp,
		"start":        cmdStart,
		"watch":        cmdWatch,
		"integrations": cmdIntegrations,
		"validate":     cmdValidate,
		"runs":         cmdRuns,
		"quarantine":   cmdQuarantine,
		"schedules":    cmdSchedules,
		"reconcile":    cmdReconcile,
		"events":       cmdEvents,
		"capture":      cmdCapture,
		"codec-server": cmdCodecServer,
		"audit":        cmdAudit,
		"erase":        cmdErase,
		"reset":        cmdReset,
		"conflicts":    cmdConflicts,
	}
	fn, ok := cmds[args[0]]
	if !ok {
		fmt.Fprintf(stderr, "tether: unknown command %q\n\n%s", args[0], usage)
		return 2
	}
	e := &env{out: stdout, errOut: stderr}
	if err := fn(ctx, e, args[1:]); err != nil {
		var ue usageError
		if errors.As(err, &ue) {
			fmt.Fprintf(stderr, "tether %s: %v\n", args[0], err)
			return 2
		}
		fmt.Fprintf(stderr, "tether %s: %v\n", args[0], err)
		return 1
	}
	return 0
}

type usageError struct{ error }

// env is what every command shares: output and connection settings.
type env struct {
	out, errOut io.Writer
	address     string
	namespace   string
	taskQueue   string
	databaseURL string
	uiURL       string
}

func getenv(k, def string) string {
	if v := os.Getenv(k); v != "" {
		return v
	}
	return def
}

// flags returns a flag set with the common connection flags bound to e.
func (e *env) flags(name string) *flag.FlagSet {
	fs := flag.NewFlagSet(name, flag.ContinueOnError)
	fs.SetOutput(e.errOut)
	// The defaults come from the Temporal environment configuration, as
	// for the Temporal CLI: TEMPORAL_ADDRESS, TEMPORAL_NAMESPACE, the
	// profile (TEMPORAL_PROFILE) of the TOML file; TLS and the API key
	// too, when dialling (config.Temporal.ClientOptions).
	conn, err := config.Temporal{}.Connection()
	if err != nil {
		conn.Address, conn.Namespace = getenv("TEMPORAL_ADDRESS", config.DefaultTemporalAddress), getenv("TEMPORAL_NAMESPACE", config.DefaultTemporalNamespace)
	}
	fs.StringVar(&e.address, "address", conn.Address, "Temporal host:port (TEMPORAL_ADDRESS)")
	fs.StringVar(&e.namespace, "namespace", conn.Namespace, "Temporal namespace (TEMPORAL_NAMESPACE)")
	fs.StringVar(&e.taskQueue, "task-queue", getenv("TETHER_TEMPORAL_TASK_QUEUE", datasync.DefaultTaskQueue), "task queue")
	fs.StringVar(&e.databaseURL, "database-url", getenv("DATABASE_URL", "postgres://postgres@127.0.0.1:5432/postgres?sslmode=disable"), "PostgreSQL URL")
	fs.StringVar(&e.uiURL, "ui", getenv("TETHER_UI_URL", "http://localhost:8233"), "Temporal Web UI base URL")
	return fs
}

// parse parses flags that may come before or after positional arguments.
func parse(fs *flag.FlagSet, args []string) ([]string, error) {
	var pos []string
	for {
		if err := fs.Parse(args); err != nil {
			return nil, usageError{err}
		}
		args = fs.Args()
		if len(args) == 0 {
			return pos, nil
		}
		pos = append(pos, args[0])
		args = args[1:]
	}
}

func (e *env) dial(ctx context.Context) (client.Client, error) {
	ctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	return app.Dial(ctx, config.Temporal{Address: e.address, Namespace: e.namespace}, slog.New(slog.NewTextHandler(io.Discard, nil)))
}

func (e *env) db(ctx context.Context) (*sql.DB, error) {
	ctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	return postgres.Open(ctx, e.databaseURL)
}

// WorkflowID names a run so that operators scanning the Web UI see what ran:
// integration, kind (sync or replay), trigger and start time.
func WorkflowID(integration, kind, trigger string, at time.Time) string {
	return fmt.Sprintf("%s/%s/%s/%s", integration, kind, trigger, at.UTC().Format("20060102T150405.000Z"))
}

// StartSync starts a sync run and returns its workflow id and run id.
func StartSync(ctx context.Context, c client.Client, taskQueue string, in datasync.Input) (client.WorkflowRun, error) {
	if in.Trigger == "" {
		in.Trigger = "cli"
	}
	kind := "sync"
	if in.Replay {
		kind = "replay"
	} else if in.Refresh {
		kind = "refresh"
	}
	return c.ExecuteWorkflow(ctx, startOptions(in.Integration, kind, in.Trigger, taskQueue), datasync.WorkflowType, in)
}

// startOptions names a run of the integration (see WorkflowID) and sets the
// search attributes the Web UI lists it by.
func startOptions(integration, kind, trigger, taskQueue string) client.StartWorkflowOptions {
	return client.StartWorkflowOptions{
		ID:        WorkflowID(integration, kind, trigger, time.Now()),
		TaskQueue: taskQueue,
		TypedSearchAttributes: temporal.NewSearchAttributes(
			datasync.IntegrationAttr.ValueSet(integration),
			datasync.StatusAttr.ValueSet(progress.StatusRunning),
		),
	}
}

// RunLink is the Web UI address of a run.
func RunLink(uiURL, namespace, workflowID, runID string) string {
	if runID == "" {
		return fmt.Sprintf("%s/namespaces/%s/workflows/%s",
			strings.TrimRight(uiURL, "/"), url.PathEscape(namespace), url.PathEscape(workflowID))
	}
	return fmt.Sprintf("%s/namespaces/%s/workflows/%s/%s/history",
		strings.TrimRight(uiURL, "/"), url.PathEscape(namespace), url.PathEscape(workflowID), url.PathEscape(runID))
}

func cmdStart(ctx context.Context, e *env, args []string) error {
	fs := e.flags("start")
	watch := fs.Bool("watch", false, "show a progress bar until the run ends")
	full := fs.Bool("full", false, "ignore the checkpoint and read the whole source")
	refresh := fs.Bool("refresh", false, "batch refresh: read the whole source, then delete the destination rows it no longer has")
	wait := fs.Bool("wait", false, "queue behind a run already writing the integration instead of failing")
	maxPages := fs.Int("max-pages", 0, "stop after this many pages (0 = all)")
	verbose := fs.Bool("verbose", false, "with --watch: print a failure's whole chain of causes")
	pos, err := parse(fs, args)
	if err != nil {
		return err
	}
	if len(pos) != 1 {
		return usageError{errors.New("want exactly one INTEGRATION, e.g. tether start crm-contacts")}
	}
	c, err := e.dial(ctx)
	if err != nil {
		return err
	}
	defer c.Close()
	run, err := StartSync(ctx, c, e.taskQueue, datasync.Input{Integration: pos[0], Full: *full, Refresh: *refresh, Wait: *wait, MaxPages: *maxPages})
	if err != nil {
		return fmt.Errorf("start %s: %w", pos[0], err)
	}
	fmt.Fprintf(e.out, "started %s\n  workflow id: %s\n  run id:      %s\n  Web UI:      %s\n",
		pos[0], run.GetID(), run.GetRunID(), RunLink(e.uiURL, e.namespace, run.GetID(), run.GetRunID()))
	if !*watch {
		return nil
	}
	return e.watch(ctx, c, run.GetID(), run.GetRunID(), *verbose)
}

func cmdWatch(ctx context.Context, e *env, args []string) error {
	fs := e.flags("watch")
	verbose := fs.Bool("verbose", false, "print a failure's whole chain of causes")
	pos, err := parse(fs, args)
	if err != nil {
		return err
	}
	if len(pos) != 1 {
		return usageError{errors.New("want exactly one WORKFLOW_ID")}
	}
	c, err := e.dial(ctx)
	if err != nil {
		return err
	}
	defer c.Close()
	return e.watch(ctx, c, pos[0], "", *verbose)
}

// watch watches a run to its end and prints its summary. Ctrl-C stops
// watching only: it says so, and that the run goes on.
func (e *env) watch(ctx context.Context, c client.Client, workflowID, runID string, verbose bool) error {
	res, err := Watch(ctx, c, e.out, workflowID, 0)
	if errors.Is(err, ErrStoppedWatching) {
		fmt.Fprintf(e.out, "stopped watching %s; the run goes on: %s\n  watch it again: tether watch %s\n",
			workflowID, RunLink(e.uiURL, e.namespace, workflowID, runID), workflowID)
		return nil
	}
	PrintSummary(e.out, []Outcome{{Result: res, Err: err, WorkflowID: workflowID, RunID: runID}}, e.uiURL, e.namespace)
	var re *RunError
	if verbose && errors.As(err, &re) {
		fmt.Fprintf(e.out, "  the whole chain: %s\n", re.Full())
	}
	return err
}

func cmdRuns(ctx context.Context, e *env, args []string) error {
	fs := e.flags("runs")
	integ := fs.String("integration", "", "only this integration")
	limit := fs.Int("limit", 20, "how many runs")
	if _, err := parse(fs, args); err != nil {
		return err
	}
	db, err := e.db(ctx)
	if err != nil {
		return err
	}
	defer db.Close()
	runs, err := store.New(db).ListRuns(ctx, *integ, *limit)
	if err != nil {
		return err
	}
	tw := tabwriter.NewWriter(e.out, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "STARTED\tINTEGRATION\tSTATUS\tFETCHED\tVALID\tQUARANTINED\tAPPLIED\tUNCHANGED\tDELETED\tTO\tERROR")
	for _, r := range runs {
		fmt.Fprintf(tw, "%s\t%s\t%s\t%d\t%d\t%d\t%d\t%d\t%d\t%s\t%s\n", r.StartedAt.Format(time.DateTime), r.Integration, r.Status,
			r.Counts.Fetched, r.Counts.Valid, r.Counts.Invalid, r.Counts.Applied(), r.Counts.Unchanged, r.Counts.Deleted, orDash(r.To.Cursor), truncate(r.Error, 80))
	}
	return tw.Flush()
}

func cmdQuarantine(ctx context.Context, e *env, args []string) error {
	fs := e.flags("quarantine")
	integ := fs.String("integration", "", "only this integration")
	runID := fs.String("run", "", "only this run")
	limit := fs.Int("limit", 50, "how many records")
	watch := fs.Bool("watch", false, "replay: show a progress bar until the replay ends")
	verbose := fs.Bool("verbose", false, "replay --watch: print a failure's whole chain of causes")
	pos, err := parse(fs, args)
	if err != nil {
		return err
	}
	if len(pos) == 1 && pos[0] == "replay" {
		if *integ == "" {
			return usageError{errors.New("replay needs --integration NAME")}
		}
		return replayQuarantine(ctx, e, *integ, *watch, *verbose)
	}
	if len(pos) > 0 {
		return usageError{fmt.Errorf("unknown quarantine command %q (want: replay)", pos[0])}
	}
	db, err := e.db(ctx)
	if err != nil {
		return err
	}
	defer db.Close()
	st := store.New(db)
	f := store.QuarantineFilter{Integration: *integ, RunID: *runID, PendingOnly: true, Limit: *limit}
	n, err := st.CountQuarantine(ctx, f)
	if err != nil {
		return err
	}
	entries, err := st.ListQuarantine(ctx, f)
	if err != nil {
		return err
	}
	fmt.Fprintf(e.out, "%d quarantined record(s) awaiting replay\n", n)
	tw := tabwriter.NewWriter(e.out, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "ID\tINTEGRATION\tKEY\tSTEP\tPAGE\tERRORS")
	for _, q := range entries {
		var errs []string
		for _, d := range q.Errors {
			errs = append(errs, strings.TrimSpace(orDash(d.Pointer)+" "+d.Message))
		}
		fmt.Fprintf(tw, "%d\t%s\t%s\t%s\t%d\t%s\n", q.ID, q.Integration, orDash(q.Key), q.Step, q.Page, truncate(strings.Join(errs, "; "), 100))
	}
	return tw.Flush()
}

// replayQuarantine starts a replay run of an integration's quarantine.
func replayQuarantine(ctx context.Context, e *env, integration string, watch, verbose bool) error {
	c, err := e.dial(ctx)
	if err != nil {
		return err
	}
	defer c.Close()
	run, err := StartSync(ctx, c, e.taskQueue, datasync.Input{Integration: integration, Replay: true})
	if err != nil {
		return fmt.Errorf("start replay of %s: %w", integration, err)
	}
	fmt.Fprintf(e.out, "replaying the quarantine of %s\n  workflow id: %s\n  Web UI:      %s\n",
		integration, run.GetID(), RunLink(e.uiURL, e.namespace, run.GetID(), run.GetRunID()))
	if !watch {
		return nil
	}
	return e.watch(ctx, c, run.GetID(), run.GetRunID(), verbose)
}

// Outcome is one finished run, for PrintSummary.
type Outcome struct {
	Result     datasync.Result
	Err        error
	WorkflowID string
	RunID      string
}

// PrintSummary prints what each run fetched, validated, quarantined,
// applied, left unchanged and (a refresh) deleted, with the Web UI link to
// it.
func PrintSummary(w io.Writer, outs []Outcome, uiURL, namespace string) {
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "\nINTEGRATION\tSTATUS\tFETCHED\tVALID\tQUARANTINED\tAPPLIED\tUNCHANGED\tSKIPPED\tDELETED")
	for _, o := range outs {
		status := o.Result.Status
		if o.Err != nil && status == "" {
			status = progress.StatusFailed
		}
		c := o.Result.Counts
		fmt.Fprintf(tw, "%s\t%s\t%d\t%d\t%d\t%d\t%d\t%d\t%d\n", firstNonEmpty(o.Result.Integration, o.WorkflowID), status,
			c.Fetched, c.Valid, c.Invalid, c.Applied(), c.Unchanged, c.Skipped, c.Deleted)
	}
	_ = tw.Flush()
	for _, o := range outs {
		if o.Err != nil {
			fmt.Fprintf(w, "  %s failed: %v\n", firstNonEmpty(o.Result.Integration, o.WorkflowID), o.Err)
		}
		for _, warning := range o.Result.Warnings {
			fmt.Fprintf(w, "  %s warning: %s\n", firstNonEmpty(o.Result.Integration, o.WorkflowID), warning)
		}
		fmt.Fprintf(w, "  %s: %s\n", firstNonEmpty(o.Result.Integration, o.WorkflowID), RunLink(uiURL, namespace, o.WorkflowID, o.RunID))
	}
}

func orDash(s string) string {
	if s == "" {
		return "-"
	}
	return s
}
