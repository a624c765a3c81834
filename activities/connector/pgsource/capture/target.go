package capture

import (
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"regexp"

	"github.com/lib/pq"

	"github.com/tetherflow/tether/activities/connector/pgsource"
)

// DefaultOutboxSchema is where outboxes and trigger functions live when
// Target.OutboxSchema is empty.
const DefaultOutboxSchema = "tether_capture"

// objectPrefix starts the name shared by an integration's trigger, trigger
// function and notification channel.
const objectPrefix = "tether_capture_"

// maxIdentLen is the longest identifier PostgreSQL keeps whole (NAMEDATALEN-1).
const maxIdentLen = 63

// integrationPattern is an integration's name as package integration
// spells it. Identifiers follow pgsource.IdentifierPattern; they are always
// quoted in SQL, so they are case-sensitive.
const integrationPattern = `^[a-z][a-z0-9-]{0,62}$`

var integrationRE = regexp.MustCompile(integrationPattern)

// Target names what to capture: one integration's source table, and where
// its outbox lives.
type Target struct {
	// Integration names the outbox table, the trigger, the trigger function
	// and the notification channel (lower-case letters, digits, dashes).
	Integration string `mapstructure:"integration" yaml:"integration" json:"integration"`
	// Schema is the source table's schema; empty means "public".
	Schema string `mapstructure:"schema" yaml:"schema" json:"schema"`
	// Table is the source table (a table or a partitioned table).
	Table string `mapstructure:"table" yaml:"table" json:"table"`
	// Key lists the columns that identify a row: NOT NULL, and a primary
	// key or unique index covers only them. An UPDATE that changes one of
	// them is captured as a delete of the old key and an upsert of the new.
	Key []string `mapstructure:"key" yaml:"key" json:"key"`
	// OutboxSchema is where the outbox table and the trigger function live
	// (default DefaultOutboxSchema). Install creates it when missing.
	OutboxSchema string `mapstructure:"outbox_schema" yaml:"outbox_schema" json:"outbox_schema"`
}

// Validate reports every problem in t at once, each naming its field as
// spelled in YAML. It does not connect.
func (t Target) Validate() error {
	var errs []error
	add := func(field, format string, args ...any) {
		errs = append(errs, fmt.Errorf("%s: %s", field, fmt.Sprintf(format, args...)))
	}
	ident := func(field, v string) bool {
		switch {
		case pgsource.ValidIdentifier(v):
			return true
		case v == "":
			add(field, "is required")
		default:
			add(field, "%q is not a valid identifier (want %s)", v, pgsource.IdentifierPattern)
		}
		return false
	}

	switch {
	case t.Integration == "":
		add("integration", "is required")
	case !integrationRE.MatchString(t.Integration):
		add("integration", "%q is not a valid integration name (want %s)", t.Integration, integrationPattern)
	}
	if t.Schema != "" {
		ident("schema", t.Schema)
	}
	ident("table", t.Table)
	if len(t.Key) == 0 {
		add("key", "at least one key column is required")
	}
	seen := make(map[string]bool, len(t.Key))
	for i, k := range t.Key {
		field := fmt.Sprintf("key[%d]", i)
		if !ident(field, k) {
			continue
		}
		if seen[k] {
			add(field, "duplicate key column %q", k)
		}
		seen[k] = true
	}
	if t.OutboxSchema != "" {
		ident("outbox_schema", t.OutboxSchema)
	}
	return errors.Join(errs...)
}

// names are the SQL names derived from a valid Target.
type names struct {
	schema       string // source table's schema, unquoted
	table        string // source table as SQL: "schema"."table"
	outboxSchema string // outbox schema, unquoted
	outbox       string // outbox table as SQL
	object       string // trigger, function and channel name, unquoted
	function     string // trigger function as SQL
}

// validated returns t's SQL names, or Validate's error as a permanent
// failure.TypeConfig error.
func (t Target) validated() (names, error) {
	if err := t.Validate(); err != nil {
		return names{}, configError("", fmt.Errorf("capture %q: %w", t.Integration, err))
	}
	return t.names(), nil
}

// names returns t's SQL names, defaults applied. t must be valid.
func (t Target) names() names {
	schema := t.Schema
	if schema == "" {
		schema = "public"
	}
	outboxSchema := t.OutboxSchema
	if outboxSchema == "" {
		outboxSchema = DefaultOutboxSchema
	}
	object := objectName(t.Integration)
	q := pq.QuoteIdentifier
	return names{
		schema:       schema,
		table:        q(schema) + "." + q(t.Table),
		outboxSchema: outboxSchema,
		outbox:       q(outboxSchema) + "." + q(t.Integration),
		object:       object,
		function:     q(outboxSchema) + "." + q(object),
	}
}

// objectName is objectPrefix + integration, cut to maxIdentLen bytes with a
// hash of the whole name at its end when longer, so every integration gets
// its own trigger, function and channel.
func objectName(integration string) string {
	name := objectPrefix + integration
	if len(name) <= maxIdentLen {
		return name
	}
	sum := sha256.Sum256([]byte(integration))
	suffix := "_" + hex.EncodeToString(sum[:4])
	return name[:maxIdentLen-len(suffix)] + suffix
}

// For is what change capture reads for an integration: its PostgreSQL
// source's table and key.
func For(integration string, cfg pgsource.Config) Target {
	return Target{Integration: integration, Schema: cfg.Schema, Table: cfg.Table, Key: cfg.Key}
}
