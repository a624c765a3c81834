// Package pgside is a PostgreSQL table as one side of a two-way
// integration (connector.Side): its change feed polled by an updated_at
// column, writes conditional on it, soft deletes by a deleted_at column.
package pgside

import (
	"context"
	"database/sql"
	"encoding/json"
	"errors"
	"fmt"
	"maps"
	"regexp"
	"slices"
	"strings"
	"time"

	"github.com/lib/pq"

	"github.com/tetherflow/tether/activities/connector"
	"github.com/tetherflow/tether/activities/lib/failure"
	"github.com/tetherflow/tether/activities/lib/postgres"
)

// Config is a table as one side of a two-way integration. Its change
// feed is polled by UpdatedAt (which every write to the table must set,
// as an application or a trigger does); a deletion is seen when it is a
// soft delete (DeletedAt set), since a deleted row leaves nothing to poll.
type Config struct {
	// Schema (optional) and Table name the table.
	Schema string `mapstructure:"schema" yaml:"schema" json:"schema,omitempty"`
	Table  string `mapstructure:"table" yaml:"table" json:"table"`
	// Key is the key column, text or uuid: a record created here for one
	// made on the other side gets a UUID derived from that one's key.
	Key string `mapstructure:"key" yaml:"key" json:"key"`
	// UpdatedAt is the timestamptz column of each row's last change.
	UpdatedAt string `mapstructure:"updated_at" yaml:"updated_at" json:"updated_at"`
	// DeletedAt, when set, is the timestamptz column of a soft delete:
	// rows with it set are deleted records, and a delete from the other
	// side sets it (tombstone) or deletes the row (propagate).
	DeletedAt string `mapstructure:"deleted_at" yaml:"deleted_at" json:"deleted_at,omitempty"`
	// Fields maps each shared field to its column.
	Fields map[string]string `mapstructure:"fields" yaml:"fields" json:"fields"`
	// Notify wakes the integration's cycle when the table changes: the
	// worker installs a statement trigger that sends a NOTIFY, and listens
	// (the feed stays what a cycle reads).
	Notify bool `mapstructure:"notify" yaml:"notify" json:"notify,omitempty"`
	// PageSize is how many rows the feed reads per query (default 500).
	PageSize int `mapstructure:"page_size" yaml:"page_size" json:"page_size,omitempty"`
}

// DefaultPageSize is a table side's rows per feed query.
const DefaultPageSize = 500

var ident = regexp.MustCompile(`^[A-Za-z_][A-Za-z0-9_]{0,62}$`)

// Validate says what is wrong with the side's settings.
func (p Config) Validate() error {
	var errs []error
	check := func(field, v string, required bool) {
		switch {
		case v == "" && required:
			errs = append(errs, fmt.Errorf("%s: is required", field))
		case v != "" && !ident.MatchString(v):
			errs = append(errs, fmt.Errorf("%s: %q is not a plain SQL identifier", field, v))
		}
	}
	check("schema", p.Schema, false)
	check("table", p.Table, true)
	check("key", p.Key, true)
	check("updated_at", p.UpdatedAt, true)
	check("deleted_at", p.DeletedAt, false)
	if p.PageSize < 0 {
		errs = append(errs, fmt.Errorf("page_size: %d must not be negative", p.PageSize))
	}
	if len(p.Fields) == 0 {
		errs = append(errs, errors.New("fields: map at least one shared field to a column"))
	}
	for _, f := range slices.Sorted(maps.Keys(p.Fields)) {
		check("fields."+f, p.Fields[f], true)
		if c := p.Fields[f]; c == p.Key || c == p.UpdatedAt || c == p.DeletedAt {
			errs = append(errs, fmt.Errorf("fields.%s: %q is the key, updated_at or deleted_at column, which tether keeps", f, c))
		}
	}
	return errors.Join(errs...)
}

// pgEndpoint reads and writes a Config.
type pgEndpoint struct {
	side   Config
	db     *sql.DB
	target string
	fields []string // shared fields, sorted
	page   int
}

// Factory opens tables of the worker's database db as sides
// (configuration: a Config).
func Factory(db *sql.DB) connector.SideFactory {
	return connector.SideFactoryOf("postgres side", func(_ connector.SideSpec, cfg Config) (connector.Side, error) {
		return Open(cfg, db)
	})
}

// Open opens side in db; a bad configuration is a permanent
// failure.TypeConfig error naming its setting.
func Open(side Config, db *sql.DB) (connector.Side, error) {
	if err := side.Validate(); err != nil {
		return nil, failure.Permanent(failure.TypeConfig, err)
	}
	target := pq.QuoteIdentifier(side.Table)
	if side.Schema != "" {
		target = pq.QuoteIdentifier(side.Schema) + "." + target
	}
	page := side.PageSize
	if page == 0 {
		page = DefaultPageSize
	}
	return &pgEndpoint{side: side, db: db, target: target, fields: slices.Sorted(maps.Keys(side.Fields)), page: page}, nil
}

func q(s string) string { return pq.QuoteIdentifier(s) }

// version is how a row's updated_at reads as a version: exact to the
// microsecond.
func version(t time.Time) string { return t.UTC().Format("2006-01-02T15:04:05.000000Z07:00") }

func (e *pgEndpoint) Changes(ctx context.Context, after, afterKey string, fn func([]connector.Change) error) error {
	s := e.side
	var obj []string
	for _, f := range e.fields {
		obj = append(obj, pq.QuoteLiteral(f), q(s.Fields[f]))
	}
	deleted := "false"
	if s.DeletedAt != "" {
		deleted = q(s.DeletedAt) + " IS NOT NULL"
	}
	stmt := fmt.Sprintf(`SELECT %s::text, %s, %s, jsonb_build_object(%s) FROM %s
WHERE %s IS NOT NULL AND (%s, %s::text) > ($1::timestamptz, $2) ORDER BY %s, %s::text LIMIT %d`,
		q(s.Key), q(s.UpdatedAt), deleted, strings.Join(obj, ", "), e.target,
		q(s.UpdatedAt), q(s.UpdatedAt), q(s.Key), q(s.UpdatedAt), q(s.Key), e.page)
	cur := time.Time{}
	if after != "" {
		t, err := time.Parse(time.RFC3339Nano, after)
		if err != nil {
			return fmt.Errorf("cursor %q of %s: %w", after, e.target, err)
		}
		cur = t
	}
	key := afterKey
	for {
		rows, err := e.db.QueryContext(ctx, stmt, cur, key)
		if err != nil {
			return postgres.Classify(err, "read the changes of "+e.target)
		}
		var page []connector.Change
		for rows.Next() {
			var c connector.Change
			var doc []byte
			if err := rows.Scan(&c.Key, &c.At, &c.Deleted, &doc); err != nil {
				rows.Close()
				return postgres.Classify(err, "read the changes of "+e.target)
			}
			if !c.Deleted {
				if err := json.Unmarshal(doc, &c.Record); err != nil {
					rows.Close()
					return fmt.Errorf("row %s of %s: %w", c.Key, e.target, err)
				}
			}
			c.Version, c.Cursor = version(c.At), c.At.UTC().Format(time.RFC3339Nano)
			page = append(page, c)
		}
		rows.Close()
		if err := rows.Err(); err != nil {
			return postgres.Classify(err, "read the changes of "+e.target)
		}
		if len(page) > 0 {
			if err := fn(page); err != nil {
				return err
			}
		}
		if len(page) < e.page {
			return nil
		}
		cur, key = page[len(page)-1].At, page[len(page)-1].Key
	}
}

// Put updates the row whose key is key when its updated_at is still
// expect, or inserts it (for a create, key is derived by the caller: idem
// is that key); the row's updated_at becomes now().
func (e *pgEndpoint) Put(ctx context.Context, key string, rec connector.Row, expect, idem string) (connector.Written, error) {
	s := e.side
	args := []any{}
	arg := func(v any) string { args = append(args, v); return fmt.Sprintf("$%d", len(args)) }
	var cols, vals, sets []string
	for _, f := range e.fields {
		v, err := sqlValue(rec[f])
		if err != nil {
			return connector.Written{}, fmt.Errorf("field %s: %w", f, err)
		}
		p := arg(v)
		cols, vals, sets = append(cols, q(s.Fields[f])), append(vals, p), append(sets, q(s.Fields[f])+" = "+p)
	}
	deleted := ""
	if s.DeletedAt != "" {
		deleted = ", " + q(s.DeletedAt) + " = NULL"
	}
	var at time.Time
	var err error
	if key == "" {
		key = idem
		k := arg(key)
		err = e.db.QueryRowContext(ctx, fmt.Sprintf(`INSERT INTO %s (%s, %s, %s) VALUES (%s, %s, now())
ON CONFLICT (%s) DO NOTHING RETURNING %s`, e.target, q(s.Key), strings.Join(cols, ", "), q(s.UpdatedAt), k, strings.Join(vals, ", "),
			q(s.Key), q(s.UpdatedAt)), args...).Scan(&at)
		if errors.Is(err, sql.ErrNoRows) {
			return connector.Written{}, connector.ErrChanged // made by an earlier attempt: its row is in the feed
		}
	} else {
		k, v := arg(key), arg(expect)
		err = e.db.QueryRowContext(ctx, fmt.Sprintf(`UPDATE %s SET %s, %s = now()%s WHERE %s = %s AND %s = %s::timestamptz RETURNING %s`,
			e.target, strings.Join(sets, ", "), q(s.UpdatedAt), deleted, q(s.Key), k, q(s.UpdatedAt), v, q(s.UpdatedAt)), args...).Scan(&at)
		if errors.Is(err, sql.ErrNoRows) {
			return connector.Written{}, connector.ErrChanged
		}
	}
	if err != nil {
		return connector.Written{}, postgres.Classify(err, "write "+e.target)
	}
	return connector.Written{Key: key, Version: version(at), At: at}, nil
}

// Delete deletes the row, or sets its DeletedAt (a soft delete), when its
// updated_at is still expect.
func (e *pgEndpoint) Delete(ctx context.Context, key, expect string) error {
	s := e.side
	stmt := fmt.Sprintf(`DELETE FROM %s WHERE %s = $1 AND %s = $2::timestamptz`, e.target, q(s.Key), q(s.UpdatedAt))
	if s.DeletedAt != "" {
		stmt = fmt.Sprintf(`UPDATE %s SET %s = now(), %s = now() WHERE %s = $1 AND %s = $2::timestamptz`,
			e.target, q(s.DeletedAt), q(s.UpdatedAt), q(s.Key), q(s.UpdatedAt))
	}
	res, err := e.db.ExecContext(ctx, stmt, key, expect)
	if err != nil {
		return postgres.Classify(err, "delete from "+e.target)
	}
	if n, _ := res.RowsAffected(); n == 0 {
		// Refused, or gone already (a soft-deleted row is gone too).
		live := ""
		if s.DeletedAt != "" {
			live = " AND " + q(s.DeletedAt) + " IS NULL"
		}
		var exists bool
		if err := e.db.QueryRowContext(ctx, fmt.Sprintf(`SELECT EXISTS (SELECT 1 FROM %s WHERE %s = $1%s)`, e.target, q(s.Key), live), key).Scan(&exists); err != nil {
			return postgres.Classify(err, "delete from "+e.target)
		}
		if exists {
			return connector.ErrChanged
		}
	}
	return nil
}

// sqlValue is a shared field's value as a query argument: objects and
// arrays as JSON text.
func sqlValue(v any) (any, error) {
	switch x := v.(type) {
	case map[string]any, []any:
		b, err := json.Marshal(x)
		return string(b), err
	case json.Number:
		return string(x), nil
	}
	return v, nil
}
