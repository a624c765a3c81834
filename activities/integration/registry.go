package integration

import (
	"errors"
	"fmt"
	"sort"
)

// Registry holds the integrations a worker runs.
type Registry struct {
	defs map[string]Definition
}

// NewRegistry validates and registers the definitions; duplicate names and
// invalid definitions are errors, all reported at once.
func NewRegistry(defs ...Definition) (*Registry, error) {
	r := &Registry{defs: make(map[string]Definition, len(defs))}
	var errs []error
	for _, d := range defs {
		d = d.Normalize()
		if err := d.Validate(); err != nil {
			errs = append(errs, err)
			continue
		}
		if _, dup := r.defs[d.Name]; dup {
			errs = append(errs, fmt.Errorf("integration %q is registered twice", d.Name))
			continue
		}
		r.defs[d.Name] = d
	}
	if err := errors.Join(errs...); err != nil {
		return nil, err
	}
	return r, nil
}

// Get returns the named integration, or an error listing the known ones.
func (r *Registry) Get(name string) (Definition, error) {
	d, ok := r.defs[name]
	if !ok {
		return Definition{}, fmt.Errorf("unknown integration %q (this worker runs: %v)", name, r.Names())
	}
	return d, nil
}

// Names lists the registered integrations, sorted.
func (r *Registry) Names() []string {
	names := make([]string, 0, len(r.defs))
	for n := range r.defs {
		names = append(names, n)
	}
	sort.Strings(names)
	return names
}

// All returns every definition, sorted by name.
func (r *Registry) All() []Definition {
	out := make([]Definition, 0, len(r.defs))
	for _, n := range r.Names() {
		out = append(out, r.defs[n])
	}
	return out
}
