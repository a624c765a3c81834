package declarative

import (
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"maps"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"

	"github.com/tetherflow/tether/activities/connector/httpsink"
	"github.com/tetherflow/tether/activities/connector/httpsource"
	"github.com/tetherflow/tether/activities/connector/pgsource"
	"github.com/tetherflow/tether/activities/integration"
	"github.com/tetherflow/tether/activities/lib/httpclient"
	"github.com/tetherflow/tether/activities/lib/mapping"
	"github.com/tetherflow/tether/activities/lib/schema"
)

// Resolved is a Spec made runnable.
type Resolved struct {
	// Definition is the integration, normalised and valid, with its
	// secrets.
	Definition integration.Definition
	// Schema is the document of a schema file the spec names by path:
	// register it in the worker's schema.Registry under
	// Definition.Schema (Registry.Add). It is nil when Definition.Schema
	// is a file in schemas/.
	Schema []byte
}

// Resolve turns the spec into the integration a worker runs: secrets read
// through env (os.LookupEnv) and readFile (os.ReadFile), the connections
// it names taken from conns (the worker's, by name), a schema file given
// by path read, defaults filled (Normalize) and the definition validated. Every problem is reported, joined, each naming the file and
// the field, and for a secret the variable or file, never its value.
func (s Spec) Resolve(env func(string) (string, bool), readFile func(string) ([]byte, error), conns map[string]httpclient.Connection) (Resolved, error) {
	r := resolver{spec: s, env: env, readFile: readFile, conns: conns}
	def := integration.Definition{
		Name:             s.Name,
		Description:      s.Description,
		Version:          s.Version,
		KeyField:         s.KeyField,
		CursorField:      s.CursorField,
		InitialCursor:    s.InitialCursor,
		Atomic:           s.Atomic,
		InvalidThreshold: s.InvalidThreshold,
		ShortRead:        s.ShortRead,
		BatchSize:        s.BatchSize,
		PagesInFlight:    s.PagesInFlight,
	}
	if s.Source.HTTP != nil {
		def.Source.HTTP = r.httpSource(*s.Source.HTTP)
	}
	if s.Source.Postgres != nil {
		def.Source.Postgres = r.postgresSource(*s.Source.Postgres)
	}
	def.Source.Connector = cloneConnector(s.Source.Connector)
	var doc []byte
	def.Schema, doc = r.schema()
	def.Mapping = fileMapping(s.Mapping)
	if s.Destination != nil {
		def.Destination = r.destination("/destination", *s.Destination)
	}
	for i, d := range s.Destinations {
		def.Destinations = append(def.Destinations, r.destination("/destinations/"+strconv.Itoa(i), d))
	}
	if m := s.Match; m != nil {
		def.Match = &integration.Match{
			Fields:    slices.Clone(m.Fields),
			Normalize: slices.Clone(m.Normalize),
			Policy:    m.Policy,
		}
	}
	def.Schedules = cloneSchedules(s.Schedules)
	if s.Reconcile != nil {
		def.Reconcile = *s.Reconcile
	}
	if s.Events != nil {
		def.Events = *s.Events
	}
	if len(r.errs) == 0 {
		def = def.Normalize()
		for _, err := range unjoin(def.Validate()) {
			r.errs = append(r.errs, definitionProblem(s.File, s.Name, err))
		}
	}
	if err := errors.Join(r.errs...); err != nil {
		return Resolved{}, err
	}
	return Resolved{Definition: def, Schema: doc}, nil
}

// cloneSchedules copies schedules, sharing nothing with them.
func cloneSchedules(in []integration.Schedule) []integration.Schedule {
	if in == nil {
		return nil
	}
	out := make([]integration.Schedule, len(in))
	for i, s := range in {
		s.Cron = slices.Clone(s.Cron)
		if s.PauseOnFailure != nil {
			v := *s.PauseOnFailure
			s.PauseOnFailure = &v
		}
		out[i] = s
	}
	return out
}

// resolver collects the problems of one Resolve.
type resolver struct {
	spec     Spec
	env      func(string) (string, bool)
	readFile func(string) ([]byte, error)
	conns    map[string]httpclient.Connection
	errs     []error
}

// connection applies the named connection to an HTTP source's or
// destination's address, credentials and pace (pointer is the object's);
// the file sets none of those itself, but may slow the pace down.
func (r *resolver) connection(pointer, name, baseURL string, auth HTTPAuth, base *string, a *httpclient.Auth, limit *httpclient.RateLimit) {
	if name == "" {
		return
	}
	c, ok := r.conns[name]
	if !ok {
		has := "it has none"
		if len(r.conns) > 0 {
			has = "it has " + strings.Join(slices.Sorted(maps.Keys(r.conns)), ", ")
		}
		r.problem(pointer+"/connection", "connection %q is not configured in the worker (connections.%s in its configuration, or TETHER_CONNECTIONS_%s_BASE_URL); %s",
			name, name, strings.ToUpper(strings.ReplaceAll(name, "-", "_")), has)
		return
	}
	if baseURL != "" {
		r.problem(pointer+"/base_url", "set by connection %q: remove it, or remove connection", name)
	}
	if auth.Kind != "" || auth.Token != nil || auth.APIKey != nil || auth.ClientID != "" || auth.ClientSecret != nil || auth.TokenURL != "" {
		r.problem(pointer+"/auth", "set by connection %q: remove it, or remove connection", name)
	}
	*base, *a = c.BaseURL, c.Auth
	if *limit == (httpclient.RateLimit{}) {
		*limit = c.RateLimit
	}
}

func (r *resolver) problem(pointer, format string, args ...any) {
	r.errs = append(r.errs, &Problem{File: r.spec.File, Pointer: pointer, Reason: fmt.Sprintf(format, args...)})
}

// path makes a path from the file relative to the spec's directory.
func (r *resolver) path(p string) string {
	if filepath.IsAbs(p) || r.spec.File == "" {
		return p
	}
	return filepath.Join(filepath.Dir(r.spec.File), filepath.FromSlash(p))
}

// secret reads a referenced secret; a nil reference is "".
func (r *resolver) secret(pointer string, ref *Secret) string {
	switch {
	case ref == nil:
		return ""
	case ref.Env != "":
		v, ok := r.env(ref.Env)
		switch {
		case !ok:
			r.problem(pointer, "environment variable %s is not set", ref.Env)
		case v == "":
			r.problem(pointer, "environment variable %s is empty", ref.Env)
		}
		return v
	case ref.File != "":
		p := r.path(ref.File)
		b, err := r.readFile(p)
		if err != nil {
			r.problem(pointer, "secret file %s: %v", p, unwrapPath(err))
			return ""
		}
		v := strings.TrimSuffix(strings.TrimSuffix(string(b), "\n"), "\r")
		if v == "" {
			r.problem(pointer, "secret file %s is empty", p)
		}
		return v
	}
	r.problem(pointer, "a secret reference needs env or file")
	return ""
}

// httpAuth is the credentials of an HTTP source or destination, with
// their secrets; pointer is the auth object's.
func (r *resolver) httpAuth(pointer string, a HTTPAuth) httpclient.Auth {
	return httpclient.Auth{
		Kind:         a.Kind,
		Token:        r.secret(pointer+"/token", a.Token),
		Header:       a.Header,
		APIKey:       r.secret(pointer+"/api_key", a.APIKey),
		TokenURL:     a.TokenURL,
		ClientID:     a.ClientID,
		ClientSecret: r.secret(pointer+"/client_secret", a.ClientSecret),
		Scopes:       slices.Clone(a.Scopes),
	}
}

// httpSource is the source's configuration with its secrets.
func (r *resolver) httpSource(h HTTPSource) *httpsource.Config {
	cfg := &httpsource.Config{
		BaseURL:             h.BaseURL,
		Path:                h.Path,
		Query:               maps.Clone(h.Query),
		Headers:             maps.Clone(h.Headers),
		RecordsPath:         h.RecordsPath,
		Pagination:          h.Pagination,
		Total:               h.Total,
		Incremental:         h.Incremental,
		Auth:                r.httpAuth("/source/http/auth", h.Auth),
		ConditionalRequests: h.ConditionalRequests,
		RateLimit:           h.RateLimit,
		Timeout:             h.Timeout,
		MaxBodyBytes:        h.MaxBodyBytes,
		Retry:               h.Retry,
	}
	r.connection("/source/http", h.Connection, h.BaseURL, h.Auth, &cfg.BaseURL, &cfg.Auth, &cfg.RateLimit)
	return cfg
}

// postgresSource is the source's configuration. A dsn given by {env:
// NAME} becomes DSNEnv: the variable must be set now, and the source reads
// it again when it connects, so the connection string is never copied
// into the definition. A dsn given by {file: PATH} is read into DSN.
func (r *resolver) postgresSource(p PostgresSource) *pgsource.Config {
	const at = "/source/postgres/dsn"
	cfg := &pgsource.Config{
		Schema:       p.Schema,
		Table:        p.Table,
		Columns:      slices.Clone(p.Columns),
		Key:          slices.Clone(p.Key),
		CursorColumn: p.CursorColumn,
		Where:        p.Where,
		MaxOpenConns: p.MaxOpenConns,
	}
	switch {
	case p.DSN == nil:
		r.problem(at, "required: the connection string as a secret reference, {env: NAME} or {file: /path}")
	case p.DSN.Env != "":
		// Checked now (problems name the variable, never its value), so a
		// missing or malformed one stops the worker at start-up rather
		// than failing the first run.
		if v := r.secret(at, p.DSN); v != "" {
			if err := (pgsource.Config{DSN: v, Table: "t", Key: []string{"k"}}).Validate(); err != nil {
				r.problem(at, "environment variable %s: %v", p.DSN.Env, err)
			}
		}
		cfg.DSNEnv = p.DSN.Env
	default:
		cfg.DSN = r.secret(at, p.DSN)
	}
	return cfg
}

// destination is one step of the apply, with its secrets; pointer is
// the step's.
func (r *resolver) destination(pointer string, d Destination) integration.Destination {
	out := integration.Destination{
		Name:     d.Name,
		Mode:     d.Mode,
		Identity: d.Identity,
		IDs:      maps.Clone(d.IDs),
	}
	if d.Postgres != nil {
		t := *d.Postgres
		t.Columns = slices.Clone(t.Columns)
		t.Key = slices.Clone(t.Key)
		out.Postgres = &t
	}
	if h := d.HTTP; h != nil {
		out.HTTP = &httpsink.Config{
			BaseURL:           h.BaseURL,
			Headers:           maps.Clone(h.Headers),
			Auth:              r.httpAuth(pointer+"/http/auth", h.Auth),
			Timeout:           h.Timeout,
			Retry:             h.Retry,
			Create:            h.Create,
			Update:            h.Update,
			Delete:            h.Delete,
			Batch:             h.Batch,
			IDPath:            h.IDPath,
			IdempotencyHeader: h.IdempotencyHeader,
			RateLimit:         h.RateLimit,
			MaxInFlight:       h.MaxInFlight,
			CircuitBreaker:    h.CircuitBreaker,
		}
		c := out.HTTP
		r.connection(pointer+"/http", h.Connection, h.BaseURL, h.Auth, &c.BaseURL, &c.Auth, &c.RateLimit)
	}
	if len(d.Mapping) > 0 {
		out.Mapping = fileMapping(d.Mapping)
	}
	if d.Reversal != nil {
		rev := *d.Reversal
		out.Reversal = &rev
	}
	out.Connector = cloneConnector(d.Connector)
	return out
}

// cloneConnector copies a registered connector's reference (its config is
// the connector's own, handed over as decoded).
func cloneConnector(c *integration.Connector) *integration.Connector {
	if c == nil {
		return nil
	}
	out := *c
	return &out
}

// schema returns the name to validate records with and, for a schema file
// given by path, its document. The name of such a file is its base name and
// the start of its SHA-256, so a changed file is a new schema.
func (r *resolver) schema() (string, []byte) {
	if !schemaByPath(r.spec.Schema) {
		return r.spec.Schema, nil
	}
	p := r.path(r.spec.Schema)
	b, err := r.readFile(p)
	if err != nil {
		r.problem("/schema", "schema file %s: %v", p, unwrapPath(err))
		return "", nil
	}
	if _, err := schema.Decode(b); err != nil {
		r.problem("/schema", "schema file %s is not JSON: %v", p, err)
		return "", nil
	}
	sum := sha256.Sum256(b)
	digest := hex.EncodeToString(sum[:])
	if r.spec.SchemaSHA256 != "" && r.spec.SchemaSHA256 != digest {
		r.problem("/schema", "schema file %s changed since the integration file was loaded: load it again", p)
		return "", nil
	}
	return filepath.Base(p) + "@" + digest[:12], b
}

// fileMapping converts fields as written; join becomes a Compute function.
func fileMapping(in []Field) mapping.Mapping {
	fields := make([]mapping.Field, 0, len(in))
	for _, f := range in {
		tf := mapping.Field{
			To:        f.To,
			From:      f.From,
			Cast:      f.Cast,
			Default:   f.Default,
			Normalize: slices.Clone(f.Normalize),
			Required:  f.Required,
		}
		if len(f.Join) > 0 {
			sep := " "
			if f.Separator != nil {
				sep = *f.Separator
			}
			tf.Compute = joinFunc(f.Join, sep)
		}
		fields = append(fields, tf)
	}
	return mapping.Mapping{Fields: fields}
}

// joinFunc joins the values at paths with sep; absent, null and empty
// values are left out.
func joinFunc(paths []string, sep string) func(mapping.Record) (any, error) {
	split := make([][]string, len(paths))
	for i, p := range paths {
		split[i] = strings.Split(p, ".")
	}
	return func(rec mapping.Record) (any, error) {
		var b strings.Builder
		n := 0
		for i, path := range split {
			s, err := scalarText(lookupPath(rec, path))
			if err != nil {
				return nil, fmt.Errorf("join %s: %w", paths[i], err)
			}
			if s == "" {
				continue
			}
			if n > 0 {
				b.WriteString(sep)
			}
			b.WriteString(s)
			n++
		}
		return b.String(), nil
	}
}

// lookupPath follows a dot path through objects and arrays; anything
// missing gives nil.
func lookupPath(rec mapping.Record, path []string) any {
	var cur any = rec
	for _, seg := range path {
		switch c := cur.(type) {
		case map[string]any:
			cur = c[seg]
		case []any:
			i, err := strconv.Atoi(seg)
			if err != nil || i < 0 || i >= len(c) {
				return nil
			}
			cur = c[i]
		default:
			return nil
		}
	}
	return cur
}

// scalarText writes a scalar as text; null is "".
func scalarText(v any) (string, error) {
	switch x := v.(type) {
	case nil:
		return "", nil
	case string:
		return x, nil
	case json.Number:
		return string(x), nil
	case bool:
		return strconv.FormatBool(x), nil
	case float64:
		return strconv.FormatFloat(x, 'g', -1, 64), nil
	case int64:
		return strconv.FormatInt(x, 10), nil
	case int:
		return strconv.Itoa(x), nil
	case map[string]any:
		return "", errors.New("an object, not a scalar")
	case []any:
		return "", errors.New("an array, not a scalar")
	}
	return "", fmt.Errorf("a Go %T, not a scalar", v)
}

// unjoin lists the errors an errors.Join holds.
func unjoin(err error) []error {
	if err == nil {
		return nil
	}
	if j, ok := err.(interface{ Unwrap() []error }); ok {
		return j.Unwrap()
	}
	return []error{err}
}

// fieldPrefix is the field a Definition.Validate message starts with,
// e.g. "source.http: ", "invalid_threshold: " or
// "destinations[1].ids.billing_id: ".
var fieldPrefix = regexp.MustCompile(`^([a-z_]+(?:\[[0-9]+\])?(?:\.[A-Za-z0-9_-]+(?:\[[0-9]+\])?)*): `)

// definitionProblem turns an integration.Definition.Validate error,
// `integration "x": source.http: base_url: required`, into a Problem
// pointing at its field: destinations[1].ids.billing_id is
// /destinations/1/ids/billing_id.
func definitionProblem(file, name string, err error) error {
	msg := strings.TrimPrefix(err.Error(), fmt.Sprintf("integration %q: ", name))
	if m := fieldPrefix.FindStringSubmatch(msg); m != nil {
		field := strings.NewReplacer("[", ".", "]", "").Replace(m[1])
		return &Problem{File: file, Pointer: "/" + strings.ReplaceAll(field, ".", "/"), Reason: msg[len(m[0]):]}
	}
	return &Problem{File: file, Reason: msg}
}
