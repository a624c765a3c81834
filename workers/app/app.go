// Package app wires a sync worker with fx: configuration → logger →
// integrations (Go and integration files) and schemas → PostgreSQL
// (migrated) → activities → Temporal client → worker → the integrations'
// Temporal Schedules (schedules.go). Every constructor
// works without fx too; the module only connects them and ties start and
// stop to the fx lifecycle. The integrations are checked first, so a broken
// integration file stops the worker before it connects to anything.
package app

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"slices"
	"strings"
	"time"

	"go.temporal.io/api/enums/v1"
	"go.temporal.io/api/operatorservice/v1"
	"go.temporal.io/sdk/client"
	tlog "go.temporal.io/sdk/log"
	"go.temporal.io/sdk/worker"
	"go.temporal.io/sdk/workflow"
	"go.uber.org/dig"
	"go.uber.org/fx"
	"go.uber.org/fx/fxevent"

	"github.com/tetherflow/tether/activities/connector/httpsink"
	"github.com/tetherflow/tether/activities/integration"
	"github.com/tetherflow/tether/activities/integration/declarative"
	"github.com/tetherflow/tether/activities/lib/postgres"
	"github.com/tetherflow/tether/activities/lib/schema"
	"github.com/tetherflow/tether/activities/pipeline"
	"github.com/tetherflow/tether/activities/store"
	"github.com/tetherflow/tether/schemas"
	"github.com/tetherflow/tether/workers/config"
	"github.com/tetherflow/tether/workers/integrations"
	"github.com/tetherflow/tether/workflows/capture"
	"github.com/tetherflow/tether/workflows/datasync"
	"github.com/tetherflow/tether/workflows/events"
	"github.com/tetherflow/tether/workflows/reconcile"
)

// Module is the sync worker. Supply a config.Config and the Go
// integrations to run (a []integration.Definition) alongside it; the
// integration files of config.IntegrationsDir are added to them.
var Module = fx.Module("worker",
	fx.Provide(
		NewLogger,
		NewDB,
		NewStore,
		NewDeclared,
		NewIntegrations,
		NewSchemas,
		NewActivities,
		NewTemporalClient,
		NewWorker,
		NewMetricsRegistry,
		NewSinkMetrics,
		NewEventMetrics,
		NewMetricsServer,
		NewWebhookServer,
	),
	// Integrations first: a bad one stops the worker before it connects.
	fx.Invoke(func(*integration.Registry) {}),
	// The metrics endpoint binds before the worker polls.
	fx.Invoke(func(*MetricsServer) {}),
	fx.Invoke(func(worker.Worker) {}),
	// The webhook receiver once the worker polls (it also serves while
	// none does: events wait in Temporal).
	fx.Invoke(func(*WebhookServer) {}),
	// The schedules once the worker is built (see NewSchedules).
	scheduleModule,
)

// New builds the worker application for cfg and the shipped integrations.
func New(cfg config.Config, extra ...fx.Option) *fx.App {
	opts := []fx.Option{
		fx.Supply(cfg),
		fx.Supply(integrations.All(cfg.Sources.CRM)),
		Module,
		fx.WithLogger(func(l *slog.Logger) fxevent.Logger {
			fl := &fxevent.SlogLogger{Logger: l.With("component", "fx")}
			fl.UseLogLevel(slog.LevelDebug)
			fl.UseErrorLevel(slog.LevelDebug) // start-up errors are reported once, by main
			return fl
		}),
		fx.StartTimeout(cfg.Temporal.ConnectTimeout + 30*time.Second),
		fx.StopTimeout(cfg.Worker.GracefulStop + 10*time.Second),
	}
	return fx.New(append(opts, extra...)...)
}

// NewLogger builds the process's slog logger.
func NewLogger(cfg config.Config) *slog.Logger {
	var level slog.Level
	_ = level.UnmarshalText([]byte(cfg.Log.Level))
	opts := &slog.HandlerOptions{Level: level}
	var h slog.Handler = slog.NewTextHandler(os.Stderr, opts)
	if cfg.Log.Format == "json" {
		h = slog.NewJSONHandler(os.Stderr, opts)
	}
	return slog.New(h)
}

// NewDB opens PostgreSQL and migrates the pipeline's tables at start. Many
// workers may start at once: migrations take an advisory lock.
func NewDB(lc fx.Lifecycle, cfg config.Config, log *slog.Logger) (*sql.DB, error) {
	ctx, cancel := context.WithTimeout(context.Background(), cfg.Temporal.ConnectTimeout)
	defer cancel()
	db, err := postgres.Open(ctx, cfg.Database.URL)
	if err != nil {
		return nil, fmt.Errorf("database (database.url / DATABASE_URL): %w", err)
	}
	db.SetMaxOpenConns(cfg.Database.MaxOpenConns)
	db.SetMaxIdleConns(cfg.Database.MaxOpenConns)
	if err := store.Migrate(ctx, db); err != nil {
		db.Close()
		return nil, fmt.Errorf("database %s: migrate: %w", cfg.Database.Redacted(), err)
	}
	log.Info("database ready", "url", cfg.Database.Redacted())
	lc.Append(fx.StopHook(db.Close))
	return db, nil
}

// NewStore wraps the database in the pipeline's state store.
func NewStore(db *sql.DB) *store.Store { return store.New(db) }

// NewIntegrations registers the integrations this worker runs: the Go ones
// and those of the integration files (resolved, their schema files added to
// sch), limited to worker.integrations when that is set.
func NewIntegrations(cfg config.Config, defs []integration.Definition, declared *declarative.Set, sch *schema.Registry) (*integration.Registry, error) {
	return BuildRegistry(cfg, defs, declared.Current(), sch)
}

// BuildRegistry registers the Go integrations defs and those of the
// integration files specs, as NewIntegrations does at start and
// ReloadIntegrations after a change.
func BuildRegistry(cfg config.Config, defs []integration.Definition, specs []declarative.Spec, sch *schema.Registry) (*integration.Registry, error) {
	resolved, err := ResolveDeclared(specs, defs, os.LookupEnv, os.ReadFile)
	if err != nil {
		return nil, fmt.Errorf("integrations_dir %s:\n%w", cfg.IntegrationsDir, err)
	}
	defs = slices.Clone(defs)
	for _, r := range resolved {
		if r.Schema != nil {
			if err := sch.Add(r.Definition.Schema, r.Schema); err != nil {
				return nil, fmt.Errorf("integration %q: %w", r.Definition.Name, err)
			}
		}
		defs = append(defs, r.Definition)
	}
	if len(cfg.Worker.Integrations) > 0 {
		var kept []integration.Definition
		known := make([]string, 0, len(defs))
		for _, d := range defs {
			known = append(known, d.Name)
			if slices.Contains(cfg.Worker.Integrations, d.Name) {
				kept = append(kept, d)
			}
		}
		for _, want := range cfg.Worker.Integrations {
			if !slices.Contains(known, want) {
				return nil, fmt.Errorf("worker.integrations: unknown integration %q (known: %s)", want, strings.Join(known, ", "))
			}
		}
		defs = kept
	}
	r, err := integration.NewRegistry(defs...)
	if err != nil {
		return nil, fmt.Errorf("integrations:\n%w", err)
	}
	return r, nil
}

// NewDeclared loads the integration files of integrations_dir and keeps
// watching the directory while the worker runs. A file that does not load
// or resolve, or an integration name a Go integration has, stops the
// worker with every problem. Later changes are checked the same way and
// replace the set only when good; NewActivities reloads the integrations
// when the set changes.
func NewDeclared(lc fx.Lifecycle, cfg config.Config, defs []integration.Definition, log *slog.Logger) (*declarative.Set, error) {
	dir := cfg.IntegrationsDir
	if dir == "" {
		return declarative.NewSet(nil, nil), nil
	}
	check := func(specs []declarative.Spec) error {
		_, err := ResolveDeclared(specs, defs, os.LookupEnv, os.ReadFile)
		return err
	}
	// Every problem at once: of the files that do not load, and of those
	// that do but do not resolve.
	files, err := declarative.Files(dir)
	if err != nil {
		return nil, err
	}
	var specs []declarative.Spec
	var errs []error
	for _, f := range files {
		s, err := declarative.Load(f)
		if err != nil {
			errs = append(errs, err)
			continue
		}
		specs = append(specs, s)
	}
	errs = append(errs, declarative.CheckNames(specs), check(specs))
	if err := errors.Join(errs...); err != nil {
		return nil, fmt.Errorf("integrations_dir %s:\n%w", dir, err)
	}
	set := declarative.NewSet(specs, check)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	lc.Append(fx.Hook{
		OnStart: func(context.Context) error {
			go func() {
				defer close(done)
				err := declarative.Watch(ctx, dir, func(specs []declarative.Spec, err error) {
					if err := set.Apply(specs, err); err != nil {
						log.Error("integration files changed but do not load; the last good ones stay", "dir", dir, "error", err)
					}
				})
				if err != nil {
					log.Warn("integration files are not watched", "error", err)
				}
			}()
			return nil
		},
		OnStop: func(context.Context) error {
			cancel()
			<-done
			return nil
		},
	})
	log.Info("integration files loaded", "dir", dir, "integrations", len(specs))
	return set, nil
}

// ResolveDeclared resolves the specs of integration files for a worker
// that also runs the Go integrations defs: every problem, and every name
// both define, is reported, joined.
func ResolveDeclared(specs []declarative.Spec, defs []integration.Definition, env func(string) (string, bool), readFile func(string) ([]byte, error)) ([]declarative.Resolved, error) {
	goNames := make(map[string]bool, len(defs))
	for _, d := range defs {
		goNames[d.Name] = true
	}
	var out []declarative.Resolved
	var errs []error
	for _, s := range specs {
		if goNames[s.Name] {
			errs = append(errs, &declarative.Problem{File: s.File, Pointer: "/name",
				Reason: fmt.Sprintf("integration %q is also defined in Go (workers/integrations): names must be unique", s.Name)})
			continue
		}
		r, err := s.Resolve(env, readFile)
		if err != nil {
			errs = append(errs, err)
			continue
		}
		out = append(out, r)
	}
	if err := errors.Join(errs...); err != nil {
		return nil, err
	}
	return out, nil
}

// NewSchemas compiles every schema in schemas/ once.
func NewSchemas() (*schema.Registry, error) { return schema.NewRegistry(schemas.FS()) }

// NewActivities compiles the integrations into the sync steps, and
// reloads them (ReloadIntegrations) each time the integration files change
// while the worker runs: new runs use the new definitions, running runs
// keep the version they started with.
func NewActivities(lc fx.Lifecycle, cfg config.Config, db *sql.DB, st *store.Store, reg *integration.Registry, defs []integration.Definition, declared *declarative.Set, sch *schema.Registry, sinkMetrics *httpsink.Metrics, eventMetrics *pipeline.EventMetrics, c client.Client, log *slog.Logger) (*pipeline.Activities, error) {
	acts, err := pipeline.New(pipeline.Deps{DB: db, Store: st, Integrations: reg, Schemas: sch, Logger: log,
		CachePages: cfg.Worker.CachePages, LookupEnv: lookupEnv(cfg), Declared: DeclaredHashes(declared.Current()),
		SinkOptions: []httpsink.Option{httpsink.WithMetrics(sinkMetrics)}, Temporal: c, Metrics: eventMetrics})
	if err != nil {
		return nil, err
	}
	unsubscribe := declared.Subscribe(func(specs []declarative.Spec) {
		_ = ReloadIntegrations(cfg, defs, specs, sch, acts, log)
	})
	lc.Append(fx.StopHook(unsubscribe))
	return acts, nil
}

// ReloadIntegrations makes the Go integrations defs and those of the
// integration files specs the ones new runs use (pipeline.Activities
// Reload) and logs what changed. When they do not register or compile, it
// logs every problem and returns them: the integrations in use stay.
func ReloadIntegrations(cfg config.Config, defs []integration.Definition, specs []declarative.Spec, sch *schema.Registry, acts *pipeline.Activities, log *slog.Logger) error {
	reg, err := BuildRegistry(cfg, defs, specs, sch)
	var ch pipeline.Changes
	if err == nil {
		ch, err = pipeline.Reload(acts, reg, DeclaredHashes(specs))
	}
	if err != nil {
		log.Error("integration files changed but the integrations do not compile; the previous definitions stay in use",
			"dir", cfg.IntegrationsDir, "error", err)
		return err
	}
	if ch.Empty() {
		log.Info("integration files changed; no integration this worker runs did", "dir", cfg.IntegrationsDir)
		return nil
	}
	withFingerprints := func(names []string) []string {
		out := make([]string, len(names))
		for i, n := range names {
			fp, _ := pipeline.CurrentDefinition(acts, n)
			out[i] = n + "@" + fp
		}
		return out
	}
	log.Info("integrations reloaded: new runs use the new definitions; running runs finish with the one they started with",
		"dir", cfg.IntegrationsDir, "added", withFingerprints(ch.Added), "changed", withFingerprints(ch.Changed), "removed", ch.Removed)
	return nil
}

// DeclaredHashes maps the integrations of integration files to their
// spec's Hash, which their definition's fingerprint is made of.
func DeclaredHashes(specs []declarative.Spec) map[string]string {
	m := make(map[string]string, len(specs))
	for _, s := range specs {
		m[s.Name] = s.Hash()
	}
	return m
}

// lookupEnv resolves a PostgreSQL source's dsn_env from the environment,
// and DATABASE_URL, when unset there, from the worker's own database.url
// (a worker configured by file reads its tables with its own connection).
func lookupEnv(cfg config.Config) func(string) (string, bool) {
	return func(name string) (string, bool) {
		if v, ok := os.LookupEnv(name); ok {
			return v, true
		}
		if name == "DATABASE_URL" && cfg.Database.URL != "" {
			return cfg.Database.URL, true
		}
		return "", false
	}
}

// NewTemporalClient connects to Temporal, checks the server answers, and
// creates the search attributes the workflows use if they are missing.
func NewTemporalClient(lc fx.Lifecycle, cfg config.Config, log *slog.Logger) (client.Client, error) {
	ctx, cancel := context.WithTimeout(context.Background(), cfg.Temporal.ConnectTimeout)
	defer cancel()
	c, err := Dial(ctx, cfg.Temporal, log)
	if err != nil {
		return nil, err
	}
	if err := EnsureSearchAttributes(ctx, c, cfg.Temporal.Namespace); err != nil {
		log.Warn("search attributes could not be created; create them with `temporal operator search-attribute create`", "error", err)
	}
	lc.Append(fx.StopHook(c.Close))
	return c, nil
}

// Dial connects to Temporal and checks it answers within ctx.
func Dial(ctx context.Context, t config.Temporal, log *slog.Logger) (client.Client, error) {
	c, err := client.DialContext(ctx, client.Options{
		HostPort:  t.Address,
		Namespace: t.Namespace,
		Logger:    tlog.NewStructuredLogger(log),
	})
	if err != nil {
		return nil, fmt.Errorf("temporal at %s (temporal.address / TEMPORAL_ADDRESS) is unreachable: %w", t.Address, err)
	}
	if _, err := c.CheckHealth(ctx, &client.CheckHealthRequest{}); err != nil {
		c.Close()
		return nil, fmt.Errorf("temporal at %s is not healthy: %w", t.Address, err)
	}
	if _, err := c.WorkflowService().DescribeNamespace(ctx, describeNamespace(t.Namespace)); err != nil {
		c.Close()
		return nil, fmt.Errorf("temporal namespace %q (temporal.namespace / TEMPORAL_NAMESPACE): %w", t.Namespace, err)
	}
	return c, nil
}

// SearchAttributes are the custom search attributes the workflows upsert.
var SearchAttributes = map[string]enums.IndexedValueType{
	datasync.IntegrationAttr.GetName(): enums.INDEXED_VALUE_TYPE_KEYWORD,
	datasync.StatusAttr.GetName():      enums.INDEXED_VALUE_TYPE_KEYWORD,
}

// EnsureSearchAttributes creates the missing custom search attributes;
// it is idempotent.
func EnsureSearchAttributes(ctx context.Context, c client.Client, namespace string) error {
	ops := c.OperatorService()
	have, err := ops.ListSearchAttributes(ctx, &operatorservice.ListSearchAttributesRequest{Namespace: namespace})
	if err != nil {
		return fmt.Errorf("list search attributes: %w", err)
	}
	missing := map[string]enums.IndexedValueType{}
	for name, typ := range SearchAttributes {
		if _, ok := have.GetCustomAttributes()[name]; !ok {
			missing[name] = typ
		}
	}
	if len(missing) == 0 {
		return nil
	}
	_, err = ops.AddSearchAttributes(ctx, &operatorservice.AddSearchAttributesRequest{Namespace: namespace, SearchAttributes: missing})
	if err != nil && !strings.Contains(strings.ToLower(err.Error()), "already") {
		return fmt.Errorf("add search attributes: %w", err)
	}
	return nil
}

// NewWorker registers the workflows and activities and starts polling in
// OnStart. OnStop stops polling and waits up to worker.graceful_stop for
// running activities to finish.
func NewWorker(lc fx.Lifecycle, cfg config.Config, c client.Client, acts *pipeline.Activities, log *slog.Logger) worker.Worker {
	w := worker.New(c, cfg.Temporal.TaskQueue, worker.Options{
		MaxConcurrentActivityExecutionSize:      cfg.Worker.MaxConcurrentActivities,
		MaxConcurrentLocalActivityExecutionSize: cfg.Worker.MaxConcurrentLocalActivities,
		MaxConcurrentWorkflowTaskExecutionSize:  cfg.Worker.MaxConcurrentWorkflowTasks,
		WorkerStopTimeout:                       cfg.Worker.GracefulStop,
	})
	Register(w, acts)
	lc.Append(fx.Hook{
		OnStart: func(context.Context) error {
			if err := w.Start(); err != nil {
				return fmt.Errorf("start worker on task queue %q: %w", cfg.Temporal.TaskQueue, err)
			}
			log.Info("worker polling", "taskQueue", cfg.Temporal.TaskQueue, "namespace", cfg.Temporal.Namespace, "address", cfg.Temporal.Address)
			return nil
		},
		OnStop: func(context.Context) error {
			log.Info("worker stopping: no new tasks; running activities may finish", "gracefulStop", cfg.Worker.GracefulStop)
			w.Stop()
			return nil
		},
	})
	return w
}

// Register puts the sync workflow and its steps on a worker.
func Register(w worker.Registry, acts *pipeline.Activities) {
	w.RegisterWorkflowWithOptions(datasync.SyncWorkflow, workflow.RegisterOptions{Name: datasync.WorkflowType})
	w.RegisterWorkflowWithOptions(reconcile.ReconcileWorkflow, workflow.RegisterOptions{Name: reconcile.WorkflowType})
	w.RegisterWorkflowWithOptions(events.EventsWorkflow, workflow.RegisterOptions{Name: events.WorkflowType})
	w.RegisterWorkflowWithOptions(capture.CaptureWorkflow, workflow.RegisterOptions{Name: capture.WorkflowType})
	w.RegisterActivity(acts)
}

// StartError makes fx's start-up error readable: the error a constructor
// returned, without fx's dependency-graph noise.
func StartError(err error) error {
	if err == nil {
		return nil
	}
	if root := dig.RootCause(err); root != nil && root != err {
		return root
	}
	msg := err.Error()
	if i := strings.LastIndex(msg, "): "); i >= 0 && strings.Contains(msg, "could not build arguments") {
		msg = msg[i+3:]
	}
	return errors.New(msg)
}
