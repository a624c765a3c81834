package main

import (
	"context"
	"crypto/rand"
	"database/sql"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"time"

	"go.temporal.io/sdk/client"
	tlog "go.temporal.io/sdk/log"
	"go.temporal.io/sdk/testsuite"
	"go.temporal.io/sdk/worker"

	"github.com/tetherflow/tether/activities/connector/pgsink"
	"github.com/tetherflow/tether/activities/integration"
	"github.com/tetherflow/tether/activities/lib/postgres"
	"github.com/tetherflow/tether/activities/lib/schema"
	"github.com/tetherflow/tether/activities/store"
	"github.com/tetherflow/tether/schemas"
	"github.com/tetherflow/tether/starters/devstack"
	"github.com/tetherflow/tether/workers/app"
	"github.com/tetherflow/tether/workers/config"
	"github.com/tetherflow/tether/workers/integrations"
	"github.com/tetherflow/tether/workers/webhook"
)

// The webhook source both contenders serve.
const (
	sourceName = "crm"
	hookSecret = "eventbench-secret-0123456789"
)

// Destination tables: tether's (the integration's own) and the baseline's
// copy of it.
const (
	tetherTable   = "crm_contacts"
	baselineTable = "crm_contacts_baseline"
)

// devServerArgs are the dev server flags besides the ones
// testsuite.StartDevServer sets, as the integration tests pass them.
func devServerArgs() []string {
	return []string{
		"--search-attribute", "IntegrationName=Keyword",
		"--search-attribute", "SyncStatus=Keyword",
		"--dynamic-config-value", "system.enableActivityEagerExecution=true",
	}
}

// stack is everything one bench run starts.
type stack struct {
	o   options
	cfg config.Config // the worker's defaults, mirrored in process

	admin, db, baseDB *sql.DB
	schema, shownDSN  string
	pgVersion         string

	work       string // logs
	workerLog  *os.File
	devLog     *os.File
	srv        *testsuite.DevServer
	devPid     int
	devCmdline string
	c          client.Client

	taskQueue, integration string
	shards                 int
	rateLimit              webhook.RateLimit

	tether, baseline *contender

	closers []func()
}

// contender is one receiver and where it writes.
type contender struct {
	name  string
	url   string
	table string
	// deliveries: check tether_event_deliveries and the shards' progress.
	deliveries bool
	sender     *sender
}

func (st *stack) onClose(f func()) { st.closers = append(st.closers, f) }

// close stops everything in reverse order of start, drops the schema, and
// keeps the logs only when something was written to them.
func (st *stack) close() {
	for i := len(st.closers) - 1; i >= 0; i-- {
		st.closers[i]()
	}
	st.closers = nil
}

func start(ctx context.Context, o options) (*stack, error) {
	st := &stack{o: o}
	ok := false
	defer func() {
		if !ok {
			st.close()
		}
	}()
	cfg, err := config.Load("")
	if err != nil {
		return nil, fmt.Errorf("the worker's default configuration: %w", err)
	}
	st.cfg = cfg
	if err := st.startPostgres(ctx); err != nil {
		return nil, err
	}
	if err := st.startTemporal(ctx); err != nil {
		return nil, err
	}
	if err := st.startWorker(); err != nil {
		return nil, err
	}
	if err := st.startReceivers(); err != nil {
		return nil, err
	}
	ok = true
	return st, nil
}

func suffix() string {
	var b [4]byte
	_, _ = rand.Read(b[:])
	return hex.EncodeToString(b[:])
}

// startPostgres creates the bench schema with tether's tables, the two
// destination tables and the commit triggers.
func (st *stack) startPostgres(ctx context.Context) error {
	if err := st.createSchema(ctx); err != nil {
		return err
	}
	sdsn, err := postgres.WithSearchPath(st.o.dsn, st.schema)
	if err != nil {
		return err
	}
	if st.db, err = st.openPool(ctx, sdsn); err != nil {
		return err
	}
	if st.baseDB, err = st.openPool(ctx, sdsn); err != nil {
		return err
	}
	return st.createTables(ctx)
}

// createSchema connects as --dsn and creates the bench schema, dropped at
// close.
func (st *stack) createSchema(ctx context.Context) error {
	st.shownDSN = postgres.RedactDSN(st.o.dsn)
	admin, err := postgres.Open(ctx, st.o.dsn)
	if err != nil {
		return fmt.Errorf("%w (set --dsn)", err)
	}
	st.admin = admin
	st.onClose(func() { admin.Close() })
	if err := admin.QueryRowContext(ctx, `SELECT current_setting('server_version')`).Scan(&st.pgVersion); err != nil {
		return err
	}
	st.pgVersion = "PostgreSQL " + st.pgVersion
	st.schema = "bench_events_" + suffix()
	if _, err := admin.ExecContext(ctx, "CREATE SCHEMA "+st.schema); err != nil {
		return fmt.Errorf("create schema %s at %s: %w", st.schema, st.shownDSN, err)
	}
	st.onClose(func() {
		dctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		if _, err := admin.ExecContext(dctx, "DROP SCHEMA "+st.schema+" CASCADE"); err != nil {
			fmt.Fprintf(os.Stderr, "eventbench: drop schema %s: %v\n", st.schema, err)
		}
	})
	return nil
}

// openPool opens a pool on the bench schema (sdsn), closed at close.
func (st *stack) openPool(ctx context.Context, sdsn string) (*sql.DB, error) {
	db, err := postgres.Open(ctx, sdsn)
	if err != nil {
		return nil, err
	}
	// As the worker does (workers/app): one pool of
	// database.max_open_conns for the steps and the receiver.
	db.SetMaxOpenConns(st.cfg.Database.MaxOpenConns)
	db.SetMaxIdleConns(st.cfg.Database.MaxOpenConns)
	st.onClose(func() { db.Close() })
	return db, nil
}

// createTables migrates tether's tables into the bench schema and adds the
// destination tables with their commit stamps.
func (st *stack) createTables(ctx context.Context) error {
	if err := store.Migrate(ctx, st.db); err != nil {
		return fmt.Errorf("migrate: %w", err)
	}
	def := integrations.CRMContacts(config.Connection{BaseURL: "http://127.0.0.1:9", Auth: "none"})
	sink, err := pgsink.NewTableWriter(*def.Destination.Postgres)
	if err != nil {
		return err
	}
	if err := sink.Ensure(ctx, st.db); err != nil {
		return err
	}
	// A deferred constraint trigger runs at commit, after every
	// statement of the transaction: clock_timestamp() there is the
	// moment the row version commits (less the commit record's flush).
	stmts := []string{
		`CREATE TABLE bench_commits (tbl text NOT NULL, id bigint NOT NULL, last_name text, version timestamptz, at timestamptz NOT NULL)`,
		`CREATE INDEX ON bench_commits (tbl, id)`,
		`CREATE TABLE ` + baselineTable + ` (LIKE ` + tetherTable + ` INCLUDING ALL)`,
		`CREATE FUNCTION bench_record_commit() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
	INSERT INTO ` + st.schema + `.bench_commits (tbl, id, last_name, version, at)
	VALUES (TG_TABLE_NAME, NEW.id, NEW.last_name, NEW.updated_at, clock_timestamp());
	RETURN NULL;
END $$`,
	}
	for _, t := range []string{tetherTable, baselineTable} {
		stmts = append(stmts, `CREATE CONSTRAINT TRIGGER bench_commit AFTER INSERT OR UPDATE ON `+t+
			` DEFERRABLE INITIALLY DEFERRED FOR EACH ROW EXECUTE FUNCTION bench_record_commit()`)
	}
	for _, q := range stmts {
		if _, err := st.db.ExecContext(ctx, q); err != nil {
			return fmt.Errorf("set up the bench tables: %w\n%s", err, q)
		}
	}
	return nil
}

// startTemporal starts the dev server with an installed temporal binary.
func (st *stack) startTemporal(ctx context.Context) error {
	cli := devstack.FindTemporalCLI()
	if cli == "" {
		return errors.New("no temporal binary found (PATH, $(go env GOPATH)/bin or TEMPORAL_CLI): run `make temporal-cli` to install the pinned one")
	}
	work, err := os.MkdirTemp("", "tether-eventbench-")
	if err != nil {
		return err
	}
	st.work = work
	st.onClose(func() { st.keepOrRemoveLogs() })
	if st.devLog, err = os.Create(filepath.Join(work, "temporal.log")); err != nil {
		return err
	}
	port, err := devstack.FreePort()
	if err != nil {
		return err
	}
	quiet := tlog.NewStructuredLogger(slog.New(slog.DiscardHandler))
	srv, err := testsuite.StartDevServer(ctx, testsuite.DevServerOptions{
		ExistingPath:  cli,
		ClientOptions: &client.Options{HostPort: fmt.Sprintf("127.0.0.1:%d", port), Namespace: "default", Logger: quiet},
		LogLevel:      "error",
		ExtraArgs:     devServerArgs(),
		Stdout:        st.devLog,
		Stderr:        st.devLog,
	})
	if err != nil {
		// It may have started and not answered: stop the one we started.
		if pid, _ := childProcess(cli); pid > 0 {
			if p, perr := os.FindProcess(pid); perr == nil {
				_ = p.Kill()
				_, _ = p.Wait()
			}
		}
		return fmt.Errorf("start the Temporal dev server with %s: %w (log: %s)", cli, err, st.devLog.Name())
	}
	st.srv = srv
	st.onClose(func() {
		if err := srv.Stop(); err != nil {
			fmt.Fprintf(os.Stderr, "eventbench: stop the dev server: %v\n", err)
		}
	})
	st.devPid, st.devCmdline = childProcess(cli)
	if st.devCmdline == "" {
		st.devCmdline = cli + " server start-dev (flags unknown) " + strings.Join(devServerArgs(), " ")
	}
	return nil
}

// startWorker runs crm-contacts, renamed, on an in-process worker with the
// worker's default options.
func (st *stack) startWorker() error {
	id := suffix()
	st.taskQueue = "eventbench-" + id
	st.integration = "eventbench-contacts-" + id
	var err error
	if st.workerLog, err = os.Create(filepath.Join(st.work, "worker.log")); err != nil {
		return err
	}
	log := slog.New(slog.NewTextHandler(st.workerLog, &slog.HandlerOptions{Level: slog.LevelWarn}))
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	c, err := app.Dial(ctx, config.Temporal{Address: st.srv.FrontendHostPort(), Namespace: "default"}, log)
	if err != nil {
		return err
	}
	st.c = c
	st.onClose(c.Close)

	def := st.definition()
	reg, err := integration.NewRegistry(def)
	if err != nil {
		return err
	}
	w, err := st.runWorker(c, st.taskQueue, reg, log)
	if err != nil {
		return err
	}
	st.onClose(w.Stop)
	return nil
}

// definition is crm-contacts under the bench's name, with --shards event
// workflows; its source's base URL is never called.
func (st *stack) definition() integration.Definition {
	def := integrations.CRMContacts(config.Connection{BaseURL: "http://127.0.0.1:9", Auth: "none"})
	def.Name = st.integration
	def.Events.Shards = st.o.shards
	return def
}

// startReceivers serves the production receiver and the baseline handler
// on 127.0.0.1.
func (st *stack) startReceivers() error {
	maxRate := st.o.rates[len(st.o.rates)-1]
	// Above every rate sent, so the limiter never refuses.
	st.rateLimit = webhook.RateLimit{PerSecond: float64(2 * max(maxRate, 50)), Burst: max(maxRate, 50)}
	src := webhook.Source{
		Name: sourceName, Secrets: []string{hookSecret},
		KeyPath: "data.id", VersionPath: "data.updated_at", RecordPath: "data",
		TypePath: "type", DeleteTypes: []string{"contact.deleted"}, Integration: st.integration,
		RateLimit: st.rateLimit,
	}
	def := st.definition()
	reg, err := integration.NewRegistry(def)
	if err != nil {
		return err
	}
	routes, sources, err := app.WebhookRoutes([]config.WebhookSource{{Source: src}}, reg, nil)
	if err != nil {
		return err
	}
	st.shards = routes[sourceName].Shards
	sch, err := schema.NewRegistry(schemas.FS())
	if err != nil {
		return err
	}
	rcv, err := webhook.New(sources, sch, webhook.NewTemporalAccepter(st.c, st.taskQueue, routes, store.New(st.db)))
	if err != nil {
		return err
	}
	tURL, err := st.serve(rcv)
	if err != nil {
		return err
	}
	v, err := sch.Get(def.Schema)
	if err != nil {
		return err
	}
	bURL, err := st.serve(newBaseline(st.baseDB, hookSecret, v))
	if err != nil {
		return err
	}
	st.tether = &contender{name: "tether", url: tURL, table: tetherTable, deliveries: true, sender: newSender(tURL, st.o.concurrency)}
	st.baseline = &contender{name: "baseline (no Temporal)", url: bURL, table: baselineTable, sender: newSender(bURL, st.o.concurrency)}
	return nil
}

// serve serves h on a loopback port, as the worker serves its receiver.
func (st *stack) serve(h http.Handler) (string, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return "", err
	}
	srv := &http.Server{Handler: h, ReadHeaderTimeout: 10 * time.Second, ReadTimeout: 30 * time.Second, WriteTimeout: 30 * time.Second}
	go srv.Serve(ln) //nolint:errcheck // ends with Close
	st.onClose(func() { srv.Close() })
	return "http://" + ln.Addr().String() + webhook.Path(sourceName), nil
}

// keepOrRemoveLogs removes the log directory unless a log has a warning
// or an error.
func (st *stack) keepOrRemoveLogs() {
	var kept []string
	for _, f := range []*os.File{st.devLog, st.workerLog} {
		if f == nil {
			continue
		}
		f.Close()
		// The dev server prints a banner; keep a log only for a warning
		// or an error.
		b, _ := os.ReadFile(f.Name())
		if l := strings.ToLower(string(b)); strings.Contains(l, "warn") || strings.Contains(l, "error") {
			kept = append(kept, f.Name())
		}
	}
	if len(kept) == 0 {
		os.RemoveAll(st.work)
		return
	}
	fmt.Fprintf(os.Stderr, "eventbench: warnings were logged, kept: %s\n", strings.Join(kept, ", "))
}

// runWorker runs reg's integrations on an in-process worker polling
// taskQueue, with the worker's default options.
func (st *stack) runWorker(c client.Client, taskQueue string, reg *integration.Registry, log *slog.Logger) (worker.Worker, error) {
	sch, err := schema.NewRegistry(schemas.FS())
	if err != nil {
		return nil, err
	}
	acts, err := app.Build(app.BuildOptions{DB: st.db, Store: store.New(st.db), Integrations: reg, Schemas: sch, Logger: log, Temporal: c})
	if err != nil {
		return nil, err
	}
	w := worker.New(c, taskQueue, worker.Options{
		MaxConcurrentActivityExecutionSize:      st.cfg.Worker.MaxConcurrentActivities,
		MaxConcurrentLocalActivityExecutionSize: st.cfg.Worker.MaxConcurrentLocalActivities,
		MaxConcurrentWorkflowTaskExecutionSize:  st.cfg.Worker.MaxConcurrentWorkflowTasks,
		MaxConcurrentWorkflowTaskPollers:        st.o.wftPollers,
		WorkerStopTimeout:                       5 * time.Second,
	})
	app.Register(w, acts)
	if err := w.Start(); err != nil {
		return nil, fmt.Errorf("start the worker of task queue %s: %w", taskQueue, err)
	}
	return w, nil
}
