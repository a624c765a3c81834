package app

import (
	"context"
	"fmt"
	"log/slog"
	"os"
	"strings"
	"sync"
	"time"

	"go.temporal.io/sdk/client"
	"go.uber.org/fx"

	"github.com/tetherflow/tether/activities/catalog"
	"github.com/tetherflow/tether/activities/integration"
	"github.com/tetherflow/tether/activities/integration/declarative"
	"github.com/tetherflow/tether/activities/lib/schema"
	"github.com/tetherflow/tether/activities/run"
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
	ids     []string // the schedules of the last apply, whose acts are audited
}

// scheduleActsEvery is how often a worker audits what people and tools did
// to its schedules through Temporal (pauses, triggers, edits).
const scheduleActsEvery = 30 * time.Second

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
	s.ids = res.IDs()
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

// run applies the queued definitions until ctx ends, and audits the acts
// on the schedules every scheduleActsEvery.
func (s *Schedules) run(ctx context.Context) {
	tick := time.NewTicker(scheduleActsEvery)
	defer tick.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-tick.C:
			if s.p.Store == nil {
				continue
			}
			actx, cancel := context.WithTimeout(ctx, scheduleApplyTimeout)
			if err := AuditScheduleActs(actx, s.p.Client, s.p.Store, s.ids); err != nil {
				s.opts.Logger.Debug("the acts on the schedules could not be audited", "error", err)
			}
			cancel()
		case defs := <-s.pending:
			actx, cancel := context.WithTimeout(ctx, scheduleApplyTimeout)
			res, err := schedules.Apply(actx, s.p.Client, s.opts, defs)
			cancel()
			s.logResult("schedules applied after the integration files changed", res)
			if err != nil {
				s.opts.Logger.Error("some schedules could not be applied after the integration files changed; they stay as they were", "owner", s.owner(), "error", err)
			} else {
				s.ids = res.IDs()
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
	if err := AuditScheduleChanges(ctx, s.p.Client, s.p.Store, WorkerIdentity(), "worker", res); err != nil {
		s.opts.Logger.Warn("the schedule changes could not be audited", "error", err)
	}
}

// AuditScheduleChanges records what an apply (res) did, by actor via, and
// the acts on the applied schedules: their updates are read from the
// schedules' histories with the caller's Temporal identity, like any other
// tool's (the apply's own are recorded by it only when those cannot be
// read).
func AuditScheduleChanges(ctx context.Context, c run.History, st *store.Store, actor, via string, res schedules.Result) error {
	updated := res.Updated
	if AuditScheduleActs(ctx, c, st, res.IDs()) == nil {
		updated = nil
	}
	return st.RecordScheduleChanges(ctx, actor, via, res.Created, updated, res.Deleted)
}

// AuditScheduleActs records, once each, what people and tools did to the
// schedules ids through Temporal (the Web UI, the Temporal CLI, an SDK):
// pauses and unpauses with their reasons, triggers, backfills and edits,
// by the Temporal identity of the caller, read from the schedules'
// histories. An error means a history could not be read.
func AuditScheduleActs(ctx context.Context, c run.History, st *store.Store, ids []string) error {
	for _, id := range ids {
		acts, err := schedules.ReadActs(ctx, c, id)
		if err != nil {
			return err
		}
		integration, _, _ := strings.Cut(id, "/")
		for _, a := range acts {
			var details map[string]any
			if a.Reason != "" {
				details = map[string]any{"reason": a.Reason}
			}
			if err := st.RecordAudit(ctx, store.AuditEntry{At: a.At, Actor: a.Actor, Via: "temporal", Action: a.Action,
				Integration: integration, Target: id, TargetRun: a.Ref, Details: details}); err != nil {
				return err
			}
		}
	}
	return nil
}

// WorkerIdentity names this worker process in the audit.
func WorkerIdentity() string {
	host, _ := os.Hostname()
	return fmt.Sprintf("%d@%s (tether worker)", os.Getpid(), host)
}
