package app

import (
	"context"
	"fmt"
	"log/slog"
	"os"
	"sync"
	"time"

	"go.temporal.io/sdk/client"
	"go.uber.org/fx"

	"github.com/tetherflow/tether/activities/catalog"
	"github.com/tetherflow/tether/activities/integration"
	"github.com/tetherflow/tether/activities/integration/declarative"
	"github.com/tetherflow/tether/activities/lib/schema"
	"github.com/tetherflow/tether/activities/store"
	"github.com/tetherflow/tether/workers/config"
	"github.com/tetherflow/tether/workers/schedules"
)

// scheduleApplyTimeout bounds one Apply of the schedules.
const scheduleApplyTimeout = time.Minute

// scheduleModule keeps the integrations' Temporal Schedules (NewSchedules).
var scheduleModule = fx.Options(
	fx.Provide(NewSchedules),
	fx.Invoke(func(*Schedules) {}),
)

// SchedulesParams are what NewSchedules needs. Catalog is there so that
// the schedules follow a reload of the integration files only once the
// integrations themselves are reloaded (NewCatalog subscribes to the files
// first).
type SchedulesParams struct {
	fx.In

	Lifecycle    fx.Lifecycle
	Config       config.Config
	Client       client.Client
	Integrations *integration.Registry
	GoDefs       []integration.Definition
	Declared     *declarative.Set
	Schemas      *schema.Registry
	Catalog      *catalog.Catalog
	Store        *store.Store
	Logger       *slog.Logger
}

// Schedules keeps the Temporal Schedules of the integrations this worker
// runs as they declare them (schedules.Apply): once at start, and again
// after every reload of the integration files that took effect. It keeps
// their change captures likewise (ApplyCaptures).
type Schedules struct {
	p       SchedulesParams
	opts    schedules.Options
	pending chan []integration.Definition
}

// NewSchedules returns the worker's schedules keeper. At the app's start,
// before the worker polls, it applies the change captures and, unless
// schedules.manage is false, the schedules of the worker's integrations
// (bounded by a minute); a failure stops the start: a capture or schedule
// the server refuses, or a schedule id another owner holds. While the
// worker runs, each reload of the integration files that took effect is
// applied in the background; a failure then is logged and what could not
// change stays as it was.
func NewSchedules(p SchedulesParams) *Schedules {
	s := &Schedules{p: p, pending: make(chan []integration.Definition, 1), opts: schedules.Options{
		TaskQueue: p.Config.Temporal.TaskQueue,
		Owner:     p.Config.Schedules.Owner,
		Logger:    p.Logger.With("component", "schedules"),
	}}
	runCtx, stop := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	var unsubscribe []func()
	p.Lifecycle.Append(fx.Hook{
		OnStart: func(ctx context.Context) error {
			ctx, cancel := context.WithTimeout(ctx, scheduleApplyTimeout)
			defer cancel()
			if err := s.start(ctx); err != nil {
				return err
			}
			unsubscribe = append(unsubscribe, p.Declared.Subscribe(s.capturesReloaded))
			if !p.Config.Schedules.Manage {
				return nil
			}
			unsubscribe = append(unsubscribe, p.Declared.Subscribe(s.reloaded))
			wg.Add(1)
			go func() {
				defer wg.Done()
				s.run(runCtx)
			}()
			return nil
		},
		OnStop: func(context.Context) error {
			for _, u := range unsubscribe {
				u()
			}
			stop()
			wg.Wait()
			return nil
		},
	})
	return s
}

// start applies the captures and the schedules of the worker's
// integrations.
func (s *Schedules) start(ctx context.Context) error {
	p, cfg := s.p, s.p.Config
	if err := applyCapturesLogged(ctx, p.Client, cfg.Temporal.Namespace, cfg.Temporal.TaskQueue, p.Integrations.All(), p.Logger); err != nil {
		return fmt.Errorf("change capture: %w", err)
	}
	if !cfg.Schedules.Manage {
		p.Logger.Info("schedules.manage is false: the integrations' Temporal Schedules are left as they are")
		return nil
	}
	res, err := schedules.Apply(ctx, p.Client, s.opts, p.Integrations.All())
	if err != nil {
		return fmt.Errorf("schedules (owner %q, schedules.owner / TETHER_SCHEDULES_OWNER; schedules.manage: false leaves them alone):\n%w", s.owner(), err)
	}
	s.logResult("schedules applied", res)
	return nil
}

// capturesReloaded applies the change captures of the integration files
// specs once the worker runs them.
func (s *Schedules) capturesReloaded(specs []declarative.Spec) {
	p, cfg := s.p, s.p.Config
	reg, err := BuildRegistry(cfg, p.GoDefs, specs, p.Schemas)
	if err != nil || !inUse(p.Catalog, reg, specs) {
		return // the worker kept its previous integrations
	}
	ctx, cancel := context.WithTimeout(context.Background(), scheduleApplyTimeout)
	defer cancel()
	if err := applyCapturesLogged(ctx, p.Client, cfg.Temporal.Namespace, cfg.Temporal.TaskQueue, reg.All(), p.Logger); err != nil {
		p.Logger.Error("change capture could not be applied after the integration files changed", "error", err)
	}
}

func (s *Schedules) owner() string {
	if s.opts.Owner != "" {
		return s.opts.Owner
	}
	return s.opts.TaskQueue
}

// reloaded follows a change of the integration files: when the worker's
// integrations are now those of specs (the reload took effect), their
// schedules are queued for run to apply.
func (s *Schedules) reloaded(specs []declarative.Spec) {
	p := s.p
	// ReloadIntegrations has logged why, when the reload did not take.
	reg, err := BuildRegistry(p.Config, p.GoDefs, specs, p.Schemas)
	if err != nil || !inUse(p.Catalog, reg, specs) {
		s.opts.Logger.Warn("the integration files changed but the worker kept its previous integrations: their schedules stay as they are")
		return
	}
	for { // keep only the latest
		select {
		case s.pending <- reg.All():
			return
		default:
			select {
			case <-s.pending:
			default:
			}
		}
	}
}

// inUse reports whether the catalog runs reg's definitions (those of
// the integration files specs): ReloadIntegrations made them current.
func inUse(cat *catalog.Catalog, reg *integration.Registry, specs []declarative.Spec) bool {
	declared := DeclaredHashes(specs)
	for _, d := range reg.All() {
		want, err := catalog.Fingerprint(d, declared[d.Name])
		if err != nil {
			return false
		}
		if got, ok := cat.Current(d.Name); !ok || got != want {
			return false
		}
	}
	return true
}

// run applies the queued definitions until ctx ends.
func (s *Schedules) run(ctx context.Context) {
	for {
		select {
		case <-ctx.Done():
			return
		case defs := <-s.pending:
			actx, cancel := context.WithTimeout(ctx, scheduleApplyTimeout)
			res, err := schedules.Apply(actx, s.p.Client, s.opts, defs)
			cancel()
			s.logResult("schedules applied after the integration files changed", res)
			if err != nil {
				s.opts.Logger.Error("some schedules could not be applied after the integration files changed; they stay as they were", "owner", s.owner(), "error", err)
			}
		}
	}
}

func (s *Schedules) logResult(msg string, res schedules.Result) {
	s.opts.Logger.Info(msg, "owner", s.owner(), "taskQueue", s.opts.TaskQueue,
		"created", res.Created, "updated", res.Updated, "deleted", res.Deleted, "unchanged", len(res.Unchanged))
	if !res.Changed() || s.p.Store == nil {
		return
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := s.p.Store.RecordScheduleChanges(ctx, WorkerIdentity(), "worker", res.Created, res.Updated, res.Deleted); err != nil {
		s.opts.Logger.Warn("the schedule changes could not be audited", "error", err)
	}
}

// WorkerIdentity names this worker process in the audit.
func WorkerIdentity() string {
	host, _ := os.Hostname()
	return fmt.Sprintf("%d@%s (tether worker)", os.Getpid(), host)
}
