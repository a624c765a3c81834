// Package observe carries what a step is doing (its integration, workflow,
// Temporal run, step and page) in the step's context, so the log lines,
// metrics and spans of the code it calls say so without being handed them.
//
// The worker's interceptor (workers/telemetry) puts a Scope and a Recorder
// in every activity's context; a library deep in a step (the HTTP client's
// pacer, a connector's warning) reads them from the context it was given.
// Nothing here is global: code run outside a step sees an empty Scope and
// records nothing.
package observe

import (
	"context"
	"log/slog"
	"time"
)

// Scope says which step of which run a piece of work belongs to.
type Scope struct {
	// Integration is the integration's name ("" when the step serves none).
	Integration string
	// Step is the activity's (or, for a workflow's own lines, the
	// workflow's) type name: FetchPage, ApplyBatch, SyncWorkflow, ...
	Step string
	// WorkflowID and RunID are Temporal's ids of the workflow execution.
	WorkflowID, RunID string
	// SyncRun is tether's run id (tether runs), when the step is a run's.
	SyncRun string
	// Page is the page or batch number, when the step works on one.
	Page int
}

// Log keys of a Scope, as the Temporal SDK names the ids in its own lines.
const (
	KeyIntegration = "integration"
	KeyStep        = "step"
	KeyWorkflowID  = "WorkflowID"
	KeyRunID       = "RunID"
	KeyPage        = "page"
)

// Attrs are the Scope's log attributes; empty fields are left out.
func (s Scope) Attrs() []slog.Attr {
	out := make([]slog.Attr, 0, 5)
	for _, kv := range [...]struct{ k, v string }{
		{KeyIntegration, s.Integration}, {KeyStep, s.Step}, {KeyWorkflowID, s.WorkflowID}, {KeyRunID, s.RunID},
	} {
		if kv.v != "" {
			out = append(out, slog.String(kv.k, kv.v))
		}
	}
	if s.Page > 0 {
		out = append(out, slog.Int(KeyPage, s.Page))
	}
	return out
}

// Recorder takes what code inside a step measures.
type Recorder interface {
	// ThrottleWait records time spent waiting before a request because an
	// API asked to slow down or the connection's rate limit was reached.
	ThrottleWait(integration string, d time.Duration)
}

type carried struct {
	scope Scope
	rec   Recorder
}

type key struct{}

// With returns ctx carrying s and r (r may be nil).
func With(ctx context.Context, s Scope, r Recorder) context.Context {
	return context.WithValue(ctx, key{}, carried{scope: s, rec: r})
}

// From returns the Scope ctx carries, and whether it carries one.
func From(ctx context.Context) (Scope, bool) {
	c, ok := ctx.Value(key{}).(carried)
	return c.scope, ok
}

// ThrottleWait records a throttling wait with the Recorder ctx carries, if
// any.
func ThrottleWait(ctx context.Context, d time.Duration) {
	if c, ok := ctx.Value(key{}).(carried); ok && c.rec != nil && d > 0 {
		c.rec.ThrottleWait(c.scope.Integration, d)
	}
}
