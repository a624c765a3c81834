package observe

import (
	"context"
	"log/slog"
	"sync"
)

// Keys the Temporal SDK gives the step or workflow type in its own lines.
const (
	sdkActivityType = "ActivityType"
	sdkWorkflowType = "WorkflowType"
)

// Handler is a slog.Handler that makes every line of a step or workflow
// say which integration, step, workflow and run it belongs to:
//   - a line logged with a step's context (logger.InfoContext(ctx, ...))
//     gets the Scope the context carries;
//   - a line of the Temporal SDK's own (its activity and workflow
//     loggers: WorkflowID, RunID, ActivityType or WorkflowType) gets the
//     integration its workflow serves (Remember) and its type as step.
//
// A key the line or the logger already has is not repeated.
type Handler struct {
	next  slog.Handler
	bound map[string]string // top-level keys added by WithAttrs, the ones read with their value
	group bool              // WithGroup was called: attributes go into a group
}

// NewHandler wraps next.
func NewHandler(next slog.Handler) *Handler { return &Handler{next: next} }

// Enabled implements slog.Handler.
func (h *Handler) Enabled(ctx context.Context, l slog.Level) bool { return h.next.Enabled(ctx, l) }

// Handle implements slog.Handler.
func (h *Handler) Handle(ctx context.Context, r slog.Record) error {
	if h.group {
		return h.next.Handle(ctx, r)
	}
	have := make(map[string]string, len(h.bound)+r.NumAttrs())
	for k, v := range h.bound {
		have[k] = v
	}
	r.Attrs(func(a slog.Attr) bool {
		have[a.Key] = a.Value.String()
		return true
	})
	s, ok := From(ctx)
	if !ok {
		s = sdkScope(have)
	}
	var add []slog.Attr
	for _, a := range s.Attrs() {
		if _, dup := have[a.Key]; !dup {
			add = append(add, a)
		}
	}
	if len(add) > 0 {
		r = r.Clone()
		r.AddAttrs(add...)
	}
	return h.next.Handle(ctx, r)
}

// sdkScope is the Scope of a line of the SDK's own, from its keys.
func sdkScope(have map[string]string) Scope {
	wf := have[KeyWorkflowID]
	if wf == "" {
		return Scope{}
	}
	step := have[sdkActivityType]
	if step == "" {
		step = have[sdkWorkflowType]
	}
	return Scope{Integration: recalled(wf), Step: step}
}

// WithAttrs implements slog.Handler.
func (h *Handler) WithAttrs(as []slog.Attr) slog.Handler {
	bound := make(map[string]string, len(h.bound)+len(as))
	for k, v := range h.bound {
		bound[k] = v
	}
	if !h.group {
		for _, a := range as {
			bound[a.Key] = a.Value.String()
		}
	}
	return &Handler{next: h.next.WithAttrs(as), bound: bound, group: h.group}
}

// WithGroup implements slog.Handler. Lines of a grouped logger are passed
// on as they are: the Scope belongs at the top level.
func (h *Handler) WithGroup(name string) slog.Handler {
	if name == "" {
		return h
	}
	return &Handler{next: h.next.WithGroup(name), bound: h.bound, group: true}
}

// remembered maps the ids of workflows the worker ran lately to their
// integration, for the SDK's own lines; bounded, the oldest half is
// forgotten when full.
var remembered = struct {
	sync.Mutex
	names map[string]string
	order []string
}{names: map[string]string{}}

// rememberedMax bounds remembered.
const rememberedMax = 4096

// Remember notes that workflow id serves integration.
func Remember(workflowID, integration string) {
	if workflowID == "" || integration == "" {
		return
	}
	remembered.Lock()
	defer remembered.Unlock()
	if _, ok := remembered.names[workflowID]; ok {
		remembered.names[workflowID] = integration
		return
	}
	if len(remembered.order) >= rememberedMax {
		half := rememberedMax / 2
		for _, id := range remembered.order[:half] {
			delete(remembered.names, id)
		}
		remembered.order = append(remembered.order[:0], remembered.order[half:]...)
	}
	remembered.names[workflowID] = integration
	remembered.order = append(remembered.order, workflowID)
}

func recalled(workflowID string) string {
	remembered.Lock()
	defer remembered.Unlock()
	return remembered.names[workflowID]
}
