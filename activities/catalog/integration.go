package catalog

import (
	"context"
	"errors"
	"fmt"
	"io"
	"maps"
	"slices"
	"sync/atomic"

	"github.com/tetherflow/tether/activities/connector"
	"github.com/tetherflow/tether/activities/integration"
	"github.com/tetherflow/tether/activities/lib/failure"
	"github.com/tetherflow/tether/activities/lib/mapping"
	"github.com/tetherflow/tether/activities/lib/record"
	"github.com/tetherflow/tether/activities/lib/schema"
)

// Integration is one version of an integration with everything its steps
// need built once: the source, the compiled schema and mapping, and one
// sink per destination.
type Integration struct {
	Def       integration.Definition
	Source    connector.Source
	Validator *schema.Validator
	// Transform is the mapping, then the definition's Go Transform.
	Transform mapping.Func
	// Drops names the fields of a row no destination stores (nil when no
	// row can lose one): integration.Definition.Drops.
	Drops func(row map[string]any) []string
	// Unread are the mapping's source paths the schema does not
	// describe: the transform step counts the records that lack them.
	Unread []UnreadPath
	// Steps are the destinations, in apply order.
	Steps []*Step
	// Match detects duplicates (nil: no match).
	Match *Matcher
	// KeyPath and CursorPath are the key and cursor fields, split.
	KeyPath, CursorPath []string
	// Fingerprint identifies this version (Fingerprint).
	Fingerprint string

	prepared atomic.Bool
}

// Step is one destination of an integration, compiled.
type Step struct {
	// Dest is the destination with its defaults (integration.Steps).
	Dest integration.Destination
	Sink connector.Sink
	// Mapping reshapes the integration's row for this destination (nil:
	// the row as it is).
	Mapping mapping.Func
	// IDs fill row fields with the ids earlier steps' destinations gave
	// the record.
	IDs []IDField
}

// IDField fills Field with the id the identity map Namespace holds for
// the record.
type IDField struct {
	Field, Namespace string
}

// compile builds an integration's source, schema, mapping and sinks.
// Every problem is reported.
func (c *Catalog) compile(def integration.Definition) (*Integration, error) {
	in := &Integration{Def: def, KeyPath: record.Path(def.KeyField), CursorPath: record.Path(def.CursorField)}
	var errs []error
	kind, cfg := def.Source.Spec()
	src, err := c.opts.Connectors.OpenSource(kind, connector.SourceSpec{Integration: def.Name, Config: cfg})
	if err != nil {
		errs = append(errs, fmt.Errorf("source: %w", err))
	}
	in.Source = src
	if in.Validator, err = c.opts.Schemas.Get(def.Schema); err != nil {
		errs = append(errs, fmt.Errorf("schema: %w", err))
	} else {
		errs = append(errs, c.checkPaths(in)...)
	}
	var fns []mapping.Func
	if len(def.Mapping.Fields) > 0 {
		fn, err := def.Mapping.Compile()
		if err != nil {
			errs = append(errs, fmt.Errorf("mapping: %w", err))
		}
		fns = append(fns, fn)
	}
	in.Transform = mapping.Chain(append(fns, def.Transform)...)
	in.Drops = def.Drops()
	steps, err := c.compileSteps(def)
	if err != nil {
		errs = append(errs, err)
	}
	in.Steps = steps
	if in.Match, err = compileMatch(def); err != nil {
		errs = append(errs, err)
	}
	return in, errors.Join(errs...)
}

// UnreadPath is a source path the schema does not describe, read into a
// row field.
type UnreadPath struct {
	Field string   // the row field the mapping writes
	Path  []string // the source path, split
}

// checkPaths checks the mapping's source paths against the schema: a path
// no valid record holds is a problem; one the schema does not describe is
// logged once here and watched by the transform step (Unread).
func (c *Catalog) checkPaths(in *Integration) []error {
	def := in.Def
	problems, warnings := integration.CheckPaths(in.Validator, def.SourcePaths())
	for _, w := range warnings {
		c.log.Warn("mapping reads a path the schema does not describe", "integration", def.Name, "problem", w.Error())
	}
	for _, f := range def.Mapping.Fields {
		if f.From == "" {
			continue
		}
		path := record.Path(f.From)
		if in.Validator.Reach(path).Reach == schema.Undescribed {
			in.Unread = append(in.Unread, UnreadPath{Field: f.To, Path: path})
		}
	}
	return problems
}

// compileSteps opens the sink of every destination.
func (c *Catalog) compileSteps(def integration.Definition) ([]*Step, error) {
	var errs []error
	byName := map[string]integration.Destination{}
	var steps []*Step
	for _, dest := range def.Steps() {
		st := &Step{Dest: dest}
		kind, cfg := dest.Spec()
		sink, err := c.opts.Connectors.OpenSink(kind, connector.SinkSpec{Integration: def.Name, Destination: dest.Name, Config: cfg})
		if err != nil {
			errs = append(errs, fmt.Errorf("destination %q: %w", dest.Name, err))
		}
		st.Sink = sink
		if len(dest.Mapping.Fields) > 0 {
			fn, err := dest.Mapping.Compile()
			if err != nil {
				errs = append(errs, fmt.Errorf("destination %q: mapping: %w", dest.Name, err))
			}
			st.Mapping = fn
		}
		for _, field := range slices.Sorted(maps.Keys(dest.IDs)) {
			st.IDs = append(st.IDs, IDField{Field: field, Namespace: byName[dest.IDs[field]].Identity})
		}
		byName[dest.Name] = dest
		steps = append(steps, st)
	}
	return steps, errors.Join(errs...)
}

// StepAt returns destination step i, or a permanent failure.TypeConfig
// error when the integration has no such step.
func (in *Integration) StepAt(i int) (*Step, error) {
	if i < 0 || i >= len(in.Steps) {
		return nil, failure.Permanent(failure.TypeConfig, fmt.Errorf(
			"integration %q has %d destinations, not a step %d: was the integration changed under a running sync? Start a new run",
			in.Def.Name, len(in.Steps), i))
	}
	return in.Steps[i], nil
}

// StepNames names the steps of a saga, for a run's plan; nil for one
// destination.
func (in *Integration) StepNames() []string {
	if len(in.Steps) < 2 {
		return nil
	}
	names := make([]string, len(in.Steps))
	for i, st := range in.Steps {
		names[i] = st.Dest.Name
	}
	return names
}

// Prepare makes sure every destination is ready to be written: it
// creates a missing table, or checks an existing one matches its
// definition. A run's start calls it every time (a table dropped since is
// made again); PrepareOnce does it once per compiled version.
func (in *Integration) Prepare(ctx context.Context) error {
	for _, st := range in.Steps {
		if p, ok := st.Sink.(connector.Preparer); ok {
			if err := p.Prepare(ctx); err != nil {
				return err
			}
		}
	}
	in.prepared.Store(true)
	return nil
}

// PrepareOnce is Prepare once per compiled version (event applies, which
// run without a run's start).
func (in *Integration) PrepareOnce(ctx context.Context) error {
	if in.prepared.Load() {
		return nil
	}
	return in.Prepare(ctx)
}

// close releases what the version holds open (a PostgreSQL source's
// connections).
func (in *Integration) close() {
	if in == nil || in.Source == nil {
		return
	}
	if cl, ok := in.Source.(io.Closer); ok {
		_ = cl.Close()
	}
}
