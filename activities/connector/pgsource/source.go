package pgsource

import (
	"context"
	"database/sql"
	"encoding/json"
	"fmt"
	"log/slog"
	"os"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/lib/pq"

	"github.com/tetherflow/tether/activities/connector"
	"github.com/tetherflow/tether/activities/lib/cursor"
	"github.com/tetherflow/tether/activities/lib/failure"
	"github.com/tetherflow/tether/activities/lib/postgres"
)

// Source reads pages of one integration from a PostgreSQL table. It is safe
// for concurrent use; the table's catalog entry is read once, by the first
// Fetch, and kept.
type Source struct {
	name     string
	cfg      Config // with defaults
	table    string // the table as SQL: "schema"."table"
	where    string // the DSN with its password redacted
	dsn      string // the resolved DSN (for change capture; never logged)
	password string // to scrub from driver messages

	db        *sql.DB
	ownDB     bool
	log       *slog.Logger
	lookupEnv func(string) (string, bool)

	mu   sync.Mutex
	prep *prepared // nil until the first Fetch succeeds in reading the catalog
}

// prepared is what the first Fetch learns and builds.
type prepared struct {
	info tableInfo
	q    queries
}

var _ connector.Source = (*Source)(nil)

// Option changes how New builds a Source.
type Option func(*Source)

// WithDB makes the Source read through db instead of opening its own pool
// (tests, or a pool shared with other code). Close then leaves db open; the
// DSN is still used in messages.
func WithDB(db *sql.DB) Option {
	return func(s *Source) {
		if db != nil {
			s.db = db
		}
	}
}

// WithLogger sets where pages and warnings about the table are logged
// (debug and warn level; never with the password). Default: discard.
func WithLogger(l *slog.Logger) Option {
	return func(s *Source) {
		if l != nil {
			s.log = l
		}
	}
}

// WithLookupEnv sets how Config.DSNEnv is resolved (default os.LookupEnv).
func WithLookupEnv(f func(string) (string, bool)) Option {
	return func(s *Source) {
		if f != nil {
			s.lookupEnv = f
		}
	}
}

// New validates cfg and builds the Source of the named integration. It
// opens a connection pool but does not connect: the first Fetch does, so a
// database that is down at start-up is a retryable Fetch error, not a
// failed start. Configuration errors are permanent failure.TypeConfig.
func New(name string, cfg Config, opts ...Option) (*Source, error) {
	if err := cfg.Validate(); err != nil {
		return nil, failure.Permanent(failure.TypeConfig, fmt.Errorf("postgres source %q: %w", name, err))
	}
	cfg = cfg.withDefaults()
	s := &Source{
		name:      name,
		cfg:       cfg,
		table:     qualifiedName(cfg),
		log:       slog.New(slog.DiscardHandler),
		lookupEnv: os.LookupEnv,
	}
	for _, o := range opts {
		o(s)
	}

	dsn, field := cfg.DSN, "dsn"
	if cfg.DSNEnv != "" {
		field = "dsn_env"
		v, ok := s.lookupEnv(cfg.DSNEnv)
		if !ok || v == "" {
			return nil, failure.Permanent(failure.TypeConfig,
				fmt.Errorf("postgres source %q: dsn_env: environment variable %s is not set", name, cfg.DSNEnv))
		}
		if err := checkDSN(v); err != nil {
			return nil, failure.Permanent(failure.TypeConfig,
				fmt.Errorf("postgres source %q: dsn_env: %s: %v", name, cfg.DSNEnv, err))
		}
		dsn = v
	}
	s.where, s.dsn = postgres.RedactDSN(dsn), dsn
	pcfg, err := pq.NewConfig(dsn)
	if err != nil {
		// The driver may quote the DSN it could not parse: show it redacted.
		msg := strings.ReplaceAll(err.Error(), dsn, s.where)
		return nil, failure.Permanent(failure.TypeConfig,
			fmt.Errorf("postgres source %q: %s: %s: %s", name, field, s.where, msg))
	}
	s.password = pcfg.Password

	if s.db == nil {
		conn, err := pq.NewConnectorConfig(pcfg)
		if err != nil {
			return nil, failure.Permanent(failure.TypeConfig,
				fmt.Errorf("postgres source %q: %s: %s: %s", name, field, s.where, s.scrub(err.Error())))
		}
		s.db = sql.OpenDB(conn)
		s.db.SetMaxOpenConns(cfg.MaxOpenConns)
		s.db.SetMaxIdleConns(cfg.MaxOpenConns)
		s.db.SetConnMaxIdleTime(5 * time.Minute)
		s.ownDB = true
	}
	return s, nil
}

// Close closes the Source's connection pool (not one given with WithDB).
func (s *Source) Close() error {
	if s.ownDB {
		return s.db.Close()
	}
	return nil
}

// Conn returns the Source's connection pool and its resolved DSN (change
// capture listens on a connection of its own). The DSN holds the password:
// never log it.
func (s *Source) Conn() (*sql.DB, string) { return s.db, s.dsn }

// Config returns the Source's configuration, with defaults.
func (s *Source) Config() Config { return s.cfg }

// Describe says what the Source reads, for logs: the table, the DSN
// without its password, and how reads are ordered.
func (s *Source) Describe() string {
	if s.cfg.Incremental() {
		return fmt.Sprintf("postgres %s on %s, incremental by (%s, %s)",
			s.table, s.where, s.cfg.CursorColumn, s.cfg.Key[0])
	}
	return fmt.Sprintf("postgres %s on %s, full read by key (%s)",
		s.table, s.where, strings.Join(s.cfg.Key, ", "))
}

// Capabilities: a PostgreSQL source filters by cursor when it has a cursor
// column, and its table's changes can be captured (package capture).
func (s *Source) Capabilities() connector.Capabilities {
	return connector.Capabilities{Kind: "postgres", Incremental: s.cfg.Incremental(), Capture: true}
}

// KeyColumns returns the key columns, in order.
func (s *Source) KeyColumns() []string { return slices.Clone(s.cfg.Key) }

// Fetch reads the page after req.Position (full reads) or after req.Since
// (incremental reads), in key order, in its own REPEATABLE READ READ ONLY
// transaction. Page.Done is set when the page holds fewer than req.Limit
// rows (default DefaultLimit). A full read given a checkpoint in req.Since
// fails: the integration is incremental, so cursor_column must be set.
// Errors are classified with package failure and name the table and the
// DSN without its password.
func (s *Source) Fetch(ctx context.Context, req connector.Request) (connector.Page, error) {
	p, err := s.prepare(ctx)
	if err != nil {
		return connector.Page{}, err
	}
	limit := req.Limit
	if limit <= 0 {
		limit = DefaultLimit
	}
	query, args, bound, err := s.plan(p, req)
	if err != nil {
		return connector.Page{}, err
	}
	args = append(args, limit)

	start := time.Now()
	records, positions, last, err := s.read(ctx, query, args, limit)
	if err != nil {
		if failure.IsPermanent(err) {
			// The table may have changed under the statements: read the
			// catalog again once someone has fixed it.
			s.forget(p)
		}
		return connector.Page{}, err
	}
	if s.cfg.Incremental() {
		if err := checkOrder(positions, bound); err != nil {
			return connector.Page{}, s.configError("%v", err)
		}
	}

	page := connector.Page{
		Records:     records,
		Next:        req.Position,
		Done:        len(records) < limit,
		RecordCount: len(records),
	}
	if len(records) > 0 {
		page.Next = cursor.Position{Token: last.encode()}
	}
	s.log.DebugContext(ctx, "fetched page", "integration", s.name, "table", s.table,
		"records", len(records), "done", page.Done, "elapsed", time.Since(start))
	return page, nil
}

// plan picks the statement and its position arguments for req. bound is
// the (cursor, key) the incremental read starts strictly after (zero when
// it starts at the beginning), for checkOrder.
func (s *Source) plan(p *prepared, req connector.Request) (query string, args []any, bound cursor.Checkpoint, err error) {
	incremental := s.cfg.Incremental()
	if !incremental && !req.Since.IsZero() {
		// The pipeline restarts incremental reads from Since with an empty
		// position; a full read would start over from the first key, page
		// after page.
		return "", nil, cursor.Checkpoint{}, s.configError("the integration reads incrementally (a checkpoint was given: cursor %q, key %q) but cursor_column is not set; set it to the column the integration's cursor_field names",
			req.Since.Cursor, req.Since.Key)
	}
	if req.Position.Token != "" {
		// Incremental reads resume from Since in the pipeline; a token, when
		// given, comes from a page read after Since and wins.
		t, err := decodeToken(req.Position.Token, len(s.cfg.Key), incremental)
		if err != nil {
			return "", nil, cursor.Checkpoint{}, s.configError("%v; run a full sync to start over", err)
		}
		if incremental {
			args = append(args, *t.Cursor)
			bound = cursor.Checkpoint{Cursor: *t.Cursor, Key: t.Key[0]}
		}
		for _, k := range t.Key {
			args = append(args, k)
		}
		return p.q.after, args, bound, nil
	}
	if !incremental || req.Since.Cursor == "" {
		return p.q.first, nil, cursor.Checkpoint{}, nil
	}
	if req.Since.Key == "" {
		// A starting cursor without a key (an initial cursor): every row at
		// or after it; the pipeline keeps rows sharing it.
		return p.q.from, []any{req.Since.Cursor}, req.Since, nil
	}
	return p.q.after, []any{req.Since.Cursor, req.Since.Key}, req.Since, nil
}

// read runs query in a REPEATABLE READ READ ONLY transaction and returns
// the records, the (cursor, key) of each row when incremental, and the
// position of the last row.
func (s *Source) read(ctx context.Context, query string, args []any, limit int) ([]json.RawMessage, []cursor.Checkpoint, token, error) {
	tx, err := s.db.BeginTx(ctx, &sql.TxOptions{Isolation: sql.LevelRepeatableRead, ReadOnly: true})
	if err != nil {
		return nil, nil, token{}, s.classify(ctx, err, "read")
	}
	defer tx.Rollback() //nolint:errcheck // after Commit it is a no-op; a failed read is already being reported

	rows, err := tx.QueryContext(ctx, query, args...)
	if err != nil {
		return nil, nil, token{}, s.classify(ctx, err, "read")
	}
	defer rows.Close()

	order := orderColumns(s.cfg)
	incremental := s.cfg.Incremental()
	raw := make([]sql.RawBytes, len(order))
	dest := make([]any, len(order)+1)
	for i := range raw {
		dest[i] = &raw[i]
	}
	lastVals := make([][]byte, len(order)) // reused: only the last row's values are kept
	capacity := min(limit, 10000)
	records := make([]json.RawMessage, 0, capacity)
	var positions []cursor.Checkpoint
	if incremental {
		positions = make([]cursor.Checkpoint, 0, capacity)
	}
	for rows.Next() {
		var rec []byte
		dest[len(order)] = &rec
		if err := rows.Scan(dest...); err != nil {
			return nil, nil, token{}, s.classify(ctx, err, "read")
		}
		for i, v := range raw {
			if v == nil {
				// Only a view or foreign table can get here: tables are
				// checked to have NOT NULL keys.
				return nil, nil, token{}, s.configError("column %q is NULL in a row: the key (and cursor) a read is ordered by must not be NULL", order[i])
			}
			lastVals[i] = append(lastVals[i][:0], v...)
		}
		records = append(records, rec)
		if incremental {
			positions = append(positions, cursor.Checkpoint{Cursor: string(raw[0]), Key: string(raw[1])})
		}
	}
	if err := rows.Err(); err != nil {
		return nil, nil, token{}, s.classify(ctx, err, "read")
	}
	if err := rows.Close(); err != nil {
		return nil, nil, token{}, s.classify(ctx, err, "read")
	}
	if err := tx.Commit(); err != nil {
		return nil, nil, token{}, s.classify(ctx, err, "read")
	}

	var last token
	vals := make([]string, len(lastVals))
	for i, v := range lastVals {
		vals[i] = string(v)
	}
	if incremental {
		last = token{Cursor: &vals[0], Key: vals[1:]}
	} else {
		last = token{Key: vals}
	}
	return records, positions, last, nil
}

// prepare reads the table's catalog entry once, checks the configuration
// against it and builds the statements.
func (s *Source) prepare(ctx context.Context) (*prepared, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.prep != nil {
		return s.prep, nil
	}
	info, found, err := readCatalog(ctx, s.db, s.table)
	if err != nil {
		return nil, s.classify(ctx, err, "describe table")
	}
	if !found {
		return nil, s.configError("table does not exist, or is not visible to the connection (check schema, table and the search_path)")
	}
	if err := s.check(info); err != nil {
		return nil, err
	}
	if c := info.columns[s.cfg.CursorColumn]; s.cfg.Incremental() && !c.notNull {
		s.log.WarnContext(ctx, "cursor column is nullable: rows whose cursor is NULL are not read by incremental syncs",
			"integration", s.name, "table", s.table, "cursor_column", c.name)
	}
	s.prep = &prepared{info: info, q: buildQueries(s.cfg, info)}
	return s.prep, nil
}

// forget drops the prepared statements p, if they are still the current ones.
func (s *Source) forget(p *prepared) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.prep == p {
		s.prep = nil
	}
}

// check reports, in one permanent error, every way the configuration does
// not fit the table: missing columns, a key that is nullable or not
// unique, a cursor or key type incremental reads cannot order by.
func (s *Source) check(info tableInfo) error {
	var problems []string
	var missing []string
	seen := map[string]bool{}
	need := append(append(slices.Clone(s.cfg.Key), s.cfg.Columns...), s.cfg.CursorColumn)
	for _, c := range need {
		if c == "" || seen[c] {
			continue
		}
		seen[c] = true
		if _, ok := info.columns[c]; !ok {
			missing = append(missing, fmt.Sprintf("%q", c))
		}
	}
	if len(missing) > 0 {
		problems = append(problems, fmt.Sprintf("no column %s in the table", strings.Join(missing, ", ")))
	}
	if len(missing) == 0 && info.checkable() {
		for _, k := range s.cfg.Key {
			if !info.columns[k].notNull {
				problems = append(problems, fmt.Sprintf("key: column %q is nullable; key columns must be NOT NULL", k))
			}
		}
		if !info.keyIsUnique(s.cfg.Key) {
			problems = append(problems, fmt.Sprintf("key: (%s) is not unique: no primary key or unique index covers only these columns",
				strings.Join(s.cfg.Key, ", ")))
		}
	}
	if len(missing) == 0 && s.cfg.Incremental() {
		cur := info.columns[s.cfg.CursorColumn]
		if _, ok := incrementalCategories[cur.category]; !ok {
			problems = append(problems, fmt.Sprintf("cursor_column: %q has type %s; want a number, date/time or string type",
				cur.name, cur.typ))
		}
		key := info.columns[s.cfg.Key[0]]
		if _, ok := incrementalCategories[key.category]; !ok && key.typ != "uuid" {
			problems = append(problems, fmt.Sprintf("key: %q has type %s; incremental reads want a number, date/time, string or uuid key",
				key.name, key.typ))
		}
	}
	if len(problems) == 0 {
		return nil
	}
	return s.configError("%s", strings.Join(problems, "; "))
}
