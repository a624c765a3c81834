package httpclient

import (
	"errors"
	"fmt"
	"net/url"
	"strings"
	"time"
)

// Authentication kinds an Auth can name in Kind.
const (
	// AuthNone sends no credentials.
	AuthNone = "none"
	// AuthBearer sends "Authorization: Bearer <token>".
	AuthBearer = "bearer"
	// AuthAPIKey sends the key in a header (X-API-Key unless Auth.Header says otherwise).
	AuthAPIKey = "api_key"
	// AuthOAuth2 obtains a token with the OAuth2 client credentials grant.
	AuthOAuth2 = "oauth2"
)

// Defaults applied to every key left at its zero value.
const (
	DefaultTimeout      = 30 * time.Second
	DefaultRetryMax     = 2
	DefaultRetryWaitMin = 100 * time.Millisecond
	DefaultRetryWaitMax = 2 * time.Second
	DefaultAPIKeyHeader = "X-API-Key"
	// MaxRetryMax bounds inner retries: Temporal owns long backoff.
	MaxRetryMax = 10
)

// Auth holds an API's credentials. Its secrets never appear in logs or
// errors.
type Auth struct {
	// Kind is one of none, bearer, api_key or oauth2 (empty = none).
	Kind string `mapstructure:"kind" yaml:"kind" json:"kind"`
	// Token is the bearer token.
	Token string `mapstructure:"token" yaml:"token" json:"token"`
	// Header names the API-key header (default "X-API-Key").
	Header string `mapstructure:"header" yaml:"header" json:"header"`
	// APIKey is the API key.
	APIKey string `mapstructure:"api_key" yaml:"api_key" json:"api_key"`
	// TokenURL is the OAuth2 token endpoint.
	TokenURL string `mapstructure:"token_url" yaml:"token_url" json:"token_url"`
	// ClientID is the OAuth2 client id.
	ClientID string `mapstructure:"client_id" yaml:"client_id" json:"client_id"`
	// ClientSecret is the OAuth2 client secret.
	ClientSecret string `mapstructure:"client_secret" yaml:"client_secret" json:"client_secret"`
	// Scopes are the OAuth2 scopes asked for.
	Scopes []string `mapstructure:"scopes" yaml:"scopes" json:"scopes"`
}

// RateLimit is a token bucket shared by every request of one Client.
type RateLimit struct {
	// RequestsPerSecond is the sustained rate; 0 means unlimited.
	RequestsPerSecond float64 `mapstructure:"requests_per_second" yaml:"requests_per_second" json:"requests_per_second"`
	// Burst is how many requests may go at once (default 1 when limited).
	Burst int `mapstructure:"burst" yaml:"burst" json:"burst"`
}

// Retry bounds the in-process retries of one request. They stay short:
// anything longer is returned to Temporal, which owns long backoff.
type Retry struct {
	// Max is the number of retries after the first attempt (default 2; -1 = none).
	Max int `mapstructure:"max" yaml:"max" json:"max"`
	// WaitMin is the first backoff (default 100ms).
	WaitMin time.Duration `mapstructure:"wait_min" yaml:"wait_min" json:"wait_min"`
	// WaitMax caps a backoff and is the longest server-requested wait
	// (Retry-After, X-RateLimit-Reset) slept in process (default 2s).
	WaitMax time.Duration `mapstructure:"wait_max" yaml:"wait_max" json:"wait_max"`
}

// WithDefaults returns a with an empty Kind as none and the default
// API-key header.
func (a Auth) WithDefaults() Auth {
	if a.Kind == "" {
		a.Kind = AuthNone
	}
	if a.Header == "" {
		a.Header = DefaultAPIKeyHeader
	}
	return a
}

// Problems reports every problem in a, each naming its YAML field below
// field (e.g. "auth.token").
func (a Auth) Problems(field string) []error {
	var errs []error
	add := problemAdder(&errs, field)
	d := a.WithDefaults()
	switch d.Kind {
	case AuthNone:
	case AuthBearer:
		if d.Token == "" {
			add("token", "required for auth kind bearer")
		}
	case AuthAPIKey:
		if d.APIKey == "" {
			add("api_key", "required for auth kind api_key")
		}
		if !ValidHeaderName(d.Header) {
			add("header", "%q is not a valid header name", d.Header)
		}
	case AuthOAuth2:
		if d.TokenURL == "" {
			add("token_url", "required for auth kind oauth2")
		} else if u, err := url.Parse(d.TokenURL); err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
			add("token_url", "not an http(s) URL")
		}
		if d.ClientID == "" {
			add("client_id", "required for auth kind oauth2")
		}
		if d.ClientSecret == "" {
			add("client_secret", "required for auth kind oauth2")
		}
	default:
		add("kind", "unknown kind %q (want none, bearer, api_key or oauth2)", a.Kind)
	}
	return errs
}

// secrets lists the configured secrets, for blanking them out of text.
func (a Auth) secrets() []string {
	return []string{a.Token, a.APIKey, a.ClientSecret}
}

// WithDefaults returns r with a burst of 1 when a rate is set without one.
func (r RateLimit) WithDefaults() RateLimit {
	if r.RequestsPerSecond > 0 && r.Burst == 0 {
		r.Burst = 1
	}
	return r
}

// Problems reports every problem in r, each naming its YAML field below field.
func (r RateLimit) Problems(field string) []error {
	var errs []error
	add := problemAdder(&errs, field)
	if r.RequestsPerSecond < 0 {
		add("requests_per_second", "must not be negative, got %g", r.RequestsPerSecond)
	}
	if r.Burst < 0 {
		add("burst", "must not be negative, got %d", r.Burst)
	}
	return errs
}

// WithDefaults returns r with every unset key at its default; Max -1
// becomes 0 retries.
func (r Retry) WithDefaults() Retry {
	switch r.Max {
	case 0:
		r.Max = DefaultRetryMax
	case -1:
		r.Max = 0
	}
	if r.WaitMin == 0 {
		r.WaitMin = DefaultRetryWaitMin
	}
	if r.WaitMax == 0 {
		r.WaitMax = DefaultRetryWaitMax
	}
	return r
}

// Problems reports every problem in r, each naming its YAML field below field.
func (r Retry) Problems(field string) []error {
	var errs []error
	add := problemAdder(&errs, field)
	if r.Max < -1 || r.Max > MaxRetryMax {
		add("max", "%d is out of range (want -1 for none, 0 for the default %d, up to %d: Temporal owns long backoff)", r.Max, DefaultRetryMax, MaxRetryMax)
	}
	if r.WaitMin < 0 {
		add("wait_min", "must not be negative, got %s", r.WaitMin)
	}
	if r.WaitMax < 0 {
		add("wait_max", "must not be negative, got %s", r.WaitMax)
	}
	if d := r.WithDefaults(); d.WaitMin > d.WaitMax {
		add("wait_min", "%s is above %s.wait_max %s", d.WaitMin, field, d.WaitMax)
	}
	return errs
}

// problemAdder returns a function appending "field.sub: message" to errs.
func problemAdder(errs *[]error, field string) func(sub, format string, args ...any) {
	return func(sub, format string, args ...any) {
		*errs = append(*errs, fmt.Errorf("%s.%s: %s", field, sub, fmt.Sprintf(format, args...)))
	}
}

// CheckBaseURL reports what is wrong with an API's base URL, if anything:
// it must be an absolute http(s) URL without credentials.
func CheckBaseURL(raw string) error {
	if raw == "" {
		return fmt.Errorf("required (e.g. \"https://api.example.com\")")
	}
	u, err := url.Parse(raw)
	if ue := (*url.Error)(nil); errors.As(err, &ue) {
		err = ue.Err // without the URL, which may hold a secret
	}
	switch {
	case err != nil:
		return fmt.Errorf("not a URL: %v", err)
	case u.Scheme != "http" && u.Scheme != "https":
		return fmt.Errorf("scheme %q is not http or https", u.Scheme)
	case u.User != nil:
		return fmt.Errorf("credentials in the URL are not allowed (use auth)")
	case u.Host == "" && u.RawQuery != "":
		return fmt.Errorf("no host in %q", RedactURL(raw))
	case u.Host == "":
		return fmt.Errorf("no host in %q", raw)
	}
	return nil
}

// HeaderProblems reports every invalid name among static headers,
// naming field.
func HeaderProblems(field string, headers map[string]string) []error {
	var errs []error
	for k := range headers {
		if !ValidHeaderName(k) {
			errs = append(errs, fmt.Errorf("%s: %q is not a valid header name", field, k))
		}
	}
	return errs
}

// CheckDotPath reports a dot path into a JSON body with an empty segment
// ("a..b", ".a", "a.").
func CheckDotPath(p string) error {
	if p == "" {
		return nil
	}
	for i, seg := range strings.Split(p, ".") {
		if seg == "" {
			return fmt.Errorf("%q has an empty segment at position %d", p, i+1)
		}
	}
	return nil
}

// ValidHeaderName reports whether s is an RFC 9110 token.
func ValidHeaderName(s string) bool {
	if s == "" {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		switch {
		case c >= 'a' && c <= 'z', c >= 'A' && c <= 'Z', c >= '0' && c <= '9':
		case strings.IndexByte("!#$%&'*+-.^_`|~", c) >= 0:
		default:
			return false
		}
	}
	return true
}

// Connection is an API a worker reaches, configured once by name in the
// worker's configuration and named by the integrations that use it: where
// it is, how to authenticate and how fast to call it.
type Connection struct {
	BaseURL   string
	Auth      Auth
	RateLimit RateLimit
}
