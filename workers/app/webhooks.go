package app

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	"go.opentelemetry.io/contrib/instrumentation/net/http/otelhttp"
	"go.temporal.io/sdk/client"
	"go.uber.org/fx"

	"github.com/tetherflow/tether/activities/events"
	"github.com/tetherflow/tether/activities/integration"
	"github.com/tetherflow/tether/activities/lib/schema"
	"github.com/tetherflow/tether/activities/store"
	"github.com/tetherflow/tether/activities/twoway"
	"github.com/tetherflow/tether/workers/config"
	"github.com/tetherflow/tether/workers/webhook"
)

// WebhookServer is the worker's signed webhook receiver: POST
// /webhooks/{source} on webhooks.listen, each accepted event recorded in
// its entity's events workflow (webhook.TemporalAccepter).
type WebhookServer struct {
	server
	Receiver *webhook.Receiver // nil when off
}

// WebhookParams are what NewWebhookServer needs.
type WebhookParams struct {
	fx.In
	Lifecycle    fx.Lifecycle
	Config       config.Config
	Integrations *integration.Registry
	TwoWay       *twoway.Registry
	Schemas      *schema.Registry
	Store        *store.Store
	Client       client.Client
	Registry     *prometheus.Registry
	Logger       *slog.Logger
	// Health, when set, is not ready while the receiver is not listening.
	Health *MetricsServer `optional:"true"`
}

// NewWebhookServer checks the webhook sources against the integrations
// (every source names one that exists, whose destinations take events)
// and serves them from the app's start to its stop. It is off when
// webhooks.listen is empty.
func NewWebhookServer(p WebhookParams) (*WebhookServer, error) {
	cfg := p.Config
	w := &WebhookServer{server: server{what: "webhook receiver", key: "webhooks.listen / TETHER_WEBHOOKS_LISTEN",
		path: webhook.PathPrefix + "{source}", listen: cfg.Webhooks.Listen, tls: cfg.Webhooks.TLS, log: p.Logger}}
	p.Lifecycle.Append(fx.Hook{OnStart: w.Start, OnStop: w.Stop})
	if cfg.Webhooks.Listen == "" {
		return w, nil
	}
	routes, sources, err := WebhookRoutes(cfg.Webhooks.Sources, p.Integrations, p.TwoWay)
	if err != nil {
		return nil, err
	}
	acc := webhook.NewTemporalAccepter(p.Client, cfg.Temporal.TaskQueue, routes, p.Store)
	rcv, err := webhook.New(sources, p.Schemas, acc, webhook.WithLogger(p.Logger.With("component", "webhook")))
	if err != nil {
		return nil, fmt.Errorf("webhooks: %w", err)
	}
	w.Receiver = rcv
	if p.Health != nil {
		p.Health.Ready.Require("webhooks", func(context.Context) error {
			if !w.serving.Load() {
				return errors.New("webhooks: the receiver is not listening")
			}
			return nil
		})
	}
	handler, err := instrumentWebhooks(p.Registry, rcv)
	if err != nil {
		return nil, err
	}
	w.srv = &http.Server{Handler: handler, ReadHeaderTimeout: 10 * time.Second, ReadTimeout: 30 * time.Second, WriteTimeout: 30 * time.Second}
	return w, nil
}

// WebhookRoutes maps every configured source to its integration, checking
// that the integration exists and can apply events; a source of a two-way
// integration (of twoWay) wakes its workflow.
func WebhookRoutes(sources []config.WebhookSource, reg *integration.Registry, twoWay *twoway.Registry) (map[string]webhook.Route, []webhook.Source, error) {
	routes := map[string]webhook.Route{}
	out := make([]webhook.Source, 0, len(sources))
	var problems []error
	for i, s := range sources {
		if _, err := twoWay.Get(s.Integration); err == nil {
			routes[s.Name] = webhook.Route{Integration: s.Integration, TwoWay: true}
			out = append(out, s.Source)
			continue
		}
		def, err := reg.Get(s.Integration)
		if err != nil {
			problems = append(problems, fmt.Errorf("webhooks.sources[%d] (%s): integration: %w", i, s.Name, err))
			continue
		}
		if err := events.Supported(def); err != nil {
			problems = append(problems, fmt.Errorf("webhooks.sources[%d] (%s): %w", i, s.Name, err))
			continue
		}
		routes[s.Name] = webhook.Route{Integration: def.Name, Shards: def.EventShards()}
		out = append(out, s.Source)
	}
	if len(problems) > 0 {
		return nil, nil, fmt.Errorf("webhooks: %w", errors.Join(problems...))
	}
	return routes, out, nil
}

// MetricWebhookRequests counts the webhook receiver's answers.
const MetricWebhookRequests = "tether_webhook_requests_total"

// instrumentWebhooks counts the receiver's answers by status code and
// method on reg, and traces each request (a webhook's trace goes on into
// the workflow it signals when tracing is on).
func instrumentWebhooks(reg prometheus.Registerer, h http.Handler) (http.Handler, error) {
	requests := prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: MetricWebhookRequests,
		Help: "Requests the webhook receiver answered, by status code and method (202 accepted, 4xx refused with a reason, 5xx: events not recorded, the sender retries).",
	}, []string{"code", "method"})
	if err := reg.Register(requests); err != nil {
		return nil, fmt.Errorf("webhook metrics: %w", err)
	}
	return otelhttp.NewHandler(promhttp.InstrumentHandlerCounter(requests, h), "webhook",
		otelhttp.WithSpanNameFormatter(func(_ string, r *http.Request) string { return r.Method + " " + webhook.PathPrefix + "{source}" })), nil
}
