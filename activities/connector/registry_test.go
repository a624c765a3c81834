package connector_test

import (
	"errors"
	"strings"
	"testing"

	"go.temporal.io/sdk/temporal"

	"github.com/tetherflow/tether/activities/connector"
	"github.com/tetherflow/tether/activities/lib/failure"
)

type settings struct {
	URL   string            `mapstructure:"url"`
	Pages int               `mapstructure:"pages"`
	Map   map[string]string `mapstructure:"map"`
}

// TestConfigured_TakesTheTypeItsPointerOrAFilesSettings: a connector gets
// its configuration as its own type, a pointer to it, or the settings an
// integration file wrote (decoded by its tags); an unknown or mistyped
// setting, or another connector's configuration, is a permanent
// configuration error naming it.
func TestConfigured_TakesTheTypeItsPointerOrAFilesSettings(t *testing.T) {
	want := settings{URL: "https://x.example", Pages: 3, Map: map[string]string{"a": "b"}}
	for _, cfg := range []any{want, &want, map[string]any{"url": "https://x.example", "pages": 3, "map": map[string]any{"a": "b"}}} {
		got, err := connector.Configured[settings]("test side", cfg)
		if err != nil || got.URL != want.URL || got.Pages != 3 || got.Map["a"] != "b" {
			t.Errorf("%T: %+v, %v", cfg, got, err)
		}
	}
	for _, tc := range []struct {
		cfg  any
		name string
	}{
		{map[string]any{"url": "https://x.example", "pagez": 3}, "pagez"},
		{map[string]any{"pages": "many"}, "pages"},
		{struct{ Other string }{}, "configuration is a"},
		{(*settings)(nil), "configuration is a"},
	} {
		_, err := connector.Configured[settings]("test side", tc.cfg)
		var app *temporal.ApplicationError
		if err == nil || !errors.As(err, &app) || app.Type() != failure.TypeConfig || !app.NonRetryable() || !strings.Contains(err.Error(), tc.name) {
			t.Errorf("%#v: %v; want a permanent %s error naming %q", tc.cfg, err, failure.TypeConfig, tc.name)
		}
	}
}

// TestRegistry_OpensSidesByKind: a side kind opens with its factory; an
// unknown kind is refused with the kinds the registry knows.
func TestRegistry_OpensSidesByKind(t *testing.T) {
	var got connector.SideSpec
	r := connector.NewRegistry().RegisterSide("crm", func(spec connector.SideSpec) (connector.Side, error) {
		got = spec
		return nil, nil
	})
	if _, err := r.OpenSide("crm", connector.SideSpec{Integration: "i", Side: "s", Config: 1}); err != nil || got.Integration != "i" || got.Side != "s" {
		t.Errorf("opened with %+v, %v", got, err)
	}
	if _, err := r.OpenSide("erp", connector.SideSpec{}); err == nil || !strings.Contains(err.Error(), `"erp"`) || !strings.Contains(err.Error(), "knows: crm") {
		t.Errorf("unknown kind: %v", err)
	}
	if kinds := r.SideKinds(); len(kinds) != 1 || kinds[0] != "crm" {
		t.Errorf("kinds %v", kinds)
	}
}
