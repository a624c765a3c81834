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
	"slices"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/tetherflow/tether/activities/connector/httpsink"
	"github.com/tetherflow/tether/activities/connector/httpsource"
	"github.com/tetherflow/tether/activities/connector/pgsink"
	"github.com/tetherflow/tether/activities/connector/pgsource"
	"github.com/tetherflow/tether/activities/lib/mapping"
	"github.com/tetherflow/tether/activities/syncstep"
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

// Events is how an integration applies change events.
type Events struct {
	// Deletes is what a deletion does: DeletesDelete (default) removes the
	// row, DeletesTombstone sets TombstoneColumn, DeletesIgnore leaves the
	// row (and counts the event unchanged).
	Deletes string `mapstructure:"deletes" yaml:"deletes" json:"deletes,omitempty"`
	// TombstoneColumn is the timestamptz column DeletesTombstone sets, e.g.
	// "deleted_at"; a column of every destination table.
	TombstoneColumn string `mapstructure:"tombstone_column" yaml:"tombstone_column" json:"tombstone_column,omitempty"`
	// Shards is how many workflows apply the integration's webhook events
	// (default DefaultEventShards): every entity's events go to one of
	// them, picked by a hash of its key, and are applied in order there;
	// different shards apply in parallel.
	Shards int `mapstructure:"shards" yaml:"shards" json:"shards,omitempty"`
	// Capture captures the changes of a PostgreSQL source's table
	// (trigger-maintained outbox, LISTEN/NOTIFY) and applies them as they
	// commit; the worker installs the capture at start and removes it when
	// the integration is removed.
	Capture bool `mapstructure:"capture" yaml:"capture" json:"capture,omitempty"`
}

// DefaultEventShards is the default number of event workflows of an
// integration; MaxEventShards bounds it. Few shards batch better: on a
// 2-core machine at 100 events/s, 4 shards met the latency targets that 16
// missed (each batch costs a workflow task, and 16 shards got about one
// event per batch); raise it when one shard's applies cannot keep up.
const (
	DefaultEventShards = 4
	MaxEventShards     = 1024
)

// EventShards is the integration's number of event workflows.
func (d Definition) EventShards() int {
	if d.Events.Shards > 0 {
		return d.Events.Shards
	}
	return DefaultEventShards
}

// Deletion policies of events.
const (
	DeletesDelete    = "delete"
	DeletesTombstone = "tombstone"
	DeletesIgnore    = "ignore"
)

// Schedule kinds: what a schedule starts.
const (
	// ScheduleSync starts an incremental sync (SyncWorkflow).
	ScheduleSync = "sync"
	// ScheduleReconcile starts a reconciliation (ReconcileWorkflow).
	ScheduleReconcile = "reconcile"
	// ScheduleRefresh starts a batch refresh (SyncWorkflow with refresh).
	ScheduleRefresh = "refresh"
)

// Schedule is one periodic run of an integration. Set Cron or Every (or
// both: the schedule fires at the union of their times).
type Schedule struct {
	// Kind is ScheduleSync, ScheduleReconcile or ScheduleRefresh.
	Kind string `mapstructure:"kind" yaml:"kind" json:"kind"`
	// Cron lists cron expressions ("0 2 * * *", "@daily"), read in TimeZone.
	Cron []string `mapstructure:"cron" yaml:"cron" json:"cron,omitempty"`
	// Every is a fixed interval ("15m"), Offset shifts its phase.
	Every  time.Duration `mapstructure:"every" yaml:"every" json:"every,omitempty"`
	Offset time.Duration `mapstructure:"offset" yaml:"offset" json:"offset,omitempty"`
	// TimeZone is an IANA name ("Europe/Paris"); default UTC.
	TimeZone string `mapstructure:"time_zone" yaml:"time_zone" json:"time_zone,omitempty"`
	// Jitter delays each run by a random time up to this much.
	Jitter time.Duration `mapstructure:"jitter" yaml:"jitter" json:"jitter,omitempty"`
	// CatchupWindow is how late a missed run (server down) may still
	// start; default one minute (Temporal's own default is a year).
	CatchupWindow time.Duration `mapstructure:"catchup_window" yaml:"catchup_window" json:"catchup_window,omitempty"`
	// PauseOnFailure pauses the schedule after a run fails (default true:
	// a failing integration stops being retried every period until a
	// person looks); set it false to keep going.
	PauseOnFailure *bool `mapstructure:"pause_on_failure" yaml:"pause_on_failure" json:"pause_on_failure,omitempty"`
	// Paused creates the schedule paused.
	Paused bool `mapstructure:"paused" yaml:"paused" json:"paused,omitempty"`
	// DryRun (reconcile only) reports drift without repairing anything.
	DryRun bool `mapstructure:"dry_run" yaml:"dry_run" json:"dry_run,omitempty"`
}

// Reconcile is how a reconciliation repairs the destination.
type Reconcile struct {
	// Extras is what happens to destination rows the source no longer has:
	// ExtrasReport (default), ExtrasDelete or ExtrasMark.
	Extras string `mapstructure:"extras" yaml:"extras" json:"extras,omitempty"`
	// MarkColumn is the timestamptz column ExtrasMark sets (soft delete),
	// e.g. "deleted_at"; it must be one of the destination's columns.
	MarkColumn string `mapstructure:"mark_column" yaml:"mark_column" json:"mark_column,omitempty"`
	// Chunks is how many hash chunks the key space is cut into for the
	// digest comparison (default: about 16 destination rows a chunk, a
	// power of two from 1024 to 65536).
	Chunks int `mapstructure:"chunks" yaml:"chunks" json:"chunks,omitempty"`
}

// Policies for extra destination rows (syncstep's, which workflows read).
const (
	ExtrasReport = syncstep.ExtrasReport
	ExtrasDelete = syncstep.ExtrasDelete
	ExtrasMark   = syncstep.ExtrasMark
)

// Source says where records come from: exactly one kind is set.
type Source struct {
	HTTP     *httpsource.Config `mapstructure:"http" yaml:"http" json:"http,omitempty"`
	Postgres *pgsource.Config   `mapstructure:"postgres" yaml:"postgres" json:"postgres,omitempty"`
}

// Connector returns the source's connector kind and the configuration
// its factory opens (connector.Registry).
func (s Source) Connector() (kind string, cfg any) {
	switch {
	case s.HTTP != nil:
		return "http", *s.HTTP
	case s.Postgres != nil:
		return "postgres", *s.Postgres
	}
	return "", nil
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
	Mapping mapping.Mapping `mapstructure:"mapping" yaml:"mapping" json:"mapping,omitempty"`
	// Reversal is the request a "notify" destination's compensation sends
	// for every notification it undoes: its body is {"reversal_of": id,
	// "record": row} and its idempotency key derives from the original's.
	Reversal *httpsink.Endpoint `mapstructure:"reversal" yaml:"reversal" json:"reversal,omitempty"`
}

// Destination modes (httpsink's).
const (
	ModeUpsert = httpsink.ModeUpsert
	ModeNotify = httpsink.ModeNotify
)

// Connector returns the destination's connector kind and the
// configuration its factory opens (connector.Registry): a PostgreSQL
// table, or an HTTP API with its mode, identity map and reversal.
func (d Destination) Connector() (kind string, cfg any) {
	switch {
	case d.Postgres != nil:
		return "postgres", *d.Postgres
	case d.HTTP != nil:
		return "http", httpsink.Destination{Name: d.Name, Config: *d.HTTP, Mode: d.Mode, Identity: d.Identity, Reversal: d.Reversal}
	}
	return "", nil
}

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
	errs = append(errs, d.scheduleProblems()...)
	if m := d.Match; m != nil {
		if len(m.Fields) == 0 {
			add("match.fields", "required: the row fields that identify an entity (e.g. [email])")
		}
		if _, err := mapping.Normalizer(m.Normalize); err != nil {
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

// Schedule defaults and limits (Temporal's own, where they are the
// server's).
const (
	// DefaultCatchupWindow is how late a run missed while the Temporal
	// server was down may still start, when a schedule does not say.
	DefaultCatchupWindow = time.Minute
	// MinCatchupWindow is the shortest catch-up window Temporal honours.
	MinCatchupWindow = 10 * time.Second
	// MinEvery is the shortest interval Temporal schedules.
	MinEvery = time.Second
	// MinReconcileChunks and MaxReconcileChunks bound Reconcile.Chunks.
	MinReconcileChunks = 16
	MaxReconcileChunks = 65536
)

// PausesOnFailure reports whether the schedule pauses after a failed run:
// PauseOnFailure, default true.
func (s Schedule) PausesOnFailure() bool { return s.PauseOnFailure == nil || *s.PauseOnFailure }

// Catchup is the schedule's catch-up window: CatchupWindow, default
// DefaultCatchupWindow.
func (s Schedule) Catchup() time.Duration {
	if s.CatchupWindow == 0 {
		return DefaultCatchupWindow
	}
	return s.CatchupWindow
}

// ValidateSchedules reports every problem of the schedules and the
// reconciliation policy (a part of Validate), each naming the field. It
// reads only Name, Schedules, Reconcile and the destinations' kinds and
// PostgreSQL tables, so an integration file can be checked before its
// secrets are read.
func (d Definition) ValidateSchedules() error { return errors.Join(d.scheduleProblems()...) }

// scheduleProblems checks the schedules and the reconciliation policy.
func (d Definition) scheduleProblems() []error {
	var errs []error
	add := func(field, format string, args ...any) {
		errs = append(errs, fmt.Errorf("integration %q: %s: %s", d.Name, field, fmt.Sprintf(format, args...)))
	}
	kinds := fmt.Sprintf("%q, %q or %q", ScheduleSync, ScheduleRefresh, ScheduleReconcile)
	seen := map[string]int{}
	for i, s := range d.Schedules {
		f := fmt.Sprintf("schedules[%d]", i)
		switch s.Kind {
		case ScheduleSync, ScheduleRefresh, ScheduleReconcile:
			if j, dup := seen[s.Kind]; dup {
				add(f+".kind", "a second %q schedule (schedules[%d] is one): an integration has at most one schedule per kind: give that one all the times (cron, every)", s.Kind, j)
			} else {
				seen[s.Kind] = i
			}
		case "":
			add(f+".kind", "required: %s", kinds)
		default:
			add(f+".kind", "%q is not %s", s.Kind, kinds)
		}
		if len(s.Cron) == 0 && s.Every == 0 {
			add(f, "no cron and no every: say when it runs, e.g. cron: [\"0 2 * * *\"] or every: 15m")
		}
		for j, c := range s.Cron {
			if err := checkCron(c); err != nil {
				add(fmt.Sprintf("%s.cron[%d]", f, j), "%q: %v", c, err)
			}
		}
		switch {
		case s.Every < 0:
			add(f+".every", "%v is negative", s.Every)
		case s.Every > 0 && s.Every < MinEvery:
			add(f+".every", "%v is shorter than %v, the shortest interval Temporal schedules", s.Every, MinEvery)
		}
		switch {
		case s.Offset < 0:
			add(f+".offset", "%v is negative", s.Offset)
		case s.Offset > 0 && s.Every == 0:
			add(f+".offset", "shifts the times of every, which is not set")
		case s.Offset > 0 && s.Offset >= s.Every:
			add(f+".offset", "%v is not shorter than every (%v)", s.Offset, s.Every)
		}
		switch tz := s.TimeZone; {
		case tz == "":
		case strings.EqualFold(tz, "Local"):
			add(f+".time_zone", "%q is whatever the Temporal server's machine uses: name the zone, e.g. Europe/Paris or UTC", tz)
		default:
			if _, err := time.LoadLocation(tz); err != nil {
				add(f+".time_zone", "%q is not an IANA time zone (e.g. Europe/Paris, America/New_York, UTC): %v", tz, err)
			}
		}
		if s.Jitter < 0 {
			add(f+".jitter", "%v is negative", s.Jitter)
		}
		switch {
		case s.CatchupWindow < 0:
			add(f+".catchup_window", "%v is negative", s.CatchupWindow)
		case s.CatchupWindow > 0 && s.CatchupWindow < MinCatchupWindow:
			add(f+".catchup_window", "%v is shorter than %v, the shortest catch-up window Temporal honours", s.CatchupWindow, MinCatchupWindow)
		}
		if s.DryRun && s.Kind != ScheduleReconcile {
			add(f+".dry_run", "only a reconcile schedule has a dry run; a %s writes what it reads", s.Kind)
		}
	}
	errs = append(errs, d.reconcileProblems()...)
	return append(errs, d.eventsProblems()...)
}

// eventsProblems checks the events policy.
func (d Definition) eventsProblems() []error {
	var errs []error
	add := func(field, format string, args ...any) {
		errs = append(errs, fmt.Errorf("integration %q: %s: %s", d.Name, field, fmt.Sprintf(format, args...)))
	}
	e := d.Events
	if e.Shards < 0 || e.Shards > MaxEventShards {
		add("events.shards", "%d is out of range 1..%d (0 = the default, %d)", e.Shards, MaxEventShards, DefaultEventShards)
	}
	if e.Capture {
		switch {
		case d.Source.Postgres == nil:
			add("events.capture", "needs a PostgreSQL source (source.postgres): change capture reads its table's changes")
		case d.Source.Postgres.Where != "":
			add("events.capture", "cannot be used with source.postgres.where: every change of the table is captured")
		}
		for _, st := range d.Steps() {
			if st.Postgres == nil && st.Kind() != "" {
				add("events.capture", "destination %q is %s: captured changes are applied to PostgreSQL destinations only", st.Name, st.Kind())
			}
		}
	}
	switch e.Deletes {
	case "", DeletesDelete, DeletesIgnore, DeletesTombstone:
	default:
		add("events.deletes", "%q is not %q, %q or %q", e.Deletes, DeletesDelete, DeletesTombstone, DeletesIgnore)
	}
	switch {
	case e.Deletes == DeletesTombstone && e.TombstoneColumn == "":
		add("events.tombstone_column", "required with deletes: %s: the timestamptz column set when the entity is deleted (e.g. deleted_at)", DeletesTombstone)
	case e.Deletes != DeletesTombstone && e.TombstoneColumn != "":
		add("events.tombstone_column", "is only used with deletes: %s (deletes is %q)", DeletesTombstone, orNone(e.Deletes))
	case e.TombstoneColumn != "":
		for _, st := range d.Steps() {
			if st.Postgres == nil {
				continue
			}
			if problem := markColumnProblem(*st.Postgres, e.TombstoneColumn); problem != "" {
				add("events.tombstone_column", "destination %q: %s", st.Name, problem)
			}
		}
	}
	return errs
}

// reconcileProblems checks the reconciliation policy.
func (d Definition) reconcileProblems() []error {
	var errs []error
	add := func(field, format string, args ...any) {
		errs = append(errs, fmt.Errorf("integration %q: %s: %s", d.Name, field, fmt.Sprintf(format, args...)))
	}
	r := d.Reconcile
	var table *pgsink.Table
	switch r.Extras {
	case "", ExtrasReport:
	case ExtrasDelete, ExtrasMark:
		steps := d.Steps()
		switch {
		case len(steps) != 1:
			add("reconcile.extras", "%q needs the integration to have exactly one destination, a PostgreSQL table; it has %d (a saga's extra rows are only reported: extras: %s)", r.Extras, len(steps), ExtrasReport)
		case steps[0].Postgres == nil:
			add("reconcile.extras", "%q needs the destination to be a PostgreSQL table; it is %s (extra records in an API are only reported: extras: %s)", r.Extras, orNone(steps[0].Kind()), ExtrasReport)
		default:
			table = steps[0].Postgres
		}
	default:
		add("reconcile.extras", "%q is not %q, %q or %q", r.Extras, ExtrasReport, ExtrasDelete, ExtrasMark)
	}
	switch {
	case r.Extras == ExtrasMark && r.MarkColumn == "":
		add("reconcile.mark_column", "required with extras: %s: the timestamptz column that marks a row the source no longer has (e.g. deleted_at)", ExtrasMark)
	case r.Extras != ExtrasMark && r.MarkColumn != "":
		add("reconcile.mark_column", "is only used with extras: %s (extras is %q)", ExtrasMark, orNone(r.Extras))
	case table != nil && r.Extras == ExtrasMark:
		if problem := markColumnProblem(*table, r.MarkColumn); problem != "" {
			add("reconcile.mark_column", "%s", problem)
		}
	}
	if r.Chunks != 0 && (r.Chunks < MinReconcileChunks || r.Chunks > MaxReconcileChunks) {
		add("reconcile.chunks", "%d is out of range %d..%d (0 = the default)", r.Chunks, MinReconcileChunks, MaxReconcileChunks)
	}
	return errs
}

// markColumnProblem says what is wrong with name as the mark column of t,
// or "".
func markColumnProblem(t pgsink.Table, name string) string {
	var names []string
	for _, c := range t.Columns {
		names = append(names, c.Name)
		if c.Name != name {
			continue
		}
		switch {
		case c.Type != pgsink.TypeTimestamptz:
			return fmt.Sprintf("%q is a %s column; the mark column is %s (it holds when the row was found missing)", name, c.Type, pgsink.TypeTimestamptz)
		case slices.Contains(t.Key, name):
			return fmt.Sprintf("%q is a key column of table %q; the mark column is a column of its own", name, t.Name)
		case name == t.VersionColumn:
			return fmt.Sprintf("%q is the version column of table %q; the mark column is a column of its own", name, t.Name)
		}
		return ""
	}
	return fmt.Sprintf("%q is not a column of table %q (its columns: %s); add {name: %s, type: %s}", name, t.Name, strings.Join(names, ", "), name, pgsink.TypeTimestamptz)
}

func orNone(s string) string {
	if s == "" {
		return "none"
	}
	return s
}

// cronShorthands are the @-forms Temporal reads, as five fields.
var cronShorthands = map[string]string{
	"@yearly":   "0 0 1 1 *",
	"@annually": "0 0 1 1 *",
	"@monthly":  "0 0 1 * *",
	"@weekly":   "0 0 * * 0",
	"@daily":    "0 0 * * *",
	"@midnight": "0 0 * * *",
	"@hourly":   "0 * * * *",
}

// cronField is one field of a cron expression: its range and, for months
// and days of the week, the names it takes (a name may be shortened to
// its first minName letters, as Temporal reads them).
type cronField struct {
	name     string
	min, max int
	names    []string
	minName  int
}

var (
	cronSecond = cronField{name: "second", max: 59}
	cronMinute = cronField{name: "minute", max: 59}
	cronHour   = cronField{name: "hour", max: 23}
	cronDay    = cronField{name: "day-of-month", min: 1, max: 31}
	cronMonth  = cronField{name: "month", min: 1, max: 12, minName: 3, names: []string{
		"january", "february", "march", "april", "may", "june", "july", "august", "september", "october", "november", "december"}}
	cronWeekday = cronField{name: "day-of-week", max: 7, minName: 2, names: []string{
		"sunday", "monday", "tuesday", "wednesday", "thursday", "friday", "saturday"}}
	cronYear = cronField{name: "year", min: 2000, max: 2100}
)

// checkCron checks a cron expression as Temporal's server reads one:
// 5 fields (minute hour day-of-month month day-of-week), 6 (… year) or 7
// (second … year), each a comma-separated list of *, N, N-M, with an
// optional /STEP; months and days of the week also by name (JAN, mon); or
// @yearly, @annually, @monthly, @weekly, @daily, @midnight, @hourly. The
// time zone and intervals have keys of their own (time_zone, every), so
// TZ=, CRON_TZ= and @every are refused with a pointer to them. The server
// checks again when the schedule is created.
func checkCron(expr string) error {
	c := strings.TrimSpace(expr)
	switch {
	case c == "":
		return errors.New("empty: want e.g. \"0 2 * * *\" (02:00 every day) or @daily")
	case strings.HasPrefix(c, "TZ=") || strings.HasPrefix(c, "CRON_TZ="):
		return errors.New("a time zone inside the expression: set the schedule's time_zone instead")
	case strings.HasPrefix(c, "@every"):
		return errors.New("@every: set the schedule's every (and offset) instead, e.g. every: 15m")
	case strings.Contains(c, "#"):
		return errors.New("a comment (#) is not read here: put it in the file as a YAML comment")
	case strings.HasPrefix(c, "@"):
		v, ok := cronShorthands[c]
		if !ok {
			return errors.New("unknown shorthand: want @yearly, @annually, @monthly, @weekly, @daily, @midnight or @hourly")
		}
		c = v
	}
	var fields []cronField
	parts := strings.Fields(c)
	switch len(parts) {
	case 5:
		fields = []cronField{cronMinute, cronHour, cronDay, cronMonth, cronWeekday}
	case 6:
		fields = []cronField{cronMinute, cronHour, cronDay, cronMonth, cronWeekday, cronYear}
	case 7:
		fields = []cronField{cronSecond, cronMinute, cronHour, cronDay, cronMonth, cronWeekday, cronYear}
	default:
		return fmt.Errorf("%d fields: want 5 (minute hour day-of-month month day-of-week), 6 (… year) or 7 (second minute … year)", len(parts))
	}
	for i, p := range parts {
		if err := fields[i].check(p); err != nil {
			return fmt.Errorf("%s %q: %v", fields[i].name, p, err)
		}
	}
	return nil
}

// check checks one field: a comma-separated list of ranges.
func (f cronField) check(s string) error {
	for _, item := range strings.Split(s, ",") {
		rng, step, hasStep := strings.Cut(item, "/")
		if hasStep {
			n, err := strconv.Atoi(step)
			if err != nil || n < 1 {
				return fmt.Errorf("step %q is not a whole number of at least 1", step)
			}
		}
		if rng == "*" {
			continue
		}
		lo, hi, isRange := strings.Cut(rng, "-")
		start, err := f.value(lo)
		if err != nil {
			return err
		}
		if !isRange {
			continue
		}
		end, err := f.value(hi)
		if err != nil {
			return err
		}
		if end < start {
			return fmt.Errorf("range %s ends before it starts", rng)
		}
	}
	return nil
}

// value reads one value of the field: a number in its range or a name.
func (f cronField) value(s string) (int, error) {
	if f.names != nil && len(s) >= f.minName {
		lower := strings.ToLower(s)
		for i, n := range f.names {
			if strings.HasPrefix(n, lower) {
				return i + f.min, nil
			}
		}
	}
	n, err := strconv.Atoi(s)
	if err != nil {
		if f.names != nil {
			return 0, fmt.Errorf("%q is not a number %d-%d or a name such as %s", s, f.min, f.max, f.names[0][:3])
		}
		return 0, fmt.Errorf("%q is not a number %d-%d (or *, N-M, */STEP, lists with commas)", s, f.min, f.max)
	}
	if n < f.min || n > f.max {
		return 0, fmt.Errorf("%d is out of range %d-%d", n, f.min, f.max)
	}
	return n, nil
}
