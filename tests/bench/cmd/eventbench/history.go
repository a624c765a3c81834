package main

import (
	"context"
	"fmt"
	"maps"
	"os"
	"path/filepath"
	"slices"
	"time"

	enumspb "go.temporal.io/api/enums/v1"

	"github.com/tetherflow/tether/workflows/events"
)

// histEvent is one event of a shard workflow's history.
type histEvent struct {
	run    string
	at     time.Time
	typ    enumspb.EventType
	detail string
}

// shardHistory reads every execution of a shard workflow (it may have
// continued as new), oldest first.
func (st *stack) shardHistory(ctx context.Context, shard int) ([]histEvent, error) {
	id := events.WorkflowID(st.integration, shard)
	d, err := st.c.DescribeWorkflowExecution(ctx, id, "")
	if err != nil {
		return nil, nil // never started
	}
	var runs [][]histEvent
	for runID := d.GetWorkflowExecutionInfo().GetExecution().GetRunId(); runID != ""; {
		var run []histEvent
		prev := ""
		iter := st.c.GetWorkflowHistory(ctx, id, runID, false, 0)
		for iter.HasNext() {
			ev, err := iter.Next()
			if err != nil {
				return nil, fmt.Errorf("history of %s: %w", id, err)
			}
			h := histEvent{run: runID, at: ev.GetEventTime().AsTime(), typ: ev.GetEventType()}
			if a := ev.GetWorkflowTaskFailedEventAttributes(); a != nil {
				h.detail = a.GetCause().String() + " " + a.GetFailure().GetMessage()
			}
			if a := ev.GetWorkflowTaskTimedOutEventAttributes(); a != nil {
				h.detail = a.GetTimeoutType().String()
			}
			if a := ev.GetWorkflowExecutionStartedEventAttributes(); a != nil {
				prev = a.GetContinuedExecutionRunId()
			}
			run = append(run, h)
		}
		runs = append(runs, run)
		runID = prev
	}
	slices.Reverse(runs)
	return slices.Concat(runs...), nil
}

// taskStats is what the shards' workflow tasks did in a span of time.
type taskStats struct {
	tasks, timedOut, failed, executions int
	waits                               []time.Duration // scheduled → started (or timed out)
}

// workflowTasks reads every shard's history and measures the workflow
// tasks scheduled between from and to: how long each waited to be
// picked up by the worker, and how many timed out or failed.
func (st *stack) workflowTasks(ctx context.Context, from, to time.Time) (taskStats, error) {
	var ts taskStats
	for shard := range st.shards {
		h, err := st.shardHistory(ctx, shard)
		if err != nil {
			return ts, err
		}
		var scheduled time.Time
		run := ""
		for _, e := range h {
			if e.run != run {
				run, scheduled = e.run, time.Time{}
				if !e.at.Before(from) && e.at.Before(to) {
					ts.executions++
				}
			}
			in := !e.at.Before(from) && e.at.Before(to)
			switch e.typ {
			case enumspb.EVENT_TYPE_WORKFLOW_TASK_SCHEDULED:
				scheduled = e.at
				if in {
					ts.tasks++
				}
			case enumspb.EVENT_TYPE_WORKFLOW_TASK_STARTED, enumspb.EVENT_TYPE_WORKFLOW_TASK_TIMED_OUT:
				if !scheduled.IsZero() && !scheduled.Before(from) && scheduled.Before(to) {
					ts.waits = append(ts.waits, e.at.Sub(scheduled))
				}
				scheduled = time.Time{}
				if e.typ == enumspb.EVENT_TYPE_WORKFLOW_TASK_TIMED_OUT && in {
					ts.timedOut++
				}
			case enumspb.EVENT_TYPE_WORKFLOW_TASK_FAILED:
				if in {
					ts.failed++
				}
			}
		}
	}
	return ts, nil
}

// dumpHistories writes every shard's history (event types, times from
// the shard's first event, timeouts and failures) to dir/shard-<n>.txt
// and returns a count of event types per shard.
func (st *stack) dumpHistories(ctx context.Context, dir string) ([]string, error) {
	var summary []string
	for shard := range st.shards {
		h, err := st.shardHistory(ctx, shard)
		if err != nil {
			return nil, err
		}
		f, err := os.Create(filepath.Join(dir, fmt.Sprintf("shard-%d.txt", shard)))
		if err != nil {
			return nil, err
		}
		counts := map[string]int{}
		for _, e := range h {
			counts[e.typ.String()]++
			fmt.Fprintf(f, "%s %10.3f %s %s\n", e.run[:8], e.at.Sub(h[0].at).Seconds(), e.typ, e.detail)
		}
		if err := f.Close(); err != nil {
			return nil, err
		}
		var parts []string
		for _, k := range slices.Sorted(maps.Keys(counts)) {
			parts = append(parts, fmt.Sprintf("%s=%d", k, counts[k]))
		}
		summary = append(summary, fmt.Sprintf("shard %d: %v", shard, parts))
	}
	return summary, nil
}
