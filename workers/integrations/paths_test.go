package integrations

import (
	"testing"

	"github.com/tetherflow/tether/activities/integration"
	"github.com/tetherflow/tether/activities/lib/schema"
	"github.com/tetherflow/tether/schemas"
	"github.com/tetherflow/tether/workers/config"
)

// TestAll_ReadDescribedPaths: every source path a shipped integration's
// mapping reads is one its schema describes, so none needs the transform
// step's count of records lacking it.
func TestAll_ReadDescribedPaths(t *testing.T) {
	reg, err := schema.NewRegistry(schemas.FS())
	if err != nil {
		t.Fatal(err)
	}
	for _, d := range All(config.Connection{BaseURL: "http://127.0.0.1:8081"}) {
		v, err := reg.Get(d.Schema)
		if err != nil {
			t.Fatalf("%s: %v", d.Name, err)
		}
		if len(d.SourcePaths()) == 0 {
			t.Errorf("%s: the mapping reads no path; the check would pass for nothing", d.Name)
		}
		problems, warnings := integration.CheckPaths(v, d.SourcePaths())
		for _, e := range append(problems, warnings...) {
			t.Errorf("%s: %v", d.Name, e)
		}
	}
}
