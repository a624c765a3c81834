package declarative

import (
	"context"
	"errors"
	"strings"
	"testing"
	"time"
)

type change struct {
	specs []Spec
	err   error
}

// next waits for the next report of Watch.
func next(t *testing.T, ch <-chan change) change {
	t.Helper()
	select {
	case c := <-ch:
		return c
	case <-time.After(5 * time.Second):
		t.Fatal("no change reported within 5s")
	}
	return change{}
}

func TestWatch(t *testing.T) {
	dir := t.TempDir()
	p := writeFile(t, dir, "people.yaml", minimalYAML)

	ctx, cancel := context.WithCancel(context.Background())
	ch := make(chan change, 16)
	done := make(chan error, 1)
	go func() { done <- Watch(ctx, dir, func(s []Spec, err error) { ch <- change{s, err} }) }()
	defer func() {
		cancel()
		select {
		case err := <-done:
			if err != nil {
				t.Errorf("Watch() = %v", err)
			}
		case <-time.After(5 * time.Second):
			t.Error("Watch did not return after its context ended")
		}
	}()

	set := NewSet(nil, nil)
	var seen []string
	unsubscribe := set.Subscribe(func(specs []Spec) {
		for _, s := range specs {
			if s.Name == "people" {
				seen = append(seen, s.Description)
			}
		}
	})
	defer unsubscribe()

	// The directory as it is when watching starts.
	c := next(t, ch)
	if c.err != nil || len(c.specs) != 1 || c.specs[0].Description != "people from a test API" {
		t.Fatalf("first report: %+v", c)
	}
	if err := set.Apply(c.specs, c.err); err != nil {
		t.Fatal(err)
	}

	// A change.
	writeFile(t, dir, "people.yaml", edited(t, map[string]any{"/description": "v2"}))
	c = next(t, ch)
	if c.err != nil || c.specs[0].Description != "v2" {
		t.Fatalf("after a change: %+v", c)
	}
	if err := set.Apply(c.specs, c.err); err != nil {
		t.Fatal(err)
	}

	// A broken change is reported, and the set keeps the last good specs.
	writeFile(t, dir, "people.yaml", edited(t, map[string]any{"/description": "v3", "/source/http/auth/token": "inline"}))
	c = next(t, ch)
	if c.specs != nil || c.err == nil || !strings.Contains(c.err.Error(), p+": /source/http/auth/token: a secret is given by reference") {
		t.Fatalf("after a broken change: %+v", c)
	}
	if err := set.Apply(c.specs, c.err); err == nil {
		t.Error("Apply accepted a load error")
	}
	if cur := set.Current(); len(cur) != 1 || cur[0].Description != "v2" {
		t.Errorf("Current() after a broken change = %+v, want the last good set", cur)
	}

	// A new file beside it leaves the same problems: nothing new to report.
	writeFile(t, dir, "other.yaml", edited(t, map[string]any{"/name": "other"}))

	// Fixed: both files.
	writeFile(t, dir, "people.yaml", edited(t, map[string]any{"/description": "v4"}))
	c = next(t, ch)
	if c.err != nil || len(c.specs) != 2 {
		t.Fatalf("after the fix: %+v", c)
	}
	if err := set.Apply(c.specs, c.err); err != nil {
		t.Fatal(err)
	}
	if got := strings.Join(seen, ","); got != "people from a test API,v2,v4" {
		t.Errorf("subscriber saw %s", got)
	}

	// Touching a file without changing it reports nothing.
	writeFile(t, dir, "people.yaml", edited(t, map[string]any{"/description": "v4"}))
	select {
	case c := <-ch:
		t.Errorf("an unchanged directory was reported: %+v", c)
	case <-time.After(4 * debounce):
	}
}

func TestWatch_NoDirectory(t *testing.T) {
	err := Watch(context.Background(), t.TempDir()+"/nope", func([]Spec, error) { t.Error("onChange called") })
	if err == nil || !strings.Contains(err.Error(), "nope") {
		t.Errorf("Watch() = %v", err)
	}
}

func TestSet_Apply(t *testing.T) {
	a := load(t, "", minimalYAML)
	b := load(t, "", edited(t, map[string]any{"/name": "b"}))
	refused := errors.New("name clash")
	set := NewSet([]Spec{a}, func(specs []Spec) error {
		for _, s := range specs {
			if s.Name == "b" {
				return refused
			}
		}
		return nil
	})
	calls := 0
	set.Subscribe(func([]Spec) { calls++ })
	if err := set.Apply([]Spec{a}, nil); err != nil || calls != 0 {
		t.Errorf("the same specs: err %v, %d calls", err, calls)
	}
	if err := set.Apply([]Spec{a, b}, nil); !errors.Is(err, refused) {
		t.Errorf("Apply() = %v, want the check's error", err)
	}
	if cur := set.Current(); len(cur) != 1 || calls != 0 {
		t.Errorf("a refused set replaced the current one: %+v", cur)
	}
	if err := set.Apply(nil, nil); err != nil || len(set.Current()) != 0 || calls != 1 {
		t.Errorf("an empty directory: err %v, current %v, %d calls", err, set.Current(), calls)
	}
}
