// Package app wires a worker with fx: configuration → logger → integrations
// (Go ones and integration files) and schemas → connectors → the catalog of
// compiled integrations → the activities (one struct per step or domain) →
// Temporal client → worker → the integrations' Temporal Schedules and
// change captures.
//
// Constructors only build values and work without fx too; everything that
// reaches another system happens in the fx lifecycle, in this order at
// start, each bounded by a timeout: PostgreSQL is pinged and migrated
// (database.go), Temporal is dialled and checked (temporal.go), /metrics
// binds with /healthz and /readyz (health.go), the schedules and captures
// are applied (schedules.go), the worker starts polling (worker.go: ready
// from then), the two-way integrations start (twoway.go), and the webhook
// receiver binds. The integrations are compiled while the graph is built,
// so a broken integration file stops the worker before it connects to
// anything; the integration files are watched while it runs.
package app

import (
	"database/sql"
	"errors"
	"log/slog"
	"os"
	"slices"
	"strings"
	"time"

	"go.temporal.io/sdk/client"
	"go.uber.org/dig"
	"go.uber.org/fx"
	"go.uber.org/fx/fxevent"

	"github.com/tetherflow/tether/activities/connector"
	"github.com/tetherflow/tether/activities/integration"
	"github.com/tetherflow/tether/activities/lib/observe"
	"github.com/tetherflow/tether/activities/lib/schema"
	"github.com/tetherflow/tether/activities/twoway"
	"github.com/tetherflow/tether/workers/config"
	"github.com/tetherflow/tether/workers/integrations"
)

// Module is the worker. Supply a config.Config and the Go integrations to
// run (a []integration.Definition) alongside it; the integration files of
// config.IntegrationsDir are added to them.
var Module = fx.Module("worker",
	fx.Provide(
		NewLogger,
		NewDB,
		NewStore,
		NewDeclared,
		NewIntegrations,
		NewSchemas,
		NewMetricsRegistry,
		NewTracing,
		NewSyncMetrics,
		NewSDKMetrics,
		NewSinkMetrics,
		NewEventMetrics,
		NewTwoWayMetrics,
		NewTwoWay,
		NewConnectors,
		NewCatalog,
		NewActivities,
		NewTemporalClient,
		NewWorker,
		NewMetricsServer,
		NewWebhookServer,
	),
	// Integrations first: a bad one stops the worker before it connects.
	fx.Invoke(func(*integration.Registry) {}),
	fx.Invoke(func(*twoway.Registry) {}),
	// At start, in this order: the database is migrated, Temporal is
	// checked, the metrics endpoint binds, the schedules and captures are
	// applied (a schedule another deployment owns stops the worker before
	// it polls), the worker polls, the webhook receiver binds (events wait
	// in Temporal while no worker runs).
	fx.Invoke(func(*sql.DB) {}),
	fx.Invoke(func(client.Client) {}),
	fx.Invoke(RegisterStateMetrics),
	fx.Invoke(func(*MetricsServer) {}),
	scheduleModule,
	fx.Invoke(func(*Worker) {}),
	fx.Invoke(startTwoWay),
	fx.Invoke(func(*WebhookServer) {}),
)

// startTimeout bounds the start: the database and Temporal checks (each
// temporal.connect_timeout), the schedules (scheduleApplyTimeout), and a
// margin for the rest.
func startTimeout(cfg config.Config) time.Duration {
	return 2*cfg.Temporal.ConnectTimeout + scheduleApplyTimeout + 30*time.Second
}

// New builds the worker application for cfg and the demo's integrations
// (when cfg has a crm connection); extra options add to it
// (WithIntegrations, WithWorkflows).
func New(cfg config.Config, extra ...fx.Option) *fx.App {
	schema.SetKnownRecords(cfg.Worker.ValidationCache)
	opts := []fx.Option{
		fx.Supply(cfg),
		fx.Supply(integrations.For(cfg.Connections)),
		Module,
		fx.WithLogger(func(l *slog.Logger) fxevent.Logger {
			fl := &fxevent.SlogLogger{Logger: l.With("component", "fx")}
			fl.UseLogLevel(slog.LevelDebug)
			fl.UseErrorLevel(slog.LevelDebug) // start-up errors are reported once, by main
			return fl
		}),
		fx.StartTimeout(startTimeout(cfg)),
		fx.StopTimeout(cfg.Worker.GracefulStop + 10*time.Second),
	}
	return fx.New(append(opts, extra...)...)
}

// WithWorkflows registers more workflows and activities on the worker: an
// integration written as workflow code registers itself with one line,
// app.New(cfg, app.WithWorkflows(onboarding.Register)).
func WithWorkflows(register ...Registration) fx.Option {
	opts := make([]fx.Option, len(register))
	for i, r := range register {
		opts[i] = fx.Supply(fx.Annotate(r, fx.ResultTags(`group:"registrations"`)))
	}
	return fx.Options(opts...)
}

// WithIntegrations adds Go integrations to the worker's, beside the demo's
// (which run on a worker with a crm connection): app.New(cfg,
// app.WithIntegrations(myIntegration(cfg.Connections["billing"]))).
func WithIntegrations(defs ...integration.Definition) fx.Option {
	return fx.Decorate(func(have []integration.Definition) []integration.Definition {
		return append(slices.Clone(have), defs...)
	})
}

// WithConnectors registers more connectors (sources, sinks, two-way
// sides) on the worker's registry, beside the shipped ones:
// app.New(cfg, app.WithConnectors(func(r *connector.Registry) {
// r.RegisterSide("crm", crmside.Factory()) })). A connector passes
// connectortest's suite (docs/connectors.md).
func WithConnectors(register ...func(*connector.Registry)) fx.Option {
	return fx.Decorate(func(r *connector.Registry) *connector.Registry {
		for _, f := range register {
			f(r)
		}
		return r
	})
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
	// Lines logged with a step's context carry its integration, step,
	// WorkflowID, RunID and page (package observe).
	return slog.New(observe.NewHandler(h))
}

// StartError makes fx's start-up error readable: the error a constructor
// or a start hook returned, without fx's dependency-graph noise.
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
