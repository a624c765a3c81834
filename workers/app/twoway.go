package app

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"slices"
	"sync"
	"time"

	enumspb "go.temporal.io/api/enums/v1"
	"go.temporal.io/sdk/client"
	"go.uber.org/fx"

	"github.com/tetherflow/tether/activities/connector"
	"github.com/tetherflow/tether/activities/integration/declarative"
	"github.com/tetherflow/tether/activities/syncstep"
	"github.com/tetherflow/tether/activities/twoway"
	"github.com/tetherflow/tether/workers/config"
	twowaywf "github.com/tetherflow/tether/workflows/twoway"
)

// WithTwoWay runs two-way integrations written in Go on the worker,
// beside those of the integration files (kind: two-way):
// app.New(cfg, app.WithTwoWay(accountsBilling(cfg))).
func WithTwoWay(defs ...twoway.Definition) fx.Option {
	opts := make([]fx.Option, len(defs))
	for i, d := range defs {
		opts[i] = fx.Supply(fx.Annotate(d, fx.ResultTags(`group:"twoway"`)))
	}
	return fx.Options(opts...)
}

// TwoWayParams are what the worker's two-way integrations are built from.
type TwoWayParams struct {
	fx.In
	Config     config.Config
	Connectors *connector.Registry
	Defs       []twoway.Definition `group:"twoway"`
	Logger     *slog.Logger
}

// NewTwoWay holds the worker's two-way integrations: the Go ones and the
// integration files' (kind: two-way) of integrations_dir. One that is not
// valid, or a name defined twice, stops the worker before it starts,
// naming the file and the setting, and so does a side its connector
// refuses to open. The files are watched while the worker runs
// (startTwoWay): a change is applied when they all load.
func NewTwoWay(p TwoWayParams) (*twoway.Registry, error) {
	defs, err := twoWayDefs(p.Config, p.Defs)
	if err != nil {
		return nil, err
	}
	reg, err := twoway.NewRegistry(defs...)
	if err != nil {
		return nil, err
	}
	if err := reg.Check(p.Connectors); err != nil {
		return nil, err
	}
	if names := reg.Names(); len(names) > 0 {
		p.Logger.Info("two-way integrations", "names", names)
	}
	return reg, nil
}

// twoWayDefs are the Go two-way integrations goDefs and those of the
// integration files of cfg's integrations_dir.
func twoWayDefs(cfg config.Config, goDefs []twoway.Definition) ([]twoway.Definition, error) {
	defs := slices.Clone(goDefs)
	dir := cfg.IntegrationsDir
	if dir == "" {
		return defs, nil
	}
	files, err := declarative.TwoWayFiles(dir)
	if err != nil {
		return nil, err
	}
	var errs []error
	for _, f := range files {
		d, err := declarative.LoadTwoWay(f, os.LookupEnv, os.ReadFile, config.HTTP(cfg.Connections))
		if err != nil {
			errs = append(errs, err)
			continue
		}
		defs = append(defs, d)
	}
	if err := errors.Join(errs...); err != nil {
		return nil, fmt.Errorf("integrations_dir %s:\n%w", dir, err)
	}
	return defs, nil
}

// twoWayRunParams are what startTwoWay runs the integrations with.
type twoWayRunParams struct {
	fx.In
	Lifecycle  fx.Lifecycle
	Client     client.Client
	DB         *sql.DB
	Config     config.Config
	Registry   *twoway.Registry
	Connectors *connector.Registry
	GoDefs     []twoway.Definition `group:"twoway"`
	Logger     *slog.Logger
	Worker     *Worker // started first: the workflows need a poller
}

// startTwoWay starts the two-way integrations' workflows once the worker
// polls, and wakes them on their PostgreSQL sides' notifications (Notify)
// until the worker stops. It follows the two-way files of integrations_dir:
// a file added starts its integration, a file changed is used from the
// next cycle on, a file removed cancels its integration's workflow; a
// change that does not load (or whose sides do not open) is logged and
// the last good files stay.
func startTwoWay(p twoWayRunParams) {
	ctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	log, reg := p.Logger, p.Registry
	// watch installs the notify triggers of the current integrations and
	// listens until its context ends; a reload starts it again.
	var stopWatch context.CancelFunc
	watch := func() {
		if stopWatch != nil {
			stopWatch()
		}
		var wctx context.Context
		wctx, stopWatch = context.WithCancel(ctx)
		wg.Go(func() {
			if err := twoway.Watch(wctx, p.DB, p.Config.Database.URL, reg, WakeTwoWay(p.Client, log), log); err != nil {
				log.Warn("two-way: not woken by table changes; cycles run on their timer", "error", err)
			}
		})
	}
	reload := func() {
		defs, err := twoWayDefs(p.Config, p.GoDefs)
		var ch twoway.Changes
		if err == nil {
			ch, err = reg.Replace(p.Connectors, defs...)
		}
		if err != nil {
			log.Error("two-way integration files changed but do not load; the last good ones stay", "dir", p.Config.IntegrationsDir, "error", err)
			return
		}
		if ch.Empty() {
			return
		}
		log.Info("two-way integration files reloaded", "added", ch.Added, "changed", ch.Changed, "removed", ch.Removed)
		if err := StartTwoWay(ctx, p.Client, p.Config.Temporal.TaskQueue, reg, log); err != nil {
			log.Error("two-way: start the integrations", "error", err)
		}
		for _, name := range ch.Removed {
			if err := p.Client.CancelWorkflow(ctx, twowaywf.WorkflowID(name), ""); err != nil {
				log.Warn("two-way: cancel a removed integration's workflow", "integration", name, "error", err)
			}
		}
		watch()
	}
	p.Lifecycle.Append(fx.Hook{
		OnStart: func(start context.Context) error {
			if err := StartTwoWay(start, p.Client, p.Config.Temporal.TaskQueue, reg, log); err != nil {
				return err
			}
			watch()
			if dir := p.Config.IntegrationsDir; dir != "" {
				wg.Go(func() {
					err := declarative.Changes(ctx, dir, nil, func(err error) {
						if err != nil {
							log.Warn("two-way integration files", "error", err)
							return
						}
						reload()
					})
					if err != nil {
						log.Warn("two-way integration files are not watched: a change takes effect when the worker restarts", "error", err)
					}
				})
			}
			return nil
		},
		OnStop: func(context.Context) error {
			cancel()
			done := make(chan struct{})
			go func() { wg.Wait(); close(done) }()
			select {
			case <-done:
			case <-time.After(5 * time.Second):
			}
			return nil
		},
	})
}

// WakeTwoWay signals an integration's workflow to run a cycle now.
func WakeTwoWay(c client.Client, log *slog.Logger) func(string) {
	return func(name string) {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		if err := c.SignalWorkflow(ctx, twowaywf.WorkflowID(name), "", twowaywf.SignalSyncNow, nil); err != nil {
			log.Debug("two-way: wake", "integration", name, "error", err)
		}
	}
}

// StartTwoWay starts the workflow of each of reg's integrations on
// taskQueue, leaving one that runs already as it is.
func StartTwoWay(ctx context.Context, c client.Client, taskQueue string, reg *twoway.Registry, log *slog.Logger) error {
	for _, name := range reg.Names() {
		run, err := c.ExecuteWorkflow(ctx, client.StartWorkflowOptions{
			ID: twowaywf.WorkflowID(name), TaskQueue: taskQueue,
			WorkflowIDConflictPolicy: enumspb.WORKFLOW_ID_CONFLICT_POLICY_USE_EXISTING,
			WorkflowIDReusePolicy:    enumspb.WORKFLOW_ID_REUSE_POLICY_ALLOW_DUPLICATE,
		}, twowaywf.WorkflowType, syncstep.TwoWayInput{Integration: name})
		if err != nil {
			return fmt.Errorf("start two-way integration %s: %w", name, err)
		}
		log.Info("two-way integration running", "integration", name, "workflowId", run.GetID(), "runId", run.GetRunID())
	}
	return nil
}
