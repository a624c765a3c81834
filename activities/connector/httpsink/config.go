package httpsink

import (
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"slices"
	"strings"
	"time"

	"github.com/tetherflow/tether/activities/lib/httpclient"
)

// Defaults applied by New to every key left at its zero value.
const (
	DefaultCreateMethod      = http.MethodPost
	DefaultUpdateMethod      = http.MethodPut
	DefaultDeleteMethod      = http.MethodDelete
	DefaultIDPath            = "id"
	DefaultIdempotencyHeader = "Idempotency-Key"
	DefaultMaxInFlight       = 4
	DefaultBatchMaxRecords   = 100
	DefaultBatchStatusPath   = "status"
	DefaultBatchErrorPath    = "error"
	DefaultFailureRate       = 0.5
	DefaultMinRequests       = 10
	DefaultWindow            = 30 * time.Second
	DefaultOpenFor           = 30 * time.Second
	// maxInFlightLimit bounds max_in_flight: a destination is not load-tested here.
	maxInFlightLimit = 256
)

// Config describes one HTTP destination: where records are created,
// updated and deleted, how to authenticate and how hard it may be pushed.
type Config struct {
	// BaseURL is the API's scheme and host, with an optional path prefix ("https://api.example.com").
	BaseURL string `mapstructure:"base_url" yaml:"base_url" json:"base_url"`
	// Headers holds static headers sent with every request.
	Headers map[string]string `mapstructure:"headers" yaml:"headers" json:"headers"`
	// Auth holds the credentials (as the HTTP source's). Its secrets never
	// appear in logs or errors.
	Auth httpclient.Auth `mapstructure:"auth" yaml:"auth" json:"auth"`
	// Timeout bounds one HTTP request (default 30s).
	Timeout time.Duration `mapstructure:"timeout" yaml:"timeout" json:"timeout"`
	// Retry bounds the short in-process retries of one request.
	Retry httpclient.Retry `mapstructure:"retry" yaml:"retry" json:"retry"`
	// Create says how a record without a destination id is created.
	Create Endpoint `mapstructure:"create" yaml:"create" json:"create"`
	// Update says how a record with a destination id is updated; Restore
	// PUTs a before-image to the same path.
	Update Endpoint `mapstructure:"update" yaml:"update" json:"update"`
	// Delete says how a created record is deleted by compensation (path
	// default: update's).
	Delete Endpoint `mapstructure:"delete" yaml:"delete" json:"delete"`
	// Batch, when its path is set, creates records in arrays of up to
	// max_records per request instead of one request each.
	Batch Batch `mapstructure:"batch" yaml:"batch" json:"batch"`
	// IDPath is the dot path of the created object's id in a create's
	// response (default "id").
	IDPath string `mapstructure:"id_path" yaml:"id_path" json:"id_path"`
	// IdempotencyHeader carries a create's idempotency key (default
	// "Idempotency-Key").
	IdempotencyHeader string `mapstructure:"idempotency_header" yaml:"idempotency_header" json:"idempotency_header"`
	// RateLimit bounds the request rate of every call of the Client.
	RateLimit httpclient.RateLimit `mapstructure:"rate_limit" yaml:"rate_limit" json:"rate_limit"`
	// MaxInFlight bounds the calls of the Client in flight at once (default 4).
	MaxInFlight int `mapstructure:"max_in_flight" yaml:"max_in_flight" json:"max_in_flight"`
	// CircuitBreaker suspends calls for a while when too many fail.
	CircuitBreaker CircuitBreaker `mapstructure:"circuit_breaker" yaml:"circuit_breaker" json:"circuit_breaker"`
}

// Endpoint is a method and a path template. The path is a text/template
// over the record's row plus .external_id (the destination's id of the
// record, when known), e.g. "/v1/customers/{{.external_id}}"; every
// value is path-escaped, and a field the row lacks rejects the record.
type Endpoint struct {
	// Method is the HTTP method (create: POST or PUT; update: PUT or PATCH;
	// delete: DELETE).
	Method string `mapstructure:"method" yaml:"method" json:"method"`
	// Path is the path template below BaseURL; it may hold a query.
	Path string `mapstructure:"path" yaml:"path" json:"path"`
}

// Batch configures batch creates: POST a JSON array of rows to Path and
// read back an array of per-record results in the same order.
type Batch struct {
	// Path is the batch endpoint below BaseURL ("/v1/customers/batch");
	// empty means one request per record.
	Path string `mapstructure:"path" yaml:"path" json:"path"`
	// MaxRecords is the largest array sent in one request (default 100).
	MaxRecords int `mapstructure:"max_records" yaml:"max_records" json:"max_records"`
	// IdempotencyKeyField, when set, is the member of each item that
	// carries the record's idempotency key ("idempotency_key"), for APIs
	// that deduplicate items one by one.
	IdempotencyKeyField string `mapstructure:"idempotency_key_field" yaml:"idempotency_key_field" json:"idempotency_key_field"`
	// StatusPath is the dot path of an item's HTTP-like status in its result
	// (default "status"); an item without one has the batch's status.
	StatusPath string `mapstructure:"status_path" yaml:"status_path" json:"status_path"`
	// IDPath is the dot path of a created item's id in its result (default:
	// id_path), e.g. "customer.id".
	IDPath string `mapstructure:"id_path" yaml:"id_path" json:"id_path"`
	// ErrorPath is the dot path of a refused item's error in its result
	// (default "error"): a string, or an object whose "message" is used.
	ErrorPath string `mapstructure:"error_path" yaml:"error_path" json:"error_path"`
}

// CircuitBreaker suspends every call of the Client for OpenFor once, within
// Window, at least MinRequests calls completed and at least FailureRate of
// them failed (network errors and 5xx; throttling is left to the pacer).
// One probe then goes through: its success closes the circuit, its
// failure opens it again.
type CircuitBreaker struct {
	// FailureRate is the share of failed calls that opens the circuit, in
	// (0, 1] (default 0.5).
	FailureRate float64 `mapstructure:"failure_rate" yaml:"failure_rate" json:"failure_rate"`
	// MinRequests is the fewest completed calls in the window before the
	// rate counts (default 10).
	MinRequests int `mapstructure:"min_requests" yaml:"min_requests" json:"min_requests"`
	// Window is the rolling period over which calls are counted (default 30s).
	Window time.Duration `mapstructure:"window" yaml:"window" json:"window"`
	// OpenFor is how long calls fail fast once the circuit opens (default 30s).
	OpenFor time.Duration `mapstructure:"open_for" yaml:"open_for" json:"open_for"`
}

// Validate reports every problem in c, each naming its field.
func (c Config) Validate() error {
	d := c.withDefaults()
	var errs configProblems
	errs = append(errs, c.connectionProblems(d)...)
	errs = append(errs, c.endpointProblems(d)...)
	errs = append(errs, c.batchProblems(d)...)
	errs = append(errs, c.flowProblems()...)
	return errors.Join(errs...)
}

// configProblems collects what is wrong with a config, each problem naming
// its field.
type configProblems []error

func (p *configProblems) add(field, format string, args ...any) {
	*p = append(*p, fmt.Errorf("%s: %s", field, fmt.Sprintf(format, args...)))
}

// connectionProblems checks how the sink reaches the destination: base
// URL, headers, auth, timeout and retries (d is c with its defaults).
func (c Config) connectionProblems(d Config) configProblems {
	var errs configProblems
	if err := httpclient.CheckBaseURL(c.BaseURL); err != nil {
		errs.add("base_url", "%v", err)
	}
	errs = append(errs, httpclient.HeaderProblems("headers", c.Headers)...)
	for k := range c.Headers {
		if strings.EqualFold(k, d.IdempotencyHeader) {
			errs.add("headers", "%q is set by the sink (idempotency_header)", k)
		}
	}
	errs = append(errs, c.Auth.Problems("auth")...)
	if c.Timeout < 0 {
		errs.add("timeout", "must not be negative, got %s", c.Timeout)
	}
	errs = append(errs, c.Retry.Problems("retry")...)
	return errs
}

// endpointProblems checks the method and path of the create, update and
// delete endpoints (d is c with its defaults).
func (c Config) endpointProblems(d Config) configProblems {
	var errs configProblems
	endpoints := []struct {
		field   string
		method  string
		path    string
		methods []string
	}{
		{"create", d.Create.Method, c.Create.Path, []string{http.MethodPost, http.MethodPut}},
		{"update", d.Update.Method, c.Update.Path, []string{http.MethodPut, http.MethodPatch}},
		{"delete", d.Delete.Method, c.Delete.Path, []string{http.MethodDelete}},
	}
	for _, ep := range endpoints {
		if !slices.Contains(ep.methods, ep.method) {
			errs.add(ep.field+".method", "%q is not %s", ep.method, strings.Join(ep.methods, " or "))
		}
		switch {
		case ep.path == "" && ep.field == "delete":
			// Defaults to update.path.
		case ep.path == "":
			errs.add(ep.field+".path", "required (e.g. %q)", examplePath(ep.field))
		default:
			if _, err := parsePath(ep.field+".path", ep.path); err != nil {
				errs = append(errs, err)
			}
		}
	}
	return errs
}

// batchProblems checks the batch endpoint, the dot paths read in results
// and the idempotency header (d is c with its defaults).
func (c Config) batchProblems(d Config) configProblems {
	var errs configProblems
	if strings.Contains(c.Batch.Path, "{{") {
		errs.add("batch.path", "%q is not a template: a batch has no single row to fill it", c.Batch.Path)
	} else if u, err := url.Parse(c.Batch.Path); err != nil || u.Scheme != "" || u.Host != "" || u.Fragment != "" {
		errs.add("batch.path", "%q is not a path below base_url", c.Batch.Path)
	}
	if c.Batch.MaxRecords < 0 {
		errs.add("batch.max_records", "must not be negative, got %d", c.Batch.MaxRecords)
	}
	for _, p := range []struct{ field, path string }{
		{"id_path", c.IDPath},
		{"batch.status_path", c.Batch.StatusPath},
		{"batch.id_path", c.Batch.IDPath},
		{"batch.error_path", c.Batch.ErrorPath},
	} {
		if err := httpclient.CheckDotPath(p.path); err != nil {
			errs.add(p.field, "%v", err)
		}
	}
	if !httpclient.ValidHeaderName(d.IdempotencyHeader) {
		errs.add("idempotency_header", "%q is not a valid header name", d.IdempotencyHeader)
	}
	return errs
}

// flowProblems checks what paces the calls: rate limit, calls in flight and
// circuit breaker.
func (c Config) flowProblems() configProblems {
	var errs configProblems
	errs = append(errs, c.RateLimit.Problems("rate_limit")...)
	if c.MaxInFlight < 0 || c.MaxInFlight > maxInFlightLimit {
		errs.add("max_in_flight", "%d is out of range (want 0 for the default %d, up to %d)", c.MaxInFlight, DefaultMaxInFlight, maxInFlightLimit)
	}
	cb := c.CircuitBreaker
	if cb.FailureRate < 0 || cb.FailureRate > 1 {
		errs.add("circuit_breaker.failure_rate", "%g is not between 0 and 1", cb.FailureRate)
	}
	if cb.MinRequests < 0 {
		errs.add("circuit_breaker.min_requests", "must not be negative, got %d", cb.MinRequests)
	}
	if cb.Window < 0 {
		errs.add("circuit_breaker.window", "must not be negative, got %s", cb.Window)
	}
	if cb.OpenFor < 0 {
		errs.add("circuit_breaker.open_for", "must not be negative, got %s", cb.OpenFor)
	}
	return errs
}

// withDefaults returns c with every unset key at its default.
func (c Config) withDefaults() Config {
	c.Auth = c.Auth.WithDefaults()
	c.RateLimit = c.RateLimit.WithDefaults()
	c.Retry = c.Retry.WithDefaults()
	if c.Timeout == 0 {
		c.Timeout = httpclient.DefaultTimeout
	}
	c.Create.Method = methodOr(c.Create.Method, DefaultCreateMethod)
	c.Update.Method = methodOr(c.Update.Method, DefaultUpdateMethod)
	c.Delete.Method = methodOr(c.Delete.Method, DefaultDeleteMethod)
	if c.Delete.Path == "" {
		c.Delete.Path = c.Update.Path
	}
	setDefault(&c.IDPath, DefaultIDPath)
	setDefault(&c.IdempotencyHeader, DefaultIdempotencyHeader)
	if c.MaxInFlight == 0 {
		c.MaxInFlight = DefaultMaxInFlight
	}
	b := &c.Batch
	if b.MaxRecords == 0 {
		b.MaxRecords = DefaultBatchMaxRecords
	}
	setDefault(&b.StatusPath, DefaultBatchStatusPath)
	setDefault(&b.IDPath, c.IDPath)
	setDefault(&b.ErrorPath, DefaultBatchErrorPath)
	cb := &c.CircuitBreaker
	if cb.FailureRate == 0 {
		cb.FailureRate = DefaultFailureRate
	}
	if cb.MinRequests == 0 {
		cb.MinRequests = DefaultMinRequests
	}
	if cb.Window == 0 {
		cb.Window = DefaultWindow
	}
	if cb.OpenFor == 0 {
		cb.OpenFor = DefaultOpenFor
	}
	return c
}

func methodOr(m, def string) string {
	if m == "" {
		return def
	}
	return strings.ToUpper(m)
}

func setDefault(s *string, def string) {
	if *s == "" {
		*s = def
	}
}

func examplePath(field string) string {
	if field == "create" {
		return "/v1/customers"
	}
	return "/v1/customers/{{.external_id}}"
}
