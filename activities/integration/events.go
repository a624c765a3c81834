package integration

import (
	"fmt"
)

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
// integration; MaxEventShards bounds it. Few shards batch better: the
// receiver records the deliveries that arrive for a shard meanwhile with
// one signal, and a busy shard's next workflow task comes back with the
// completion of its last instead of through the task queue. On a 2-core
// machine one shard applied 100 events/s with p50 14 ms (4 shards: 30 ms)
// and took 1,000/s with accept p99 25 ms (4 shards: 61 ms); 4 shards
// kept up better at 2,000/s. Raise it when one shard's applies cannot keep
// up, or to spread the applies over several workers.
const (
	DefaultEventShards = 1
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
