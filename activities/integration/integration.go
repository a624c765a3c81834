// Package integration defines what an integration is: a source, a JSON
// Schema, a transformation, a destination, a key, a cursor, and the run's
// policies (atomicity, invalid threshold, batch size). An integration is
// plain data plus optional Go functions; workers register the ones they run
// explicitly, in a Registry.
package integration

import (
	"errors"
	"fmt"
	"net/http"
	"regexp"
	"sort"

	"github.com/tetherflow/tether/activities/sink/httpsink"
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

	// Destination is where rows go, for an integration with one
	// destination. Set it or Destinations, not both.
	Destination Destination
	// Destinations apply every batch to several destinations in order (a
	// saga): e.g. create the customer in a billing API, then write the link
	// row in PostgreSQL, then notify a webhook. A batch counts as applied
	// once every step applied it; when a step fails for good (or the run is
	// cancelled) in an Atomic integration, the steps done are compensated in
	// reverse order. A row one step refuses is quarantined and not sent to
	// the steps after it.
	Destinations []Destination

	// Match, when set, detects records that describe an entity another
	// record already stands for (the same normalised email under another
	// key) and merges or quarantines them.
	Match *Match

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

// Destination is one step of the apply: where rows go. Exactly one kind
// is set.
type Destination struct {
	// Name names the step in history, progress, errors and identity maps:
	// lower-case letters, digits and dashes; default the kind ("postgres",
	// "http"). Unique within the integration.
	Name string `mapstructure:"name" yaml:"name" json:"name,omitempty"`
	// Postgres upserts rows into a table (before-images undo it).
	Postgres *pgsink.Table `mapstructure:"postgres" yaml:"postgres" json:"postgres,omitempty"`
	// HTTP writes rows to an API: created the first time, then updated
	// under the id the API gave (kept in the identity map).
	HTTP *httpsink.Config `mapstructure:"http" yaml:"http" json:"http,omitempty"`
	// Mode of an HTTP destination: "upsert" (default: create the object
	// once, update it afterwards; compensation deletes what the run created
	// and puts back what it changed) or "notify" (POST every new version of
	// a record, as to a webhook; compensation sends Reversal).
	Mode string `mapstructure:"mode" yaml:"mode" json:"mode,omitempty"`
	// Identity names the identity map of an HTTP destination: record key →
	// the destination's id. Default "<integration>/<name>"; integrations
	// writing the same objects share one by naming it alike.
	Identity string `mapstructure:"identity" yaml:"identity" json:"identity,omitempty"`
	// IDs fills row fields with the ids earlier HTTP steps' destinations
	// gave the record: field → step name, e.g. {"billing_id": "billing"}.
	IDs map[string]string `mapstructure:"ids" yaml:"ids" json:"ids,omitempty"`
	// Mapping reshapes the row for this destination (optional). It reads
	// the integration's row, after IDs are filled in.
	Mapping transform.Mapping `mapstructure:"mapping" yaml:"mapping" json:"mapping,omitempty"`
	// Reversal is the request a "notify" destination's compensation sends
	// for every notification it undoes: its body is {"reversal_of": id,
	// "record": row} and its idempotency key derives from the original's.
	Reversal *httpsink.Endpoint `mapstructure:"reversal" yaml:"reversal" json:"reversal,omitempty"`
}

// Destination modes.
const (
	ModeUpsert = "upsert"
	ModeNotify = "notify"
)

// Kind is "postgres", "http" or "" (none set).
func (d Destination) Kind() string {
	switch {
	case d.Postgres != nil:
		return "postgres"
	case d.HTTP != nil:
		return "http"
	}
	return ""
}

// Match detects duplicate records: two records with different keys whose
// Fields, normalised, are equal describe the same entity.
type Match struct {
	// Fields are row fields (after the mapping), e.g. ["email"]; a record
	// matches another when every one of them is equal. A record with any
	// of them empty is never a duplicate.
	Fields []string `mapstructure:"fields" yaml:"fields" json:"fields"`
	// Normalize lists the normalisers applied to every value before it is
	// compared (as transform.Field's; default trim then lower).
	Normalize []string `mapstructure:"normalize" yaml:"normalize" json:"normalize,omitempty"`
	// Policy is "quarantine" (default: the later record waits in
	// quarantine for review, naming the record it duplicates) or "merge"
	// (it is applied as an update of the entity first seen).
	Policy string `mapstructure:"policy" yaml:"policy" json:"policy,omitempty"`
}

// Match policies.
const (
	MatchQuarantine = "quarantine"
	MatchMerge      = "merge"
)

// Steps returns the destinations in apply order, each with its name and
// (HTTP) mode and identity map filled in.
func (d Definition) Steps() []Destination {
	steps := d.Destinations
	if len(steps) == 0 {
		steps = []Destination{d.Destination}
	}
	out := make([]Destination, len(steps))
	for i, s := range steps {
		if s.Name == "" {
			s.Name = s.Kind()
		}
		if s.HTTP != nil {
			if s.Mode == "" {
				s.Mode = ModeUpsert
			}
			if s.Identity == "" {
				s.Identity = d.Name + "/" + s.Name
			}
			if s.Mode == ModeNotify && s.HTTP.Update.Path == "" {
				// A notify destination never updates: every version is
				// POSTed anew.
				cfg := *s.HTTP
				cfg.Update = httpsink.Endpoint{Method: http.MethodPut, Path: cfg.Create.Path}
				s.HTTP = &cfg
			}
		}
		out[i] = s
	}
	return out
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
	errs = append(errs, d.destinationProblems()...)
	if m := d.Match; m != nil {
		if len(m.Fields) == 0 {
			add("match.fields", "required: the row fields that identify an entity (e.g. [email])")
		}
		if _, err := transform.Normalizer(m.Normalize); err != nil {
			add("match.normalize", "%v", err)
		}
		if m.Policy != "" && m.Policy != MatchQuarantine && m.Policy != MatchMerge {
			add("match.policy", "%q is not %q or %q", m.Policy, MatchQuarantine, MatchMerge)
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

// destinationProblems checks the destination steps.
func (d Definition) destinationProblems() []error {
	var errs []error
	add := func(field, format string, args ...any) {
		errs = append(errs, fmt.Errorf("integration %q: %s: %s", d.Name, field, fmt.Sprintf(format, args...)))
	}
	if len(d.Destinations) > 0 && d.Destination.Kind() != "" {
		add("destination", "both destination and destinations are set; list every step under destinations")
		return errs
	}
	field := "destination"
	if len(d.Destinations) > 0 {
		field = "destinations"
	}
	seen := map[string]int{}
	steps := d.Steps()
	for i, s := range steps {
		f := field
		if len(d.Destinations) > 0 {
			f = fmt.Sprintf("%s[%d]", field, i)
		}
		switch {
		case s.Postgres == nil && s.HTTP == nil:
			add(f, "no destination set (want %s.postgres or %s.http)", f, f)
			continue
		case s.Postgres != nil && s.HTTP != nil:
			add(f, "both postgres and http are set; a step writes to one destination")
			continue
		case s.Postgres != nil:
			if err := s.Postgres.Validate(); err != nil {
				add(f+".postgres", "%v", err)
			}
			if s.Mode != "" || s.Identity != "" || s.Reversal != nil {
				add(f, "mode, identity and reversal belong to http destinations")
			}
		default:
			if err := s.HTTP.Validate(); err != nil {
				add(f+".http", "%v", err)
			}
			switch s.Mode {
			case ModeUpsert:
				if s.Reversal != nil {
					add(f+".reversal", "only a notify destination sends reversals (an upsert destination's objects are deleted or restored)")
				}
			case ModeNotify:
				if s.Reversal != nil && s.Reversal.Path == "" {
					add(f+".reversal.path", "required (e.g. \"/v1/notifications\")")
				}
			default:
				add(f+".mode", "%q is not %q or %q", s.Mode, ModeUpsert, ModeNotify)
			}
		}
		if !nameRE.MatchString(s.Name) {
			add(f+".name", "%q must be lower-case letters, digits and dashes, starting with a letter", s.Name)
		} else if j, dup := seen[s.Name]; dup {
			add(f+".name", "%q is also the name of step %d; name every step (name: billing)", s.Name, j)
		}
		seen[s.Name] = i
		for _, field := range sortedKeys(s.IDs) {
			from := s.IDs[field]
			j, ok := seen[from]
			switch {
			case !ok || j == i:
				add(f+".ids."+field, "%q is not an earlier step (ids come from the steps before this one)", from)
			case steps[j].HTTP == nil:
				add(f+".ids."+field, "step %q is a postgres destination: only http destinations give ids", from)
			}
		}
		if len(s.Mapping.Fields) > 0 {
			if err := s.Mapping.Validate(); err != nil {
				add(f+".mapping", "%v", err)
			}
		}
	}
	return errs
}

func sortedKeys(m map[string]string) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	return keys
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
