package telemetry

import (
	"context"
	"errors"
	"reflect"
	"time"

	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/trace"
	commonpb "go.temporal.io/api/common/v1"
	"go.temporal.io/sdk/activity"
	"go.temporal.io/sdk/converter"
	"go.temporal.io/sdk/interceptor"
	"go.temporal.io/sdk/log"
	"go.temporal.io/sdk/temporal"
	"go.temporal.io/sdk/workflow"

	"github.com/tetherflow/tether/activities/lib/failure"
	"github.com/tetherflow/tether/activities/lib/observe"
	"github.com/tetherflow/tether/activities/syncstep"
)

// IntegrationSearchAttribute is the search attribute the workflows name
// their integration in (datasync.IntegrationAttr; not imported, workers
// may run workflows of their own).
const IntegrationSearchAttribute = "IntegrationName"

var integrationKey = temporal.NewSearchAttributeKeyKeyword(IntegrationSearchAttribute)

// headerIntegration carries a workflow's integration to its steps whose
// input does not name it.
const headerIntegration = "tether-integration"

// Span attribute keys.
const (
	AttrIntegration = "tether.integration"
	AttrStep        = "tether.step"
	AttrSyncRun     = "tether.run_id"
	AttrPage        = "tether.page"
)

// NewInterceptor returns the worker interceptor: every activity and local
// activity runs with its Scope in its context, logs (activity.GetLogger)
// with its integration and step, sets them on its span, records its
// attempt in m (nil: no metrics) and, for the workflow types notice names
// (nil: none), tells its run when it is retried; every workflow logs
// (workflow.GetLogger) with its integration and type as step.
func NewInterceptor(m *Metrics, notice *RetryNotice) interceptor.WorkerInterceptor {
	return &workerInterceptor{m: m, notice: notice}
}

type workerInterceptor struct {
	interceptor.WorkerInterceptorBase
	m      *Metrics
	notice *RetryNotice
}

func (w *workerInterceptor) InterceptActivity(ctx context.Context, next interceptor.ActivityInboundInterceptor) interceptor.ActivityInboundInterceptor {
	a := &activityInbound{m: w.m, notice: w.notice}
	a.Next = next
	return a
}

func (w *workerInterceptor) InterceptWorkflow(ctx workflow.Context, next interceptor.WorkflowInboundInterceptor) interceptor.WorkflowInboundInterceptor {
	i := &workflowInbound{typ: workflow.GetInfo(ctx).WorkflowType.Name}
	i.Next = next
	return i
}

// activityInbound is made for one execution of one activity.
type activityInbound struct {
	interceptor.ActivityInboundInterceptorBase
	m      *Metrics
	notice *RetryNotice
	scope  observe.Scope
}

func (a *activityInbound) Init(outbound interceptor.ActivityOutboundInterceptor) error {
	o := &activityOutbound{in: a}
	o.Next = outbound
	return a.Next.Init(o)
}

func (a *activityInbound) ExecuteActivity(ctx context.Context, in *interceptor.ExecuteActivityInput) (any, error) {
	info := activity.GetInfo(ctx)
	s := scopeOf(in.Args)
	if s.Integration == "" {
		s.Integration = integrationHeader(interceptor.Header(ctx))
	}
	s.Step, s.WorkflowID, s.RunID = info.ActivityType.Name, info.WorkflowExecution.ID, info.WorkflowExecution.RunID
	a.scope = s
	observe.Remember(s.WorkflowID, s.Integration)
	if span := trace.SpanFromContext(ctx); span.IsRecording() {
		span.SetAttributes(spanAttrs(s)...)
	}
	ctx = observe.With(ctx, s, a.m)
	start := time.Now()
	res, err := a.Next.ExecuteActivity(ctx, in)
	var tally map[string]int
	var run string
	if err == nil {
		if t, ok := res.(syncstep.Tallied); ok {
			tally = t.Tally()
		}
		if f, ok := firstArg(in.Args).(interface{ RunOutcome() string }); ok {
			run = f.RunOutcome()
		}
	}
	a.m.step(s.Integration, s.Step, info.Attempt, time.Since(start), err == nil, tally, run)
	if d, ok := throttledFor(err); ok {
		a.m.ThrottleWait(s.Integration, d)
	}
	a.notice.tell(info, s, err)
	return res, err
}

type activityOutbound struct {
	interceptor.ActivityOutboundInterceptorBase
	in *activityInbound
}

// GetLogger adds the step's integration, step and page to the SDK's
// activity logger (which has WorkflowID, RunID, ActivityType, Attempt).
func (o *activityOutbound) GetLogger(ctx context.Context) log.Logger {
	return withScope(o.Next.GetLogger(ctx), keyvals(o.in.scope))
}

// workflowInbound is made for one workflow execution on a worker.
type workflowInbound struct {
	interceptor.WorkflowInboundInterceptorBase
	typ         string
	integration string // from the workflow's input
}

func (i *workflowInbound) Init(outbound interceptor.WorkflowOutboundInterceptor) error {
	o := &workflowOutbound{in: i}
	o.Next = outbound
	return i.Next.Init(o)
}

func (i *workflowInbound) ExecuteWorkflow(ctx workflow.Context, in *interceptor.ExecuteWorkflowInput) (any, error) {
	i.integration = scopeOf(in.Args).Integration
	observe.Remember(workflow.GetInfo(ctx).WorkflowExecution.ID, i.integration)
	return i.Next.ExecuteWorkflow(ctx, in)
}

type workflowOutbound struct {
	interceptor.WorkflowOutboundInterceptorBase
	in *workflowInbound
}

// integration is the workflow's integration: its IntegrationName search
// attribute, else the one its input names.
func (o *workflowOutbound) integration(ctx workflow.Context) string {
	if v, ok := workflow.GetTypedSearchAttributes(ctx).GetKeyword(integrationKey); ok && v != "" {
		return v
	}
	return o.in.integration
}

// GetLogger adds the integration and the workflow's type (as step) to the
// SDK's replay-aware workflow logger (which has WorkflowID and RunID).
func (o *workflowOutbound) GetLogger(ctx workflow.Context) log.Logger {
	name := o.integration(ctx)
	observe.Remember(workflow.GetInfo(ctx).WorkflowExecution.ID, name)
	return withScope(o.Next.GetLogger(ctx), keyvals(observe.Scope{Integration: name, Step: o.in.typ}))
}

func (o *workflowOutbound) ExecuteActivity(ctx workflow.Context, activityType string, args ...any) workflow.Future {
	o.header(ctx)
	return o.Next.ExecuteActivity(ctx, activityType, args...)
}

func (o *workflowOutbound) ExecuteLocalActivity(ctx workflow.Context, activityType string, args ...any) workflow.Future {
	o.header(ctx)
	return o.Next.ExecuteLocalActivity(ctx, activityType, args...)
}

// header hands the workflow's integration to the step it schedules.
func (o *workflowOutbound) header(ctx workflow.Context) {
	name := o.integration(ctx)
	if name == "" {
		return
	}
	if p, err := converter.GetDefaultDataConverter().ToPayload(name); err == nil {
		interceptor.WorkflowHeader(ctx)[headerIntegration] = p
	}
}

func integrationHeader(h map[string]*commonpb.Payload) string {
	p := h[headerIntegration]
	if p == nil {
		return ""
	}
	var name string
	if err := converter.GetDefaultDataConverter().FromPayload(p, &name); err != nil {
		return ""
	}
	return name
}

// keyvals are a Scope's fields as log key-value pairs, but the ids: the
// SDK's logger has them.
func keyvals(s observe.Scope) []any {
	out := []any{}
	for _, a := range s.Attrs() {
		if a.Key == observe.KeyWorkflowID || a.Key == observe.KeyRunID {
			continue
		}
		out = append(out, a.Key, a.Value.Any())
	}
	return out
}

func spanAttrs(s observe.Scope) []attribute.KeyValue {
	out := []attribute.KeyValue{attribute.String(AttrIntegration, s.Integration), attribute.String(AttrStep, s.Step)}
	if s.SyncRun != "" {
		out = append(out, attribute.String(AttrSyncRun, s.SyncRun))
	}
	if s.Page > 0 {
		out = append(out, attribute.Int(AttrPage, s.Page))
	}
	return out
}

// throttledFor is the retry delay a throttled step asked for.
func throttledFor(err error) (time.Duration, bool) {
	var app *temporal.ApplicationError
	if !errors.As(err, &app) || (app.Type() != failure.TypeSourceThrottled && app.Type() != failure.TypeSinkThrottled) {
		return 0, false
	}
	return app.NextRetryDelay(), app.NextRetryDelay() > 0
}

func firstArg(args []any) any {
	if len(args) == 0 {
		return nil
	}
	return args[0]
}

// scopeOf reads a step's or workflow's input: every input of tether's
// steps names its integration in a string field Integration, its run in
// RunID and its page in Ref (a syncstep.PageRef) or Seq, directly or in
// an embedded struct.
func scopeOf(args []any) observe.Scope {
	var s observe.Scope
	v := reflect.ValueOf(firstArg(args))
	for v.Kind() == reflect.Pointer || v.Kind() == reflect.Interface {
		if v.IsNil() {
			return s
		}
		v = v.Elem()
	}
	if v.Kind() != reflect.Struct {
		return s
	}
	if f := v.FieldByName("Integration"); f.IsValid() && f.Kind() == reflect.String {
		s.Integration = f.String()
	}
	if f := v.FieldByName("RunID"); f.IsValid() && f.Kind() == reflect.String {
		s.SyncRun = f.String()
	}
	if f := v.FieldByName("Ref"); f.IsValid() && f.CanInterface() {
		if ref, ok := f.Interface().(syncstep.PageRef); ok {
			s.SyncRun, s.Page = ref.RunID, ref.Page
		}
	}
	if f := v.FieldByName("Seq"); s.Page == 0 && f.IsValid() && f.CanInt() {
		s.Page = int(f.Int())
	}
	return s
}

// scoped is a Temporal logger that adds a Scope's key-value pairs to each
// line, but not a key the line gives itself (workflow code that logs its
// integration explicitly keeps one "integration").
type scoped struct {
	next log.Logger
	kv   []any
}

func withScope(next log.Logger, kv []any) log.Logger {
	if len(kv) == 0 {
		return next
	}
	return &scoped{next: next, kv: kv}
}

func (s *scoped) add(keyvals []any) []any {
	out := keyvals
	for i := 0; i+1 < len(s.kv); i += 2 {
		if !hasKey(keyvals, s.kv[i]) {
			out = append(out, s.kv[i], s.kv[i+1])
		}
	}
	return out
}

func hasKey(keyvals []any, key any) bool {
	for i := 0; i < len(keyvals); i += 2 {
		if keyvals[i] == key {
			return true
		}
	}
	return false
}

func (s *scoped) Debug(msg string, keyvals ...any) { s.next.Debug(msg, s.add(keyvals)...) }
func (s *scoped) Info(msg string, keyvals ...any)  { s.next.Info(msg, s.add(keyvals)...) }
func (s *scoped) Warn(msg string, keyvals ...any)  { s.next.Warn(msg, s.add(keyvals)...) }
func (s *scoped) Error(msg string, keyvals ...any) { s.next.Error(msg, s.add(keyvals)...) }

// With implements log.WithLogger.
func (s *scoped) With(keyvals ...any) log.Logger {
	kv := []any{}
	for i := 0; i+1 < len(s.kv); i += 2 {
		if !hasKey(keyvals, s.kv[i]) {
			kv = append(kv, s.kv[i], s.kv[i+1])
		}
	}
	return withScope(log.With(s.next, keyvals...), kv)
}
