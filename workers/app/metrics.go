package app

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	"go.temporal.io/sdk/client"
	"go.uber.org/fx"

	"github.com/tetherflow/tether/activities/connector/httpsink"
	"github.com/tetherflow/tether/activities/events"
	"github.com/tetherflow/tether/activities/twoway"
	"github.com/tetherflow/tether/workers/config"
	"github.com/tetherflow/tether/workers/httpauth"
	"github.com/tetherflow/tether/workers/telemetry"
)

// NewMetricsRegistry is the worker's Prometheus registry, with the Go
// runtime's and the process's collectors. It is the worker's own, not the
// client library's global one.
func NewMetricsRegistry() (*prometheus.Registry, error) {
	reg := prometheus.NewRegistry()
	for _, c := range []prometheus.Collector{
		collectors.NewGoCollector(),
		collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}),
	} {
		if err := reg.Register(c); err != nil {
			return nil, fmt.Errorf("metrics registry: %w", err)
		}
	}
	return reg, nil
}

// NewSinkMetrics registers the HTTP destinations' metrics (circuit state,
// its changes, calls by outcome) with reg; NewActivities hands them to
// every HTTP destination.
func NewSinkMetrics(reg *prometheus.Registry) (*httpsink.Metrics, error) {
	return httpsink.NewMetrics(reg)
}

// NewEventMetrics registers the metrics of event applies and change
// capture.
func NewEventMetrics(reg *prometheus.Registry) (*events.Metrics, error) {
	return events.NewMetrics(reg)
}

// NewTwoWayMetrics registers the two-way integrations' metrics.
func NewTwoWayMetrics(reg *prometheus.Registry) (*twoway.Metrics, error) {
	return twoway.NewMetrics(reg)
}

// NewSyncMetrics registers the per-integration sync metrics (records by
// outcome, runs by outcome, step latency, retries, throttling waits) the
// worker's interceptor records; nil (nothing recorded) when the metrics
// endpoint is off.
func NewSyncMetrics(cfg config.Config, reg *prometheus.Registry) (*telemetry.Metrics, error) {
	if cfg.Metrics.Listen == "" {
		return nil, nil
	}
	return telemetry.NewMetrics(reg)
}

// NewSDKMetrics puts the Temporal SDK's own metrics (temporal_*) on reg;
// the SDK records none when the metrics endpoint is off.
func NewSDKMetrics(cfg config.Config, reg *prometheus.Registry) (client.MetricsHandler, error) {
	if cfg.Metrics.Listen == "" {
		return client.MetricsNopHandler, nil
	}
	return telemetry.NewSDKMetrics(reg)
}

// Tracing is the process's OpenTelemetry tracing, on when the OTEL_*
// environment asks for it; made before the Temporal client, which takes
// its interceptor.
type Tracing struct{ On bool }

// NewTracing starts tracing when the environment asks for it and flushes
// it at the app's stop.
func NewTracing(lc fx.Lifecycle, log *slog.Logger) (*Tracing, error) {
	on, stop, err := telemetry.StartTracing(context.Background(), "tether-worker")
	if err != nil {
		return nil, err
	}
	if on {
		log.Info("tracing on: spans exported as the OTEL_* environment says")
	}
	lc.Append(fx.Hook{OnStop: stop})
	return &Tracing{On: on}, nil
}

// MetricsServer serves a registry's metrics at /metrics over HTTP, and
// the worker's liveness (/healthz) and readiness (/readyz, see Readiness)
// beside them.
type MetricsServer struct {
	server
	// Ready is what /readyz answers; the worker's lifecycle sets it
	// (NewWorker).
	Ready *Readiness
}

// NewMetricsServer serves the registry on metrics.listen from the start of
// the app (before the worker polls) to its stop; an empty listen address
// turns it off. metrics.token guards /metrics only: /healthz and /readyz
// answer without it (the kubelet's probes send no token), and tell only
// whether the worker lives and polls.
func NewMetricsServer(lc fx.Lifecycle, cfg config.Config, reg *prometheus.Registry, log *slog.Logger) *MetricsServer {
	ready := NewReadiness(log)
	mux := http.NewServeMux()
	mux.Handle("GET /metrics", httpauth.Bearer(cfg.Metrics.Token, "tether metrics", "missing or wrong token: scrape with Authorization: Bearer <metrics.token>", promhttp.InstrumentMetricHandler(reg,
		promhttp.HandlerFor(reg, promhttp.HandlerOpts{Registry: reg, ErrorLog: slog.NewLogLogger(log.Handler(), slog.LevelError)}))))
	mux.Handle("GET /healthz", Healthz())
	mux.Handle("GET /readyz", ready)
	m := &MetricsServer{server: server{what: "metrics endpoint", key: "metrics.listen / TETHER_METRICS_LISTEN", path: "/metrics",
		listen: cfg.Metrics.Listen, tls: cfg.Metrics.TLS, srv: &http.Server{Handler: mux, ReadHeaderTimeout: 10 * time.Second}, log: log}, Ready: ready}
	lc.Append(fx.Hook{OnStart: m.Start, OnStop: m.Stop})
	return m
}

// readiness is the Readiness of m (nil when m is nil).
func (m *MetricsServer) readiness() *Readiness {
	if m == nil {
		return nil
	}
	return m.Ready
}

// server is an HTTP server of the worker, bound at the app's start (a
// taken address stops the start, naming the key to change) and shut down
// gracefully at its stop.
type server struct {
	what, key, path string // for logs and errors
	listen          string
	tls             config.ServerTLS // HTTPS when set
	srv             *http.Server
	log             *slog.Logger
	addr            net.Addr      // bound by Start
	done            chan struct{} // closed when Serve returns
	// serving is true from Start's listen to the beginning of Stop.
	serving atomic.Bool
}

// Start binds the listen address and serves in the background.
func (m *server) Start(ctx context.Context) error {
	if m.listen == "" {
		m.log.Info(m.what + " off (" + m.key + " is empty)")
		return nil
	}
	ln, err := (&net.ListenConfig{}).Listen(ctx, "tcp", m.listen)
	if err != nil {
		return fmt.Errorf("%s on %s (%s): %w; give it a free host:port, or \"\" to turn it off", m.what, m.listen, m.key, err)
	}
	scheme := "http"
	if m.tls.Cert != "" {
		cert, err := tls.LoadX509KeyPair(m.tls.Cert, m.tls.Key)
		if err != nil {
			_ = ln.Close()
			return fmt.Errorf("%s: TLS certificate %s and key %s: %w", m.what, m.tls.Cert, m.tls.Key, err)
		}
		ln = tls.NewListener(ln, &tls.Config{Certificates: []tls.Certificate{cert}, MinVersion: tls.VersionTLS12})
		scheme = "https"
	}
	m.addr, m.done = ln.Addr(), make(chan struct{})
	go func() {
		defer close(m.done)
		if err := m.srv.Serve(ln); !errors.Is(err, http.ErrServerClosed) {
			m.log.Error(m.what+" stopped", "address", m.addr.String(), "error", err)
		}
	}()
	m.serving.Store(true)
	m.log.Info(m.what+" serving", "url", scheme+"://"+m.addr.String()+m.path)
	return nil
}

// Stop shuts the server down, letting requests in flight finish.
func (m *server) Stop(ctx context.Context) error {
	m.serving.Store(false)
	if m.done == nil {
		return nil
	}
	err := m.srv.Shutdown(ctx)
	<-m.done
	if err != nil {
		return fmt.Errorf("%s on %s: stop: %w", m.what, m.addr, err)
	}
	return nil
}

// Addr is the bound address ("" before Start or when off).
func (m *server) Addr() string {
	if m.addr == nil {
		return ""
	}
	return m.addr.String()
}
