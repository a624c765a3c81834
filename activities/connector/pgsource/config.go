package pgsource

import (
	"errors"
	"fmt"
	"net/url"
	"regexp"
	"strings"

	"github.com/tetherflow/tether/activities/lib/postgres"
)

// Defaults applied by New to every key left at its zero value.
const (
	// DefaultMaxOpenConns bounds the connections one Source opens.
	DefaultMaxOpenConns = 4
	// DefaultLimit is the page size used when a Request asks for none.
	DefaultLimit = 1000
)

// IdentifierPattern is what a schema, table or column name must look like:
// a plain SQL identifier PostgreSQL keeps whole (at most 63 bytes). Names
// are always quoted in SQL, so they are case-sensitive. (The same rule as
// pgsink's destination tables.)
const IdentifierPattern = `^[A-Za-z_][A-Za-z0-9_]{0,62}$`

// envNamePattern is what dsn_env must look like.
const envNamePattern = `^[A-Za-z_][A-Za-z0-9_]*$`

var (
	identRE   = regexp.MustCompile(IdentifierPattern)
	envNameRE = regexp.MustCompile(envNamePattern)
)

// Config describes one PostgreSQL source: where the database is, which
// table to read, the key that orders a full read and, for incremental
// reads, the column that says when a row last changed.
type Config struct {
	// DSN is the connection string (URL or key=value form). Set DSN or
	// DSNEnv, not both. Its password never appears in logs or errors.
	DSN string `mapstructure:"dsn" yaml:"dsn" json:"dsn"`
	// DSNEnv names an environment variable that holds the connection
	// string, so the secret stays out of the integration's file.
	DSNEnv string `mapstructure:"dsn_env" yaml:"dsn_env" json:"dsn_env"`
	// Schema is the table's schema; empty means the connection's search_path.
	Schema string `mapstructure:"schema" yaml:"schema" json:"schema"`
	// Table is the table (or view) to read.
	Table string `mapstructure:"table" yaml:"table" json:"table"`
	// Columns are the columns each record holds; empty means every column.
	// When set, it must include every key column and the cursor column.
	Columns []string `mapstructure:"columns" yaml:"columns" json:"columns"`
	// Key lists the columns that identify a row. They must be NOT NULL and
	// unique (a primary key or unique index on them, or on some of them):
	// reads are ordered and resumed by them. Incremental reads need exactly
	// one key column.
	Key []string `mapstructure:"key" yaml:"key" json:"key"`
	// CursorColumn, when set, makes reads incremental: rows are read in
	// (cursor, key) order strictly after the pipeline's checkpoint. Use a
	// column every change moves forward, such as updated_at (timestamptz,
	// timestamp, date, or a number). Rows whose cursor is NULL are never
	// read incrementally.
	CursorColumn string `mapstructure:"cursor_column" yaml:"cursor_column" json:"cursor_column"`
	// Where is an extra SQL condition rows must meet ("deleted_at IS NULL").
	// It is trusted operator input, pasted into the query as written: it may
	// name the table's columns bare or as t.column. It runs in a read-only
	// transaction.
	Where string `mapstructure:"where" yaml:"where" json:"where"`
	// MaxOpenConns bounds the connections the Source opens (default 4).
	MaxOpenConns int `mapstructure:"max_open_conns" yaml:"max_open_conns" json:"max_open_conns"`
}

// ValidIdentifier reports whether s is a plain SQL identifier
// (IdentifierPattern).
func ValidIdentifier(s string) bool { return identRE.MatchString(s) }

// Incremental reports whether c reads incrementally (CursorColumn is set).
func (c Config) Incremental() bool { return c.CursorColumn != "" }

// Validate reports every problem in c at once, each naming its field as
// spelled in YAML. It does not read the environment or connect.
func (c Config) Validate() error {
	var errs configProblems
	errs = append(errs, c.dsnProblems()...)
	errs = append(errs, c.tableProblems()...)
	errs = append(errs, c.keyProblems()...)
	errs = append(errs, c.columnProblems()...)
	if c.MaxOpenConns < 0 {
		errs.add("max_open_conns", "must not be negative, got %d", c.MaxOpenConns)
	}
	return errors.Join(errs...)
}

// configProblems collects what is wrong with a config, each problem naming
// its field.
type configProblems []error

func (p *configProblems) add(field, format string, args ...any) {
	*p = append(*p, fmt.Errorf("%s: %s", field, fmt.Sprintf(format, args...)))
}

// identifier reports v, the value of field, unless it is a valid
// identifier, and says whether it is.
func (p *configProblems) identifier(field, v string) bool {
	if identRE.MatchString(v) {
		return true
	}
	if v == "" {
		p.add(field, "is required")
	} else {
		p.add(field, "%q is not a valid identifier (want %s)", v, IdentifierPattern)
	}
	return false
}

// dsnProblems checks that exactly one of dsn and dsn_env is set, and well.
func (c Config) dsnProblems() configProblems {
	var errs configProblems
	switch {
	case c.DSN == "" && c.DSNEnv == "":
		errs.add("dsn", "one of dsn or dsn_env is required")
	case c.DSN != "" && c.DSNEnv != "":
		errs.add("dsn", "set only one of dsn and dsn_env")
	case c.DSN != "":
		if err := checkDSN(c.DSN); err != nil {
			errs.add("dsn", "%v", err)
		}
	default:
		if !envNameRE.MatchString(c.DSNEnv) {
			errs.add("dsn_env", "%q is not an environment variable name (want %s)", c.DSNEnv, envNamePattern)
		}
	}
	return errs
}

// tableProblems checks the names of the schema and the table.
func (c Config) tableProblems() configProblems {
	var errs configProblems
	if c.Schema != "" {
		errs.identifier("schema", c.Schema)
	}
	errs.identifier("table", c.Table)
	return errs
}

// keyProblems checks the key columns and the cursor column.
func (c Config) keyProblems() configProblems {
	var errs configProblems
	if len(c.Key) == 0 {
		errs.add("key", "at least one key column is required")
	}
	inKey := make(map[string]bool, len(c.Key))
	for i, k := range c.Key {
		field := fmt.Sprintf("key[%d]", i)
		if !errs.identifier(field, k) {
			continue
		}
		if inKey[k] {
			errs.add(field, "duplicate key column %q", k)
		}
		inKey[k] = true
	}
	if c.CursorColumn != "" {
		errs.identifier("cursor_column", c.CursorColumn)
		if len(c.Key) > 1 {
			errs.add("key", "incremental reads (cursor_column set) support exactly one key column, got %d (%s): the checkpoint holds one key value",
				len(c.Key), strings.Join(c.Key, ", "))
		}
	}
	return errs
}

// columnProblems checks the columns read, when listed: valid, distinct,
// and holding the key and cursor columns.
func (c Config) columnProblems() configProblems {
	var errs configProblems
	if len(c.Columns) == 0 {
		return errs
	}
	listed := make(map[string]bool, len(c.Columns))
	for i, col := range c.Columns {
		field := fmt.Sprintf("columns[%d]", i)
		if !errs.identifier(field, col) {
			continue
		}
		if listed[col] {
			errs.add(field, "duplicate column %q", col)
		}
		listed[col] = true
	}
	for _, k := range c.Key {
		if k != "" && !listed[k] {
			errs.add("columns", "must include key column %q (records need their key)", k)
		}
	}
	if c.CursorColumn != "" && !listed[c.CursorColumn] {
		errs.add("columns", "must include cursor_column %q (records need their cursor)", c.CursorColumn)
	}
	return errs
}

// withDefaults returns c with every unset key at its default.
func (c Config) withDefaults() Config {
	if c.MaxOpenConns == 0 {
		c.MaxOpenConns = DefaultMaxOpenConns
	}
	return c
}

// checkDSN reports a URL-form DSN that is not a postgres URL. Key=value
// DSNs are checked by the driver when New parses them.
func checkDSN(dsn string) error {
	if !strings.Contains(dsn, "://") {
		return nil
	}
	u, err := url.Parse(dsn)
	if err != nil {
		// url.Error quotes the whole DSN, password included: say less.
		return fmt.Errorf("%s is not a valid URL", postgres.RedactDSN(dsn))
	}
	if u.Scheme != "postgres" && u.Scheme != "postgresql" {
		return fmt.Errorf("scheme %q is not postgres or postgresql", u.Scheme)
	}
	return nil
}
