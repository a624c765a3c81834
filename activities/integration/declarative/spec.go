package declarative

import (
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"time"

	"github.com/tetherflow/tether/activities/connector/httpsink"
	"github.com/tetherflow/tether/activities/connector/httpsource"
	"github.com/tetherflow/tether/activities/connector/pgsink"
	"github.com/tetherflow/tether/activities/integration"
	"github.com/tetherflow/tether/activities/lib/httpclient"
)

// Spec is one integration file as written, decoded: serialisable, with
// secret references ({env: NAME}, {file: PATH}) intact and no secret in it,
// so it can be stored, compared and hashed. Resolve turns it into the
// integration.Definition a worker runs. Its JSON form has the file's keys.
type Spec struct {
	// File is the path the spec was loaded from; relative schema and secret
	// file paths are relative to its directory. It is not part of the JSON
	// form or the Hash: moving a file does not change the integration.
	File string `mapstructure:"-" json:"-"`
	// Warnings are what Load found doubtful but not wrong: a source path
	// the schema does not describe. Not part of the JSON form or the Hash.
	Warnings []*Problem `mapstructure:"-" json:"-"`

	Name        string `mapstructure:"name" json:"name"`
	Description string `mapstructure:"description" json:"description,omitempty"`
	Version     int    `mapstructure:"version" json:"version,omitempty"`

	Source Source `mapstructure:"source" json:"source"`
	// Schema is a file name in schemas/ ("contacts.schema.json"), or a path
	// relative to File when it has a slash ("./contacts.json").
	Schema string `mapstructure:"schema" json:"schema"`
	// SchemaSHA256 is the hex SHA-256 of the schema file given by path, set
	// by Load, so that Hash changes when that file does.
	SchemaSHA256 string `mapstructure:"-" json:"schema_sha256,omitempty"`

	KeyField      string `mapstructure:"key_field" json:"key_field"`
	CursorField   string `mapstructure:"cursor_field" json:"cursor_field,omitempty"`
	InitialCursor string `mapstructure:"initial_cursor" json:"initial_cursor,omitempty"`

	Mapping []Field `mapstructure:"mapping" json:"mapping"`
	// Destination is the one step of an integration with one destination;
	// Destinations lists the steps of a saga, in order. Exactly one is set.
	Destination  *Destination  `mapstructure:"destination" json:"destination,omitempty"`
	Destinations []Destination `mapstructure:"destinations" json:"destinations,omitempty"`
	// Match detects records describing an entity another record already
	// stands for (integration.Match, as written).
	Match *integration.Match `mapstructure:"match" json:"match,omitempty"`

	Atomic           bool    `mapstructure:"atomic" json:"atomic,omitempty"`
	InvalidThreshold float64 `mapstructure:"invalid_threshold" json:"invalid_threshold,omitempty"`
	ShortRead        string  `mapstructure:"short_read" json:"short_read,omitempty"`
	BatchSize        int     `mapstructure:"batch_size" json:"batch_size,omitempty"`
	PagesInFlight    int     `mapstructure:"pages_in_flight" json:"pages_in_flight,omitempty"`

	// Schedules run the integration on a timetable, as Temporal Schedules
	// (integration.Schedule as written: durations as "15m", "24h").
	Schedules []integration.Schedule `mapstructure:"schedules" json:"schedules,omitempty"`
	// Reconcile is how a reconciliation repairs the destination
	// (integration.Reconcile as written).
	Reconcile *integration.Reconcile `mapstructure:"reconcile" json:"reconcile,omitempty"`
	// Events is how change events (webhooks, change capture) are applied
	// (integration.Events as written).
	Events *integration.Events `mapstructure:"events" json:"events,omitempty"`
}

// Source says where records come from; exactly one kind is set.
type Source struct {
	HTTP     *HTTPSource     `mapstructure:"http" json:"http,omitempty"`
	Postgres *PostgresSource `mapstructure:"postgres" json:"postgres,omitempty"`
	// Connector is a connector the worker registered (integration.Connector
	// as written; its config a map).
	Connector *integration.Connector `mapstructure:"connector" json:"connector,omitempty"`
}

// PostgresSource is pgsource.Config as written in a file: the connection
// string is a secret reference, dsn, and there is no dsn_env. Resolve
// turns dsn {env: NAME} into Config.DSNEnv NAME (the source reads the
// variable when it connects, so the connection string is never copied
// into the definition) and dsn {file: PATH} into Config.DSN, the file's
// content.
type PostgresSource struct {
	DSN          *Secret  `mapstructure:"dsn" json:"dsn"`
	Schema       string   `mapstructure:"schema" json:"schema,omitempty"`
	Table        string   `mapstructure:"table" json:"table"`
	Columns      []string `mapstructure:"columns" json:"columns,omitempty"`
	Key          []string `mapstructure:"key" json:"key"`
	CursorColumn string   `mapstructure:"cursor_column" json:"cursor_column,omitempty"`
	Where        string   `mapstructure:"where" json:"where,omitempty"`
	MaxOpenConns int      `mapstructure:"max_open_conns" json:"max_open_conns,omitempty"`
}

// HTTPSource is httpsource.Config as written in a file: the same keys, with
// the credentials as secret references.
type HTTPSource struct {
	// Connection names a connection the worker configures: its base URL,
	// credentials and rate limit are the source's.
	Connection          string                 `mapstructure:"connection" json:"connection,omitempty"`
	BaseURL             string                 `mapstructure:"base_url" json:"base_url"`
	Path                string                 `mapstructure:"path" json:"path,omitempty"`
	Query               map[string]string      `mapstructure:"query" json:"query,omitempty"`
	Headers             map[string]string      `mapstructure:"headers" json:"headers,omitempty"`
	RecordsPath         string                 `mapstructure:"records_path" json:"records_path,omitempty"`
	Pagination          httpsource.Pagination  `mapstructure:"pagination" json:"pagination"`
	Total               httpsource.Total       `mapstructure:"total" json:"total,omitzero"`
	Incremental         httpsource.Incremental `mapstructure:"incremental" json:"incremental"`
	Auth                HTTPAuth               `mapstructure:"auth" json:"auth"`
	ConditionalRequests bool                   `mapstructure:"conditional_requests" json:"conditional_requests,omitempty"`
	RateLimit           httpsource.RateLimit   `mapstructure:"rate_limit" json:"rate_limit"`
	Timeout             time.Duration          `mapstructure:"timeout" json:"timeout,omitempty"`
	MaxBodyBytes        int64                  `mapstructure:"max_body_bytes" json:"max_body_bytes,omitempty"`
	Retry               httpsource.Retry       `mapstructure:"retry" json:"retry"`
}

// HTTPDestination is httpsink.Config as written in a file: the same keys,
// with the credentials as secret references (as HTTPSource's).
type HTTPDestination struct {
	// Connection names a connection the worker configures, as
	// HTTPSource's.
	Connection        string                  `mapstructure:"connection" json:"connection,omitempty"`
	BaseURL           string                  `mapstructure:"base_url" json:"base_url"`
	Headers           map[string]string       `mapstructure:"headers" json:"headers,omitempty"`
	Auth              HTTPAuth                `mapstructure:"auth" json:"auth"`
	Timeout           time.Duration           `mapstructure:"timeout" json:"timeout,omitempty"`
	Retry             httpclient.Retry        `mapstructure:"retry" json:"retry"`
	Create            httpsink.Endpoint       `mapstructure:"create" json:"create"`
	Update            httpsink.Endpoint       `mapstructure:"update" json:"update"`
	Delete            httpsink.Endpoint       `mapstructure:"delete" json:"delete"`
	Batch             httpsink.Batch          `mapstructure:"batch" json:"batch"`
	IDPath            string                  `mapstructure:"id_path" json:"id_path,omitempty"`
	IdempotencyHeader string                  `mapstructure:"idempotency_header" json:"idempotency_header,omitempty"`
	RateLimit         httpclient.RateLimit    `mapstructure:"rate_limit" json:"rate_limit"`
	MaxInFlight       int                     `mapstructure:"max_in_flight" json:"max_in_flight,omitempty"`
	CircuitBreaker    httpsink.CircuitBreaker `mapstructure:"circuit_breaker" json:"circuit_breaker"`
}

// HTTPAuth is httpsource.Auth as written in a file: its secrets are
// references.
type HTTPAuth struct {
	Kind         string   `mapstructure:"kind" json:"kind,omitempty"`
	Token        *Secret  `mapstructure:"token" json:"token,omitempty"`
	Header       string   `mapstructure:"header" json:"header,omitempty"`
	APIKey       *Secret  `mapstructure:"api_key" json:"api_key,omitempty"`
	TokenURL     string   `mapstructure:"token_url" json:"token_url,omitempty"`
	ClientID     string   `mapstructure:"client_id" json:"client_id,omitempty"`
	ClientSecret *Secret  `mapstructure:"client_secret" json:"client_secret,omitempty"`
	Scopes       []string `mapstructure:"scopes" json:"scopes,omitempty"`
}

// Secret is a reference to a secret: exactly one of Env (an environment
// variable's name) and File (a path, relative to the integration file
// unless absolute) is set. The secret itself is only read by Resolve.
type Secret struct {
	Env  string `mapstructure:"env" json:"env,omitempty"`
	File string `mapstructure:"file" json:"file,omitempty"`
}

// Field is one destination column: mapping.Field as written in a file,
// plus Join, a declarative stand-in for the Go-only Compute.
type Field struct {
	To   string `mapstructure:"to" json:"to"`
	From string `mapstructure:"from" json:"from,omitempty"`
	// Join lists dot paths whose values are joined with Separator (default
	// one space) into one string; absent, null and empty values are left
	// out, so the result is a string, empty when every part is.
	Join      []string `mapstructure:"join" json:"join,omitempty"`
	Separator *string  `mapstructure:"separator" json:"separator,omitempty"`
	Cast      string   `mapstructure:"cast" json:"cast,omitempty"`
	Default   any      `mapstructure:"default" json:"default,omitempty"`
	Normalize []string `mapstructure:"normalize" json:"normalize,omitempty"`
	Required  bool     `mapstructure:"required" json:"required,omitempty"`
}

// Destination is one step of the apply, integration.Destination as
// written in a file: exactly one kind is set; mode, identity and reversal
// belong to http steps; ids name earlier steps; mapping is in the file's
// format (with join).
type Destination struct {
	Name     string             `mapstructure:"name" json:"name,omitempty"`
	Postgres *pgsink.Table      `mapstructure:"postgres" json:"postgres,omitempty"`
	HTTP     *HTTPDestination   `mapstructure:"http" json:"http,omitempty"`
	Mode     string             `mapstructure:"mode" json:"mode,omitempty"`
	Identity string             `mapstructure:"identity" json:"identity,omitempty"`
	IDs      map[string]string  `mapstructure:"ids" json:"ids,omitempty"`
	Mapping  []Field            `mapstructure:"mapping" json:"mapping,omitempty"`
	Reversal *httpsink.Endpoint `mapstructure:"reversal" json:"reversal,omitempty"`
	// Connector is a connector the worker registered (integration.Connector
	// as written; its config a map).
	Connector *integration.Connector `mapstructure:"connector" json:"connector,omitempty"`
}

// Hash is the hex SHA-256 of the spec's canonical JSON (struct fields in a
// fixed order, map keys sorted): it pins the version of a definition a run
// used. It does not depend on the file's key order, comments or location,
// and it changes with any setting, secret reference or schema file.
func (s Spec) Hash() string {
	b, err := json.Marshal(s)
	if err != nil {
		// Specs come from YAML decoded into JSON-compatible values.
		panic("declarative: spec is not JSON: " + err.Error())
	}
	sum := sha256.Sum256(b)
	return hex.EncodeToString(sum[:])
}
