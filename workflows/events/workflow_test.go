package events

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	"go.temporal.io/sdk/activity"
	"go.temporal.io/sdk/converter"
	"go.temporal.io/sdk/temporal"
	"go.temporal.io/sdk/testsuite"
	"go.temporal.io/sdk/worker"
	"go.temporal.io/sdk/workflow"

	"github.com/tetherflow/tether/activities/syncstep"
	"github.com/tetherflow/tether/workflows/internal/replaytest"
)

// fakeApply stands in for the ApplyEvents local activity: it records
// every batch it is handed, and fails the first calls as told.
type fakeApply struct {
	mu sync.Mutex
	// failCalls fails the first failCalls calls with a non-retryable
	// error (the local activity gives up at once; the workflow retries).
	failCalls int
	// transientCalls fails the first transientCalls calls with a plain
	// (retryable) error: the local activity's own retries absorb them.
	transientCalls int
	// during, when set, runs inside every call, while the workflow waits
	// for it: events it signals arrive while a batch is being applied.
	during func(in syncstep.ApplyEventsInput)

	calls   [][]string // delivery ids of every call, failed or not
	applied [][]string // delivery ids of the calls that succeeded
	inputs  []syncstep.ApplyEventsInput
}

func (f *fakeApply) apply(_ context.Context, in syncstep.ApplyEventsInput) (syncstep.ApplyEventsOutput, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	ids := make([]string, len(in.Events))
	for i, ev := range in.Events {
		ids[i] = ev.DeliveryID
	}
	f.calls = append(f.calls, ids)
	f.inputs = append(f.inputs, in)
	n := len(f.calls)
	if f.during != nil {
		f.during(in)
	}
	if n <= f.failCalls {
		return syncstep.ApplyEventsOutput{}, temporal.NewNonRetryableApplicationError(
			fmt.Sprintf("destination unavailable (call %d)", n), "SinkUnavailable", nil)
	}
	if n <= f.failCalls+f.transientCalls {
		return syncstep.ApplyEventsOutput{}, fmt.Errorf("connection reset (call %d)", n)
	}
	f.applied = append(f.applied, ids)
	return syncstep.ApplyEventsOutput{
		Counts:    syncstep.EventCounts{Received: len(ids), Inserted: len(ids)},
		AppliedAt: time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC),
	}, nil
}

// appliedIDs is every successfully applied delivery id, in order.
func (f *fakeApply) appliedIDs() []string {
	f.mu.Lock()
	defer f.mu.Unlock()
	var out []string
	for _, b := range f.applied {
		out = append(out, b...)
	}
	return out
}

func newEnv(t *testing.T, f *fakeApply) *testsuite.TestWorkflowEnvironment {
	t.Helper()
	var s testsuite.WorkflowTestSuite
	env := s.NewTestWorkflowEnvironment()
	env.RegisterWorkflowWithOptions(EventsWorkflow, workflow.RegisterOptions{Name: WorkflowType})
	env.RegisterActivityWithOptions(f.apply, activity.RegisterOptions{Name: syncstep.ApplyEventsName})
	return env
}

// ev is an event of entity key delivered as id by the "crm" source.
func ev(id, key string) syncstep.Event {
	return syncstep.Event{Source: "crm", DeliveryID: id, Key: key, Record: json.RawMessage(`{"id":"` + key + `"}`)}
}

// signalAt signals events at d into the workflow.
func signalAt(env *testsuite.TestWorkflowEnvironment, d time.Duration, evs ...syncstep.Event) {
	env.RegisterDelayedCallback(func() {
		for _, e := range evs {
			env.SignalWorkflow(SignalEvent, e)
		}
	}, d)
}

// queryProgress runs the progress query.
func queryProgress(t *testing.T, env *testsuite.TestWorkflowEnvironment) Progress {
	t.Helper()
	v, err := env.QueryWorkflow(QueryProgress)
	require.NoError(t, err)
	var p Progress
	require.NoError(t, v.Get(&p))
	return p
}

func ids(prefix string, n int) []string {
	out := make([]string, n)
	for i := range out {
		out[i] = fmt.Sprintf("%s%d", prefix, i+1)
	}
	return out
}

func evsOf(idList []string) []syncstep.Event {
	out := make([]syncstep.Event, len(idList))
	for i, id := range idList {
		out[i] = ev(id, "k"+id)
	}
	return out
}

// lastID is the delivery id of a batch's last event.
func lastID(in syncstep.ApplyEventsInput) string {
	if len(in.Events) == 0 {
		return ""
	}
	return in.Events[len(in.Events)-1].DeliveryID
}

func TestEventsWorkflow_AppliesInArrivalOrderAcrossBatches(t *testing.T) {
	first, second, third := ids("a", 3), ids("b", MaxBatch+120), ids("c", 2)
	var env *testsuite.TestWorkflowEnvironment
	f := &fakeApply{}
	// A burst arrives while the first events are being applied: it is
	// applied after them, in batches of at most MaxBatch.
	f.during = func(in syncstep.ApplyEventsInput) {
		if lastID(in) == "a3" {
			for _, e := range evsOf(second) {
				env.SignalWorkflow(SignalEvent, e)
			}
		}
	}
	env = newEnv(t, f)
	signalAt(env, time.Second, evsOf(first)...)
	signalAt(env, 10*time.Second, evsOf(third)...)
	env.ExecuteWorkflow(EventsWorkflow, Input{Integration: "crm-contacts", Shard: 3, IdleTimeout: time.Minute})

	require.True(t, env.IsWorkflowCompleted())
	require.NoError(t, env.GetWorkflowError())
	want := append(append(append([]string(nil), first...), second...), third...)
	require.Equal(t, want, f.appliedIDs(), "every event applied once, in arrival order")
	full := 0
	for i, b := range f.calls {
		require.LessOrEqual(t, len(b), MaxBatch, "batch %d", i)
		if len(b) == MaxBatch {
			full++
		}
	}
	require.Equal(t, 1, full, "the burst of %d fills one batch of %d: %v", len(second), MaxBatch, f.calls)
	for i, in := range f.inputs {
		require.Equal(t, "crm-contacts", in.Integration)
		require.Equal(t, i+1, in.Ref.Page, "batches are numbered in order")
		require.NotEmpty(t, in.Ref.RunID)
	}

	p := queryProgress(t, env)
	require.Equal(t, Progress{
		Integration: "crm-contacts", Shard: 3, Pending: 0,
		Counts:  syncstep.EventCounts{Received: len(want), Inserted: len(want)},
		Batches: len(f.calls), Executions: 1, LastAppliedAt: time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC),
	}, p)
}

// The receiver signals the deliveries that arrive together as one
// SignalEvents; older receivers signal one SignalEvent each. Both are
// applied in arrival order, redeliveries across them dropped.
func TestEventsWorkflow_TakesGroupsOfEventsInOneSignal(t *testing.T) {
	f := &fakeApply{}
	env := newEnv(t, f)
	group1, group2 := evsOf(ids("g", 3)), evsOf(ids("h", 2))
	env.RegisterDelayedCallback(func() { env.SignalWorkflow(SignalEvents, group1) }, time.Second)
	signalAt(env, 2*time.Second, ev("s1", "ks1"), group1[1]) // group1[1]: a redelivery
	env.RegisterDelayedCallback(func() { env.SignalWorkflow(SignalEvents, append(group2, group1[0])) }, 3*time.Second)
	env.ExecuteWorkflow(EventsWorkflow, Input{Integration: "crm-contacts", IdleTimeout: time.Minute})

	require.True(t, env.IsWorkflowCompleted())
	require.NoError(t, env.GetWorkflowError())
	require.Equal(t, []string{"g1", "g2", "g3", "s1", "h1", "h2"}, f.appliedIDs())
	require.Equal(t, 2, queryProgress(t, env).DroppedRedeliveries)
}

func TestEventsWorkflow_FailedBatchIsRetriedWithoutLossOrReordering(t *testing.T) {
	tests := []struct {
		name      string
		fail      int // non-retryable failures: the workflow retries
		transient int // retryable failures: the local activity retries
	}{
		{name: "fails twice for good, then applies", fail: 2},
		{name: "fails transiently twice, the local activity's retries absorb it", transient: 2},
		{name: "both", fail: 1, transient: 2},
		{name: "fails for good many times (the delay stops growing at a minute)", fail: 12},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var env *testsuite.TestWorkflowEnvironment
			early, late := ids("e", 4), ids("l", 3)
			f := &fakeApply{failCalls: tt.fail, transientCalls: tt.transient}
			// More events arrive while the first batch is being applied
			// (and fails): they go after the ones already pending.
			f.during = func(in syncstep.ApplyEventsInput) {
				if len(f.calls) == 1 {
					for _, e := range evsOf(late) {
						env.SignalWorkflow(SignalEvent, e)
					}
				}
			}
			env = newEnv(t, f)
			signalAt(env, time.Second, evsOf(early)...)
			var blocked *Progress
			if tt.fail > 0 {
				env.RegisterDelayedCallback(func() {
					p := queryProgress(t, env)
					blocked = &p
				}, 1200*time.Millisecond)
			}
			env.ExecuteWorkflow(EventsWorkflow, Input{Integration: "crm-contacts", IdleTimeout: 10 * time.Minute})

			require.NoError(t, env.GetWorkflowError())
			require.Equal(t, tt.fail+tt.transient, len(f.calls)-len(f.applied), "failed calls")
			want := append(append([]string(nil), early...), late...)
			require.Equal(t, want, f.appliedIDs(), "nothing lost, nothing reordered, nothing applied twice")
			for i, c := range f.calls[:tt.fail+tt.transient] {
				require.Equal(t, want[:len(c)], c, "failed call %d held the first events, in order", i)
			}
			p := queryProgress(t, env)
			require.Empty(t, p.LastError, "a successful apply clears the error")
			require.Equal(t, len(want), p.Counts.Received)
			require.Zero(t, p.Pending)
			if blocked != nil {
				require.Contains(t, blocked.LastError, "destination unavailable", "the progress query says why the shard is blocked")
				require.NotZero(t, blocked.Pending)
				require.Zero(t, blocked.Counts.Received)
			}
		})
	}
}

func TestEventsWorkflow_DropsRedeliveries(t *testing.T) {
	f := &fakeApply{failCalls: 1} // keeps the first events pending for a while
	env := newEnv(t, f)
	signalAt(env, time.Second, ev("d1", "k1"), ev("d2", "k2"), ev("d1", "k1"))
	// While d1 and d2 are still pending (the first apply failed).
	signalAt(env, 1500*time.Millisecond, ev("d2", "k2"))
	// Another source may use the same delivery id: not a redelivery.
	other := ev("d1", "k1")
	other.Source = "billing"
	signalAt(env, 1600*time.Millisecond, other)
	// After d1 was applied: still recognised (recent ids).
	signalAt(env, 30*time.Second, ev("d1", "k1"), ev("d3", "k3"))
	env.ExecuteWorkflow(EventsWorkflow, Input{Integration: "crm-contacts", IdleTimeout: time.Minute})

	require.NoError(t, env.GetWorkflowError())
	var got []string
	for _, b := range f.inputs[len(f.inputs)-len(f.applied):] {
		for _, e := range b.Events {
			got = append(got, e.Source+"/"+e.DeliveryID)
		}
	}
	require.Equal(t, []string{"crm/d1", "crm/d2", "billing/d1", "crm/d3"}, got)
	p := queryProgress(t, env)
	require.Equal(t, 3, p.DroppedRedeliveries)
	require.Equal(t, 4, p.Counts.Received)
}

func TestEventsWorkflow_CompletesWhenIdle(t *testing.T) {
	t.Run("nothing ever arrives", func(t *testing.T) {
		f := &fakeApply{}
		env := newEnv(t, f)
		env.ExecuteWorkflow(EventsWorkflow, Input{Integration: "crm-contacts", IdleTimeout: time.Minute})
		require.True(t, env.IsWorkflowCompleted())
		require.NoError(t, env.GetWorkflowError())
		require.Empty(t, f.calls)
	})
	t.Run("each event restarts the idle time", func(t *testing.T) {
		f := &fakeApply{}
		env := newEnv(t, f)
		// Each event comes 50s after the previous one, within the idle
		// time of a minute: the shard is still there for all of them.
		signalAt(env, 50*time.Second, ev("i1", "k1"))
		signalAt(env, 100*time.Second, ev("i2", "k2"))
		signalAt(env, 150*time.Second, ev("i3", "k3"))
		env.ExecuteWorkflow(EventsWorkflow, Input{Integration: "crm-contacts", IdleTimeout: time.Minute})
		require.True(t, env.IsWorkflowCompleted())
		require.NoError(t, env.GetWorkflowError())
		require.Equal(t, []string{"i1", "i2", "i3"}, f.appliedIDs())
		require.Zero(t, queryProgress(t, env).Pending)
	})
}

func TestEventsWorkflow_RequiresIntegration(t *testing.T) {
	env := newEnv(t, &fakeApply{})
	env.ExecuteWorkflow(EventsWorkflow, Input{})
	var appErr *temporal.ApplicationError
	require.True(t, errors.As(env.GetWorkflowError(), &appErr), "got %v", env.GetWorkflowError())
	require.Equal(t, "ConfigError", appErr.Type())
	require.True(t, appErr.NonRetryable())
}

func TestEventsWorkflow_CancelledWhileIdle(t *testing.T) {
	f := &fakeApply{}
	env := newEnv(t, f)
	signalAt(env, time.Second, ev("x1", "k1"))
	env.RegisterDelayedCallback(env.CancelWorkflow, 10*time.Second)
	env.ExecuteWorkflow(EventsWorkflow, Input{Integration: "crm-contacts", IdleTimeout: time.Minute})
	require.True(t, env.IsWorkflowCompleted())
	var canceled *temporal.CanceledError
	if err := env.GetWorkflowError(); err != nil && !errors.As(err, &canceled) {
		t.Fatalf("cancelled while idle: %v", err)
	}
	require.Equal(t, []string{"x1"}, f.appliedIDs(), "what arrived before the cancellation was applied")
}

func TestEventsWorkflow_CancelledWhileRetrying(t *testing.T) {
	f := &fakeApply{failCalls: 1000}
	env := newEnv(t, f)
	signalAt(env, time.Second, ev("x1", "k1"))
	env.RegisterDelayedCallback(env.CancelWorkflow, 10*time.Second)
	env.ExecuteWorkflow(EventsWorkflow, Input{Integration: "crm-contacts", IdleTimeout: time.Minute})
	require.True(t, env.IsWorkflowCompleted())
	var canceled *temporal.CanceledError
	require.True(t, errors.As(env.GetWorkflowError(), &canceled), "got %v", env.GetWorkflowError())
	require.Empty(t, f.applied)
	require.Greater(t, len(f.calls), 1, "the batch was retried until the cancellation")
}

// continuedAsNew returns the input the workflow continued as new with.
func continuedAsNew(t *testing.T, env *testsuite.TestWorkflowEnvironment) Input {
	t.Helper()
	var can *workflow.ContinueAsNewError
	require.True(t, errors.As(env.GetWorkflowError(), &can), "got %v", env.GetWorkflowError())
	require.Equal(t, WorkflowType, can.WorkflowType.Name)
	var next Input
	require.NoError(t, converter.GetDefaultDataConverter().FromPayloads(can.Input, &next))
	require.NotNil(t, next.State)
	return next
}

func TestEventsWorkflow_ContinuesAsNewCarryingPendingEvents(t *testing.T) {
	tests := []struct {
		name    string
		trigger func(env *testsuite.TestWorkflowEnvironment)
	}{
		{"Temporal suggests it", func(env *testsuite.TestWorkflowEnvironment) { env.SetContinueAsNewSuggested(true) }},
		{"the history is long", func(env *testsuite.TestWorkflowEnvironment) { env.SetCurrentHistoryLength(maxHistoryEvents + 1) }},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var env *testsuite.TestWorkflowEnvironment
			applied, pending := ids("p", 3), evsOf(ids("q", 5))
			f := &fakeApply{}
			// While the last of the first events is being applied,
			// Temporal asks for continue-as-new and more events arrive.
			f.during = func(in syncstep.ApplyEventsInput) {
				if lastID(in) != "p3" {
					return
				}
				env.RegisterDelayedCallback(func() { tt.trigger(env) }, 0)
				for _, e := range pending {
					env.SignalWorkflow(SignalEvent, e)
				}
				// Redelivered while pending: dropped, not carried twice.
				env.SignalWorkflow(SignalEvent, pending[0])
			}
			env = newEnv(t, f)
			signalAt(env, time.Second, evsOf(applied)...)
			in := Input{Integration: "crm-contacts", Shard: 7, IdleTimeout: time.Minute}
			env.ExecuteWorkflow(EventsWorkflow, in)

			next := continuedAsNew(t, env)
			require.Equal(t, applied, f.appliedIDs(), "only the first events were applied in this execution")
			require.Equal(t, "crm-contacts", next.Integration)
			require.Equal(t, 7, next.Shard)
			require.Equal(t, time.Minute, next.IdleTimeout)
			require.Equal(t, pending, next.State.Pending, "every pending event is carried, in order")
			require.Equal(t, []string{"crm\x00p1", "crm\x00p2", "crm\x00p3"}, next.State.Recent)
			require.Equal(t, syncstep.EventCounts{Received: 3, Inserted: 3}, next.State.Counts)
			require.Equal(t, len(f.calls), next.State.Batches)
			require.Equal(t, 1, next.State.Executions)
			require.False(t, next.State.StartedAt.IsZero())

			// The next execution applies the carried events first, still
			// drops redeliveries of applied ones, and keeps counting.
			f2 := &fakeApply{}
			env2 := newEnv(t, f2)
			signalAt(env2, time.Second, ev("p2", "kp2"), ev("r1", "kr1"))
			env2.ExecuteWorkflow(EventsWorkflow, next)
			require.NoError(t, env2.GetWorkflowError())
			require.Equal(t, append(ids("q", 5), "r1"), f2.appliedIDs())
			require.Equal(t, next.State.Batches+1, f2.inputs[0].Ref.Page, "batch numbers go on across executions")
			p := queryProgress(t, env2)
			require.Equal(t, 2, p.Executions)
			require.Equal(t, 9, p.Counts.Received)
			require.Equal(t, next.State.Dropped+1, p.DroppedRedeliveries, "dropped redeliveries are counted across executions")
			require.False(t, next.State.LastAppliedAt.IsZero(), "the last apply's time is carried over")
			require.Equal(t, next.State.Batches+len(f2.calls), p.Batches)
		})
	}
}

func TestEventsWorkflow_ContinueAsNewAppliesFirstWhatIsTooBigToCarry(t *testing.T) {
	var env *testsuite.TestWorkflowEnvironment
	big := make([]syncstep.Event, 4)
	for i := range big {
		big[i] = ev(fmt.Sprintf("big%d", i), fmt.Sprintf("k%d", i))
		big[i].Record = json.RawMessage(`"` + strings.Repeat("x", maxCarried/3) + `"`)
	}
	f := &fakeApply{}
	f.during = func(in syncstep.ApplyEventsInput) {
		if lastID(in) != "t1" {
			return
		}
		env.RegisterDelayedCallback(func() { env.SetContinueAsNewSuggested(true) }, 0)
		for _, e := range big {
			env.SignalWorkflow(SignalEvent, e)
		}
	}
	env = newEnv(t, f)
	signalAt(env, time.Second, ev("t1", "kt1"))
	env.ExecuteWorkflow(EventsWorkflow, Input{Integration: "crm-contacts", IdleTimeout: time.Minute})

	next := continuedAsNew(t, env)
	require.Empty(t, next.State.Pending, "events too big to carry are applied before continuing as new")
	require.Equal(t, []string{"t1", "big0", "big1", "big2", "big3"}, f.appliedIDs())
	require.Len(t, next.State.Recent, 5)
}

func TestEventsWorkflow_ProgressWhileRunning(t *testing.T) {
	f := &fakeApply{}
	env := newEnv(t, f)
	signalAt(env, time.Second, evsOf(ids("a", 4))...)
	signalAt(env, 2*time.Second, ev("a1", "ka1")) // a redelivery
	var mid Progress
	var midCalls int
	env.RegisterDelayedCallback(func() {
		mid = queryProgress(t, env)
		midCalls = len(f.calls)
	}, 3*time.Second)
	signalAt(env, 4*time.Second, evsOf(ids("b", 2))...)
	env.ExecuteWorkflow(EventsWorkflow, Input{Integration: "crm-contacts", Shard: 2, IdleTimeout: time.Minute})
	require.NoError(t, env.GetWorkflowError())

	require.Equal(t, Progress{
		Integration: "crm-contacts", Shard: 2, Counts: syncstep.EventCounts{Received: 4, Inserted: 4},
		Batches: midCalls, Executions: 1, LastAppliedAt: time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC), DroppedRedeliveries: 1,
	}, mid)
	require.NotZero(t, midCalls)
	end := queryProgress(t, env)
	require.Equal(t, 6, end.Counts.Received)
	require.Equal(t, len(f.calls), end.Batches)
	require.Equal(t, 1, end.DroppedRedeliveries)
}

func TestShard(t *testing.T) {
	keys := make([]string, 2000)
	for i := range keys {
		keys[i] = fmt.Sprint(i)
	}
	for _, shards := range []int{2, 16, 1024} {
		used := map[int]bool{}
		for _, k := range keys {
			s := Shard(k, shards)
			require.True(t, s >= 0 && s < shards, "Shard(%q, %d) = %d", k, shards, s)
			require.Equal(t, s, Shard(k, shards), "Shard is stable")
			used[s] = true
		}
		require.Greater(t, len(used), shards/2, "%d keys use only %d of %d shards", len(keys), len(used), shards)
	}
	for _, shards := range []int{-1, 0, 1} {
		require.Equal(t, 0, Shard("any", shards))
	}
	// The hash is part of the wire contract: events of an entity must go
	// to the same shard across deploys (FNV-1a 32).
	tests := []struct {
		give   string
		shards int
		want   int
	}{
		{"", 16, int(uint32(2166136261) % 16)},
		{"a", 1024, int(uint32(0xe40c292c) % 1024)},
		{"42", 16, Shard("42", 16)},
	}
	for _, tt := range tests {
		require.Equal(t, tt.want, Shard(tt.give, tt.shards), "Shard(%q, %d)", tt.give, tt.shards)
	}
}

func TestWorkflowID(t *testing.T) {
	require.Equal(t, "crm-contacts/events/0", WorkflowID("crm-contacts", 0))
	require.Equal(t, "hook.x_y/events/1023", WorkflowID("hook.x_y", 1023))
}

// TestEventsWorkflow_ReplaysRecordedHistories replays histories of real
// shard runs (recorded by tests/integration with
// -run TestWebhooks_EventsWorkflowRunsForReplay
// -record-histories=$PWD/workflows/events/testdata/histories). A change
// that makes the workflow non-deterministic for running histories fails
// here: put it behind workflow.GetVersion.
func TestEventsWorkflow_ReplaysRecordedHistories(t *testing.T) {
	replaytest.Replay(t, 1, "a shard's run with a failed apply, and one started with carried state", func(r worker.WorkflowReplayer) {
		r.RegisterWorkflowWithOptions(EventsWorkflow, workflow.RegisterOptions{Name: WorkflowType})
	})
}
