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
	"crypto/rand"
	"database/sql"
	"encoding/base64"
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
	"sync/atomic"
	"time"

	"github.com/tetherflow/tether/workers/codec"
	tlog "go.temporal.io/sdk/log"

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

// options are the command's flags.
type options struct {
	records, page, inFlight int
	dsn                     string
	keep                    bool
	telemetry               bool
	temporalEnv             bool
}

func parseFlags() options {
	var o options
	flag.IntVar(&o.records, "records", 100000, "contacts to sync")
	flag.IntVar(&o.page, "page", 1000, "records per page (and per upsert batch)")
	flag.IntVar(&o.inFlight, "in-flight", 4, "pages between fetch and apply")
	flag.StringVar(&o.dsn, "database-url", pgtest.BaseDSN(), "PostgreSQL (a fresh schema is created and dropped)")
	flag.BoolVar(&o.keep, "keep", false, "keep the schema and logs")
	flag.BoolVar(&o.telemetry, "telemetry", true, "also run the durable pipeline with telemetry off, with metrics and tracing on (OTLP to a loopback receiver), and with payloads encrypted, to measure their cost")
	flag.BoolVar(&o.temporalEnv, "temporal-env", false, "run the durable pipeline on the Temporal cluster TEMPORAL_ADDRESS, TEMPORAL_NAMESPACE, TEMPORAL_API_KEY, TEMPORAL_TLS* and TEMPORAL_PROFILE name (as the Temporal CLI and the worker read them), instead of a dev server of its own")
	flag.Parse()
	return o
}

// bench is what one run sets up, and how to undo it.
type bench struct {
	o          options
	work       string            // logs and the worker binary
	suffix     string            // names the run's schemas and task queue
	durDSN     map[string]string // each durable variant's schema
	loopDSN    string            // the plain loop's schema
	server     string            // the dev server's address; empty on a cluster of the environment's
	workerBin  string
	sandboxURL string // the sandbox CRM API

	closers []func()
}

func (b *bench) onClose(f func()) { b.closers = append(b.closers, f) }

// close undoes the set-up in reverse order, as deferred calls would.
func (b *bench) close() {
	for i := len(b.closers) - 1; i >= 0; i-- {
		b.closers[i]()
	}
	b.closers = nil
}

func run() error {
	o := parseFlags()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Minute)
	defer cancel()
	b := &bench{o: o}
	defer b.close()

	work, err := os.MkdirTemp("", "tether-bench")
	if err != nil {
		return err
	}
	b.work = work
	if !o.keep {
		b.onClose(func() { os.RemoveAll(work) })
	}
	if err := b.createSchemas(ctx); err != nil {
		return err
	}
	if err := b.serveSandbox(); err != nil {
		return err
	}

	fmt.Printf("tether bench: %d records in pages of %d, %d pages in flight, %d cores\n", o.records, o.page, o.inFlight, numCPU())

	// Baseline first: a plain loop over the same components.
	loopDur, loopRows, err := plainLoop(ctx, b.loopDSN, b.sandboxURL, o.page)
	if err != nil {
		return fmt.Errorf("plain loop: %w", err)
	}

	// The durable pipeline: dev server + worker process as deployed
	// (metrics on, tracing off); then, each on a fresh schema and task
	// queue, with telemetry off and with metrics and tracing on.
	c, err := b.startServer(ctx)
	if err != nil {
		return err
	}
	var runs []durableRun
	for _, v := range variants {
		if v.key != "default" && !o.telemetry {
			continue
		}
		env := append([]string{"DATABASE_URL=" + b.durDSN[v.key]}, v.env...)
		var otlp *otlpDiscard
		if v.traced {
			otlp = serveOTLPDiscard(b)
			env = append(env, "OTEL_TRACES_EXPORTER=otlp", "OTEL_EXPORTER_OTLP_PROTOCOL=http/protobuf",
				"OTEL_EXPORTER_OTLP_ENDPOINT="+otlp.url, "OTEL_SERVICE_NAME=tether-bench-worker")
		}
		vc := c
		if v.encrypted {
			if env, vc, err = b.encryptedClient(ctx, env); err != nil {
				return err
			}
		}
		d, err := b.durable(ctx, vc, v.key, env)
		if err != nil {
			return fmt.Errorf("%s: %w", v.name, err)
		}
		if otlp != nil {
			d.spans = otlp.spans.Load()
		}
		d.name = v.name
		runs = append(runs, d)
	}

	printResults(loopDur, loopRows, runs)
	for _, r := range runs {
		if r.res.Counts.Inserted != loopRows {
			return fmt.Errorf("the contenders disagree: %s inserted %d rows, loop %d", r.name, r.res.Counts.Inserted, loopRows)
		}
	}
	return nil
}

// createSchemas creates a fresh schema per contender.
func (b *bench) createSchemas(ctx context.Context) error {
	admin, err := postgres.Open(ctx, b.o.dsn)
	if err != nil {
		return err
	}
	b.onClose(func() { admin.Close() })
	b.suffix = fmt.Sprint(time.Now().UnixNano())
	loopSchema := "bench_loop_" + b.suffix
	b.durDSN = map[string]string{}
	for _, v := range variants {
		b.durDSN[v.key], _ = postgres.WithSearchPath(b.o.dsn, "bench_"+v.key+"_"+b.suffix)
	}
	schemas := []string{loopSchema}
	for _, v := range variants {
		schemas = append(schemas, "bench_"+v.key+"_"+b.suffix)
	}
	for _, s := range schemas {
		if _, err := admin.ExecContext(ctx, "CREATE SCHEMA "+s); err != nil {
			return err
		}
		if !b.o.keep {
			b.onClose(func() { admin.Exec("DROP SCHEMA " + s + " CASCADE") }) //nolint:errcheck
		}
	}
	b.loopDSN, _ = postgres.WithSearchPath(b.o.dsn, loopSchema)
	return nil
}

// serveSandbox serves the sandbox CRM API on loopback.
func (b *bench) serveSandbox() error {
	sb, err := sandbox.New(sandbox.Options{Seed: 42, Contacts: b.o.records, MaxPageSize: b.o.page})
	if err != nil {
		return err
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return err
	}
	hs := &http.Server{Handler: sb.Handler(), ReadHeaderTimeout: 5 * time.Second}
	go hs.Serve(ln) //nolint:errcheck
	b.onClose(func() { hs.Close() })
	b.sandboxURL = "http://" + ln.Addr().String()
	return nil
}

// startDurable starts the dev server and a worker process polling the
// task queue tq, and returns a client once the worker polls.
func (b *bench) startServer(ctx context.Context) (client.Client, error) {
	if !b.o.temporalEnv {
		cliPath, err := devstack.EnsureTemporalCLI(ctx, os.Stderr)
		if err != nil {
			return nil, err
		}
		srv, err := devstack.StartDevServer(ctx, devstack.DevServerOptions{CLI: cliPath, Headless: true, LogFile: filepath.Join(b.work, "temporal.log")})
		if err != nil {
			return nil, err
		}
		b.onClose(func() { srv.Stop(10 * time.Second) }) //nolint:errcheck
		b.server = srv.Address
	}
	moduleDir, err := os.Getwd()
	if err != nil {
		return nil, err
	}
	if b.workerBin, err = devstack.BuildBinary(ctx, moduleDir, "./workers/cmd/worker", b.work); err != nil {
		return nil, err
	}
	c, err := app.Dial(ctx, b.temporal(), slog.New(slog.NewTextHandler(io.Discard, nil)))
	if err != nil {
		return nil, err
	}
	b.onClose(c.Close)
	return c, nil
}

// temporal is the connection: the dev server's, or with -temporal-env the
// one the environment describes (the worker processes inherit it).
func (b *bench) temporal() config.Temporal {
	if b.server == "" {
		return config.Temporal{}
	}
	return config.Temporal{Address: b.server, Namespace: "default"}
}

// durable starts a worker process with env on a task queue of its own
// (variant names it), runs the sync on it, measures it and stops it.
func (b *bench) durable(ctx context.Context, c client.Client, variant string, env []string) (durableRun, error) {
	tq := "bench-" + variant + "-" + b.suffix
	log := filepath.Join(b.work, "worker-"+variant+".log")
	var server []string
	if b.server != "" {
		server = []string{"TEMPORAL_ADDRESS=" + b.server}
	}
	w, err := devstack.StartProcess("worker", log, append(append(server,
		"TETHER_TEMPORAL_TASK_QUEUE="+tq,
		"TETHER_CONNECTIONS_CRM_BASE_URL="+b.sandboxURL,
		"TETHER_WORKER_INTEGRATIONS=crm-contacts",
		"TETHER_LOG_LEVEL=warn",
	), env...), b.workerBin)
	if err != nil {
		return durableRun{}, err
	}
	defer w.Stop(10 * time.Second) //nolint:errcheck
	if err := waitPoller(ctx, c, tq, w); err != nil {
		return durableRun{}, err
	}
	return b.runDurable(ctx, c, w, tq, log)
}

// otlpDiscard is an OTLP/HTTP receiver on loopback that counts the spans'
// exports and drops them: the cost of tracing without a collector's.
type otlpDiscard struct {
	url   string
	spans atomic.Int64 // export requests received
}

func serveOTLPDiscard(b *bench) *otlpDiscard {
	d := &otlpDiscard{}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		panic(err)
	}
	hs := &http.Server{ReadHeaderTimeout: 5 * time.Second, Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		_, _ = io.Copy(io.Discard, r.Body)
		d.spans.Add(1)
		w.Header().Set("Content-Type", "application/x-protobuf")
	})}
	go hs.Serve(ln) //nolint:errcheck
	b.onClose(func() { hs.Close() })
	d.url = "http://" + ln.Addr().String()
	return d
}

// variant is one way to run the durable pipeline's worker.
type variant struct {
	key, name string
	env       []string
	traced    bool // export spans over OTLP to a loopback receiver
	encrypted bool // payloads encrypted (workers/codec), with a fresh key
}

// variants are the durable pipeline's: as deployed first (its figure is
// the one compared), then telemetry off and everything on.
var variants = []variant{
	{key: "default", name: "durable pipeline (metrics on)", env: []string{"TETHER_METRICS_LISTEN=127.0.0.1:0"}},
	{key: "off", name: "durable, telemetry off", env: []string{"TETHER_METRICS_LISTEN="}},
	{key: "traced", name: "durable, metrics + tracing on", env: []string{"TETHER_METRICS_LISTEN=127.0.0.1:0"}, traced: true},
	{key: "encrypted", name: "durable, payloads encrypted", env: []string{"TETHER_METRICS_LISTEN=127.0.0.1:0"}, encrypted: true},
}

// encryptedClient makes a fresh key, adds it to the worker's env and
// returns a client that seals and opens payloads with it.
func (b *bench) encryptedClient(ctx context.Context, env []string) ([]string, client.Client, error) {
	raw := make([]byte, codec.KeySize)
	if _, err := rand.Read(raw); err != nil {
		return nil, nil, err
	}
	key := codec.EnvPrefix + "BENCH=" + base64.StdEncoding.EncodeToString(raw)
	kr, err := codec.Load("bench", "", []string{key})
	if err != nil {
		return nil, nil, err
	}
	opts, err := b.temporal().ClientOptions()
	if err != nil {
		return nil, nil, err
	}
	opts.Logger = tlog.NewStructuredLogger(slog.New(slog.DiscardHandler))
	opts.DataConverter, opts.FailureConverter = codec.DataConverter(kr), codec.FailureConverter(kr)
	c, err := client.DialContext(ctx, opts)
	if err != nil {
		return nil, nil, err
	}
	b.onClose(c.Close)
	return append(env, "TETHER_ENCRYPTION_CURRENT=bench", key), c, nil
}

// durableRun is what the durable pipeline's run did and cost.
type durableRun struct {
	res                datasync.Result
	dur                time.Duration
	rss                string // the worker's peak RSS
	events, executions int
	spans              int64  // OTLP export requests (traced variant)
	name               string // the variant's
}

// runDurable syncs crm-contacts on the worker w polling tq, and measures it.
func (b *bench) runDurable(ctx context.Context, c client.Client, w *devstack.Process, tq, log string) (durableRun, error) {
	var d durableRun
	t0 := time.Now()
	runHandle, err := cli.StartSync(ctx, c, tq, datasync.Input{Integration: "crm-contacts", Trigger: "bench"})
	if err != nil {
		return d, err
	}
	if err := c.GetWorkflow(ctx, runHandle.GetID(), "").Get(ctx, &d.res); err != nil {
		return d, fmt.Errorf("durable run: %w (worker log %s)", err, log)
	}
	d.dur = time.Since(t0)
	d.rss = peakRSS(w.Pid())
	d.events, d.executions, err = historyEvents(ctx, c, runHandle.GetID())
	if err != nil {
		return d, err
	}
	return d, nil
}

// printResults prints the contenders' figures and the durable runs' cost.
func printResults(loopDur time.Duration, loopRows int, runs []durableRun) {
	loopRate := float64(loopRows) / loopDur.Seconds()
	rate := func(d durableRun) float64 { return float64(d.res.Counts.Inserted) / d.dur.Seconds() }
	fmt.Printf("\n%-40s %10s %12s %12s\n", "", "time", "records/s", "peak RSS")
	fmt.Printf("%-40s %10s %12.0f %12s   (%d rows)\n", "plain Go loop (baseline)", loopDur.Round(time.Millisecond), loopRate, "", loopRows)
	for _, d := range runs {
		extra := ""
		if d.spans > 0 {
			extra = fmt.Sprintf(", %d OTLP exports", d.spans)
		}
		fmt.Printf("%-40s %10s %12.0f %12s   (%d rows%s)\n", d.name, d.dur.Round(time.Millisecond), rate(d), d.rss, d.res.Counts.Inserted, extra)
	}
	d := runs[0]
	fmt.Printf("\nratio durable/plain:             %.2f\n", rate(d)/loopRate)
	if len(runs) == 4 {
		fmt.Printf("records/s vs telemetry off:      metrics %.2f, metrics + tracing %.2f\n", rate(runs[0])/rate(runs[1]), rate(runs[2])/rate(runs[1]))
		fmt.Printf("records/s encrypted / plain:     %.2f (both with metrics on)\n", rate(runs[3])/rate(runs[0]))
	}
	fmt.Printf("history events:                  %d in %d execution(s) (%.0f per execution, %d pages)\n",
		d.events, d.executions, float64(d.events)/float64(max(1, d.executions)), d.res.Counts.Pages)
}

// plainLoop does the pipeline's work without Temporal or staging: fetch a
// page, validate, transform, upsert in one transaction, repeat.
func plainLoop(ctx context.Context, dsn, sandboxURL string, pageSize int) (time.Duration, int, error) {
	db, err := postgres.Open(ctx, dsn)
	if err != nil {
		return 0, 0, err
	}
	defer db.Close()
	def := integrations.CRMContacts(config.Connection{BaseURL: sandboxURL, Auth: "none"}).Normalize()
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
