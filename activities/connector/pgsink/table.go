package pgsink

import (
	"errors"
	"fmt"
	"maps"
	"regexp"
	"slices"
	"strings"
)

// Column types a destination column may have. The sink converts each
// incoming value to its column's type before it reaches PostgreSQL.
const (
	// TypeText is text: strings, and numbers or booleans as written.
	TypeText = "text"
	// TypeInteger is a 32-bit integer.
	TypeInteger = "integer"
	// TypeBigint is a 64-bit integer.
	TypeBigint = "bigint"
	// TypeNumeric is an exact decimal, kept as written.
	TypeNumeric = "numeric"
	// TypeDoublePrecision is a 64-bit float.
	TypeDoublePrecision = "double precision"
	// TypeBoolean is true or false.
	TypeBoolean = "boolean"
	// TypeTimestamptz is an instant: RFC 3339 with a time zone, or time.Time.
	TypeTimestamptz = "timestamptz"
	// TypeDate is a calendar date: YYYY-MM-DD.
	TypeDate = "date"
	// TypeUUID is a UUID, stored in canonical form.
	TypeUUID = "uuid"
	// TypeJSONB is any JSON value (objects, arrays, scalars).
	TypeJSONB = "jsonb"
	// TypeTextArray is an array of text, from a JSON array of scalars.
	TypeTextArray = "text[]"
)

// BeforeImagesTable is the table, beside each target table, that keeps the
// before-images of atomic runs.
const BeforeImagesTable = "tether_before_images"

// identifierPattern is what a schema, table or column name must look like:
// a plain SQL identifier PostgreSQL keeps whole (at most 63 bytes).
const identifierPattern = `^[A-Za-z_][A-Za-z0-9_]{0,62}$`

// Column is one column of a destination table.
type Column struct {
	// Name is the column's name (case-sensitive: it is always quoted).
	Name string `mapstructure:"name" yaml:"name" json:"name"`
	// Type is one of the Type* constants, e.g. "bigint" or "text[]".
	Type string `mapstructure:"type" yaml:"type" json:"type"`
	// NotNull makes a NULL value in this column a rejected row, and the
	// column NOT NULL when the sink creates the table.
	NotNull bool `mapstructure:"not_null" yaml:"not_null" json:"not_null"`
}

// Table describes a destination table: where it is, its columns, the natural
// key rows are matched on, and the column that orders versions of a row.
type Table struct {
	// Schema is the table's schema; empty means the connection's search_path.
	Schema string `mapstructure:"schema" yaml:"schema" json:"schema"`
	// Name is the table's name.
	Name string `mapstructure:"name" yaml:"name" json:"name"`
	// Columns are the columns the sink writes, in order.
	Columns []Column `mapstructure:"columns" yaml:"columns" json:"columns"`
	// Key lists the natural key columns; it is the primary key when the sink
	// creates the table, and needs a unique index otherwise.
	Key []string `mapstructure:"key" yaml:"key" json:"key"`
	// VersionColumn, when set, names the column ordering versions of a row:
	// an incoming row older than the stored one, or without a version when
	// the stored one has one, is skipped and counted Stale. Equal versions
	// may update.
	VersionColumn string `mapstructure:"version_column" yaml:"version_column" json:"version_column"`
	// OnErase is what an erasure (tether erase) does to the subject's row:
	// EraseDelete (the default) deletes it; EraseAnonymise keeps it (rows
	// of other tables may refer to it) with every column but the key and
	// the version set to its Anonymise value, or NULL.
	OnErase string `mapstructure:"on_erase" yaml:"on_erase" json:"on_erase,omitempty"`
	// Anonymise gives, per column, the value an anonymised row keeps (as
	// text, cast to the column's type); a NOT NULL column needs one.
	Anonymise map[string]string `mapstructure:"anonymise" yaml:"anonymise" json:"anonymise,omitempty"`
}

// What an erasure does to a row (Table.OnErase).
const (
	EraseDelete    = "delete"
	EraseAnonymise = "anonymise"
)

// allowedTypes is the set of column types the sink can convert values to.
func allowedTypes() []string {
	return []string{TypeText, TypeInteger, TypeBigint, TypeNumeric, TypeDoublePrecision,
		TypeBoolean, TypeTimestamptz, TypeDate, TypeUUID, TypeJSONB, TypeTextArray}
}

// isAllowedType reports whether typ is in the allow-list.
func isAllowedType(typ string) bool {
	for _, a := range allowedTypes() {
		if typ == a {
			return true
		}
	}
	return false
}

// Validate reports every problem with the table definition at once, each
// naming the field at fault (as spelled in YAML), so a bad integration stops
// the worker before any SQL is built from it.
func (t Table) Validate() error {
	ident := regexp.MustCompile(identifierPattern)
	var errs []error
	bad := func(field, format string, args ...any) {
		errs = append(errs, fmt.Errorf("%s: "+format, append([]any{field}, args...)...))
	}
	checkIdent := func(field, v string) bool {
		if !ident.MatchString(v) {
			if v == "" {
				bad(field, "is required")
			} else {
				bad(field, "%q is not a valid identifier (want %s)", v, identifierPattern)
			}
			return false
		}
		return true
	}

	if t.Schema != "" {
		checkIdent("schema", t.Schema)
	}
	if checkIdent("name", t.Name) && t.Name == BeforeImagesTable {
		bad("name", "%q is reserved for the sink's before-images", t.Name)
	}
	if t.Name == SeenKeysTable {
		bad("name", "%q is reserved for the keys a refresh has seen", t.Name)
	}

	if len(t.Columns) == 0 {
		bad("columns", "at least one column is required")
	}
	declared := make(map[string]bool, len(t.Columns))
	for i, c := range t.Columns {
		field := fmt.Sprintf("columns[%d]", i)
		if checkIdent(field+".name", c.Name) {
			if declared[c.Name] {
				bad(field+".name", "duplicate column %q", c.Name)
			}
			declared[c.Name] = true
		}
		if !isAllowedType(c.Type) {
			bad(field+".type", "%q is not a supported type (want one of %s)", c.Type, strings.Join(allowedTypes(), ", "))
		}
	}

	if len(t.Key) == 0 {
		bad("key", "at least one key column is required")
	}
	inKey := make(map[string]bool, len(t.Key))
	for i, k := range t.Key {
		field := fmt.Sprintf("key[%d]", i)
		switch {
		case !declared[k]:
			bad(field, "%q is not a declared column", k)
		case inKey[k]:
			bad(field, "duplicate key column %q", k)
		}
		inKey[k] = true
	}

	if v := t.VersionColumn; v != "" {
		switch {
		case !declared[v]:
			bad("version_column", "%q is not a declared column", v)
		case inKey[v]:
			bad("version_column", "%q is a key column; a version must be a non-key column", v)
		}
	}
	switch t.OnErase {
	case "", EraseDelete:
		if len(t.Anonymise) > 0 {
			bad("anonymise", "is used only with on_erase: %s", EraseAnonymise)
		}
	case EraseAnonymise:
		for _, name := range slices.Sorted(maps.Keys(t.Anonymise)) {
			switch {
			case !declared[name]:
				bad("anonymise."+name, "%q is not a declared column", name)
			case inKey[name] || name == t.VersionColumn:
				bad("anonymise."+name, "%q is the key or the version: an anonymised row keeps them", name)
			}
		}
		for _, c := range t.Columns {
			if _, ok := t.Anonymise[c.Name]; c.NotNull && !ok && !inKey[c.Name] && c.Name != t.VersionColumn {
				bad("anonymise", "column %q is NOT NULL: give the value an anonymised row keeps (anonymise: {%s: ...})", c.Name, c.Name)
			}
		}
	default:
		bad("on_erase", "%q is not one of %s, %s", t.OnErase, EraseDelete, EraseAnonymise)
	}
	if len(errs) == 0 {
		return nil
	}
	prefix := "table"
	if t.Name != "" {
		prefix = fmt.Sprintf("table %q", t.Name)
	}
	return fmt.Errorf("%s: %w", prefix, errors.Join(errs...))
}

// HasColumn reports whether name is a declared column.
func (t Table) HasColumn(name string) bool {
	_, ok := t.column(name)
	return ok
}

// column returns the declared column named name.
func (t Table) column(name string) (Column, bool) {
	for _, c := range t.Columns {
		if c.Name == name {
			return c, true
		}
	}
	return Column{}, false
}
