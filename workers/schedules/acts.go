package schedules

import (
	"context"
	"fmt"
	"time"

	"github.com/tetherflow/tether/activities/run"
	enumspb "go.temporal.io/api/enums/v1"
	schedulepb "go.temporal.io/api/schedule/v1"
	"google.golang.org/protobuf/proto"
)

// What people and tools do to a schedule through Temporal (the Web UI,
// the Temporal CLI, an SDK), as Act.Action says it.
const (
	ActPause    = "schedule.pause"
	ActUnpause  = "schedule.unpause"
	ActTrigger  = "schedule.trigger"
	ActBackfill = "schedule.backfill"
	ActUpdate   = "schedule.update"
)

// schedulerWorkflowPrefix starts the id of the workflow in which the
// Temporal server keeps a schedule: its history holds every pause,
// unpause, trigger, backfill and update as a signal, with the identity of
// whoever sent it.
const schedulerWorkflowPrefix = "temporal-sys-scheduler:"

// Act is one thing done to a schedule: who (the Temporal identity of the
// caller) did what, when, and why (the reason given with a pause or
// unpause). Ref names the act uniquely (the scheduler's run and event),
// so recording it twice is recognisable.
type Act struct {
	Schedule, Action, Actor, Reason, Ref string
	At                                   time.Time
}

// ReadActs reads the acts on the schedule id from the history of the
// server's scheduler workflow (its current run: the server continues it
// as new now and then, after which earlier acts are in the runs before).
// An error means the history could not be read: a server that keeps
// schedules otherwise, or a namespace that does not let the caller read
// it.
func ReadActs(ctx context.Context, c run.History, id string) ([]Act, error) {
	iter := c.GetWorkflowHistory(ctx, schedulerWorkflowPrefix+id, "", false, enumspb.HISTORY_EVENT_FILTER_TYPE_ALL_EVENT)
	var acts []Act
	runID := ""
	for iter.HasNext() {
		ev, err := iter.Next()
		if err != nil {
			return nil, fmt.Errorf("read the acts on schedule %s: %w", id, err)
		}
		if at := ev.GetWorkflowExecutionStartedEventAttributes(); at != nil {
			runID = at.GetOriginalExecutionRunId()
		}
		sig := ev.GetWorkflowExecutionSignaledEventAttributes()
		if sig == nil {
			continue
		}
		act := Act{Schedule: id, Actor: sig.GetIdentity(), At: ev.GetEventTime().AsTime(), Ref: fmt.Sprintf("%s#%d", runID, ev.GetEventId())}
		switch sig.GetSignalName() {
		case "update":
			act.Action = ActUpdate
			acts = append(acts, act)
		case "patch":
			var patch schedulepb.SchedulePatch
			if p := sig.GetInput().GetPayloads(); len(p) == 1 && proto.Unmarshal(p[0].GetData(), &patch) == nil {
				acts = append(acts, patchActs(act, &patch)...)
			}
		}
	}
	return acts, nil
}

// patchActs are the acts one patch signal holds.
func patchActs(base Act, p *schedulepb.SchedulePatch) []Act {
	var out []Act
	add := func(action, reason string) {
		a := base
		a.Action, a.Reason = action, reason
		if len(out) > 0 {
			a.Ref = fmt.Sprintf("%s/%d", base.Ref, len(out))
		}
		out = append(out, a)
	}
	if p.GetPause() != "" {
		add(ActPause, p.GetPause())
	}
	if p.GetUnpause() != "" {
		add(ActUnpause, p.GetUnpause())
	}
	if p.GetTriggerImmediately() != nil {
		add(ActTrigger, "")
	}
	if len(p.GetBackfillRequest()) > 0 {
		add(ActBackfill, "")
	}
	return out
}
