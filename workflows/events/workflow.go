// Package events holds EventsWorkflow, which applies an integration's
// webhook events in order per entity.
//
// Every entity's events go to one workflow, picked by a hash of its key
// among the integration's shards (Definition.Events.Shards, default 1):
// id "<integration>/events/<shard>". The webhook receiver records each
// event with signal-with-start (SignalEvents: the deliveries that arrived
// together; SignalEvent, one, from older receivers), so the event is in the
// workflow's history (durable, even while no worker runs) before the sender
// gets its 202. The workflow applies what it has received in arrival
// order, in batches, with the ApplyEvents local activity: one transaction
// per batch, each entity reduced to its newest event, the destination's
// version column skipping anything older than the stored row. Different
// shards apply in parallel.
//
// Why shards and not one workflow per entity: a workflow start costs the
// dev server 20-30 ms of CPU on this kind of machine (see docs), so one
// workflow per entity would cap a 2-core box at a few dozen new entities a
// second, while a shard's long-lived workflow pays one workflow task per
// batch whatever the number of entities in it. Per-entity order is kept
// because an entity's events always go to the same shard and a shard
// applies its events one batch at a time, in the order Temporal recorded
// them.
//
// A shard that has had nothing to do for its idle time (default 10
// minutes) completes; the next event starts it again. It continues as new
// when Temporal suggests it, carrying its pending events and recent
// delivery ids. An apply that fails is retried with a growing delay (up to
// a minute) for as long as it takes: events are never dropped, and the
// progress query says why the shard is blocked.
package events

import (
	"fmt"
	"hash/fnv"
	"time"

	"go.temporal.io/sdk/temporal"
	"go.temporal.io/sdk/workflow"

	"github.com/tetherflow/tether/activities/syncstep"
	"github.com/tetherflow/tether/workflows/datasync"
	"github.com/tetherflow/tether/workflows/steps"
)

// WorkflowType is the registered name of the events workflow.
const WorkflowType = "EventsWorkflow"

// SignalEvent is the signal carrying one syncstep.Event.
const SignalEvent = "event"

// SignalEvents is the signal carrying several events ([]syncstep.Event),
// in the order they are applied: the webhook receiver records the
// deliveries that arrive together for one shard with one
// signal-with-start (see webhook.TemporalAccepter).
const SignalEvents = "events"

// QueryProgress returns a Progress.
const QueryProgress = "progress"

// Defaults of a shard.
const (
	// DefaultIdleTimeout is how long a shard waits for events before it
	// completes.
	DefaultIdleTimeout = 10 * time.Minute
	// MaxBatch bounds the events applied in one transaction.
	MaxBatch = 500
	// recentIDs bounds the delivery ids a shard remembers to drop
	// redeliveries before they reach the database.
	recentIDs = 2000
	// maxHistoryEvents continues as new before the history grows long
	// (each batch adds about 4 events besides its signals). A signal that
	// arrives while the continue-as-new is being completed fails that
	// workflow task (UnhandledCommand); the next one replays the whole
	// history, and until it has continued as new the server refuses the
	// shard's signals (BusyWorkflow). A short history keeps that window
	// short: on a 2-core machine at 1,000 events/s, accept p99 was
	// 120-153 ms at 500 events against 265-460 ms at 2,000; at 100/s
	// applied p99 46-66 ms. Executions from before version 2 keep
	// maxHistoryEventsV1.
	maxHistoryEvents   = 500
	maxHistoryEventsV1 = 8000
	// maxCarried bounds the pending events carried over continue-as-new
	// (Temporal warns at 512 KB per payload).
	maxCarried = 256 << 10
)

// versionOneIdleTimer marks executions that keep one idle timer (version
// 1 and later, see run) and continue as new at maxHistoryEvents (version
// 2).
const versionOneIdleTimer = "one-idle-timer"

// WorkflowID is the id of an integration's shard workflow.
func WorkflowID(integration string, shard int) string {
	return fmt.Sprintf("%s/events/%d", integration, shard)
}

// Shard picks the shard of an entity key among shards (FNV-1a).
func Shard(key string, shards int) int {
	if shards <= 1 {
		return 0
	}
	h := fnv.New32a()
	h.Write([]byte(key))
	return int(h.Sum32() % uint32(shards))
}

// Input starts a shard. Integration is required.
type Input struct {
	Integration string `json:"integration"`
	Shard       int    `json:"shard"`
	// IdleTimeout overrides DefaultIdleTimeout (tests).
	IdleTimeout time.Duration `json:"idleTimeout,omitempty"`
	// State is set only by continue-as-new.
	State *State `json:"state,omitempty"`
}

// State is what a shard carries across continue-as-new.
type State struct {
	Pending    []syncstep.Event     `json:"pending,omitempty"`
	Recent     []string             `json:"recent,omitempty"`
	Counts     syncstep.EventCounts `json:"counts"`
	Batches    int                  `json:"batches"`
	Executions int                  `json:"executions"`
	StartedAt  time.Time            `json:"startedAt"`
	// LastAppliedAt and Dropped carry the progress query's figures over.
	LastAppliedAt time.Time `json:"lastAppliedAt,omitzero"`
	Dropped       int       `json:"dropped,omitempty"`
}

// Progress is what the progress query returns.
type Progress struct {
	Integration string               `json:"integration"`
	Shard       int                  `json:"shard"`
	Pending     int                  `json:"pending"`
	Counts      syncstep.EventCounts `json:"counts"`
	Batches     int                  `json:"batches"`
	Executions  int                  `json:"executions"`
	// LastAppliedAt is when the last batch committed.
	LastAppliedAt time.Time `json:"lastAppliedAt,omitzero"`
	// LastError is why the last apply failed (the shard retries it); empty
	// once one succeeds.
	LastError string `json:"lastError,omitempty"`
	// DroppedRedeliveries counts events dropped because the shard had just
	// received or applied the same delivery.
	DroppedRedeliveries int `json:"droppedRedeliveries"`
}

// applyOptions runs ApplyEvents as a local activity: no task queue
// dispatch between an event's arrival and its apply. Its own retries are
// few and short; the workflow retries a failed batch with a growing delay.
var applyOptions = workflow.LocalActivityOptions{
	StartToCloseTimeout: 30 * time.Second,
	RetryPolicy: &temporal.RetryPolicy{
		InitialInterval: 100 * time.Millisecond, BackoffCoefficient: 2, MaximumInterval: 2 * time.Second, MaximumAttempts: 3,
	},
}

// EventsWorkflow applies a shard's events. See the package doc.
func EventsWorkflow(ctx workflow.Context, in Input) error {
	if in.Integration == "" {
		return temporal.NewNonRetryableApplicationError(`input: "integration" is required`, "ConfigError", nil)
	}
	s := &shard{in: in, ch: workflow.GetSignalChannel(ctx, SignalEvent),
		batches: workflow.GetSignalChannel(ctx, SignalEvents), recent: map[string]bool{}}
	if in.State != nil {
		s.st = *in.State
		s.lastAppliedAt, s.dropped = s.st.LastAppliedAt, s.st.Dropped
	} else {
		s.st.StartedAt = workflow.Now(ctx)
		_ = workflow.UpsertTypedSearchAttributes(ctx, datasync.IntegrationAttr.ValueSet(in.Integration))
	}
	s.st.Executions++
	for _, id := range s.st.Recent {
		s.recent[id] = true
	}
	if err := workflow.SetQueryHandler(ctx, QueryProgress, s.progress); err != nil {
		return err
	}
	return s.run(ctx)
}

type shard struct {
	in        Input
	ch        workflow.ReceiveChannel // SignalEvent: one event a signal
	batches   workflow.ReceiveChannel // SignalEvents: several a signal
	st        State
	recent    map[string]bool
	pendingID map[string]bool

	lastAppliedAt time.Time
	lastError     string
	dropped       int

	// Set by run for its loop.
	idle       time.Duration   // how long to wait for events before completing
	retryDelay time.Duration   // before the next attempt of a failed apply
	idleTimer  workflow.Future // version 1's one idle timer; nil until armed
	lastActive time.Time       // when the shard started or last applied a batch
	// historyLimit is the history length past which it continues as new.
	historyLimit int
}

func (s *shard) progress() (Progress, error) {
	return Progress{
		Integration: s.in.Integration, Shard: s.in.Shard, Pending: len(s.st.Pending), Counts: s.st.Counts,
		Batches: s.st.Batches, Executions: s.st.Executions, LastAppliedAt: s.lastAppliedAt,
		LastError: s.lastError, DroppedRedeliveries: s.dropped,
	}, nil
}

func deliveryID(ev syncstep.Event) string { return ev.Source + "\x00" + ev.DeliveryID }

// receive adds an event to the pending ones unless this shard has it
// already (the database's record of deliveries is the final guard).
func (s *shard) receive(ev syncstep.Event) {
	id := deliveryID(ev)
	if s.recent[id] || s.pendingID[id] {
		s.dropped++
		return
	}
	s.pendingID[id] = true
	s.st.Pending = append(s.st.Pending, ev)
}

// drain takes every signal already received, without blocking.
func (s *shard) drain() {
	for {
		var ev syncstep.Event
		if !s.ch.ReceiveAsync(&ev) {
			break
		}
		s.receive(ev)
	}
	for {
		var evs []syncstep.Event
		if !s.batches.ReceiveAsync(&evs) {
			return
		}
		s.receiveAll(evs)
	}
}

func (s *shard) receiveAll(evs []syncstep.Event) {
	for _, ev := range evs {
		s.receive(ev)
	}
}

// onSignals makes sel wait for either signal, taking what it brings.
// received, when not nil, is set when one came.
func (s *shard) onSignals(ctx workflow.Context, sel workflow.Selector, received *bool) {
	took := func() {
		if received != nil {
			*received = true
		}
	}
	sel.AddReceive(s.ch, func(c workflow.ReceiveChannel, _ bool) {
		var ev syncstep.Event
		c.Receive(ctx, &ev)
		s.receive(ev)
		took()
	})
	sel.AddReceive(s.batches, func(c workflow.ReceiveChannel, _ bool) {
		var evs []syncstep.Event
		c.Receive(ctx, &evs)
		s.receiveAll(evs)
		took()
	})
}

func (s *shard) run(ctx workflow.Context) error {
	s.pendingID = make(map[string]bool, len(s.st.Pending))
	for _, ev := range s.st.Pending {
		s.pendingID[deliveryID(ev)] = true
	}
	s.idle = s.in.IdleTimeout
	if s.idle <= 0 {
		s.idle = DefaultIdleTimeout
	}
	s.retryDelay = time.Second
	// Version 1 keeps one idle timer, re-armed only when it fires, instead
	// of starting and cancelling one around every batch (two history
	// events and server work per batch). Version 2 continues as new at a
	// shorter history.
	v := workflow.GetVersion(ctx, versionOneIdleTimer, workflow.DefaultVersion, 2)
	oneTimer := v >= 1
	s.historyLimit = maxHistoryEventsV1
	if v >= 2 {
		s.historyLimit = maxHistoryEvents
	}
	s.lastActive = workflow.Now(ctx)
	for {
		s.drain()
		if s.continueAsNew(ctx) {
			return workflow.NewContinueAsNewError(ctx, EventsWorkflow, s.next())
		}
		if len(s.st.Pending) == 0 {
			wait := s.waitWithNewTimer
			if oneTimer {
				wait = s.waitOnIdleTimer
			}
			if done, err := wait(ctx); done {
				return err
			}
			continue
		}
		if err := s.applyBatch(ctx); err != nil {
			return err
		}
	}
}

// waitOnIdleTimer waits for an event on the one idle timer (version 1),
// arming it first if it is not. It reports done when the shard stops: with
// nil once it has been idle for its idle time, or the cancellation.
func (s *shard) waitOnIdleTimer(ctx workflow.Context) (done bool, err error) {
	if s.idleTimer == nil {
		s.idleTimer = workflow.NewTimer(ctx, max(time.Second, s.lastActive.Add(s.idle).Sub(workflow.Now(ctx))))
	}
	fired := false
	sel := workflow.NewSelector(ctx)
	s.onSignals(ctx, sel, nil)
	sel.AddFuture(s.idleTimer, func(workflow.Future) { fired = true })
	sel.Select(ctx)
	if ctx.Err() != nil {
		return true, ctx.Err() // cancelled while idle
	}
	if fired {
		s.idleTimer = nil
		s.drain()
		if len(s.st.Pending) == 0 && !workflow.Now(ctx).Before(s.lastActive.Add(s.idle)) {
			return true, nil // idle: the next event starts the shard again
		}
	}
	return false, nil
}

// waitWithNewTimer waits for an event on a timer of its own, cancelled
// when an event comes (histories from before version 1). It reports done
// as waitOnIdleTimer does.
func (s *shard) waitWithNewTimer(ctx workflow.Context) (done bool, err error) {
	tctx, cancel := workflow.WithCancel(ctx)
	got := false
	sel := workflow.NewSelector(ctx)
	s.onSignals(ctx, sel, &got)
	sel.AddFuture(workflow.NewTimer(tctx, s.idle), func(workflow.Future) {})
	sel.Select(ctx)
	cancel()
	if ctx.Err() != nil {
		return true, ctx.Err() // cancelled while idle
	}
	if !got {
		s.drain()
		if len(s.st.Pending) == 0 {
			return true, nil // idle: the next event starts the shard again
		}
	}
	return false, nil
}

// applyBatch applies the oldest pending events, up to MaxBatch, in one
// ApplyEvents. A failed apply keeps them for the next attempt, after a
// delay that grows to a minute: nothing is dropped. The error returned is
// the workflow's cancellation.
func (s *shard) applyBatch(ctx workflow.Context) error {
	batch := s.st.Pending[:min(len(s.st.Pending), MaxBatch)]
	s.st.Batches++
	lctx := steps.WithLocalSummary(ctx, applyOptions, fmt.Sprintf("%s %d · %d events of shard %d", syncstep.ApplyEventsName, s.st.Batches, len(batch), s.in.Shard))
	out, err := syncstep.ApplyEvents.RunLocal(lctx, syncstep.ApplyEventsInput{
		Integration: s.in.Integration, Events: batch,
		Ref: syncstep.PageRef{RunID: workflow.GetInfo(ctx).WorkflowExecution.ID, Page: s.st.Batches},
	})
	if err != nil {
		if ctx.Err() != nil {
			return ctx.Err()
		}
		// Keep the events and try again later: nothing is dropped.
		s.lastError = err.Error()
		workflow.GetLogger(ctx).Warn("applying events failed; retrying", "integration", s.in.Integration,
			"shard", s.in.Shard, "events", len(batch), "retryIn", s.retryDelay, "error", err)
		if err := workflow.Sleep(ctx, s.retryDelay); err != nil {
			return err
		}
		s.retryDelay = min(2*s.retryDelay, time.Minute)
		return nil
	}
	s.retryDelay, s.lastError, s.lastAppliedAt = time.Second, "", out.AppliedAt
	s.lastActive = workflow.Now(ctx)
	s.st.Counts = s.st.Counts.Add(out.Counts)
	s.applied(batch)
	n := s.st.Counts
	workflow.SetCurrentDetails(ctx, fmt.Sprintf("**%s** events, shard %d: batch %d applied, %d events pending\n\nreceived %d · inserted %d · updated %d · deleted %d · unchanged %d · stale %d",
		s.in.Integration, s.in.Shard, s.st.Batches, len(s.st.Pending), n.Received, n.Inserted, n.Updated, n.Deleted, n.Unchanged, n.Stale))
	return nil
}

// applied takes an applied batch off the pending events, remembering
// their delivery ids.
func (s *shard) applied(batch []syncstep.Event) {
	for _, ev := range batch {
		id := deliveryID(ev)
		delete(s.pendingID, id)
		s.remember(id)
	}
	s.st.Pending = s.st.Pending[len(batch):]
	if len(s.st.Pending) == 0 {
		s.st.Pending = nil
	}
}

// remember keeps a delivery id among the recent ones, forgetting the
// oldest beyond recentIDs.
func (s *shard) remember(id string) {
	s.recent[id] = true
	s.st.Recent = append(s.st.Recent, id)
	if over := len(s.st.Recent) - recentIDs; over > 0 {
		for _, old := range s.st.Recent[:over] {
			delete(s.recent, old)
		}
		s.st.Recent = append([]string(nil), s.st.Recent[over:]...)
	}
}

// continueAsNew says whether to continue as new now: when Temporal
// suggests it or the history is long, and the pending events are few
// enough to carry in the next execution's input (else they are applied
// first).
func (s *shard) continueAsNew(ctx workflow.Context) bool {
	info := workflow.GetInfo(ctx)
	if !info.GetContinueAsNewSuggested() && info.GetCurrentHistoryLength() <= s.historyLimit {
		return false
	}
	size := 0
	for _, ev := range s.st.Pending {
		size += len(ev.Record) + len(ev.Key) + len(ev.DeliveryID) + 128
	}
	return size <= maxCarried
}

// next is the input of the next execution: every signal received so far
// goes with it.
func (s *shard) next() Input {
	s.drain()
	in := s.in
	st := s.st
	st.LastAppliedAt, st.Dropped = s.lastAppliedAt, s.dropped
	in.State = &st
	return in
}
