package webhook

import (
	"context"
	"fmt"
	"sync"
	"time"

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
//
// Deliveries for one shard are recorded in groups, as a database groups
// commits: while a signal-with-start to a shard is in flight, the events
// arriving for it wait, and go together in the next one (SignalEvents,
// up to MaxSignalEvents events or MaxSignalBytes of records). A delivery
// alone is signalled at once, so grouping adds no delay at a low rate,
// and at a high one the server writes one signal for many deliveries:
// that, not the server's cost per signal, then bounds the acceptance
// rate. Each delivery is still answered only once its own group is in
// the history.
type TemporalAccepter struct {
	client     SignalWithStarter
	taskQueue  string
	routes     map[string]Route
	deliveries DeliveryLog
	// timeout bounds one signal-with-start of a group.
	timeout time.Duration

	mu     sync.Mutex
	queues map[string]*shardQueue // by workflow id
}

// Limits of one signal-with-start of a group of events.
const (
	// MaxSignalEvents bounds the events of one signal.
	MaxSignalEvents = 200
	// MaxSignalBytes bounds the records' bytes of one signal (Temporal
	// warns at 512 KiB a payload and refuses 2 MiB); a larger delivery
	// goes alone.
	MaxSignalBytes = 256 << 10
)

// shardQueue holds the deliveries waiting for a shard's next signal.
type shardQueue struct {
	waiting  []*delivery
	flushing bool // a goroutine is signalling this shard's groups
	input    events.Input
}

// delivery is one event waiting to be recorded.
type delivery struct {
	ev    syncstep.Event
	size  int
	taken bool       // in a group being signalled (guarded by TemporalAccepter.mu)
	done  chan error // the group's outcome
}

// NewTemporalAccepter builds the accepter of the sources in routes (by
// source name); events start workflows on taskQueue.
func NewTemporalAccepter(c SignalWithStarter, taskQueue string, routes map[string]Route, deliveries DeliveryLog) *TemporalAccepter {
	return &TemporalAccepter{client: c, taskQueue: taskQueue, routes: routes, deliveries: deliveries,
		timeout: DefaultAcceptTimeout, queues: map[string]*shardQueue{}}
}

// Accept signals ev to its shard's workflow, starting it if it is not
// running, in a group with the events arriving for the shard meanwhile.
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
	step := ToStep(ev)
	d := &delivery{ev: step, size: len(step.Record) + len(step.Key) + len(step.DeliveryID) + 256, done: make(chan error, 1)}

	t.mu.Lock()
	q := t.queues[id]
	if q == nil {
		q = &shardQueue{input: events.Input{Integration: route.Integration, Shard: shard}}
		t.queues[id] = q
	}
	q.waiting = append(q.waiting, d)
	if !q.flushing {
		q.flushing = true
		go t.flush(id, q)
	}
	t.mu.Unlock()

	select {
	case err := <-d.done:
		return err
	case <-ctx.Done():
	}
	t.mu.Lock()
	defer t.mu.Unlock()
	if !d.taken {
		// Not signalled: take it back, so that the 503 the receiver answers
		// leaves nothing recorded.
		for i, w := range q.waiting {
			if w == d {
				q.waiting = append(q.waiting[:i], q.waiting[i+1:]...)
				break
			}
		}
		return ctx.Err()
	}
	return fmt.Errorf("signal-with-start %s: %w", id, ctx.Err())
}

// flush signals the shard's waiting deliveries, a group at a time, until
// none waits.
func (t *TemporalAccepter) flush(id string, q *shardQueue) {
	for {
		t.mu.Lock()
		if len(q.waiting) == 0 {
			q.flushing = false
			t.mu.Unlock()
			return
		}
		n, bytes := 0, 0
		for n < len(q.waiting) && n < MaxSignalEvents && (n == 0 || bytes+q.waiting[n].size <= MaxSignalBytes) {
			bytes += q.waiting[n].size
			q.waiting[n].taken = true
			n++
		}
		group := q.waiting[:n:n]
		q.waiting = append([]*delivery(nil), q.waiting[n:]...)
		t.mu.Unlock()

		evs := make([]syncstep.Event, len(group))
		for i, d := range group {
			evs[i] = d.ev
		}
		ctx, cancel := context.WithTimeout(context.Background(), t.timeout)
		_, err := t.client.SignalWithStartWorkflow(ctx, id, events.SignalEvents, evs,
			client.StartWorkflowOptions{ID: id, TaskQueue: t.taskQueue},
			events.WorkflowType, q.input)
		cancel()
		if err != nil {
			err = fmt.Errorf("signal-with-start %s (%d events): %w", id, len(evs), err)
		}
		for _, d := range group {
			d.done <- err
		}
	}
}

// ToStep is the event as the events workflow applies it.
func ToStep(ev Event) syncstep.Event {
	return syncstep.Event{
		Source: ev.Source, DeliveryID: ev.DeliveryID, Key: ev.EntityKey, Version: ev.Version,
		Delete: ev.Delete, Record: ev.Record, Invalid: ev.Invalid, ReceivedAt: ev.ReceivedAt, Sender: ev.Sender,
	}
}
