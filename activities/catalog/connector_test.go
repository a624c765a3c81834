package catalog

import (
	"context"
	"io"
	"log/slog"
	"strings"
	"testing"

	"github.com/tetherflow/tether/activities/connector"
	"github.com/tetherflow/tether/activities/connector/builtin"
	"github.com/tetherflow/tether/activities/integration"
)

// memorySink is a connector registered besides the shipped ones: all a
// test needs is what it was opened with.
type memorySink struct {
	connector.Sink
	spec connector.SinkSpec
}

func (m *memorySink) Capabilities() connector.Capabilities {
	return connector.Capabilities{Kind: "memory"}
}

// TestCatalog_OpensRegisteredConnectorsByKind: an integration naming a
// connector the worker registered gets that connector, opened with the
// integration's configuration as it is; an unknown kind is refused naming
// the kinds the worker knows.
func TestCatalog_OpensRegisteredConnectorsByKind(t *testing.T) {
	log := slog.New(slog.NewTextHandler(io.Discard, nil))
	reg := builtin.Registry(builtin.Options{Logger: log}).
		RegisterSink("memory", func(spec connector.SinkSpec) (connector.Sink, error) {
			return &memorySink{spec: spec}, nil
		})
	c := New(Options{Connectors: reg, Schemas: testSchemas(t), Logger: log})
	def := people("lower")
	def.Destination = integration.Destination{Name: "mem", Connector: &integration.Connector{Kind: "memory",
		Config: map[string]any{"capacity": 10}}}
	if _, err := c.Reload(registry(t, def), nil); err != nil {
		t.Fatal(err)
	}
	in, err := c.Get("people", "")
	if err != nil {
		t.Fatal(err)
	}
	m, ok := in.Steps[0].Sink.(*memorySink)
	if !ok {
		t.Fatalf("the step's sink is a %T, want the registered memory sink", in.Steps[0].Sink)
	}
	if m.spec.Integration != "people" || m.spec.Destination != "mem" || m.spec.Config.(map[string]any)["capacity"] != 10 {
		t.Errorf("opened with %+v", m.spec)
	}
	if err := in.Prepare(context.Background()); err != nil {
		t.Errorf("Prepare with a sink that prepares nothing: %v", err)
	}

	def.Destination.Connector.Kind = "nosuch"
	_, err = c.Reload(registry(t, def), nil)
	if err == nil || !strings.Contains(err.Error(), `no sink connector of kind "nosuch" is registered (this worker knows: http, memory, postgres)`) {
		t.Errorf("an unknown kind: %v", err)
	}
}
