// Package integration defines what an integration is: a source, a JSON
// Schema, a transformation, a destination, a key, a cursor, and the run's
// policies (atomicity, invalid threshold, batch size). An integration is
// plain data plus optional Go functions; workers register the ones they run
// explicitly, in a Registry.
package integration

import (
	"github.com/tetherflow/tether/activities/connector/httpsource"
	"github.com/tetherflow/tether/activities/connector/pgsource"
	"github.com/tetherflow/tether/activities/lib/mapping"
)

// Short-read policies (Definition.ShortRead).
const (
	ShortReadFail = "fail"
	ShortReadWarn = "warn"
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
	Mapping mapping.Mapping
	// Transform is any Go function of a record, run after Mapping (or alone).
	Transform mapping.Func

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
	// ShortRead says what a read that ends with fewer records than the
	// source announced (an X-Total-Count header, a total in the body) does:
	// ShortReadFail (the default) fails the run, ShortReadWarn completes it
	// with a warning. Either way it is logged with both numbers.
	ShortRead string
	// BatchSize is the page size asked of the source and the upsert batch.
	BatchSize int
	// PagesInFlight is how many pages may be between fetch and apply.
	PagesInFlight int

	// Schedules run the integration periodically, as Temporal Schedules
	// the worker keeps in step with this list (see workers/schedules).
	Schedules []Schedule
	// Reconcile sets how a reconciliation repairs what it finds; the zero
	// value repairs missing and changed records and only reports extras.
	Reconcile Reconcile
	// Events sets how change events (webhooks, change capture) are
	// applied; the zero value deletes the rows of deleted entities.
	Events Events
}

// Source says where records come from: exactly one kind is set.
type Source struct {
	HTTP     *httpsource.Config `mapstructure:"http" yaml:"http" json:"http,omitempty"`
	Postgres *pgsource.Config   `mapstructure:"postgres" yaml:"postgres" json:"postgres,omitempty"`
	// Connector reads with a connector the worker registered besides the
	// shipped ones (docs/connectors.md).
	Connector *Connector `mapstructure:"connector" yaml:"connector" json:"connector,omitempty"`
}

// Connector names a connector registered in the worker's
// connector.Registry beyond the shipped ones, and its configuration, which
// the connector's factory gets as it is: the Go value a Go definition
// gives, or, from an integration file, a map[string]any.
type Connector struct {
	Kind   string `mapstructure:"kind" yaml:"kind" json:"kind"`
	Config any    `mapstructure:"config" yaml:"config" json:"config,omitempty"`
}

// Spec returns the source's connector kind and the configuration its
// factory opens (connector.Registry).
func (s Source) Spec() (kind string, cfg any) {
	switch {
	case s.HTTP != nil:
		return "http", *s.HTTP
	case s.Postgres != nil:
		return "postgres", *s.Postgres
	case s.Connector != nil:
		return s.Connector.Kind, s.Connector.Config
	}
	return "", nil
}

// kinds counts the kinds set.
func (s Source) kinds() int { return count(s.HTTP != nil, s.Postgres != nil, s.Connector != nil) }

func count(set ...bool) int {
	n := 0
	for _, b := range set {
		if b {
			n++
		}
	}
	return n
}

// Match detects duplicate records: two records with different keys whose
// Fields, normalised, are equal describe the same entity.
type Match struct {
	// Fields are row fields (after the mapping), e.g. ["email"]; a record
	// matches another when every one of them is equal. A record with any
	// of them empty is never a duplicate.
	Fields []string `mapstructure:"fields" yaml:"fields" json:"fields"`
	// Normalize lists the normalisers applied to every value before it is
	// compared (as mapping.Field's; default trim then lower).
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

// Normalize fills defaults.
func (d Definition) Normalize() Definition {
	if d.InvalidThreshold == 0 {
		d.InvalidThreshold = DefaultInvalidThreshold
	}
	if d.ShortRead == "" {
		d.ShortRead = ShortReadFail
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
