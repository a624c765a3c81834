// Package integration runs tether end to end against a real Temporal dev
// server (the pinned Temporal CLI, started with testsuite.StartDevServer),
// the real PostgreSQL (one schema per test) and the sandbox CRM API served
// over loopback HTTP.
package integration

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"flag"
	"fmt"
	"io"
	"io/fs"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"regexp"
	"sort"
	"strings"
	"sync"
	"testing"
	"time"

	"go.temporal.io/sdk/client"
	"go.temporal.io/sdk/interceptor"
	"go.temporal.io/sdk/testsuite"
	"go.temporal.io/sdk/worker"
	"google.golang.org/protobuf/encoding/protojson"

	historypb "go.temporal.io/api/history/v1"

	"github.com/tetherflow/tether/activities/connector"
	"github.com/tetherflow/tether/activities/connector/httpsink"
	"github.com/tetherflow/tether/activities/connector/httpsource"
	"github.com/tetherflow/tether/activities/integration"
	"github.com/tetherflow/tether/activities/lib/schema"
	"github.com/tetherflow/tether/activities/store"
	"github.com/tetherflow/tether/activities/twoway"
	"github.com/tetherflow/tether/schemas"
	"github.com/tetherflow/tether/starters/cli"
	"github.com/tetherflow/tether/starters/devstack"
	"github.com/tetherflow/tether/starters/sandbox"
	"github.com/tetherflow/tether/tests/pgtest"
	"github.com/tetherflow/tether/workers/app"
	"github.com/tetherflow/tether/workers/config"
	"github.com/tetherflow/tether/workers/integrations"
	"github.com/tetherflow/tether/workers/telemetry"
	"github.com/tetherflow/tether/workflows/datasync"
	"github.com/tetherflow/tether/workflows/onboarding"
)

var (
	devServer   *testsuite.DevServer
	temporalCLI string
	recordDir   = flag.String("record-histories", "", "write the histories of the runs tests name to this directory (replay test data)")
)

func TestMain(m *testing.M) {
	flag.Parse()
	if testing.Short() {
		fmt.Println("integration tests skipped in -short mode")
		os.Exit(0)
	}
	temporalCLI = devstack.FindTemporalCLI()
	if temporalCLI == "" {
		fmt.Fprintln(os.Stderr, "integration: no temporal binary found (PATH, $(go env GOPATH)/bin or TEMPORAL_CLI); `make test` installs the pinned one")
		os.Exit(1)
	}
	ctx := context.Background()
	srv, err := testsuite.StartDevServer(ctx, testsuite.DevServerOptions{
		ExistingPath: temporalCLI,
		ClientOptions: &client.Options{
			Namespace: "default",
			Logger:    quietLogger(),
		},
		LogLevel: "error",
		ExtraArgs: []string{
			"--search-attribute", "IntegrationName=Keyword",
			"--search-attribute", "SyncStatus=Keyword",
			"--dynamic-config-value", "system.enableActivityEagerExecution=true",
		},
		Stdout: io.Discard,
		Stderr: io.Discard,
	})
	if err != nil {
		fmt.Fprintf(os.Stderr, "integration: start Temporal dev server with %s: %v\n", temporalCLI, err)
		os.Exit(1)
	}
	devServer = srv
	code := m.Run()
	_ = srv.Stop()
	os.Exit(code)
}

func quietLogger() *testLogger { return &testLogger{} }

// testLogger drops the SDK's logs unless TETHER_TEST_LOGS is set.
type testLogger struct{}

func (*testLogger) Debug(string, ...any) {}
func (*testLogger) Info(string, ...any)  {}
func (*testLogger) Warn(msg string, kv ...any) {
	if os.Getenv("TETHER_TEST_LOGS") != "" {
		fmt.Fprintln(os.Stderr, append([]any{"WARN", msg}, kv...)...)
	}
}
func (*testLogger) Error(msg string, kv ...any) {
	if os.Getenv("TETHER_TEST_LOGS") != "" {
		fmt.Fprintln(os.Stderr, append([]any{"ERROR", msg}, kv...)...)
	}
}

// stack is one test's world: a schema, a sandbox API, a worker on its own
// task queue, and a client.
type stack struct {
	t         *testing.T
	schema    *pgtest.Schema
	store     *store.Store
	sandbox   *sandbox.Server
	url       string
	client    client.Client
	taskQueue string
	worker    worker.Worker
	defs      []integration.Definition
	// schemas overrides the embedded schema files (tests that "fix" a schema).
	schemas  fs.FS
	recorded int // histories written by record
	// httpOptions are passed to every HTTP source of the in-process worker.
	httpOptions []httpsource.Option
	// sinkOptions are passed to every HTTP destination of the in-process worker.
	sinkOptions []httpsink.Option
	// acts are the in-process worker's activities (tests reload their catalog).
	acts *app.Activities
	// twoWay are the in-process worker's two-way integrations.
	twoWay *twoway.Registry
	// connectors registers more connectors on the in-process worker's registry.
	connectors func(*connector.Registry)
}

// lookupEnv gives PostgreSQL sources that read DATABASE_URL (the shipped
// pg-contacts-billing) the test's schema, as a worker process gets it.
func (s *stack) lookupEnv(name string) (string, bool) {
	if name == "DATABASE_URL" {
		return s.schema.DSN, true
	}
	return os.LookupEnv(name)
}

type stackOptions struct {
	sandbox sandbox.Options
	// defs builds the integrations from the CRM settings (default: the shipped ones).
	defs func(config.Connection) []integration.Definition
	crm  config.Connection
	// noWorker skips the in-process worker (tests that run worker processes).
	noWorker bool
	// transport wraps the HTTP sources' transport (fault injection).
	transport func(http.RoundTripper) http.RoundTripper
	// twoWay builds the two-way integrations from the sandbox's URL.
	twoWay func(sandboxURL string) []twoway.Definition
	// connectors registers more connectors on the worker's registry.
	connectors func(*connector.Registry)
}

func newStack(t *testing.T, o stackOptions) *stack {
	t.Helper()
	s := &stack{t: t, schema: pgtest.New(t), client: devServer.Client(), connectors: o.connectors}
	ctx := context.Background()
	if err := store.Migrate(ctx, s.schema.DB); err != nil {
		t.Fatalf("migrate: %v", err)
	}
	s.store = store.New(s.schema.DB)
	sb, err := sandbox.New(o.sandbox)
	if err != nil {
		t.Fatalf("sandbox: %v", err)
	}
	ts := httptest.NewServer(sb.Handler())
	t.Cleanup(ts.Close)
	s.sandbox, s.url = sb, ts.URL
	crm := o.crm
	crm.BaseURL = ts.URL
	if crm.Auth == "" {
		crm.Auth = "none"
	}
	if o.defs == nil {
		o.defs = integrations.All
	}
	s.defs = o.defs(crm)
	if o.twoWay != nil {
		reg, err := twoway.NewRegistry(o.twoWay(ts.URL)...)
		if err != nil {
			t.Fatalf("two-way integrations: %v", err)
		}
		s.twoWay = reg
	}
	s.taskQueue = taskQueueName(t)
	if o.transport != nil {
		s.httpOptions = append(s.httpOptions, httpsource.WithTransport(o.transport(http.DefaultTransport.(*http.Transport).Clone())))
	}
	if !o.noWorker {
		s.startWorker()
	}
	return s
}

func taskQueueName(t *testing.T) string {
	var b [4]byte
	_, _ = rand.Read(b[:])
	name := regexp.MustCompile(`[^A-Za-z0-9]+`).ReplaceAllString(t.Name(), "-")
	return "it-" + name + "-" + hex.EncodeToString(b[:])
}

// startWorker runs an in-process worker on the stack's task queue.
func (s *stack) startWorker() {
	s.t.Helper()
	reg, err := integration.NewRegistry(s.defs...)
	if err != nil {
		s.t.Fatalf("registry: %v", err)
	}
	fsys := schemas.FS()
	if s.schemas != nil {
		fsys = s.schemas
	}
	sch, err := schema.NewRegistry(fsys)
	if err != nil {
		s.t.Fatalf("schemas: %v", err)
	}
	log := slog.New(slog.NewTextHandler(io.Discard, nil))
	if os.Getenv("TETHER_TEST_LOGS") != "" {
		log = slog.New(slog.NewTextHandler(os.Stderr, nil))
	}
	acts, err := app.Build(app.BuildOptions{DB: s.schema.DB, Store: s.store, Integrations: reg, Schemas: sch, Logger: log,
		HTTPSource: s.httpOptions, HTTPSink: s.sinkOptions, LookupEnv: s.lookupEnv, Temporal: s.client, TwoWay: s.twoWay, Connectors: s.connectors})
	if err != nil {
		s.t.Fatalf("activities: %v", err)
	}
	// As the worker binary: the interceptor that scopes logs, records
	// metrics (none here) and tells runs of their retried steps.
	w := worker.New(s.client, s.taskQueue, worker.Options{Interceptors: []interceptor.WorkerInterceptor{
		telemetry.NewInterceptor(nil, &telemetry.RetryNotice{Client: s.client, WorkflowTypes: []string{datasync.WorkflowType}})}})
	app.Register(w, acts)
	onboarding.Register(w)
	if err := w.Start(); err != nil {
		s.t.Fatalf("worker: %v", err)
	}
	s.worker, s.acts = w, acts
	s.t.Cleanup(w.Stop)
}

// restartWorker stops the in-process worker and starts one running defs
// with the schema files fsys (nil: the embedded ones), as a deploy would.
func (s *stack) restartWorker(defs []integration.Definition, fsys fs.FS) {
	s.t.Helper()
	if s.worker != nil {
		s.worker.Stop()
	}
	s.defs, s.schemas = defs, fsys
	s.startWorker()
}

// start starts a sync run without waiting.
func (s *stack) start(in datasync.Input) client.WorkflowRun {
	s.t.Helper()
	in.Trigger = "test"
	run, err := cli.StartSync(context.Background(), s.client, s.taskQueue, in)
	if err != nil {
		s.t.Fatalf("start %s: %v", in.Integration, err)
	}
	return run
}

// sync runs a sync to its end and returns its result and error.
func (s *stack) sync(in datasync.Input) (datasync.Result, error) {
	s.t.Helper()
	run := s.start(in)
	return s.wait(run)
}

func (s *stack) wait(run client.WorkflowRun) (datasync.Result, error) {
	s.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	var res datasync.Result
	err := s.client.GetWorkflow(ctx, run.GetID(), "").Get(ctx, &res)
	if ctx.Err() != nil {
		s.t.Fatalf("run %s did not finish in 5 minutes", run.GetID())
	}
	s.record(run.GetID())
	return res, err
}

// mustSync runs a sync that must complete.
func (s *stack) mustSync(in datasync.Input) datasync.Result {
	s.t.Helper()
	res, err := s.sync(in)
	if err != nil {
		s.t.Fatalf("sync %s: %v", in.Integration, err)
	}
	return res
}

// record writes the run's histories for the replay tests when asked to:
// one file per execution, following continue-as-new back to the first.
func (s *stack) record(workflowID string) {
	if *recordDir == "" {
		return
	}
	ctx := context.Background()
	d, err := s.client.DescribeWorkflowExecution(ctx, workflowID, "")
	if err != nil {
		s.t.Fatalf("describe: %v", err)
	}
	s.recorded++
	base := strings.ToLower(regexp.MustCompile(`[^A-Za-z0-9]+`).ReplaceAllString(s.t.Name(), "_"))
	base = fmt.Sprintf("%s_run%d", strings.Trim(base, "_"), s.recorded)
	runID := d.GetWorkflowExecutionInfo().GetExecution().GetRunId()
	for n := 0; runID != ""; n++ {
		iter := s.client.GetWorkflowHistory(ctx, workflowID, runID, false, 0)
		var h historypb.History
		for iter.HasNext() {
			ev, err := iter.Next()
			if err != nil {
				s.t.Fatalf("history: %v", err)
			}
			h.Events = append(h.Events, ev)
		}
		b, err := protojson.Marshal(&h)
		if err != nil {
			s.t.Fatalf("marshal history: %v", err)
		}
		name := base + ".json"
		if n > 0 {
			name = fmt.Sprintf("%s_previous_%d.json", base, n)
		}
		if err := os.WriteFile(filepath.Join(*recordDir, name), b, 0o644); err != nil {
			s.t.Fatalf("write history: %v", err)
		}
		runID = h.Events[0].GetWorkflowExecutionStartedEventAttributes().GetContinuedExecutionRunId()
	}
}

// tableRows returns every row of a destination table as JSON objects keyed
// by id.
func (s *stack) tableRows(table string) map[int64]map[string]any {
	return s.tableRowsBy(table, "id")
}

// count runs a COUNT(*) query.
func (s *stack) count(query string, args ...any) int {
	s.t.Helper()
	var n int
	if err := s.schema.DB.QueryRow(query, args...).Scan(&n); err != nil {
		s.t.Fatalf("%s: %v", query, err)
	}
	return n
}

// quarantinedKeys lists the record keys in quarantine for an integration.
func (s *stack) quarantinedKeys(integrationName string) []string {
	s.t.Helper()
	rows, err := s.schema.DB.Query(`SELECT coalesce(record_key, '') FROM tether_quarantine WHERE integration = $1 ORDER BY 1`, integrationName)
	if err != nil {
		s.t.Fatal(err)
	}
	defer rows.Close()
	var keys []string
	for rows.Next() {
		var k string
		if err := rows.Scan(&k); err != nil {
			s.t.Fatal(err)
		}
		keys = append(keys, k)
	}
	return keys
}

func idStrings(ids []int64) []string {
	out := make([]string, len(ids))
	for i, id := range ids {
		out[i] = fmt.Sprint(id)
	}
	sort.Strings(out)
	return out
}

var buildOnce sync.Once
var builtWorker string
var buildErr error

// workerBinary builds workers/cmd/worker once per test binary.
func workerBinary(t *testing.T) string {
	t.Helper()
	buildOnce.Do(func() {
		dir, err := os.MkdirTemp("", "tether-worker-bin")
		if err != nil {
			buildErr = err
			return
		}
		builtWorker, buildErr = devstack.BuildBinary(context.Background(), "../..", "./workers/cmd/worker", dir)
	})
	if buildErr != nil {
		t.Fatalf("build worker: %v", buildErr)
	}
	return builtWorker
}

// pgDSN is the test database (without a schema).
func pgDSN() string { return pgtest.BaseDSN() }

// workerEnv is the environment of a worker process serving this stack.
// Its metrics endpoint takes any free port: tests run several workers.
func (s *stack) workerEnv(extra ...string) []string {
	return append([]string{
		"TEMPORAL_ADDRESS=" + devServer.FrontendHostPort(),
		"DATABASE_URL=" + s.schema.DSN,
		"TETHER_TEMPORAL_TASK_QUEUE=" + s.taskQueue,
		"TETHER_CONNECTIONS_CRM_BASE_URL=" + s.url,
		"TETHER_METRICS_LISTEN=127.0.0.1:0",
	}, extra...)
}

// workerProcess is a worker binary a test runs, logging to a file.
type workerProcess struct {
	*devstack.Process
	logFile string
}

// startWorkerProcess runs bin with env as worker name, logging into dir,
// and stops it when the test ends.
func (s *stack) startWorkerProcess(name, dir string, env []string, bin string) *workerProcess {
	s.t.Helper()
	w := &workerProcess{logFile: filepath.Join(dir, name+".log")}
	p, err := devstack.StartProcess(name, w.logFile, env, bin)
	if err != nil {
		s.t.Fatal(err)
	}
	w.Process = p
	s.t.Cleanup(func() { _ = p.Stop(5 * time.Second) })
	return w
}

// logTail is the last n lines of the worker's log.
func (w *workerProcess) logTail(n int) string {
	b, _ := os.ReadFile(w.logFile)
	return tail(string(b), n)
}
