package app

import (
	"context"
	"fmt"
	"log/slog"
	"strings"

	"go.temporal.io/api/enums/v1"
	"go.temporal.io/api/operatorservice/v1"
	"go.temporal.io/api/workflowservice/v1"
	"go.temporal.io/sdk/client"
	tlog "go.temporal.io/sdk/log"
	"go.uber.org/fx"

	"github.com/tetherflow/tether/workers/config"
	"github.com/tetherflow/tether/workers/telemetry"
	"github.com/tetherflow/tether/workflows/datasync"
)

// NewTemporalClient returns the worker's Temporal client without
// connecting. At the app's start, an OnStart hook connects, checks the
// server answers and the namespace exists, and creates the search
// attributes the workflows use if they are missing (bounded by
// temporal.connect_timeout).
func NewTemporalClient(lc fx.Lifecycle, cfg config.Config, log *slog.Logger, sdkMetrics client.MetricsHandler, _ *Tracing) (client.Client, error) {
	opts := clientOptions(cfg.Temporal, log)
	opts.MetricsHandler = sdkMetrics
	c, err := client.NewLazyClient(opts)
	if err != nil {
		return nil, fmt.Errorf("temporal client (temporal.address / TEMPORAL_ADDRESS %s): %w", cfg.Temporal.Address, err)
	}
	lc.Append(fx.Hook{
		OnStart: func(ctx context.Context) error {
			ctx, cancel := context.WithTimeout(ctx, cfg.Temporal.ConnectTimeout)
			defer cancel()
			if err := check(ctx, c, cfg.Temporal); err != nil {
				return err
			}
			if err := EnsureSearchAttributes(ctx, c, cfg.Temporal.Namespace); err != nil {
				log.Warn("search attributes could not be created; create them with `temporal operator search-attribute create`", "error", err)
			}
			return nil
		},
		OnStop: func(context.Context) error {
			c.Close()
			return nil
		},
	})
	return c, nil
}

// clientOptions are the options of every Temporal client: with the
// tracing interceptor when tracing is on (telemetry.StartTracing).
func clientOptions(t config.Temporal, log *slog.Logger) client.Options {
	return client.Options{HostPort: t.Address, Namespace: t.Namespace, Logger: tlog.NewStructuredLogger(log),
		Interceptors: telemetry.ClientInterceptors()}
}

// Dial connects to Temporal and checks it answers within ctx.
func Dial(ctx context.Context, t config.Temporal, log *slog.Logger) (client.Client, error) {
	c, err := client.DialContext(ctx, clientOptions(t, log))
	if err != nil {
		return nil, fmt.Errorf("temporal at %s (temporal.address / TEMPORAL_ADDRESS) is unreachable: %w", t.Address, err)
	}
	if err := check(ctx, c, t); err != nil {
		c.Close()
		return nil, err
	}
	return c, nil
}

// check asks the server whether it is healthy and has the namespace.
func check(ctx context.Context, c client.Client, t config.Temporal) error {
	if _, err := c.CheckHealth(ctx, &client.CheckHealthRequest{}); err != nil {
		return fmt.Errorf("temporal at %s (temporal.address / TEMPORAL_ADDRESS) is not healthy: %w", t.Address, err)
	}
	if _, err := c.WorkflowService().DescribeNamespace(ctx, &workflowservice.DescribeNamespaceRequest{Namespace: t.Namespace}); err != nil {
		return fmt.Errorf("temporal namespace %q (temporal.namespace / TEMPORAL_NAMESPACE): %w", t.Namespace, err)
	}
	return nil
}

// SearchAttributes are the custom search attributes the workflows upsert.
var SearchAttributes = map[string]enums.IndexedValueType{
	datasync.IntegrationAttr.GetName(): enums.INDEXED_VALUE_TYPE_KEYWORD,
	datasync.StatusAttr.GetName():      enums.INDEXED_VALUE_TYPE_KEYWORD,
}

// EnsureSearchAttributes creates the missing custom search attributes;
// it is idempotent.
func EnsureSearchAttributes(ctx context.Context, c client.Client, namespace string) error {
	ops := c.OperatorService()
	have, err := ops.ListSearchAttributes(ctx, &operatorservice.ListSearchAttributesRequest{Namespace: namespace})
	if err != nil {
		return fmt.Errorf("list search attributes: %w", err)
	}
	missing := map[string]enums.IndexedValueType{}
	for name, typ := range SearchAttributes {
		if _, ok := have.GetCustomAttributes()[name]; !ok {
			missing[name] = typ
		}
	}
	if len(missing) == 0 {
		return nil
	}
	_, err = ops.AddSearchAttributes(ctx, &operatorservice.AddSearchAttributesRequest{Namespace: namespace, SearchAttributes: missing})
	if err != nil && !strings.Contains(strings.ToLower(err.Error()), "already") {
		return fmt.Errorf("add search attributes: %w", err)
	}
	return nil
}
