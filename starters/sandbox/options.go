package sandbox

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"strings"
	"time"
)

// Defaults applied by New to zero-valued Options fields.
const (
	DefaultContacts    = 1000
	DefaultMaxPageSize = 1000
	DefaultPageSize    = 100
	DefaultTokenTTL    = time.Hour
	DefaultFailStatus  = 503
)

// Auth modes accepted in Auth.Mode.
const (
	AuthNone   = "none"
	AuthBearer = "bearer"
	AuthAPIKey = "api_key"
	AuthOAuth2 = "oauth2"
)

// Options configures a sandbox Server. The zero value is a valid server with
// 1,000 contacts, no auth, no rate limit and no faults.
type Options struct {
	// Seed makes the data and the fault choices deterministic.
	Seed uint64
	// Contacts is the number of contacts (default 1000); companies are
	// max(1, Contacts/10).
	Contacts int
	// Auth says which credentials are accepted.
	Auth Auth
	// RateLimit is a fixed window per server; the zero value is unlimited
	// (the X-RateLimit-* headers are still sent).
	RateLimit RateLimit
	// Faults is the initial fault injection.
	Faults Faults
	// MaxPageSize is the largest per_page/limit honoured (default 1000);
	// larger asks are clamped to it.
	MaxPageSize int
	// Now is the clock for mutations, token expiry and rate-limit windows
	// (default time.Now).
	Now func() time.Time
	// Webhooks, when URL is set, are sent on every change of a billing
	// customer (created, updated, deleted), signed as tether's receiver
	// checks them.
	Webhooks Webhooks
}

// Webhooks is where the billing API sends its change events: POST URL
// with {"id", "type": "customer.created|updated|deleted", "data": the
// customer (or its deletion)}, X-Tether-Signature (HMAC-SHA256 with
// Secret, "t=<unix>,v1=<hex>") and X-Tether-Delivery (the event id), from
// a goroutine, tried up to three times.
type Webhooks struct {
	URL    string
	Secret string
}

// Auth says which credentials the API accepts.
type Auth struct {
	// Mode is "none" (default), "bearer", "api_key" or "oauth2".
	Mode string
	// Token is the bearer token accepted in mode "bearer".
	Token string
	// APIKey is the value accepted in header X-API-Key in mode "api_key".
	APIKey string
	// ForbiddenAPIKey authenticates but is refused with 403, as an
	// X-API-Key in mode "api_key" or as a bearer token in mode "bearer".
	ForbiddenAPIKey string
	// ClientID and ClientSecret are the oauth2 client credentials accepted
	// by POST /oauth/token.
	ClientID, ClientSecret string
	// TokenTTL is the lifetime of issued oauth2 access tokens (default 1h).
	TokenTTL time.Duration
}

// RateLimit is a fixed window shared by every API request to one server.
type RateLimit struct {
	// Requests is the number of requests allowed per window; 0 is unlimited.
	Requests int
	// Window is the window length (default 1s when Requests is set).
	Window time.Duration
}

// Faults is the fault injection. Its top-level fields apply to collection
// requests (GET /v1/contacts and /v1/companies that passed the rate limit
// and auth); Writes applies to the write API. Reads of /v1/customers are
// never faulted.
type Faults struct {
	// ErrorRate is the fraction of collection requests answered 500,
	// drawn from an RNG seeded by Options.Seed.
	ErrorRate float64
	// Latency is added to each collection request.
	Latency time.Duration
	// MalformedRate is the fraction of pages whose JSON body is truncated
	// (invalid JSON, still 200 application/json).
	MalformedRate float64
	// InvalidRate is the fraction of contacts served in violation of the
	// JSON schema: exactly round(n*rate) of them, chosen by seed and id.
	// Companies are always served valid.
	InvalidRate float64
	// FailNext makes the next N collection requests fail with FailStatus.
	FailNext int
	// FailStatus is the status of FailNext failures (default 503).
	FailStatus int
	// FailRetryAfter is the Retry-After, in seconds, sent with a 429 or
	// 503 FailStatus.
	FailRetryAfter int
	// NonJSONNext makes the next N collection requests get an HTML error
	// page with status 200 and Content-Type text/html.
	NonJSONNext int
	// Writes is the fault injection of write requests.
	Writes WriteFaults
}

// WriteFaults is the fault injection applied to write requests (POST, PUT,
// PATCH and DELETE on /v1/customers... and /v1/notifications) that passed
// the rate limit and auth, optionally narrowed to one resource and one
// method. A request that does not match is neither faulted nor counted.
//
// At most one fault hits a write, tried in this order: FailNext, FailEvery,
// ErrorRate (refused before anything is written: nothing changes, no
// idempotency key is remembered), then LostResponseNext, LostResponseEvery
// (the request is processed in full, so a create or update is committed and
// its idempotency key remembered, then answered 500 instead: "the write
// happened but the response was lost").
type WriteFaults struct {
	// Resource narrows the faults to "customers" (every /v1/customers
	// endpoint, batch included) or "notifications"; "" matches both.
	Resource string
	// Method narrows the faults to one of POST, PUT, PATCH, DELETE; ""
	// matches every write.
	Method string
	// Latency is added to each matching write before it is processed. The
	// write goes ahead even if the client stopped waiting, as on a real
	// server: a client timeout shorter than Latency loses the response of
	// a committed write.
	Latency time.Duration
	// FailNext refuses the next N matching writes with FailStatus.
	FailNext int
	// FailEvery refuses every Nth matching write (the Nth, 2Nth, ...
	// counted from the last SetFaults) with FailStatus.
	FailEvery int
	// FailStatus is the status of FailNext and FailEvery (default 503).
	FailStatus int
	// FailRetryAfter is the Retry-After, in seconds, sent with a 429 or
	// 503 FailStatus.
	FailRetryAfter int
	// ErrorRate is the fraction of matching writes refused with 500, drawn
	// from an RNG seeded by Options.Seed (apart from the one of reads).
	ErrorRate float64
	// LostResponseNext makes the next N matching writes happen and then be
	// answered 500.
	LostResponseNext int
	// LostResponseEvery makes every Nth matching write happen and then be
	// answered 500.
	LostResponseEvery int
}

// matches says whether the faults apply to a write of resource by method.
func (f WriteFaults) matches(resource, method string) bool {
	return (f.Resource == "" || f.Resource == resource) && (f.Method == "" || f.Method == method)
}

// validate appends the out-of-range fields of f to errs.
func (f WriteFaults) validate(errs []error) []error {
	bad := func(format string, args ...any) {
		errs = append(errs, fmt.Errorf("faults: writes."+format, args...))
	}
	if !(f.ErrorRate >= 0 && f.ErrorRate <= 1) {
		bad("error_rate %v is not in [0, 1]", f.ErrorRate)
	}
	if f.Latency < 0 {
		bad("latency %v is negative", f.Latency)
	}
	for _, c := range []struct {
		name string
		n    int
	}{
		{"fail_next", f.FailNext}, {"fail_every", f.FailEvery}, {"fail_retry_after", f.FailRetryAfter},
		{"lost_response_next", f.LostResponseNext}, {"lost_response_every", f.LostResponseEvery},
	} {
		if c.n < 0 {
			bad("%s %d is negative", c.name, c.n)
		}
	}
	if f.FailStatus != 0 && (f.FailStatus < 400 || f.FailStatus > 599) {
		bad("fail_status %d is not an HTTP error status (400-599)", f.FailStatus)
	}
	if f.Resource != "" && f.Resource != ResourceCustomers && f.Resource != ResourceNotifications {
		bad("resource %q is not customers or notifications", f.Resource)
	}
	switch strings.ToUpper(f.Method) {
	case "", http.MethodPost, http.MethodPut, http.MethodPatch, http.MethodDelete:
	default:
		bad("method %q is not POST, PUT, PATCH or DELETE", f.Method)
	}
	return errs
}

// normalized clamps f into range; an unknown Resource or Method is kept
// and matches no write.
func (f WriteFaults) normalized() WriteFaults {
	if !(f.ErrorRate > 0) {
		f.ErrorRate = 0
	}
	f.ErrorRate = min(f.ErrorRate, 1)
	f.Latency = max(f.Latency, 0)
	f.FailNext, f.FailEvery, f.FailRetryAfter = max(f.FailNext, 0), max(f.FailEvery, 0), max(f.FailRetryAfter, 0)
	f.LostResponseNext, f.LostResponseEvery = max(f.LostResponseNext, 0), max(f.LostResponseEvery, 0)
	if f.FailStatus < 400 || f.FailStatus > 599 {
		f.FailStatus = DefaultFailStatus
	}
	f.Method = strings.ToUpper(f.Method)
	return f
}

// Validate reports every out-of-range field, joined.
func (f Faults) Validate() error {
	var errs []error
	rate := func(name string, v float64) {
		if !(v >= 0 && v <= 1) {
			errs = append(errs, fmt.Errorf("faults: %s %v is not in [0, 1]", name, v))
		}
	}
	rate("error_rate", f.ErrorRate)
	rate("malformed_rate", f.MalformedRate)
	rate("invalid_rate", f.InvalidRate)
	if f.Latency < 0 {
		errs = append(errs, fmt.Errorf("faults: latency %v is negative", f.Latency))
	}
	if f.FailNext < 0 {
		errs = append(errs, fmt.Errorf("faults: fail_next %d is negative", f.FailNext))
	}
	if f.NonJSONNext < 0 {
		errs = append(errs, fmt.Errorf("faults: non_json_next %d is negative", f.NonJSONNext))
	}
	if f.FailStatus != 0 && (f.FailStatus < 400 || f.FailStatus > 599) {
		errs = append(errs, fmt.Errorf("faults: fail_status %d is not an HTTP error status (400-599)", f.FailStatus))
	}
	if f.FailRetryAfter < 0 {
		errs = append(errs, fmt.Errorf("faults: fail_retry_after %d is negative", f.FailRetryAfter))
	}
	errs = f.Writes.validate(errs)
	return errors.Join(errs...)
}

// faultsJSON is the wire form of Faults used by /admin/faults.
type faultsJSON struct {
	ErrorRate      float64 `json:"error_rate"`
	Latency        string  `json:"latency"`
	MalformedRate  float64 `json:"malformed_rate"`
	InvalidRate    float64 `json:"invalid_rate"`
	FailNext       int     `json:"fail_next"`
	FailStatus     int     `json:"fail_status"`
	FailRetryAfter int     `json:"fail_retry_after"`
	NonJSONNext    int     `json:"non_json_next"`
	// Writes is a pointer so that a body without "writes" is told apart
	// from one that sets every write fault to zero (both mean no faults).
	Writes *writeFaultsJSON `json:"writes,omitempty"`
}

// writeFaultsJSON is the wire form of WriteFaults.
type writeFaultsJSON struct {
	Resource          string  `json:"resource,omitempty"`
	Method            string  `json:"method,omitempty"`
	Latency           string  `json:"latency"`
	FailNext          int     `json:"fail_next"`
	FailEvery         int     `json:"fail_every"`
	FailStatus        int     `json:"fail_status"`
	FailRetryAfter    int     `json:"fail_retry_after"`
	ErrorRate         float64 `json:"error_rate"`
	LostResponseNext  int     `json:"lost_response_next"`
	LostResponseEvery int     `json:"lost_response_every"`
}

// MarshalJSON encodes Faults with snake_case names and the latency as a
// duration string such as "20ms".
func (f Faults) MarshalJSON() ([]byte, error) {
	return json.Marshal(faultsJSON{
		ErrorRate: f.ErrorRate, Latency: f.Latency.String(), MalformedRate: f.MalformedRate,
		InvalidRate: f.InvalidRate, FailNext: f.FailNext, FailStatus: f.FailStatus,
		FailRetryAfter: f.FailRetryAfter, NonJSONNext: f.NonJSONNext,
		Writes: &writeFaultsJSON{
			Resource: f.Writes.Resource, Method: f.Writes.Method, Latency: f.Writes.Latency.String(),
			FailNext: f.Writes.FailNext, FailEvery: f.Writes.FailEvery, FailStatus: f.Writes.FailStatus,
			FailRetryAfter: f.Writes.FailRetryAfter, ErrorRate: f.Writes.ErrorRate,
			LostResponseNext: f.Writes.LostResponseNext, LostResponseEvery: f.Writes.LostResponseEvery,
		},
	})
}

// UnmarshalJSON decodes the form MarshalJSON writes; unknown fields are
// errors, so a typo does not silently inject nothing.
func (f *Faults) UnmarshalJSON(b []byte) error {
	var w faultsJSON
	dec := json.NewDecoder(bytes.NewReader(b))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&w); err != nil {
		return fmt.Errorf("faults: %w", err)
	}
	lat, err := parseLatency("latency", w.Latency)
	if err != nil {
		return err
	}
	g := Faults{
		ErrorRate: w.ErrorRate, Latency: lat, MalformedRate: w.MalformedRate,
		InvalidRate: w.InvalidRate, FailNext: w.FailNext, FailStatus: w.FailStatus,
		FailRetryAfter: w.FailRetryAfter, NonJSONNext: w.NonJSONNext,
	}
	if ww := w.Writes; ww != nil {
		lat, err := parseLatency("writes.latency", ww.Latency)
		if err != nil {
			return err
		}
		g.Writes = WriteFaults{
			Resource: ww.Resource, Method: ww.Method, Latency: lat,
			FailNext: ww.FailNext, FailEvery: ww.FailEvery, FailStatus: ww.FailStatus,
			FailRetryAfter: ww.FailRetryAfter, ErrorRate: ww.ErrorRate,
			LostResponseNext: ww.LostResponseNext, LostResponseEvery: ww.LostResponseEvery,
		}
	}
	*f = g
	return nil
}

// parseLatency reads a duration string of the wire form; "" is zero.
func parseLatency(name, v string) (time.Duration, error) {
	if v == "" {
		return 0, nil
	}
	d, err := time.ParseDuration(v)
	if err != nil {
		return 0, fmt.Errorf("faults: %s: %w", name, err)
	}
	return d, nil
}

// normalized clamps f into range, for SetFaults which cannot fail.
func (f Faults) normalized() Faults {
	clamp := func(v float64) float64 {
		if !(v > 0) {
			return 0
		}
		return min(v, 1)
	}
	f.ErrorRate, f.MalformedRate, f.InvalidRate = clamp(f.ErrorRate), clamp(f.MalformedRate), clamp(f.InvalidRate)
	f.Latency = max(f.Latency, 0)
	f.FailNext, f.NonJSONNext, f.FailRetryAfter = max(f.FailNext, 0), max(f.NonJSONNext, 0), max(f.FailRetryAfter, 0)
	if f.FailStatus < 400 || f.FailStatus > 599 {
		f.FailStatus = DefaultFailStatus
	}
	f.Writes = f.Writes.normalized()
	return f
}

// withDefaults validates o and fills in its defaults.
func (o Options) withDefaults() (Options, error) {
	var errs []error
	if o.Contacts < 0 {
		errs = append(errs, fmt.Errorf("contacts %d is negative", o.Contacts))
	}
	if o.Contacts == 0 {
		o.Contacts = DefaultContacts
	}
	if o.MaxPageSize < 0 {
		errs = append(errs, fmt.Errorf("max page size %d is negative", o.MaxPageSize))
	}
	if o.MaxPageSize == 0 {
		o.MaxPageSize = DefaultMaxPageSize
	}
	if o.Now == nil {
		o.Now = time.Now
	}
	switch o.Auth.Mode {
	case "":
		o.Auth.Mode = AuthNone
	case AuthNone:
	case AuthBearer:
		if o.Auth.Token == "" {
			errs = append(errs, errors.New("auth: mode bearer needs a token"))
		}
	case AuthAPIKey:
		if o.Auth.APIKey == "" {
			errs = append(errs, errors.New("auth: mode api_key needs an API key"))
		}
	case AuthOAuth2:
		if o.Auth.ClientID == "" || o.Auth.ClientSecret == "" {
			errs = append(errs, errors.New("auth: mode oauth2 needs a client id and a client secret"))
		}
	default:
		errs = append(errs, fmt.Errorf("auth: mode %q is not one of none, bearer, api_key, oauth2", o.Auth.Mode))
	}
	if o.Auth.TokenTTL < 0 {
		errs = append(errs, fmt.Errorf("auth: token TTL %v is negative", o.Auth.TokenTTL))
	}
	if o.Auth.TokenTTL == 0 {
		o.Auth.TokenTTL = DefaultTokenTTL
	}
	if o.RateLimit.Requests < 0 || o.RateLimit.Window < 0 {
		errs = append(errs, fmt.Errorf("rate limit %d per %v is negative", o.RateLimit.Requests, o.RateLimit.Window))
	}
	if o.RateLimit.Requests > 0 && o.RateLimit.Window == 0 {
		o.RateLimit.Window = time.Second
	}
	if err := o.Faults.Validate(); err != nil {
		errs = append(errs, err)
	}
	o.Faults = o.Faults.normalized()
	return o, errors.Join(errs...)
}
