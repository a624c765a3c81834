package webhook

import (
	"context"
	"fmt"

	"go.temporal.io/sdk/client"

	"github.com/tetherflow/tether/activities/syncstep"
	"github.com/tetherflow/tether/workflows/events"
	twowaywf "github.com/tetherflow/tether/workflows/twoway"
)

// Route says where a source's events are applied: the integration and its
// number of event workflows (Definition.EventShards).
type Route struct {
	Integration string
	Shards      int
	// TwoWay says the integration is a two-way one: a delivery wakes its
	// workflow for a cycle now (the sides' change feeds stay what is
	// read; a lost webhook only delays the change to the next cycle).
	TwoWay bool
}

// DeliveryLog tells whether a delivery was applied already (store.Store
// is one).
type DeliveryLog interface {
	DeliveryRecorded(ctx context.Context, source, id string) (bool, error)
}

// SignalWithStarter is the part of the Temporal client the accepter uses
// (client.Client is one).
type SignalWithStarter interface {
	SignalWithStartWorkflow(ctx context.Context, workflowID, signalName string, signalArg any,
		options client.StartWorkflowOptions, workflow any, workflowArgs ...any) (client.WorkflowRun, error)
	SignalWorkflow(ctx context.Context, workflowID, runID, signalName string, arg any) error
}

// TemporalAccepter records every accepted event in Temporal: a
// signal-with-start of the events workflow of the entity's shard
// (events.WorkflowID), which applies it. Accept returns once the server
// has written the signal to the workflow's history, so an acknowledged
// event survives workers and receivers being down; it is applied when a
// worker runs. A delivery the deliveries log shows as applied is
// ErrDuplicate (200), and nothing is signalled; one redelivered before its
// first delivery was applied is signalled again and dropped by the
// workflow or, at the latest, by the apply's transaction.
type TemporalAccepter struct {
	client     SignalWithStarter
	taskQueue  string
	routes     map[string]Route
	deliveries DeliveryLog
}

// NewTemporalAccepter builds the accepter of the sources in routes (by
// source name); events start workflows on taskQueue.
func NewTemporalAccepter(c SignalWithStarter, taskQueue string, routes map[string]Route, deliveries DeliveryLog) *TemporalAccepter {
	return &TemporalAccepter{client: c, taskQueue: taskQueue, routes: routes, deliveries: deliveries}
}

// Accept signals ev to its shard's workflow, starting it if it is not
// running.
func (t *TemporalAccepter) Accept(ctx context.Context, ev Event) error {
	route, ok := t.routes[ev.Source]
	if !ok || route.Integration == "" {
		return fmt.Errorf("source %q has no integration to apply its events to", ev.Source)
	}
	if route.TwoWay {
		id := twowaywf.WorkflowID(route.Integration)
		if err := t.client.SignalWorkflow(ctx, id, "", twowaywf.SignalSyncNow, nil); err != nil {
			return fmt.Errorf("wake %s: %w", id, err)
		}
		return nil
	}
	seen, err := t.deliveries.DeliveryRecorded(ctx, ev.Source, ev.DeliveryID)
	if err != nil {
		return err
	}
	if seen {
		return ErrDuplicate
	}
	shard := events.Shard(ev.EntityKey, route.Shards) // a keyless (quarantined) event hashes as ""
	id := events.WorkflowID(route.Integration, shard)
	_, err = t.client.SignalWithStartWorkflow(ctx, id, events.SignalEvent, ToStep(ev),
		client.StartWorkflowOptions{ID: id, TaskQueue: t.taskQueue},
		events.WorkflowType, events.Input{Integration: route.Integration, Shard: shard})
	if err != nil {
		return fmt.Errorf("signal-with-start %s: %w", id, err)
	}
	return nil
}

// ToStep is the event as the events workflow applies it.
func ToStep(ev Event) syncstep.Event {
	return syncstep.Event{
		Source: ev.Source, DeliveryID: ev.DeliveryID, Key: ev.EntityKey, Version: ev.Version,
		Delete: ev.Delete, Record: ev.Record, Invalid: ev.Invalid, ReceivedAt: ev.ReceivedAt, Sender: ev.Sender,
	}
}
