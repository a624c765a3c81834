// Package integration defines what an integration is: a source, a JSON
// Schema, a transformation, a destination, a key, a cursor, and the run's
// policies (atomicity, invalid threshold, batch size). An integration is
// plain data plus optional Go functions; workers register the ones they run
// explicitly, in a Registry.
package integration

import (
	"errors"
	"fmt"
	"regexp"
	"sort"

	"github.com/tetherflow/tether/activities/sink/pgsink"
	"github.com/tetherflow/tether/activities/source/httpsource"
	"github.com/tetherflow/tether/activities/source/pgsource"
	"github.com/tetherflow/tether/activities/transform"
)

// Defaults applied by Normalize.
const (
	DefaultInvalidThreshold = 0.05
	DefaultBatchSize        = 1000
	DefaultPagesInFlight    = 4
	DefaultInitialCursor    = "1970-01-01T00:00:00Z"
)

// Definition is one integration.
type Definition struct {
	// Name identifies the integration in workflow input, search attributes,
	// tables and logs: lower-case letters, digits and dashes.
	Name string
	// Description is shown by the starter's list command.
	Description string
	// Version is bumped when the definition changes meaningfully; each run
	// records the version it ran with.
	Version int

	// Source: exactly one kind is set.
	Source Source
	// Schema is the JSON Schema file in schemas/ that every source record
	// must satisfy, e.g. "contacts.schema.json".
	Schema string
	// KeyField is the dot path of the record's unique key in the source
	// record, e.g. "id". A record without it is quarantined.
	KeyField string
	// CursorField is the dot path of the incremental cursor (e.g.
	// "updated_at"); empty means every run reads the whole source.
	CursorField string
	// InitialCursor is the cursor value of the very first incremental read.
	InitialCursor string

	// Mapping maps source records to destination rows declaratively.
	Mapping transform.Mapping
	// Transform is any Go function of a record, run after Mapping (or alone).
	Transform transform.Func

	// Destination: exactly one kind is set.
	Destination Destination

	// Atomic runs keep before-images and restore the destination exactly as
	// it was when a run fails for good or is cancelled.
	Atomic bool
	// InvalidThreshold is the share of invalid records above which a run
	// fails (0.05 = 5%). Invalid records are quarantined either way.
	InvalidThreshold float64
	// BatchSize is the page size asked of the source and the upsert batch.
	BatchSize int
	// PagesInFlight is how many pages may be between fetch and apply.
	PagesInFlight int
}

// Source says where records come from: exactly one kind is set.
type Source struct {
	HTTP     *httpsource.Config `mapstructure:"http" yaml:"http" json:"http,omitempty"`
	Postgres *pgsource.Config   `mapstructure:"postgres" yaml:"postgres" json:"postgres,omitempty"`
}

// Destination says where rows go.
type Destination struct {
	Postgres *pgsink.Table
}

var nameRE = regexp.MustCompile(`^[a-z][a-z0-9-]{0,62}$`)

// Normalize fills defaults.
func (d Definition) Normalize() Definition {
	if d.InvalidThreshold == 0 {
		d.InvalidThreshold = DefaultInvalidThreshold
	}
	if d.BatchSize == 0 {
		d.BatchSize = DefaultBatchSize
	}
	if d.PagesInFlight == 0 {
		d.PagesInFlight = DefaultPagesInFlight
	}
	if d.CursorField != "" && d.InitialCursor == "" {
		d.InitialCursor = DefaultInitialCursor
	}
	if d.Version == 0 {
		d.Version = 1
	}
	return d
}

// Validate reports every problem in the definition, each naming the field.
func (d Definition) Validate() error {
	var errs []error
	add := func(field, format string, args ...any) {
		errs = append(errs, fmt.Errorf("integration %q: %s: %s", d.Name, field, fmt.Sprintf(format, args...)))
	}
	if !nameRE.MatchString(d.Name) {
		add("name", "must be lower-case letters, digits and dashes, starting with a letter")
	}
	switch {
	case d.Source.HTTP == nil && d.Source.Postgres == nil:
		add("source", "no source set (want source.http or source.postgres)")
	case d.Source.HTTP != nil && d.Source.Postgres != nil:
		add("source", "both source.http and source.postgres are set; an integration reads one source")
	case d.Source.HTTP != nil:
		if err := d.Source.HTTP.Validate(); err != nil {
			add("source.http", "%v", err)
		}
		if d.CursorField != "" && d.Source.HTTP.Incremental.Param == "" {
			add("source.http.incremental.param", "required when cursor_field is set: the source must be asked for records since the checkpoint")
		}
	default:
		pg := d.Source.Postgres
		if err := pg.Validate(); err != nil {
			add("source.postgres", "%v", err)
		}
		if d.CursorField != pg.CursorColumn {
			add("cursor_field", "%q must name source.postgres.cursor_column (%q): the pipeline and the query must agree on the cursor", d.CursorField, pg.CursorColumn)
		}
		if len(pg.Key) == 1 && d.KeyField != "" && d.KeyField != pg.Key[0] {
			add("key_field", "%q must name the source.postgres.key column (%q)", d.KeyField, pg.Key[0])
		}
	}
	if d.Schema == "" {
		add("schema", "required (a file in schemas/)")
	}
	if d.KeyField == "" {
		add("key_field", "required")
	}
	if err := d.Mapping.Validate(); err != nil && len(d.Mapping.Fields) > 0 {
		add("mapping", "%v", err)
	}
	if len(d.Mapping.Fields) == 0 && d.Transform == nil {
		add("mapping", "no mapping and no transform function: nothing produces destination rows")
	}
	switch {
	case d.Destination.Postgres == nil:
		add("destination", "no destination set (want destination.postgres)")
	default:
		if err := d.Destination.Postgres.Validate(); err != nil {
			add("destination.postgres", "%v", err)
		}
	}
	if d.InvalidThreshold < 0 || d.InvalidThreshold > 1 {
		add("invalid_threshold", "%v is not a share between 0 and 1", d.InvalidThreshold)
	}
	if d.BatchSize < 0 || d.BatchSize > 10000 {
		add("batch_size", "%d is out of range 1..10000", d.BatchSize)
	}
	if d.PagesInFlight < 0 || d.PagesInFlight > 32 {
		add("pages_in_flight", "%d is out of range 1..32", d.PagesInFlight)
	}
	return errors.Join(errs...)
}

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
