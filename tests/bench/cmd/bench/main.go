// Command bench measures the durable sync pipeline against a plain,
// non-durable Go loop doing the same fetch → validate → transform → upsert
// work and against a peer, Benthos v4.27 doing the same job
// (tests/bench/peer/benthos), in the same run, on the same machine and the
// same sandbox data:
//
//	go run ./tests/bench/cmd/bench [--records 100000] [--page 1000] [--runs 1]
//	    [--contenders loop,durable,benthos]
//
// It starts its own Temporal dev server (headless), the sandbox CRM API on
// loopback, and a worker process per durable run, each on free ports,
// builds Benthos once into a cache folder (.tether/bench/benthos-peer),
// syncs the records into a fresh PostgreSQL schema per contender and run,
// checks the row count, then prints wall time and records/s for each
// contender (min/median/max over --runs rounds, the contenders alternating),
// history events per execution, the worker's and Benthos's peak RSS, and
// the ratios the targets are about. Everything it starts stops when it
// ends.
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
	"strconv"
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

// The contenders, in the order a round runs them by default.
const (
	loopName    = "loop"
	durableName = "durable"
	benthosName = "benthos"
)

// destTable is the table every contender writes (crm-contacts' destination).
const destTable = "crm_contacts"

// options are the command's flags.
type options struct {
	records, page, inFlight int
	runs                    int
	contenders              []string
	dsn                     string
	keep, steps             bool
	telemetry               bool
	reread                  bool
	temporalEnv             bool
	benthosThreads          int
	benthosCache            string
	timeout                 time.Duration
}

func (o options) has(contender string) bool {
	for _, c := range o.contenders {
		if c == contender {
			return true
		}
	}
	return false
}

func parseFlags() (options, error) {
	var o options
	var contenders string
	flag.IntVar(&o.records, "records", 100000, "contacts to sync")
	flag.IntVar(&o.page, "page", 1000, "records per page (and per upsert batch): the loop's and Benthos's page, and the sandbox's largest (the worker asks for crm-contacts' batch_size, 1000)")
	flag.IntVar(&o.inFlight, "in-flight", 4, "pages between fetch and apply, as printed in the header (the worker uses crm-contacts' pages_in_flight, 4)")
	flag.IntVar(&o.runs, "runs", 1, "rounds: each runs every contender once, one after another (loop, durable, benthos, loop, ...); min/median/max are over the rounds")
	flag.StringVar(&contenders, "contenders", "loop,durable,benthos", "contenders to run, in this order in each round: loop (plain Go loop), durable (the durable pipeline), benthos (Benthos v4.27, the peer)")
	flag.StringVar(&o.dsn, "database-url", pgtest.BaseDSN(), "PostgreSQL (a fresh schema is created and dropped per contender and round)")
	flag.BoolVar(&o.keep, "keep", false, "keep the schemas and logs")
	flag.BoolVar(&o.steps, "steps", true, "after each durable run (metrics on), print where its time went: per step kind, the time waiting in the task queue and running, from its history")
	flag.BoolVar(&o.reread, "reread", true, "in the first round, also time a full re-read of the unchanged source right after the durable pipeline's first load, on the same worker, with the validation memory on (the default) and off")
	flag.BoolVar(&o.telemetry, "telemetry", true, "in the first round, also run the durable pipeline with telemetry off, with metrics and tracing on (OTLP to a loopback receiver), and with payloads encrypted, to measure their cost")
	flag.BoolVar(&o.temporalEnv, "temporal-env", false, "run the durable pipeline on the Temporal cluster TEMPORAL_ADDRESS, TEMPORAL_NAMESPACE, TEMPORAL_API_KEY, TEMPORAL_TLS* and TEMPORAL_PROFILE name (as the Temporal CLI and the worker read them), instead of a dev server of its own")
	flag.IntVar(&o.benthosThreads, "benthos-threads", 2, "Benthos pipeline threads (its THREADS)")
	flag.StringVar(&o.benthosCache, "benthos-cache", filepath.Join(".tether", "bench", "benthos-peer"), "folder the Benthos binary is built into once and reused from (keyed by the program's go.mod, go.sum and main.go)")
	flag.DurationVar(&o.timeout, "timeout", 2*time.Hour, "the whole command's limit, the Benthos build included")
	flag.Parse()
	if flag.NArg() > 0 {
		return o, fmt.Errorf("unexpected arguments %q", flag.Args())
	}
	if o.runs < 1 {
		return o, fmt.Errorf("--runs %d: at least 1", o.runs)
	}
	if o.records < 1 || o.page < 1 {
		return o, errors.New("--records and --page must be positive")
	}
	seen := map[string]bool{}
	for _, c := range strings.Split(contenders, ",") {
		c = strings.TrimSpace(strings.ToLower(c))
		switch c {
		case "":
			continue
		case loopName, durableName, benthosName:
		default:
			return o, fmt.Errorf("--contenders: unknown %q (loop, durable, benthos)", c)
		}
		if !seen[c] {
			seen[c] = true
			o.contenders = append(o.contenders, c)
		}
	}
	if len(o.contenders) == 0 {
		return o, errors.New("--contenders: none")
	}
	return o, nil
}

// bench is what one run sets up, and how to undo it.
type bench struct {
	o          options
	moduleDir  string // the repository root (the command runs from it)
	work       string // logs and the worker binary
	suffix     string // names the run's schemas and task queues
	admin      *sql.DB
	server     string // the dev server's address; empty on a cluster of the environment's
	workerBin  string
	sandboxURL string // the sandbox CRM API
	benthosBin string

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
	o, err := parseFlags()
	if err != nil {
		return err
	}
	ctx, cancel := context.WithTimeout(context.Background(), o.timeout)
	defer cancel()
	b := &bench{o: o}
	defer b.close()

	if b.moduleDir, err = os.Getwd(); err != nil {
		return err
	}
	work, err := os.MkdirTemp("", "tether-bench")
	if err != nil {
		return err
	}
	b.work = work
	if !o.keep {
		b.onClose(func() { os.RemoveAll(work) })
	}
	if b.admin, err = postgres.Open(ctx, o.dsn); err != nil {
		return err
	}
	b.onClose(func() { b.admin.Close() })
	b.suffix = fmt.Sprint(time.Now().UnixNano())
	if err := b.serveSandbox(); err != nil {
		return err
	}

	fmt.Printf("tether bench: %d records (sandbox seed 42, no invalid records) in pages of %d, %d pages in flight, %d cores, %d round(s) of %s\n",
		o.records, o.page, o.inFlight, numCPU(), o.runs, strings.Join(o.contenders, ", "))
	// The plain loop runs in this process: it gets the garbage collector
	// setting the worker binary runs with (app.TuneGC), so the two differ
	// by Temporal and staging only. The worker inherits GOGC when it is set.
	gc, fromEnv := app.TuneGC()
	gcFrom := "the worker's default"
	if fromEnv {
		gcFrom = "GOGC"
	}
	fmt.Printf("garbage collector: GOGC=%d (%s) in the worker and in this process (the plain loop, the sandbox)\n", gc, gcFrom)
	if load := loadAvg(); load != "" {
		fmt.Printf("load average before: %s\n", load)
	}

	// Set-up that is not timed: the Benthos build, the dev server and the
	// worker binary.
	if o.has(benthosName) {
		if b.benthosBin, err = buildBenthos(ctx, filepath.Join(b.moduleDir, peerDir), o.benthosCache, os.Stdout); err != nil {
			return fmt.Errorf("benthos build: %w", err)
		}
	}
	var c client.Client
	if o.has(durableName) {
		if c, err = b.startServer(ctx); err != nil {
			return err
		}
	}
	if o.has(durableName) && o.telemetry {
		if o.runs > 1 {
			fmt.Println("telemetry off / metrics + tracing / encrypted variants of the durable pipeline: first round only (--telemetry=false skips them)")
		}
	}

	res := results{}
	for round := 1; round <= o.runs; round++ {
		fmt.Printf("\nround %d/%d\n", round, o.runs)
		for _, k := range o.contenders {
			switch k {
			case loopName:
				s, err := b.runLoop(ctx, round)
				if err != nil {
					return fmt.Errorf("plain loop, round %d: %w", round, err)
				}
				res.add(loopName, "plain Go loop (baseline)", s)
			case durableName:
				for _, v := range variants {
					if v.key != "default" && (round > 1 || (v.reread && !o.reread) || (!v.reread && !o.telemetry)) {
						continue
					}
					s, err := b.runVariant(ctx, c, v, round)
					if err != nil {
						return fmt.Errorf("%s, round %d: %w", v.name, round, err)
					}
					res.add(durableName+"/"+v.key, v.name, s)
				}
			case benthosName:
				s, err := b.runBenthos(ctx, round)
				if err != nil {
					return fmt.Errorf("benthos, round %d: %w", round, err)
				}
				res.add(benthosName, "Benthos v4.27 (peer)", s)
			}
		}
	}
	res.print(o)
	if load := loadAvg(); load != "" {
		fmt.Printf("\nload average after: %s\n", load)
	}
	return nil
}

// freshSchema creates a schema for one contender's run and returns its
// name, a DSN with search_path set to it, and how to drop it.
func (b *bench) freshSchema(ctx context.Context, name string, round int) (string, string, func(), error) {
	s := fmt.Sprintf("bench_%s_%s_r%d", name, b.suffix, round)
	if _, err := b.admin.ExecContext(ctx, "CREATE SCHEMA "+s); err != nil {
		return "", "", nil, err
	}
	drop := func() {
		if !b.o.keep {
			b.admin.Exec("DROP SCHEMA IF EXISTS " + s + " CASCADE") //nolint:errcheck
		}
	}
	b.onClose(drop) // if the run fails before it drops its own
	dsn, err := postgres.WithSearchPath(b.o.dsn, s)
	if err != nil {
		return "", "", nil, err
	}
	return s, dsn, drop, nil
}

// checkRows counts the rows a contender left in its schema: every record,
// once.
func (b *bench) checkRows(ctx context.Context, schemaName string) (int, error) {
	var n int
	if err := b.admin.QueryRowContext(ctx, "SELECT count(*) FROM "+schemaName+"."+destTable).Scan(&n); err != nil {
		return 0, err
	}
	if n != b.o.records {
		return n, fmt.Errorf("%s.%s holds %d rows, want %d", schemaName, destTable, n, b.o.records)
	}
	return n, nil
}

// runLoop runs the plain loop on a fresh schema.
func (b *bench) runLoop(ctx context.Context, round int) (sample, error) {
	s, dsn, drop, err := b.freshSchema(ctx, "loop", round)
	if err != nil {
		return sample{}, err
	}
	defer drop()
	dur, cpu, rows, err := plainLoop(ctx, dsn, b.sandboxURL, b.o.page)
	if err != nil {
		return sample{}, err
	}
	if rows != b.o.records {
		return sample{}, fmt.Errorf("upserted %d rows, want %d", rows, b.o.records)
	}
	n, err := b.checkRows(ctx, s)
	if err != nil {
		return sample{}, err
	}
	out := sample{dur: dur, rows: n, cpu: cpu}
	progress("plain Go loop", out, "")
	return out, nil
}

// runVariant runs one durable variant on a fresh schema and task queue.
func (b *bench) runVariant(ctx context.Context, c client.Client, v variant, round int) (sample, error) {
	s, dsn, drop, err := b.freshSchema(ctx, v.key, round)
	if err != nil {
		return sample{}, err
	}
	defer drop()
	env := append([]string{"DATABASE_URL=" + dsn}, v.env...)
	var otlp *otlpDiscard
	if v.traced {
		otlp = serveOTLPDiscard(b)
		env = append(env, "OTEL_TRACES_EXPORTER=otlp", "OTEL_EXPORTER_OTLP_PROTOCOL=http/protobuf",
			"OTEL_EXPORTER_OTLP_ENDPOINT="+otlp.url, "OTEL_SERVICE_NAME=tether-bench-worker")
	}
	vc := c
	if v.encrypted {
		if env, vc, err = b.encryptedClient(ctx, env); err != nil {
			return sample{}, err
		}
	}
	d, err := b.durable(ctx, vc, fmt.Sprintf("%s-r%d", v.key, round), env, v.reread)
	if err != nil {
		return sample{}, err
	}
	if v.reread {
		// The timed run read everything again (and, asking again since
		// each page's last record, the records sharing its updated_at):
		// nothing to write.
		if d.res.Counts.Fetched < b.o.records || d.res.Counts.Unchanged != b.o.records || d.res.Counts.Applied() != 0 {
			return sample{}, fmt.Errorf("re-read: fetched %d, unchanged %d, written %d; want every one of %d read and none written",
				d.res.Counts.Fetched, d.res.Counts.Unchanged, d.res.Counts.Applied(), b.o.records)
		}
	} else if d.res.Counts.Inserted != b.o.records {
		return sample{}, fmt.Errorf("inserted %d rows, want %d", d.res.Counts.Inserted, b.o.records)
	}
	n, err := b.checkRows(ctx, s)
	if err != nil {
		return sample{}, err
	}
	out := sample{dur: d.dur, rows: n, rss: d.rss, events: d.events, executions: d.executions, pages: d.res.Counts.Pages, cpu: d.cpu}
	extra := ""
	if otlp != nil {
		out.spans = otlp.spans.Load()
		extra = fmt.Sprintf(", %d OTLP exports", out.spans)
	}
	progress(v.name, out, fmt.Sprintf("%d history events in %d execution(s)%s", d.events, d.executions, extra))
	if d.steps != nil && v.key == "default" {
		printStepTimes(d.steps, d.markers, d.dur)
	}
	return out, nil
}

// serveSandbox serves the sandbox CRM API on loopback: the data every
// contender reads.
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

// startServer starts the dev server (unless -temporal-env), builds the
// worker binary and returns a client.
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
	var err error
	if b.workerBin, err = devstack.BuildBinary(ctx, b.moduleDir, "./workers/cmd/worker", b.work); err != nil {
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
// (variant names it, with the round), runs the sync on it, measures it and
// stops it.
// With reread, it first loads the source (untimed), then times a full
// re-read of it on the same worker.
func (b *bench) durable(ctx context.Context, c client.Client, variant string, env []string, reread bool) (durableRun, error) {
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
	if reread {
		if _, err := b.runDurable(ctx, c, w, tq, log, false); err != nil {
			return durableRun{}, err
		}
	}
	return b.runDurable(ctx, c, w, tq, log, reread)
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
	reread    bool // time a full re-read after an untimed first load
}

// variants are the durable pipeline's: as deployed first (its figure is
// the one compared, in every round), then, in the first round only,
// telemetry off, everything on and payloads encrypted.
var variants = []variant{
	{key: "default", name: "durable pipeline (metrics on)", env: []string{"TETHER_METRICS_LISTEN=127.0.0.1:0"}},
	{key: "off", name: "durable, telemetry off", env: []string{"TETHER_METRICS_LISTEN="}},
	{key: "traced", name: "durable, metrics + tracing on", env: []string{"TETHER_METRICS_LISTEN=127.0.0.1:0"}, traced: true},
	{key: "encrypted", name: "durable, payloads encrypted", env: []string{"TETHER_METRICS_LISTEN=127.0.0.1:0"}, encrypted: true},
	{key: "reread", name: "durable, full re-read, unchanged", env: []string{"TETHER_METRICS_LISTEN=127.0.0.1:0"}, reread: true},
	{key: "rereadoff", name: "durable, full re-read, validation memory off", env: []string{"TETHER_METRICS_LISTEN=127.0.0.1:0", "TETHER_WORKER_VALIDATION_CACHE=0"}, reread: true},
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
	rss                int64 // the worker's peak RSS, bytes (0: unknown)
	cpu                float64
	events, executions int
	spans              int64  // OTLP export requests (traced variant)
	name               string // the variant's
	steps              []*stepTime
	markers            int
}

// runDurable syncs crm-contacts on the worker w polling tq, and measures it.
func (b *bench) runDurable(ctx context.Context, c client.Client, w *devstack.Process, tq, log string, full bool) (durableRun, error) {
	var d durableRun
	t0, cpu := time.Now(), startCPU()
	runHandle, err := cli.StartSync(ctx, c, tq, datasync.Input{Integration: "crm-contacts", Trigger: "bench", Full: full})
	if err != nil {
		return d, err
	}
	if err := c.GetWorkflow(ctx, runHandle.GetID(), "").Get(ctx, &d.res); err != nil {
		return d, fmt.Errorf("durable run: %w (worker log %s)", err, log)
	}
	d.dur, d.cpu = time.Since(t0), cpu.seconds()
	d.rss = peakRSS(w.Pid())
	d.events, d.executions, err = historyEvents(ctx, c, runHandle.GetID())
	if err != nil {
		return d, err
	}
	if b.o.steps {
		if d.steps, d.markers, err = stepTimes(ctx, c, runHandle.GetID()); err != nil {
			return d, err
		}
	}
	return d, nil
}

// plainLoop does the pipeline's work without Temporal or staging: fetch a
// page, validate, transform, upsert in one transaction, repeat.
func plainLoop(ctx context.Context, dsn, sandboxURL string, pageSize int) (time.Duration, float64, int, error) {
	db, err := postgres.Open(ctx, dsn)
	if err != nil {
		return 0, 0, 0, err
	}
	defer db.Close()
	def := integrations.CRMContacts(config.Connection{BaseURL: sandboxURL, Auth: "none"}).Normalize()
	src, err := httpsource.New(def.Name, *def.Source.HTTP)
	if err != nil {
		return 0, 0, 0, err
	}
	reg, err := schema.NewRegistry(schemas.FS())
	if err != nil {
		return 0, 0, 0, err
	}
	v, err := reg.Get(def.Schema)
	if err != nil {
		return 0, 0, 0, err
	}
	mapFn, err := def.Mapping.Compile()
	if err != nil {
		return 0, 0, 0, err
	}
	fn := mapping.Chain(mapFn, def.Transform)
	sink, err := pgsink.NewTableWriter(*def.Destination.Postgres)
	if err != nil {
		return 0, 0, 0, err
	}
	if err := sink.Ensure(ctx, db); err != nil {
		return 0, 0, 0, err
	}
	start, cpu := time.Now(), startCPU()
	total := 0
	req := connector.Request{Integration: def.Name, Limit: pageSize}
	for {
		pg, err := src.Fetch(ctx, req)
		if err != nil {
			return 0, 0, 0, err
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
			return 0, 0, 0, err
		}
		total += n
		if pg.Done {
			break
		}
		req.Position = pg.Next
	}
	return time.Since(start), cpu.seconds(), total, nil
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

// peakRSS reads VmHWM of a process, in bytes (0 when unknown).
func peakRSS(pid int) int64 {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return 0
	}
	for _, line := range strings.Split(string(b), "\n") {
		if v, ok := strings.CutPrefix(line, "VmHWM:"); ok {
			kb, err := strconv.ParseInt(strings.TrimSpace(strings.TrimSuffix(strings.TrimSpace(v), "kB")), 10, 64)
			if err != nil {
				return 0
			}
			return kb * 1024
		}
	}
	return 0
}

// loadAvg is /proc/loadavg's three averages, or empty.
func loadAvg() string {
	b, err := os.ReadFile("/proc/loadavg")
	if err != nil {
		return ""
	}
	f := strings.Fields(string(b))
	if len(f) < 3 {
		return ""
	}
	return strings.Join(f[:3], " ")
}

func numCPU() int { return runtime.NumCPU() }
