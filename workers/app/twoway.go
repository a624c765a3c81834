package app

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"slices"
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
// refuses to open. (Two-way files are read at start: a
// change takes effect when the worker restarts.)
func NewTwoWay(p TwoWayParams) (*twoway.Registry, error) {
	defs := slices.Clone(p.Defs)
	if dir := p.Config.IntegrationsDir; dir != "" {
		files, err := declarative.TwoWayFiles(dir)
		if err != nil {
			return nil, err
		}
		var errs []error
		for _, f := range files {
			d, err := declarative.LoadTwoWay(f, os.LookupEnv, os.ReadFile, config.HTTP(p.Config.Connections))
			if err != nil {
				errs = append(errs, err)
				continue
			}
			defs = append(defs, d)
		}
		if err := errors.Join(errs...); err != nil {
			return nil, fmt.Errorf("integrations_dir %s:\n%w", dir, err)
		}
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

// startTwoWay starts the two-way integrations' workflows once the worker
// polls, and wakes them on their PostgreSQL sides' notifications (Notify)
// until the worker stops.
func startTwoWay(lc fx.Lifecycle, c client.Client, db *sql.DB, cfg config.Config, reg *twoway.Registry, log *slog.Logger, _ *Worker) {
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	lc.Append(fx.Hook{
		OnStart: func(start context.Context) error {
			if err := StartTwoWay(start, c, cfg.Temporal.TaskQueue, reg, log); err != nil {
				return err
			}
			go func() {
				defer close(done)
				if err := twoway.Watch(ctx, db, cfg.Database.URL, reg, WakeTwoWay(c, log), log); err != nil {
					log.Warn("two-way: not woken by table changes; cycles run on their timer", "error", err)
				}
			}()
			return nil
		},
		OnStop: func(context.Context) error {
			cancel()
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
