package app

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	"go.uber.org/fx"

	"github.com/tetherflow/tether/activities/sink/httpsink"
	"github.com/tetherflow/tether/workers/config"
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

// MetricsServer serves a registry's metrics at /metrics over HTTP.
type MetricsServer struct {
	listen string
	srv    *http.Server
	log    *slog.Logger
	addr   net.Addr      // bound by Start
	done   chan struct{} // closed when Serve returns
}

// NewMetricsServer serves reg on metrics.listen while the worker runs: it
// binds in OnStart, so an address in use stops the worker before it polls,
// and shuts down in OnStop. An empty metrics.listen serves nothing.
func NewMetricsServer(lc fx.Lifecycle, cfg config.Config, reg *prometheus.Registry, log *slog.Logger) *MetricsServer {
	mux := http.NewServeMux()
	mux.Handle("GET /metrics", promhttp.InstrumentMetricHandler(reg,
		promhttp.HandlerFor(reg, promhttp.HandlerOpts{Registry: reg, ErrorLog: slog.NewLogLogger(log.Handler(), slog.LevelError)})))
	m := &MetricsServer{
		listen: cfg.Metrics.Listen,
		srv:    &http.Server{Handler: mux, ReadHeaderTimeout: 10 * time.Second},
		log:    log,
	}
	lc.Append(fx.Hook{OnStart: m.Start, OnStop: m.Stop})
	return m
}

// Start binds metrics.listen and serves in the background.
func (m *MetricsServer) Start(ctx context.Context) error {
	if m.listen == "" {
		m.log.Info("metrics endpoint off (metrics.listen is empty)")
		return nil
	}
	ln, err := (&net.ListenConfig{}).Listen(ctx, "tcp", m.listen)
	if err != nil {
		return fmt.Errorf("metrics endpoint on %s (metrics.listen / TETHER_METRICS_LISTEN): %w; "+
			"give it a free host:port, or \"\" to turn it off", m.listen, err)
	}
	m.addr, m.done = ln.Addr(), make(chan struct{})
	go func() {
		defer close(m.done)
		if err := m.srv.Serve(ln); !errors.Is(err, http.ErrServerClosed) {
			m.log.Error("metrics endpoint stopped", "address", m.addr.String(), "error", err)
		}
	}()
	m.log.Info("metrics endpoint serving", "url", "http://"+m.addr.String()+"/metrics")
	return nil
}

// Stop stops serving, letting scrapes in progress finish within ctx.
func (m *MetricsServer) Stop(ctx context.Context) error {
	if m.done == nil {
		return nil
	}
	err := m.srv.Shutdown(ctx)
	<-m.done
	if err != nil {
		return fmt.Errorf("metrics endpoint on %s: stop: %w", m.addr, err)
	}
	return nil
}

// Addr is the address the server is bound to ("" when it is off or not
// started): the port chosen for a metrics.listen port of 0.
func (m *MetricsServer) Addr() string {
	if m.addr == nil {
		return ""
	}
	return m.addr.String()
}
