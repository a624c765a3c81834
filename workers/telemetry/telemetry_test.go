package telemetry

import (
	"bytes"
	"context"
	"errors"
	"log/slog"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
	"go.temporal.io/sdk/activity"
	"go.temporal.io/sdk/interceptor"
	tlog "go.temporal.io/sdk/log"
	"go.temporal.io/sdk/temporal"
	"go.temporal.io/sdk/testsuite"
	"go.temporal.io/sdk/worker"
	"go.temporal.io/sdk/workflow"

	"github.com/tetherflow/tether/activities/lib/failure"
	"github.com/tetherflow/tether/activities/lib/observe"
	"github.com/tetherflow/tether/activities/syncstep"
)

func TestScopeOf_ReadsEveryInputShape(t *testing.T) {
	for _, c := range []struct {
		name string
		arg  any
		want observe.Scope
	}{
		{"fetch", syncstep.FetchPageInput{Integration: "crm", Ref: syncstep.PageRef{RunID: "r1", Page: 4}}, observe.Scope{Integration: "crm", SyncRun: "r1", Page: 4}},
		{"apply (embedded batch)", syncstep.ApplyInput{BatchInput: syncstep.BatchInput{Integration: "crm", Ref: syncstep.PageRef{RunID: "r2", Page: 7}}, Seq: 7}, observe.Scope{Integration: "crm", SyncRun: "r2", Page: 7}},
		{"compensate (run and seq)", syncstep.CompensateInput{Integration: "crm", RunID: "r3", Seq: 2}, observe.Scope{Integration: "crm", SyncRun: "r3", Page: 2}},
		{"pointer", &syncstep.StartRunInput{Integration: "crm", RunID: "r4"}, observe.Scope{Integration: "crm", SyncRun: "r4"}},
		{"not a struct", "crm", observe.Scope{}},
		{"nil", nil, observe.Scope{}},
	} {
		if got := scopeOf([]any{c.arg}); got != c.want {
			t.Errorf("%s: %+v, want %+v", c.name, got, c.want)
		}
	}
}

// stepEnv runs activities through the interceptor in the SDK's test
// environment, with metrics on a fresh registry.
func stepEnv(t *testing.T) (*testsuite.TestActivityEnvironment, *Metrics) {
	t.Helper()
	m, err := NewMetrics(prometheus.NewRegistry())
	if err != nil {
		t.Fatal(err)
	}
	var s testsuite.WorkflowTestSuite
	env := s.NewTestActivityEnvironment()
	env.SetWorkerOptions(worker.Options{Interceptors: []interceptor.WorkerInterceptor{NewInterceptor(m, nil)}})
	return env, m
}

func TestInterceptor_RecordsWhatAStepDid(t *testing.T) {
	env, m := stepEnv(t)
	var seen observe.Scope
	apply := func(ctx context.Context, in syncstep.ApplyInput) (syncstep.ApplyOutput, error) {
		seen, _ = observe.From(ctx)
		observe.ThrottleWait(ctx, 1500*time.Millisecond)
		return syncstep.ApplyOutput{Inserted: 5, Updated: 2, Unchanged: 3, Stale: 1, Rejected: 1}, nil
	}
	env.RegisterActivityWithOptions(apply, activity.RegisterOptions{Name: "ApplyBatch"})
	in := syncstep.ApplyInput{BatchInput: syncstep.BatchInput{Integration: "crm", Ref: syncstep.PageRef{RunID: "r1", Page: 2}}, Seq: 2}
	if _, err := env.ExecuteActivity("ApplyBatch", in); err != nil {
		t.Fatal(err)
	}
	if seen.Integration != "crm" || seen.Step != "ApplyBatch" || seen.Page != 2 || seen.SyncRun != "r1" || seen.WorkflowID == "" {
		t.Errorf("the step's context carries %+v", seen)
	}
	for outcome, want := range map[string]float64{"applied": 7, "unchanged": 3, "skipped": 1, "rejected": 1} {
		if got := testutil.ToFloat64(m.records.WithLabelValues("crm", outcome)); got != want {
			t.Errorf("records %s = %v, want %v", outcome, got, want)
		}
	}
	if got := testutil.ToFloat64(m.throttle.WithLabelValues("crm")); got != 1.5 {
		t.Errorf("throttle wait %v s, want 1.5", got)
	}
	if n := testutil.CollectAndCount(m.duration); n != 1 {
		t.Errorf("%d duration series, want 1", n)
	}
}

func TestInterceptor_CountsRunsFailuresAndThrottledRetries(t *testing.T) {
	env, m := stepEnv(t)
	finish := func(ctx context.Context, in syncstep.FinishRunInput) error { return nil }
	env.RegisterActivityWithOptions(finish, activity.RegisterOptions{Name: "FinishRun"})
	for _, in := range []syncstep.FinishRunInput{
		{Integration: "crm", RunID: "a", Status: "Completed"},
		{Integration: "crm", RunID: "b", Status: "Completed", ErrorType: syncstep.ErrorTypeWarning},
		{Integration: "crm", RunID: "c", Status: "Compensated"},
	} {
		if _, err := env.ExecuteActivity("FinishRun", in); err != nil {
			t.Fatal(err)
		}
	}
	for outcome, want := range map[string]float64{"completed": 1, "warned": 1, "failed": 1} {
		if got := testutil.ToFloat64(m.runs.WithLabelValues("crm", outcome)); got != want {
			t.Errorf("runs %s = %v, want %v", outcome, got, want)
		}
	}

	fetch := func(ctx context.Context, in syncstep.FetchPageInput) (syncstep.FetchPageOutput, error) {
		return syncstep.FetchPageOutput{}, failure.Throttled(failure.TypeSourceThrottled, errors.New("429"), 30*time.Second)
	}
	env.RegisterActivityWithOptions(fetch, activity.RegisterOptions{Name: "FetchPage"})
	_, err := env.ExecuteActivity("FetchPage", syncstep.FetchPageInput{Integration: "crm", Ref: syncstep.PageRef{RunID: "d", Page: 1}})
	var app *temporal.ApplicationError
	if !errors.As(err, &app) {
		t.Fatalf("fetch: %v", err)
	}
	if got := testutil.ToFloat64(m.throttle.WithLabelValues("crm")); got != 30 {
		t.Errorf("throttle wait %v s, want the 30 s the step asked for", got)
	}
	if got := testutil.ToFloat64(m.records.WithLabelValues("crm", "fetched")); got != 0 {
		t.Errorf("a failed fetch tallied %v records", got)
	}
	if n := testutil.CollectAndCount(m.duration); n != 2 {
		t.Errorf("%d latency series, want FinishRun's ok and FetchPage's error", n)
	}
	if err := testutil.CollectAndCompare(m.retries, strings.NewReader("")); err != nil {
		t.Errorf("a first attempt counted as a retry: %v", err)
	}
}

func TestTracingRequested_FollowsTheOTELEnvironment(t *testing.T) {
	for _, c := range []struct {
		env  map[string]string
		want bool
	}{
		{map[string]string{}, false},
		{map[string]string{"OTEL_EXPORTER_OTLP_ENDPOINT": "http://127.0.0.1:4318"}, true},
		{map[string]string{"OTEL_EXPORTER_OTLP_TRACES_ENDPOINT": "http://127.0.0.1:4318/v1/traces"}, true},
		{map[string]string{"OTEL_TRACES_EXPORTER": "console"}, true},
		{map[string]string{"OTEL_TRACES_EXPORTER": "none", "OTEL_EXPORTER_OTLP_ENDPOINT": "http://x"}, false},
		{map[string]string{"OTEL_SDK_DISABLED": "true", "OTEL_TRACES_EXPORTER": "otlp"}, false},
	} {
		if got := TracingRequested(func(k string) string { return c.env[k] }); got != c.want {
			t.Errorf("%v: %v, want %v", c.env, got, c.want)
		}
	}
}

func TestInterceptor_WorkflowLinesNameTheirIntegrationOnce(t *testing.T) {
	var buf bytes.Buffer
	var s testsuite.WorkflowTestSuite
	s.SetLogger(tlog.NewStructuredLogger(slog.New(slog.NewJSONHandler(&buf, nil))))
	env := s.NewTestWorkflowEnvironment()
	env.SetWorkerOptions(worker.Options{Interceptors: []interceptor.WorkerInterceptor{NewInterceptor(nil, nil)}})
	wf := func(ctx workflow.Context, in syncstep.StartRunInput) error {
		workflow.GetLogger(ctx).Info("explicit", "integration", "crm")
		workflow.GetLogger(ctx).Info("plain")
		return nil
	}
	env.RegisterWorkflowWithOptions(wf, workflow.RegisterOptions{Name: "TestSync"})
	env.ExecuteWorkflow("TestSync", syncstep.StartRunInput{Integration: "crm"})
	if err := env.GetWorkflowError(); err != nil {
		t.Fatal(err)
	}
	lines := 0
	for _, line := range strings.Split(buf.String(), "\n") {
		if !strings.Contains(line, `"msg":"explicit"`) && !strings.Contains(line, `"msg":"plain"`) {
			continue
		}
		lines++
		if n := strings.Count(line, `"integration":"crm"`); n != 1 {
			t.Errorf("%d integrations in %s", n, line)
		}
		// (The test environment's logger has no WorkflowID; a worker's
		// has, see tests/integration's TestTelemetry_*.)
		if !strings.Contains(line, `"step":"TestSync"`) {
			t.Errorf("no step in %s", line)
		}
	}
	if lines != 2 {
		t.Errorf("found %d of the workflow's 2 lines in:\n%s", lines, buf.String())
	}
}

func TestNextAttempt_FollowsTheRetryPolicy(t *testing.T) {
	policy := &temporal.RetryPolicy{InitialInterval: time.Second, BackoffCoefficient: 2, MaximumInterval: 5 * time.Second,
		MaximumAttempts: 6, NonRetryableErrorTypes: []string{failure.TypeSourceAuth}}
	transient := failure.Transient(failure.TypeSourceUnavailable, errors.New("refused"))
	for _, c := range []struct {
		name    string
		attempt int32
		err     error
		want    time.Duration
		ok      bool
	}{
		{"first retry", 1, transient, time.Second, true},
		{"backoff", 3, transient, 4 * time.Second, true},
		{"capped", 5, transient, 5 * time.Second, true},
		{"attempts used up", 6, transient, 0, false},
		{"the step's own delay", 1, failure.Throttled(failure.TypeSourceThrottled, errors.New("429"), 30*time.Second), 30 * time.Second, true},
		{"non-retryable type", 1, temporal.NewApplicationError("401", failure.TypeSourceAuth), 0, false},
		{"permanent", 1, failure.Permanent(failure.TypeConfig, errors.New("bad")), 0, false},
		{"cancelled", 1, context.Canceled, 0, false},
	} {
		got, ok := nextAttempt(activity.Info{Attempt: c.attempt, RetryPolicy: policy}, c.err)
		if got != c.want || ok != c.ok {
			t.Errorf("%s: %v %v, want %v %v", c.name, got, ok, c.want, c.ok)
		}
	}
}

func TestNewSpanExporter_OTLPOverHTTPOrGRPCOnly(t *testing.T) {
	ctx := context.Background()
	for _, c := range []struct {
		env     map[string]string
		wantErr string
	}{
		{map[string]string{}, ""},
		{map[string]string{"OTEL_TRACES_EXPORTER": "otlp", "OTEL_EXPORTER_OTLP_PROTOCOL": "grpc"}, ""},
		{map[string]string{"OTEL_EXPORTER_OTLP_TRACES_PROTOCOL": "http/protobuf", "OTEL_EXPORTER_OTLP_PROTOCOL": "grpc"}, ""},
		{map[string]string{"OTEL_TRACES_EXPORTER": "console"}, `OTEL_TRACES_EXPORTER="console": tether exports traces over OTLP only`},
		{map[string]string{"OTEL_EXPORTER_OTLP_PROTOCOL": "http/json"}, `OTEL_EXPORTER_OTLP_PROTOCOL="http/json": want http/protobuf or grpc`},
	} {
		exp, err := newSpanExporter(ctx, func(k string) string { return c.env[k] })
		if c.wantErr == "" {
			if err != nil || exp == nil {
				t.Errorf("%v: %v", c.env, err)
			} else {
				_ = exp.Shutdown(ctx)
			}
			continue
		}
		if err == nil || !strings.Contains(err.Error(), c.wantErr) {
			t.Errorf("%v: %v, want %q", c.env, err, c.wantErr)
		}
	}
}
