package app

import (
	"context"
	"fmt"
	"log/slog"

	enumspb "go.temporal.io/api/enums/v1"
	"go.temporal.io/sdk/client"
	"go.uber.org/fx"

	"github.com/tetherflow/tether/activities/syncstep"
	"github.com/tetherflow/tether/activities/twoway"
	"github.com/tetherflow/tether/workers/config"
	twowaywf "github.com/tetherflow/tether/workflows/twoway"
)

// WithTwoWay runs two-way integrations on the worker:
// app.New(cfg, app.WithTwoWay(accountsBilling(cfg))). A definition that is
// not valid stops the worker before it starts, naming what is wrong; at
// start the worker starts each integration's workflow (one per
// integration, "<name>/twoway"), unless it runs already.
func WithTwoWay(defs ...twoway.Definition) fx.Option {
	return fx.Options(
		fx.Provide(func() (*twoway.Registry, error) { return twoway.NewRegistry(defs...) }),
		fx.Invoke(func(lc fx.Lifecycle, c client.Client, cfg config.Config, reg *twoway.Registry, log *slog.Logger, _ *Worker) {
			lc.Append(fx.Hook{OnStart: func(ctx context.Context) error {
				return StartTwoWay(ctx, c, cfg.Temporal.TaskQueue, reg, log)
			}})
		}),
	)
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
