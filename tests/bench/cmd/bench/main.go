// Command bench measures the durable sync pipeline against a plain,
// non-durable Go loop doing the same fetch → validate → transform → upsert
// work, in the same run, on the same machine:
//
//	go run ./tests/bench/cmd/bench [--records 100000] [--page 1000]
//
// It starts its own Temporal dev server (headless), the sandbox CRM API on
// loopback, and a worker process, each on free ports, syncs the records into
// a fresh PostgreSQL schema, then prints records/s for both, their ratio,
// history events per run, and the worker's peak RSS. Everything it starts
// stops when it ends.
package main

import (
	"context"
	"database/sql"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"time"

	"go.temporal.io/sdk/client"

	"github.com/tetherflow/tether/activities/connector"
	"github.com/tetherflow/tether/activities/connector/httpsource"
	"github.com/tetherflow/tether/activities/connector/pgsink"
	"github.com/tetherflow/tether/activities/lib/mapping"
	"github.com/tetherflow/tether/activities/lib/postgres"
	"github.com/tetherflow/tether/activities/lib/schema"
	"github.com/tetherflow/tether/schemas"
	"github.com/tetherflow/tether/starters/cli"
	"github.com/tetherflow/tether/starters/devstack"
	"github.com/tetherflow/tether/starters/sandbox"
	"github.com/tetherflow/tether/tests/pgtest"
	"github.com/tetherflow/tether/workers/app"
	"github.com/tetherflow/tether/workers/config"
	"github.com/tetherflow/tether/workers/integrations"
	"github.com/tetherflow/tether/workflows/datasync"
)

func main() {
	if err := run(); err != nil {
		fmt.Fprintf(os.Stderr, "bench: %v\n", err)
		os.Exit(1)
	}
}

func run() error {
	records := flag.Int("records", 100000, "contacts to sync")
	page := flag.Int("page", 1000, "records per page (and per upsert batch)")
	inFlight := flag.Int("in-flight", 4, "pages between fetch and apply")
	dsn := flag.String("database-url", pgtest.BaseDSN(), "PostgreSQL (a fresh schema is created and dropped)")
	keep := flag.Bool("keep", false, "keep the schema and logs")
	flag.Parse()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Minute)
	defer cancel()

	work, err := os.MkdirTemp("", "tether-bench")
	if err != nil {
		return err
	}
	if !*keep {
		defer os.RemoveAll(work)
	}

	// PostgreSQL: two fresh schemas, one per contender.
	admin, err := postgres.Open(ctx, *dsn)
	if err != nil {
		return err
	}
	defer admin.Close()
	suffix := fmt.Sprint(time.Now().UnixNano())
	durSchema, loopSchema := "bench_durable_"+suffix, "bench_loop_"+suffix
	for _, s := range []string{durSchema, loopSchema} {
		if _, err := admin.ExecContext(ctx, "CREATE SCHEMA "+s); err != nil {
			return err
		}
		if !*keep {
			defer admin.Exec("DROP SCHEMA " + s + " CASCADE") //nolint:errcheck
		}
	}
	durDSN, _ := postgres.WithSearchPath(*dsn, durSchema)
	loopDSN, _ := postgres.WithSearchPath(*dsn, loopSchema)

	// Sandbox CRM API on loopback.
	sb, err := sandbox.New(sandbox.Options{Seed: 42, Contacts: *records, MaxPageSize: *page})
	if err != nil {
		return err
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return err
	}
	hs := &http.Server{Handler: sb.Handler(), ReadHeaderTimeout: 5 * time.Second}
	go hs.Serve(ln) //nolint:errcheck
	defer hs.Close()
	sandboxURL := "http://" + ln.Addr().String()

	fmt.Printf("tether bench: %d records in pages of %d, %d pages in flight, %d cores\n", *records, *page, *inFlight, numCPU())

	// Baseline first: a plain loop over the same components.
	loopDur, loopRows, err := plainLoop(ctx, loopDSN, sandboxURL, *page)
	if err != nil {
		return fmt.Errorf("plain loop: %w", err)
	}

	// The durable pipeline: dev server + worker process.
	cliPath, err := devstack.EnsureTemporalCLI(ctx, os.Stderr)
	if err != nil {
		return err
	}
	srv, err := devstack.StartDevServer(ctx, devstack.DevServerOptions{CLI: cliPath, Headless: true, LogFile: filepath.Join(work, "temporal.log")})
	if err != nil {
		return err
	}
	defer srv.Stop(10 * time.Second) //nolint:errcheck
	moduleDir, err := os.Getwd()
	if err != nil {
		return err
	}
	bin, err := devstack.BuildBinary(ctx, moduleDir, "./workers/cmd/worker", work)
	if err != nil {
		return err
	}
	tq := "bench-" + suffix
	w, err := devstack.StartProcess("worker", filepath.Join(work, "worker.log"), []string{
		"TEMPORAL_ADDRESS=" + srv.Address,
		"DATABASE_URL=" + durDSN,
		"TETHER_TEMPORAL_TASK_QUEUE=" + tq,
		"TETHER_SOURCES_CRM_BASE_URL=" + sandboxURL,
		"TETHER_WORKER_INTEGRATIONS=crm-contacts",
		"TETHER_LOG_LEVEL=warn",
	}, bin)
	if err != nil {
		return err
	}
	defer w.Stop(10 * time.Second) //nolint:errcheck
	c, err := app.Dial(ctx, config.Temporal{Address: srv.Address, Namespace: "default"}, slog.New(slog.NewTextHandler(io.Discard, nil)))
	if err != nil {
		return err
	}
	defer c.Close()
	if err := waitPoller(ctx, c, tq, w); err != nil {
		return err
	}

	t0 := time.Now()
	runHandle, err := cli.StartSync(ctx, c, tq, datasync.Input{Integration: "crm-contacts", Trigger: "bench"})
	if err != nil {
		return err
	}
	var res datasync.Result
	if err := c.GetWorkflow(ctx, runHandle.GetID(), "").Get(ctx, &res); err != nil {
		return fmt.Errorf("durable run: %w (worker log %s)", err, filepath.Join(work, "worker.log"))
	}
	durDur := time.Since(t0)
	rss := peakRSS(w.Pid())
	events, executions, err := historyEvents(ctx, c, runHandle.GetID())
	if err != nil {
		return err
	}

	loopRate := float64(loopRows) / loopDur.Seconds()
	durRate := float64(res.Counts.Inserted) / durDur.Seconds()
	fmt.Printf("\n%-34s %10s %12s\n", "", "time", "records/s")
	fmt.Printf("%-34s %10s %12.0f   (%d rows)\n", "plain Go loop (baseline)", loopDur.Round(time.Millisecond), loopRate, loopRows)
	fmt.Printf("%-34s %10s %12.0f   (%d rows)\n", "durable pipeline (Temporal)", durDur.Round(time.Millisecond), durRate, res.Counts.Inserted)
	fmt.Printf("\nratio durable/plain:             %.2f\n", durRate/loopRate)
	fmt.Printf("history events:                  %d in %d execution(s) (%.0f per execution, %d pages)\n",
		events, executions, float64(events)/float64(max(1, executions)), res.Counts.Pages)
	fmt.Printf("worker peak RSS:                 %s\n", rss)
	if res.Counts.Inserted != loopRows {
		return fmt.Errorf("the contenders disagree: durable inserted %d rows, loop %d", res.Counts.Inserted, loopRows)
	}
	return nil
}

// plainLoop does the pipeline's work without Temporal or staging: fetch a
// page, validate, transform, upsert in one transaction, repeat.
func plainLoop(ctx context.Context, dsn, sandboxURL string, pageSize int) (time.Duration, int, error) {
	db, err := postgres.Open(ctx, dsn)
	if err != nil {
		return 0, 0, err
	}
	defer db.Close()
	def := integrations.CRMContacts(config.CRM{BaseURL: sandboxURL, Auth: "none"}).Normalize()
	src, err := httpsource.New(def.Name, *def.Source.HTTP)
	if err != nil {
		return 0, 0, err
	}
	reg, err := schema.NewRegistry(schemas.FS())
	if err != nil {
		return 0, 0, err
	}
	v, err := reg.Get(def.Schema)
	if err != nil {
		return 0, 0, err
	}
	mapFn, err := def.Mapping.Compile()
	if err != nil {
		return 0, 0, err
	}
	fn := mapping.Chain(mapFn, def.Transform)
	sink, err := pgsink.NewTableWriter(*def.Destination.Postgres)
	if err != nil {
		return 0, 0, err
	}
	if err := sink.Ensure(ctx, db); err != nil {
		return 0, 0, err
	}
	start := time.Now()
	total := 0
	req := connector.Request{Integration: def.Name, Limit: pageSize}
	for {
		pg, err := src.Fetch(ctx, req)
		if err != nil {
			return 0, 0, err
		}
		rows := make([]pgsink.Row, 0, len(pg.Records))
		for _, raw := range pg.Records {
			rec, err := schema.Decode(raw)
			if err != nil || len(v.Validate(rec)) > 0 {
				continue
			}
			m, ok := rec.(map[string]any)
			if !ok {
				continue
			}
			out, err := fn(m)
			if err != nil {
				continue
			}
			rows = append(rows, pgsink.Row(out))
		}
		n, err := upsert(ctx, db, sink, rows)
		if err != nil {
			return 0, 0, err
		}
		total += n
		if pg.Done {
			break
		}
		req.Position = pg.Next
	}
	return time.Since(start), total, nil
}

func upsert(ctx context.Context, db *sql.DB, sink *pgsink.TableWriter, rows []pgsink.Row) (int, error) {
	tx, err := db.BeginTx(ctx, nil)
	if err != nil {
		return 0, err
	}
	defer tx.Rollback() //nolint:errcheck
	res, err := sink.Upsert(ctx, tx, rows, pgsink.UpsertOptions{})
	if err != nil {
		return 0, err
	}
	return res.Inserted + res.Updated, tx.Commit()
}

// waitPoller waits until the worker polls the task queue.
func waitPoller(ctx context.Context, c client.Client, tq string, w *devstack.Process) error {
	deadline := time.Now().Add(2 * time.Minute)
	for time.Now().Before(deadline) {
		if exited, err := w.Exited(); exited {
			return fmt.Errorf("worker exited: %v", err)
		}
		d, err := c.DescribeTaskQueue(ctx, tq, 1) // workflow task queue
		if err == nil && len(d.GetPollers()) > 0 {
			return nil
		}
		time.Sleep(200 * time.Millisecond)
	}
	return errors.New("the worker did not poll within 2 minutes")
}

// historyEvents counts the events of every execution of a run (it may have
// continued as new).
func historyEvents(ctx context.Context, c client.Client, workflowID string) (events, executions int, err error) {
	runID := ""
	// Walk back from the last execution through ContinuedAsNew links.
	d, err := c.DescribeWorkflowExecution(ctx, workflowID, "")
	if err != nil {
		return 0, 0, err
	}
	runID = d.GetWorkflowExecutionInfo().GetExecution().GetRunId()
	for runID != "" {
		iter := c.GetWorkflowHistory(ctx, workflowID, runID, false, 0)
		first := true
		prev := ""
		for iter.HasNext() {
			ev, err := iter.Next()
			if err != nil {
				return 0, 0, err
			}
			events++
			if first {
				prev = ev.GetWorkflowExecutionStartedEventAttributes().GetContinuedExecutionRunId()
				first = false
			}
		}
		executions++
		runID = prev
	}
	return events, executions, nil
}

// peakRSS reads VmHWM of a process.
func peakRSS(pid int) string {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return "unknown (" + err.Error() + ")"
	}
	for _, line := range strings.Split(string(b), "\n") {
		if strings.HasPrefix(line, "VmHWM:") {
			return strings.TrimSpace(strings.TrimPrefix(line, "VmHWM:"))
		}
	}
	return "unknown"
}

func numCPU() int { return runtime.NumCPU() }
