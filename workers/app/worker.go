package app

import (
	"context"
	"fmt"
	"log/slog"

	"go.temporal.io/sdk/client"
	"go.temporal.io/sdk/worker"
	"go.uber.org/fx"

	"github.com/tetherflow/tether/activities/lib/heartbeat"
	"github.com/tetherflow/tether/workers/config"
	"github.com/tetherflow/tether/workflows/capture"
	"github.com/tetherflow/tether/workflows/datasync"
	"github.com/tetherflow/tether/workflows/events"
	"github.com/tetherflow/tether/workflows/reconcile"
)

// WorkerParams are what NewWorker needs.
type WorkerParams struct {
	fx.In
	Lifecycle  fx.Lifecycle
	Config     config.Config
	Client     client.Client
	Activities *Activities
	Logger     *slog.Logger
	// Extra registers more workflows and activities on the worker
	// (WithWorkflows): your own integrations as workflow code.
	Extra []Registration `group:"registrations"`
}

// Registration puts workflows or activities on a worker.
type Registration func(worker.Registry)

// NewWorker registers the workflows and activities and starts polling in
// OnStart. OnStop stops polling and waits up to worker.graceful_stop for
// running activities to finish.
func NewWorker(p WorkerParams) worker.Worker {
	cfg := p.Config
	w := worker.New(p.Client, cfg.Temporal.TaskQueue, worker.Options{
		MaxConcurrentActivityExecutionSize:      cfg.Worker.MaxConcurrentActivities,
		MaxConcurrentLocalActivityExecutionSize: cfg.Worker.MaxConcurrentLocalActivities,
		MaxConcurrentWorkflowTaskExecutionSize:  cfg.Worker.MaxConcurrentWorkflowTasks,
		WorkerStopTimeout:                       cfg.Worker.GracefulStop,
		// Heartbeats reach the server at least this often, well inside the
		// steps' heartbeat timeout (steps.HeartbeatTimeout).
		MaxHeartbeatThrottleInterval: heartbeat.Every,
	})
	Register(w, p.Activities)
	for _, r := range p.Extra {
		r(w)
	}
	p.Lifecycle.Append(fx.Hook{
		OnStart: func(context.Context) error {
			if err := w.Start(); err != nil {
				return fmt.Errorf("start worker on task queue %q: %w", cfg.Temporal.TaskQueue, err)
			}
			p.Logger.Info("worker polling", "taskQueue", cfg.Temporal.TaskQueue, "namespace", cfg.Temporal.Namespace, "address", cfg.Temporal.Address)
			return nil
		},
		OnStop: func(context.Context) error {
			p.Logger.Info("worker stopping: no new tasks; running activities may finish", "gracefulStop", cfg.Worker.GracefulStop)
			w.Stop()
			return nil
		},
	})
	return w
}

// Register puts tether's workflows and every activity they call on a
// worker.
func Register(w worker.Registry, acts *Activities) {
	datasync.Register(w)
	reconcile.Register(w)
	events.Register(w)
	capture.Register(w)
	acts.Register(w)
}
