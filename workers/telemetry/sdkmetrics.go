package telemetry

import (
	"fmt"

	"github.com/prometheus/client_golang/prometheus"
	otelprom "go.opentelemetry.io/otel/exporters/prometheus"
	sdkmetric "go.opentelemetry.io/otel/sdk/metric"
	"go.temporal.io/sdk/client"
	temporalotel "go.temporal.io/sdk/contrib/opentelemetry"
)

// SDKMetricsScope names the meter of the Temporal SDK's metrics.
const SDKMetricsScope = "go.temporal.io/sdk"

// NewSDKMetrics returns a Temporal metrics handler whose metrics
// (temporal_request_total, temporal_activity_execution_latency_seconds,
// temporal_workflow_task_schedule_to_start_latency_seconds, ...) land in
// reg: the SDK's OpenTelemetry handler on a meter provider read by the
// OpenTelemetry Prometheus exporter. Step-latency buckets are
// StepBuckets.
func NewSDKMetrics(reg prometheus.Registerer) (client.MetricsHandler, error) {
	exp, err := otelprom.New(
		otelprom.WithRegisterer(reg),
		otelprom.WithoutScopeInfo(),
		otelprom.WithoutTargetInfo(),
	)
	if err != nil {
		return nil, fmt.Errorf("temporal SDK metrics: %w", err)
	}
	mp := sdkmetric.NewMeterProvider(
		sdkmetric.WithReader(exp),
		sdkmetric.WithView(sdkmetric.NewView(
			sdkmetric.Instrument{Kind: sdkmetric.InstrumentKindHistogram},
			sdkmetric.Stream{Aggregation: sdkmetric.AggregationExplicitBucketHistogram{Boundaries: StepBuckets}},
		)),
	)
	return temporalotel.NewMetricsHandler(temporalotel.MetricsHandlerOptions{
		Meter:                mp.Meter(SDKMetricsScope),
		UseMonotonicCounters: true,
	}), nil
}
