package app

import (
	"context"
	"log/slog"
	"strings"
	"testing"

	"github.com/prometheus/client_golang/prometheus"
	"go.uber.org/fx/fxtest"

	"github.com/tetherflow/tether/activities/integration"
	"github.com/tetherflow/tether/activities/lib/schema"
	"github.com/tetherflow/tether/activities/twoway"
	"github.com/tetherflow/tether/schemas"
	"github.com/tetherflow/tether/workers/config"
	"github.com/tetherflow/tether/workers/webhook"
)

// TestReadyz_WaitsForTheWebhookReceiver: a worker that receives webhooks
// is ready only while its receiver listens, not from the moment it polls
// until the receiver is up, nor after the receiver began its stop.
func TestReadyz_WaitsForTheWebhookReceiver(t *testing.T) {
	lc := fxtest.NewLifecycle(t)
	ready := NewReadiness(nil)
	reg, err := integration.NewRegistry()
	if err != nil {
		t.Fatal(err)
	}
	sch, err := schema.NewRegistry(schemas.FS())
	if err != nil {
		t.Fatal(err)
	}
	twoWay, err := twoway.NewRegistry(twoway.Definition{Name: "accounts-billing", Policy: twoway.Policy{Kind: twoway.LastWriterWins},
		A: twoway.SideSpec{Name: "app", Kind: "k", Shared: []string{"email"}}, B: twoway.SideSpec{Name: "billing", Kind: "k", Shared: []string{"email"}}})
	if err != nil {
		t.Fatal(err)
	}
	var cfg config.Config
	cfg.Webhooks.Listen = "127.0.0.1:0"
	cfg.Webhooks.Sources = []config.WebhookSource{{Source: webhook.Source{Name: "billing", Integration: "accounts-billing",
		Secrets: []string{"a-shared-secret-long-enough-0123456789"}, KeyPath: "data.id", VersionPath: "data.version"}}}
	if _, err := NewWebhookServer(WebhookParams{Lifecycle: lc, Config: cfg, Integrations: reg, TwoWay: twoWay, Schemas: sch,
		Registry: prometheus.NewRegistry(), Logger: slog.New(slog.DiscardHandler), Health: &MetricsServer{Ready: ready}}); err != nil {
		t.Fatal(err)
	}
	ready.Polling() // the worker polls before the receiver starts
	if err := ready.Ready(context.Background()); err == nil || !strings.HasPrefix(err.Error(), "webhooks: ") {
		t.Fatalf("before the receiver listens: %v", err)
	}
	lc.RequireStart()
	if err := ready.Ready(context.Background()); err != nil {
		t.Fatalf("while it listens: %v", err)
	}
	lc.RequireStop()
	if err := ready.Ready(context.Background()); err == nil {
		t.Fatal("ready after the receiver stopped")
	}
}
