package app

import (
	"context"
	"io"
	"log/slog"
	"net"
	"net/http"
	"strings"
	"testing"

	"go.uber.org/fx"
	"go.uber.org/fx/fxtest"

	"github.com/tetherflow/tether/activities/connector/httpsink"
	"github.com/tetherflow/tether/activities/integration"
	"github.com/tetherflow/tether/workers/config"
)

func metricsConfig(listen string) config.Config {
	var cfg config.Config
	cfg.Metrics.Listen = listen
	return cfg
}

func discardLogger() *slog.Logger { return slog.New(slog.DiscardHandler) }

// scrape GETs url and returns the body of a 200 answer.
func scrape(t *testing.T, url string) string {
	t.Helper()
	resp, err := http.Get(url)
	if err != nil {
		t.Fatalf("GET %s: %v", url, err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("GET %s: %s: %s", url, resp.Status, b)
	}
	return string(b)
}

func TestNewMetricsServer_ServesTheRegistryOverHTTP(t *testing.T) {
	// Wired as the worker wires them.
	var (
		srv   *MetricsServer
		sinks *httpsink.Metrics
	)
	app := fxtest.New(t,
		fx.Supply(metricsConfig("127.0.0.1:0"), discardLogger()),
		fx.Provide(NewMetricsRegistry, NewSinkMetrics, NewMetricsServer),
		fx.Populate(&srv, &sinks),
	)
	// A destination of an integration, as the pipeline builds it.
	if _, err := httpsink.NewClient("crm-billing-customers/billing", httpsink.Config{
		BaseURL: "http://127.0.0.1:1",
		Create:  httpsink.Endpoint{Path: "/v1/customers"},
		Update:  httpsink.Endpoint{Path: "/v1/customers/{{.external_id}}"},
	}, httpsink.WithMetrics(sinks), httpsink.WithDestination("crm-billing-customers", "billing")); err != nil {
		t.Fatal(err)
	}
	if srv.Addr() != "" {
		t.Errorf("bound to %s before start", srv.Addr())
	}
	app.RequireStart()
	url := "http://" + srv.Addr() + "/metrics"
	body := scrape(t, url)
	for _, want := range []string{
		`tether_destination_circuit_state{destination="billing",integration="crm-billing-customers"} 0`,
		`tether_destination_circuit_transitions_total{destination="billing",integration="crm-billing-customers",to="open"} 0`,
		`tether_destination_requests_total{destination="billing",integration="crm-billing-customers",outcome="ok"} 0`,
		"go_goroutines ",
		"process_cpu_seconds_total ",
		"promhttp_metric_handler_requests_total{code=\"200\"}",
	} {
		if !strings.Contains(body, want) {
			t.Errorf("/metrics lacks %q", want)
		}
	}
	if strings.Contains(body, "127.0.0.1:1") {
		t.Errorf("/metrics shows the destination's URL")
	}

	app.RequireStop()
	if resp, err := http.Get(url); err == nil {
		resp.Body.Close()
		t.Errorf("GET %s after stop: %s, want no answer", url, resp.Status)
	}
}

func TestNewMetricsServer_AddressInUseStopsTheStart(t *testing.T) {
	taken, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer taken.Close()
	addr := taken.Addr().String()
	reg, err := NewMetricsRegistry()
	if err != nil {
		t.Fatal(err)
	}
	lc := fxtest.NewLifecycle(t)
	NewMetricsServer(lc, metricsConfig(addr), reg, discardLogger())
	err = lc.Start(context.Background())
	if err == nil {
		_ = lc.Stop(context.Background())
		t.Fatalf("started on %s, which is in use", addr)
	}
	for _, want := range []string{"metrics endpoint on " + addr, "metrics.listen", "address already in use"} {
		if !strings.Contains(StartError(err).Error(), want) {
			t.Errorf("the error lacks %q: %v", want, err)
		}
	}
}

func TestNewMetricsServer_EmptyListenServesNothing(t *testing.T) {
	reg, err := NewMetricsRegistry()
	if err != nil {
		t.Fatal(err)
	}
	lc := fxtest.NewLifecycle(t)
	srv := NewMetricsServer(lc, metricsConfig(""), reg, discardLogger())
	lc.RequireStart()
	if srv.Addr() != "" {
		t.Errorf("metrics.listen is empty, yet the endpoint is on %s", srv.Addr())
	}
	lc.RequireStop()
}

// The worker's module wires every constructor, the metrics ones included.
func TestModule_Wiring(t *testing.T) {
	if err := fx.ValidateApp(fx.NopLogger, fx.Supply(config.Config{}), fx.Supply([]integration.Definition{}), Module); err != nil {
		t.Fatal(err)
	}
}
