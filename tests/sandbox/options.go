package sandbox

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
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

// Faults is the fault injection applied to collection requests (GET
// /v1/contacts and /v1/companies that passed the rate limit and auth).
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
}

// MarshalJSON encodes Faults with snake_case names and the latency as a
// duration string such as "20ms".
func (f Faults) MarshalJSON() ([]byte, error) {
	return json.Marshal(faultsJSON{
		ErrorRate: f.ErrorRate, Latency: f.Latency.String(), MalformedRate: f.MalformedRate,
		InvalidRate: f.InvalidRate, FailNext: f.FailNext, FailStatus: f.FailStatus,
		FailRetryAfter: f.FailRetryAfter, NonJSONNext: f.NonJSONNext,
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
	var lat time.Duration
	if w.Latency != "" {
		d, err := time.ParseDuration(w.Latency)
		if err != nil {
			return fmt.Errorf("faults: latency: %w", err)
		}
		lat = d
	}
	*f = Faults{
		ErrorRate: w.ErrorRate, Latency: lat, MalformedRate: w.MalformedRate,
		InvalidRate: w.InvalidRate, FailNext: w.FailNext, FailStatus: w.FailStatus,
		FailRetryAfter: w.FailRetryAfter, NonJSONNext: w.NonJSONNext,
	}
	return nil
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
