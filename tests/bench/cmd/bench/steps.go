package main

import (
	"context"
	"fmt"
	"slices"
	"sort"
	"time"

	enumspb "go.temporal.io/api/enums/v1"
	"go.temporal.io/sdk/client"
)

// stepTime is where a durable run's time went, per kind of step, read
// from its history: how long each waited in its task queue (scheduled to
// started: the dispatch) and how long it ran (started to closed).
type stepTime struct {
	kind         string
	queue, run   []time.Duration
	firstStarted time.Time
	lastClosed   time.Time
}

// stepTimes reads the history of every execution of workflowID and
// returns the time per step kind (activities by type, "workflow task"
// for the workflow's own tasks, local activities by marker count only),
// sorted by total run time.
func stepTimes(ctx context.Context, c client.Client, workflowID string) ([]*stepTime, int, error) {
	by := map[string]*stepTime{}
	get := func(kind string) *stepTime {
		if by[kind] == nil {
			by[kind] = &stepTime{kind: kind}
		}
		return by[kind]
	}
	markers := 0
	d, err := c.DescribeWorkflowExecution(ctx, workflowID, "")
	if err != nil {
		return nil, 0, err
	}
	for runID := d.GetWorkflowExecutionInfo().GetExecution().GetRunId(); runID != ""; {
		type pending struct {
			kind             string
			scheduled, start time.Time
		}
		open := map[int64]*pending{}
		prev := ""
		iter := c.GetWorkflowHistory(ctx, workflowID, runID, false, enumspb.HISTORY_EVENT_FILTER_TYPE_ALL_EVENT)
		for iter.HasNext() {
			ev, err := iter.Next()
			if err != nil {
				return nil, 0, err
			}
			at := ev.GetEventTime().AsTime()
			switch ev.GetEventType() {
			case enumspb.EVENT_TYPE_WORKFLOW_EXECUTION_STARTED:
				prev = ev.GetWorkflowExecutionStartedEventAttributes().GetContinuedExecutionRunId()
			case enumspb.EVENT_TYPE_ACTIVITY_TASK_SCHEDULED:
				open[ev.GetEventId()] = &pending{kind: ev.GetActivityTaskScheduledEventAttributes().GetActivityType().GetName(), scheduled: at}
			case enumspb.EVENT_TYPE_WORKFLOW_TASK_SCHEDULED:
				open[ev.GetEventId()] = &pending{kind: "workflow task", scheduled: at}
			case enumspb.EVENT_TYPE_ACTIVITY_TASK_STARTED:
				if p := open[ev.GetActivityTaskStartedEventAttributes().GetScheduledEventId()]; p != nil {
					p.start = at
				}
			case enumspb.EVENT_TYPE_WORKFLOW_TASK_STARTED:
				if p := open[ev.GetWorkflowTaskStartedEventAttributes().GetScheduledEventId()]; p != nil {
					p.start = at
				}
			case enumspb.EVENT_TYPE_MARKER_RECORDED:
				markers++
			}
			var sched int64
			switch {
			case ev.GetActivityTaskCompletedEventAttributes() != nil:
				sched = ev.GetActivityTaskCompletedEventAttributes().GetScheduledEventId()
			case ev.GetActivityTaskFailedEventAttributes() != nil:
				sched = ev.GetActivityTaskFailedEventAttributes().GetScheduledEventId()
			case ev.GetActivityTaskTimedOutEventAttributes() != nil:
				sched = ev.GetActivityTaskTimedOutEventAttributes().GetScheduledEventId()
			case ev.GetWorkflowTaskCompletedEventAttributes() != nil:
				sched = ev.GetWorkflowTaskCompletedEventAttributes().GetScheduledEventId()
			}
			if p := open[sched]; p != nil && !p.start.IsZero() {
				s := get(p.kind)
				s.queue = append(s.queue, p.start.Sub(p.scheduled))
				s.run = append(s.run, at.Sub(p.start))
				if s.firstStarted.IsZero() || p.start.Before(s.firstStarted) {
					s.firstStarted = p.start
				}
				if at.After(s.lastClosed) {
					s.lastClosed = at
				}
				delete(open, sched)
			}
		}
		runID = prev
	}
	out := make([]*stepTime, 0, len(by))
	for _, s := range by {
		out = append(out, s)
	}
	sort.Slice(out, func(i, j int) bool { return sum(out[i].run) > sum(out[j].run) })
	return out, markers, nil
}

func sum(ds []time.Duration) time.Duration {
	var t time.Duration
	for _, d := range ds {
		t += d
	}
	return t
}

// meanP95 is the mean and 95th percentile of ds.
func meanP95(ds []time.Duration) (time.Duration, time.Duration) {
	if len(ds) == 0 {
		return 0, 0
	}
	s := slices.Clone(ds)
	slices.Sort(s)
	return sum(s) / time.Duration(len(s)), s[max(0, (len(s)*95+99)/100-1)]
}

// printStepTimes prints where a durable run's time went.
func printStepTimes(steps []*stepTime, markers int, wall time.Duration) {
	ms := func(d time.Duration) string { return fmt.Sprintf("%.1f ms", float64(d.Microseconds())/1000) }
	fmt.Printf("\nwhere the durable run's time went (its history; %s wall; %d local activities, recorded as markers, run inside workflow tasks' gaps):\n", wall.Round(time.Millisecond), markers)
	fmt.Printf("  %-22s %6s  %-24s %-24s %12s\n", "step", "count", "queue mean / p95", "run mean / p95", "run total")
	for _, s := range steps {
		qm, qp := meanP95(s.queue)
		rm, rp := meanP95(s.run)
		fmt.Printf("  %-22s %6d  %-24s %-24s %12s\n", s.kind, len(s.run), ms(qm)+" / "+ms(qp), ms(rm)+" / "+ms(rp), sum(s.run).Round(time.Millisecond))
	}
}
