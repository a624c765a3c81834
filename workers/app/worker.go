package app

import (
	"context"
	"fmt"
	"log/slog"
	"os"
	"strings"
	"time"

	twowaywf "github.com/tetherflow/tether/workflows/twoway"

	"go.temporal.io/api/enums/v1"
	"go.temporal.io/sdk/client"
	"go.temporal.io/sdk/interceptor"
	"go.temporal.io/sdk/worker"
	"go.uber.org/fx"

	"github.com/tetherflow/tether/activities/lib/heartbeat"
	"github.com/tetherflow/tether/activities/lib/postgres"
	"github.com/tetherflow/tether/activities/store"
	"github.com/tetherflow/tether/workers/config"
	"github.com/tetherflow/tether/workers/telemetry"
	"github.com/tetherflow/tether/workflows/capture"
	"github.com/tetherflow/tether/workflows/datasync"
	"github.com/tetherflow/tether/workflows/erase"
	"github.com/tetherflow/tether/workflows/events"
	"github.com/tetherflow/tether/workflows/reconcile"
)

// WorkerParams are what NewWorker needs.
type WorkerParams struct {
	fx.In
	Lifecycle  fx.Lifecycle
	Config     config.Config
	Client     client.Client
	Store      *store.Store
	Activities *Activities
	Metrics    *telemetry.Metrics
	Logger     *slog.Logger
	// Extra registers more workflows and activities on the worker
	// (WithWorkflows): your own integrations as workflow code.
	Extra []Registration `group:"registrations"`
	// Health is the metrics endpoint, whose /readyz follows this worker:
	// ready once it polls, with PostgreSQL answering, until its stop
	// begins (absent: nothing to tell).
	Health *MetricsServer `optional:"true"`
}

// Registration puts workflows or activities on a worker.
type Registration func(worker.Registry)

// Worker is the Temporal worker of the task queue, made and started at the
// app's start, once the database says which deployment it serves.
type Worker struct {
	w worker.Worker
}

// NewWorker returns the worker; in OnStart it reads the deployment's id
// from the database, refuses a task queue that workers of another
// database poll, registers the workflows and activities and starts
// polling, and marks the worker ready (/readyz). OnStop marks it not ready,
// stops polling and waits up to worker.graceful_stop for running
// activities to finish.
func NewWorker(p WorkerParams) *Worker {
	cfg := p.Config
	out := &Worker{}
	ready := p.Health.readiness()
	if p.Store != nil {
		ready.Require("database", func(ctx context.Context) error { return postgres.Ping(ctx, p.Store.DB, cfg.Database.URL) })
	}
	p.Lifecycle.Append(fx.Hook{
		OnStart: func(ctx context.Context) error {
			ctx, cancel := context.WithTimeout(ctx, cfg.Temporal.ConnectTimeout)
			defer cancel()
			id, err := p.Store.DeploymentID(ctx)
			if err != nil {
				return fmt.Errorf("database %s: %w", cfg.Database.Redacted(), err)
			}
			if err := CheckTaskQueue(ctx, p.Client, cfg.Temporal.TaskQueue, id); err != nil {
				return err
			}
			out.w = worker.New(p.Client, cfg.Temporal.TaskQueue, worker.Options{
				Identity:                                Identity(id),
				MaxConcurrentActivityExecutionSize:      cfg.Worker.MaxConcurrentActivities,
				MaxConcurrentLocalActivityExecutionSize: cfg.Worker.MaxConcurrentLocalActivities,
				MaxConcurrentWorkflowTaskExecutionSize:  cfg.Worker.MaxConcurrentWorkflowTasks,
				WorkerStopTimeout:                       cfg.Worker.GracefulStop,
				// Heartbeats reach the server at least this often, well inside
				// the steps' heartbeat timeout (steps.HeartbeatTimeout).
				MaxHeartbeatThrottleInterval: heartbeat.Every,
				// Every step and workflow: its integration, run and page in
				// its logs, spans and metrics.
				Interceptors: []interceptor.WorkerInterceptor{telemetry.NewInterceptor(p.Metrics,
					&telemetry.RetryNotice{Client: p.Client, WorkflowTypes: []string{datasync.WorkflowType}})},
			})
			Register(out.w, p.Activities)
			for _, r := range p.Extra {
				r(out.w)
			}
			if err := out.w.Start(); err != nil {
				return fmt.Errorf("start worker on task queue %q: %w", cfg.Temporal.TaskQueue, err)
			}
			p.Logger.Info("worker polling", "taskQueue", cfg.Temporal.TaskQueue, "namespace", cfg.Temporal.Namespace,
				"address", cfg.Temporal.Address, "deployment", id)
			ready.Polling()
			return nil
		},
		OnStop: func(context.Context) error {
			ready.Stopping()
			if out.w == nil {
				return nil
			}
			p.Logger.Info("worker stopping: no new tasks; running activities may finish", "gracefulStop", cfg.Worker.GracefulStop)
			out.w.Stop()
			return nil
		},
	})
	return out
}

// deploymentMark introduces the deployment id in a worker's identity.
const deploymentMark = " tether-deployment="

// Identity is the identity a worker of deployment id shows Temporal (in
// the Web UI's pollers): process, host and deployment.
func Identity(id string) string {
	host, _ := os.Hostname()
	return fmt.Sprintf("%d@%s%s%s", os.Getpid(), host, deploymentMark, id)
}

// recentPoller is how recently a poller must have polled to count as
// running.
const recentPoller = 2 * time.Minute

// CheckTaskQueue refuses a task queue that workers of another deployment
// (another database, or schema) polled lately: their steps would write
// runs started here into their database, and this worker theirs.
func CheckTaskQueue(ctx context.Context, c client.Client, taskQueue, id string) error {
	for _, typ := range []enums.TaskQueueType{enums.TASK_QUEUE_TYPE_WORKFLOW, enums.TASK_QUEUE_TYPE_ACTIVITY} {
		d, err := c.DescribeTaskQueue(ctx, taskQueue, typ)
		if err != nil {
			return fmt.Errorf("describe task queue %q: %w", taskQueue, err)
		}
		for _, p := range d.GetPollers() {
			_, other, ok := strings.Cut(p.GetIdentity(), deploymentMark)
			if !ok || other == id || time.Since(p.GetLastAccessTime().AsTime()) > recentPoller {
				continue
			}
			return fmt.Errorf("task queue %q (temporal.task_queue / TETHER_TEMPORAL_TASK_QUEUE) is polled by worker %s of another deployment (%s; this database is %s): "+
				"workers of different databases must not share a task queue, or runs would be written to the wrong one; give this deployment a task queue of its own, "+
				"or point this worker at the same database (a worker that has stopped is forgotten %s after its last poll)",
				taskQueue, p.GetIdentity(), other, id, recentPoller)
		}
	}
	return nil
}

// Register puts tether's workflows and every activity they call on a
// worker.
func Register(w worker.Registry, acts *Activities) {
	datasync.Register(w)
	reconcile.Register(w)
	events.Register(w)
	capture.Register(w)
	erase.Register(w)
	twowaywf.Register(w)
	acts.Register(w)
}
