package app

import (
	"database/sql"
	"log/slog"
	"os"

	"github.com/tetherflow/tether/activities/erase"
	"github.com/tetherflow/tether/activities/twoway"

	"go.temporal.io/sdk/client"
	"go.temporal.io/sdk/worker"
	"go.uber.org/fx"

	"github.com/tetherflow/tether/activities/apply"
	"github.com/tetherflow/tether/activities/capture"
	"github.com/tetherflow/tether/activities/catalog"
	"github.com/tetherflow/tether/activities/compensate"
	"github.com/tetherflow/tether/activities/connector"
	"github.com/tetherflow/tether/activities/connector/builtin"
	"github.com/tetherflow/tether/activities/connector/httpsink"
	"github.com/tetherflow/tether/activities/connector/httpsource"
	"github.com/tetherflow/tether/activities/events"
	"github.com/tetherflow/tether/activities/fetch"
	"github.com/tetherflow/tether/activities/integration"
	"github.com/tetherflow/tether/activities/integration/declarative"
	"github.com/tetherflow/tether/activities/lib/schema"
	"github.com/tetherflow/tether/activities/pages"
	"github.com/tetherflow/tether/activities/reconcile"
	"github.com/tetherflow/tether/activities/run"
	"github.com/tetherflow/tether/activities/store"
	"github.com/tetherflow/tether/activities/transform"
	"github.com/tetherflow/tether/activities/validate"
	"github.com/tetherflow/tether/workers/config"
)

// ConnectorsParams are what the shipped connectors need.
type ConnectorsParams struct {
	fx.In
	Config      config.Config
	DB          *sql.DB
	Store       *store.Store
	Logger      *slog.Logger
	SinkMetrics *httpsink.Metrics `optional:"true"`
	// HTTPSource and HTTPSink options are added to every HTTP source's and
	// sink's (tests inject transports).
	HTTPSource []httpsource.Option `optional:"true"`
	HTTPSink   []httpsink.Option   `optional:"true"`
}

// NewConnectors is the worker's connector registry: the shipped
// connectors (connector/builtin), writing in the worker's database.
func NewConnectors(p ConnectorsParams) *connector.Registry {
	sink := p.HTTPSink
	if p.SinkMetrics != nil {
		sink = append([]httpsink.Option{httpsink.WithMetrics(p.SinkMetrics)}, sink...)
	}
	return builtin.Registry(builtin.Options{DB: p.DB, Memos: p.Store, Identities: p.Store, Logger: p.Logger,
		LookupEnv: lookupEnv(p.Config), HTTPSource: p.HTTPSource, HTTPSink: sink})
}

// CatalogParams are what NewCatalog needs.
type CatalogParams struct {
	fx.In
	Lifecycle    fx.Lifecycle
	Config       config.Config
	Connectors   *connector.Registry
	Schemas      *schema.Registry
	Integrations *integration.Registry
	// GoDefs and Declared are the Go integrations and the integration
	// files; a change of the files is reloaded into the catalog.
	GoDefs   []integration.Definition
	Declared *declarative.Set
	Logger   *slog.Logger
}

// NewCatalog compiles the integrations into the catalog the steps use, and
// reloads it (ReloadIntegrations) each time the integration files change
// while the worker runs: new runs use the new definitions, running runs
// keep the version they started with.
func NewCatalog(p CatalogParams) (*catalog.Catalog, error) {
	cat := catalog.New(catalog.Options{Connectors: p.Connectors, Schemas: p.Schemas, Logger: p.Logger})
	if _, err := cat.Reload(p.Integrations, DeclaredHashes(p.Declared.Current())); err != nil {
		return nil, err
	}
	unsubscribe := p.Declared.Subscribe(func(specs []declarative.Spec) {
		_ = ReloadIntegrations(p.Config, p.GoDefs, specs, p.Schemas, cat, p.Logger)
	})
	p.Lifecycle.Append(fx.StopHook(unsubscribe))
	return cat, nil
}

// Activities are every activity the workflows call: one struct per step of
// the sync (fetch, validate, transform, apply, compensate, and the run's
// start and end) and per domain of the other workflows (reconcile, events,
// capture), each holding only what it uses.
type Activities struct {
	// Catalog is the compiled integrations they share (not an activity).
	Catalog *catalog.Catalog

	Run        *run.Activities
	Fetch      *fetch.Activities
	Validate   *validate.Activities
	Transform  *transform.Activities
	Apply      *apply.Activities
	Compensate *compensate.Activities
	Reconcile  *reconcile.Activities
	Events     *events.Activities
	Capture    *capture.Activities
	Erase      *erase.Activities
	TwoWay     *twoway.Activities
}

// ActivitiesParams are what the activities are built from.
type ActivitiesParams struct {
	fx.In
	// Connectors opens the two-way integrations' sides.
	Connectors *connector.Registry
	DB         *sql.DB
	Store      *store.Store
	Catalog    *catalog.Catalog
	Logger     *slog.Logger
	// Temporal tells whether the run holding a writer lease still runs
	// (nil: the lease is trusted until its run ends).
	Temporal client.Client `optional:"true"`
	// Metrics counts events and change capture's lag (nil: none).
	Metrics *events.Metrics `optional:"true"`
	// TwoWay are the two-way integrations the worker runs (nil: none).
	TwoWay *twoway.Registry `optional:"true"`
	// TwoWayMetrics counts what they do (nil: none).
	TwoWayMetrics *twoway.Metrics `optional:"true"`
	// Config.Worker.CachePages bounds the worker's page cache (0:
	// pages.DefaultCachePages).
	Config config.Config
}

// NewActivities builds every activity struct on the shared catalog, page
// claim-check and writer lease.
func NewActivities(p ActivitiesParams) *Activities {
	ps := pages.New(p.Store, p.Config.Worker.CachePages)
	lease := &run.Lease{Store: p.Store, Logger: p.Logger}
	if p.Temporal != nil {
		lease.Temporal = p.Temporal
	}
	return &Activities{
		Catalog:    p.Catalog,
		Run:        &run.Activities{Catalog: p.Catalog, Store: p.Store, Lease: lease, Pages: ps, History: history(p.Temporal)},
		Fetch:      &fetch.Activities{Catalog: p.Catalog, Pages: ps, Store: p.Store},
		Validate:   &validate.Activities{Catalog: p.Catalog, Pages: ps, Store: p.Store},
		Transform:  &transform.Activities{Catalog: p.Catalog, Pages: ps, Store: p.Store},
		Apply:      &apply.Activities{Catalog: p.Catalog, Pages: ps, Store: p.Store, DB: p.DB},
		Compensate: &compensate.Activities{Catalog: p.Catalog, Store: p.Store, DB: p.DB},
		Reconcile:  &reconcile.Activities{Catalog: p.Catalog, Pages: ps, Store: p.Store, Lease: lease, DB: p.DB},
		Events:     &events.Activities{Catalog: p.Catalog, Store: p.Store, DB: p.DB, Metrics: p.Metrics},
		Capture:    &capture.Activities{Catalog: p.Catalog, Store: p.Store, DB: p.DB, Logger: p.Logger, Metrics: p.Metrics},
		Erase:      &erase.Activities{Catalog: p.Catalog, Store: p.Store, DB: p.DB, History: history(p.Temporal)},
		TwoWay:     &twoway.Activities{Defs: p.TwoWay, Store: p.Store, Sides: p.Connectors, History: history(p.Temporal), Metrics: p.TwoWayMetrics},
	}
}

// Register puts every activity on a worker: each package registers its
// own, under the names the workflows call them by.
func (a *Activities) Register(r worker.ActivityRegistry) {
	run.Register(r, a.Run)
	fetch.Register(r, a.Fetch)
	validate.Register(r, a.Validate)
	transform.Register(r, a.Transform)
	apply.Register(r, a.Apply)
	compensate.Register(r, a.Compensate)
	reconcile.Register(r, a.Reconcile)
	events.Register(r, a.Events)
	capture.Register(r, a.Capture)
	erase.Register(r, a.Erase)
	twoway.Register(r, a.TwoWay)
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

// BuildOptions are what Build assembles a worker's activities from.
type BuildOptions struct {
	DB           *sql.DB
	Store        *store.Store
	Integrations *integration.Registry
	Schemas      *schema.Registry
	Logger       *slog.Logger
	// Temporal, Metrics and CachePages as in ActivitiesParams.
	Temporal   client.Client
	Metrics    *events.Metrics
	CachePages int
	// The shipped connectors' options (builtin.Options): LookupEnv resolves
	// a PostgreSQL source's dsn_env (default os.LookupEnv); HTTPSource and
	// HTTPSink are added to every HTTP source's and sink's options.
	LookupEnv  func(string) (string, bool)
	HTTPSource []httpsource.Option
	HTTPSink   []httpsink.Option
	// TwoWay are the two-way integrations (nil: none).
	TwoWay *twoway.Registry
	// Connectors, when set, registers more connectors beside the shipped
	// ones (as WithConnectors does).
	Connectors func(*connector.Registry)
}

// Build assembles a worker's activities without fx, as the Module does:
// the shipped connectors, a catalog of o.Integrations, and every activity
// struct. Tests and benchmarks run workers this way.
func Build(o BuildOptions) (*Activities, error) {
	conns := builtin.Registry(builtin.Options{DB: o.DB, Memos: o.Store, Identities: o.Store, Logger: o.Logger,
		LookupEnv: o.LookupEnv, HTTPSource: o.HTTPSource, HTTPSink: o.HTTPSink})
	if o.Connectors != nil {
		o.Connectors(conns)
	}
	if o.TwoWay != nil {
		if err := o.TwoWay.Check(conns); err != nil {
			return nil, err
		}
	}
	cat := catalog.New(catalog.Options{Connectors: conns, Schemas: o.Schemas, Logger: o.Logger})
	if _, err := cat.Reload(o.Integrations, nil); err != nil {
		return nil, err
	}
	cfg := config.Config{Worker: config.Worker{CachePages: o.CachePages}}
	return NewActivities(ActivitiesParams{Connectors: conns, DB: o.DB, Store: o.Store, Catalog: cat, Logger: o.Logger,
		Temporal: o.Temporal, Metrics: o.Metrics, Config: cfg, TwoWay: o.TwoWay}), nil
}

// history is the Temporal client as run.History, nil without a client.
func history(c client.Client) run.History {
	if c == nil {
		return nil
	}
	return c
}
