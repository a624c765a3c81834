package telemetry

import (
	"context"
	"fmt"
	"os"
	"strings"
	"sync/atomic"

	"go.opentelemetry.io/otel"
	"go.opentelemetry.io/otel/exporters/otlp/otlptrace/otlptracegrpc"
	"go.opentelemetry.io/otel/exporters/otlp/otlptrace/otlptracehttp"
	"go.opentelemetry.io/otel/propagation"
	"go.opentelemetry.io/otel/sdk/resource"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	semconv "go.opentelemetry.io/otel/semconv/v1.26.0"
	temporalotel "go.temporal.io/sdk/contrib/opentelemetry"
	"go.temporal.io/sdk/interceptor"

	"github.com/tetherflow/tether/activities/lib/observe"
)

// TracerName names tether's tracer (instrumentation scope).
const TracerName = "github.com/tetherflow/tether"

// TracingRequested reports whether the OpenTelemetry environment asks for
// traces: OTEL_TRACES_EXPORTER names an exporter other than "none", or an
// OTLP endpoint is set (OTEL_EXPORTER_OTLP_ENDPOINT,
// OTEL_EXPORTER_OTLP_TRACES_ENDPOINT); OTEL_SDK_DISABLED=true turns it off.
func TracingRequested(getenv func(string) string) bool {
	if strings.EqualFold(getenv("OTEL_SDK_DISABLED"), "true") {
		return false
	}
	if e := strings.TrimSpace(getenv("OTEL_TRACES_EXPORTER")); e != "" {
		return e != "none"
	}
	return getenv("OTEL_EXPORTER_OTLP_ENDPOINT") != "" || getenv("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT") != ""
}

// tracing is the process's tracing interceptor once StartTracing ran.
var tracing atomic.Pointer[interceptor.Interceptor]

// StartTracing turns tracing on for the process when the environment asks
// for it (TracingRequested): spans go, batched, to the OTLP endpoint the
// OTEL_* variables describe (over HTTP or gRPC by
// OTEL_EXPORTER_OTLP_PROTOCOL); service is the default service.name
// (OTEL_SERVICE_NAME wins). It returns whether tracing is on and a
// function that flushes and stops it.
func StartTracing(ctx context.Context, service string) (bool, func(context.Context) error, error) {
	if !TracingRequested(os.Getenv) {
		return false, func(context.Context) error { return nil }, nil
	}
	exp, err := newSpanExporter(ctx, os.Getenv)
	if err != nil {
		return false, nil, fmt.Errorf("tracing (OTEL_* environment): %w", err)
	}
	stop, err := StartTracingWith(ctx, service, sdktrace.WithBatcher(exp))
	return err == nil, stop, err
}

// newSpanExporter is the OTLP exporter the environment names. The
// exporters read the endpoint, headers, timeout and TLS settings from the
// OTEL_* variables themselves. (Not contrib's autoexport: its console
// exporter would link a test helper package into the binaries.)
func newSpanExporter(ctx context.Context, getenv func(string) string) (sdktrace.SpanExporter, error) {
	if e := strings.TrimSpace(getenv("OTEL_TRACES_EXPORTER")); e != "" && e != "otlp" {
		return nil, fmt.Errorf("OTEL_TRACES_EXPORTER=%q: tether exports traces over OTLP only (otlp, or none for off)", e)
	}
	proto := strings.TrimSpace(getenv("OTEL_EXPORTER_OTLP_TRACES_PROTOCOL"))
	if proto == "" {
		proto = strings.TrimSpace(getenv("OTEL_EXPORTER_OTLP_PROTOCOL"))
	}
	switch proto {
	case "", "http/protobuf":
		return otlptracehttp.New(ctx)
	case "grpc":
		return otlptracegrpc.New(ctx)
	}
	return nil, fmt.Errorf("OTEL_EXPORTER_OTLP_PROTOCOL=%q: want http/protobuf or grpc", proto)
}

// StartTracingWith turns tracing on with the given span processors (a test
// passes an in-memory exporter): it sets the global tracer provider and
// the W3C trace-context and baggage propagators, so HTTP and SQL calls
// (otelhttp, otelsql) join the step's trace, and makes every Temporal
// client made afterwards (ClientInterceptors) trace starts, workflows and
// steps.
func StartTracingWith(ctx context.Context, service string, opts ...sdktrace.TracerProviderOption) (func(context.Context) error, error) {
	res, err := resource.Merge(resource.Default(), resource.NewSchemaless(semconv.ServiceName(service)))
	if err != nil {
		return nil, fmt.Errorf("tracing resource: %w", err)
	}
	if env, err := resource.New(ctx, resource.WithFromEnv()); err == nil {
		if merged, err := resource.Merge(res, env); err == nil {
			res = merged
		}
	}
	opts = append([]sdktrace.TracerProviderOption{sdktrace.WithResource(res), sdktrace.WithSpanProcessor(scopeProcessor{})}, opts...)
	tp := sdktrace.NewTracerProvider(opts...)
	otel.SetTracerProvider(tp)
	prop := propagation.NewCompositeTextMapPropagator(propagation.TraceContext{}, propagation.Baggage{})
	otel.SetTextMapPropagator(prop)
	i, err := temporalotel.NewTracingInterceptor(temporalotel.TracerOptions{Tracer: tp.Tracer(TracerName), TextMapPropagator: prop})
	if err != nil {
		return nil, fmt.Errorf("temporal tracing interceptor: %w", err)
	}
	tracing.Store(&i)
	return func(ctx context.Context) error {
		tracing.Store(nil)
		return tp.Shutdown(ctx)
	}, nil
}

// ClientInterceptors are the interceptors a Temporal client (and the
// workers made from it) takes: the tracing interceptor when tracing is
// on, none otherwise.
func ClientInterceptors() []interceptor.ClientInterceptor {
	if i := tracing.Load(); i != nil {
		return []interceptor.ClientInterceptor{*i}
	}
	return nil
}

// scopeProcessor puts the step's integration, run and page (from its
// context) on every span started inside it: the step's HTTP and SQL calls
// carry them too.
type scopeProcessor struct{}

func (scopeProcessor) OnStart(parent context.Context, s sdktrace.ReadWriteSpan) {
	if sc, ok := observe.From(parent); ok {
		s.SetAttributes(spanAttrs(sc)...)
	}
}
func (scopeProcessor) OnEnd(sdktrace.ReadOnlySpan)      {}
func (scopeProcessor) Shutdown(context.Context) error   { return nil }
func (scopeProcessor) ForceFlush(context.Context) error { return nil }
