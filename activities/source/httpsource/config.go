package httpsource

import (
	"errors"
	"fmt"
	"net/url"
	"strings"
	"time"
)

// Pagination styles a Config can name in Pagination.Style.
const (
	// StyleNone reads one request; its answer is the whole dataset.
	StyleNone = "none"
	// StylePage numbers pages: ?page=N&per_page=M.
	StylePage = "page"
	// StyleOffset counts records: ?offset=N&limit=M.
	StyleOffset = "offset"
	// StyleCursor passes on an opaque token taken from the previous body.
	StyleCursor = "cursor"
	// StyleLink follows the RFC 8288 Link header's rel="next" URL.
	StyleLink = "link"
)

// Authentication kinds a Config can name in Auth.Kind.
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

// Defaults applied by New to every key left at its zero value.
const (
	DefaultTimeout        = 30 * time.Second
	DefaultMaxBodyBytes   = 32 << 20
	DefaultRetryMax       = 2
	DefaultRetryWaitMin   = 100 * time.Millisecond
	DefaultRetryWaitMax   = 2 * time.Second
	DefaultPageParam      = "page"
	DefaultSizeParam      = "per_page"
	DefaultOffsetParam    = "offset"
	DefaultLimitParam     = "limit"
	DefaultCursorParam    = "cursor"
	DefaultNextCursorPath = "next_cursor"
	DefaultAPIKeyHeader   = "X-API-Key"
	// maxRetryMax bounds inner retries: Temporal owns long backoff.
	maxRetryMax = 10
)

// totalPagesPath is where page-numbered APIs commonly report their page count.
const totalPagesPath = "meta.total_pages"

// Config describes one HTTP source: where its records are, how to page
// through them, how to authenticate and how hard it may be pushed.
type Config struct {
	// BaseURL is the API's scheme and host, with an optional path prefix ("http://127.0.0.1:8081").
	BaseURL string `mapstructure:"base_url" yaml:"base_url" json:"base_url"`
	// Path is the collection's path below BaseURL ("/v1/contacts").
	Path string `mapstructure:"path" yaml:"path" json:"path"`
	// Query holds static query parameters sent with every first-page request.
	Query map[string]string `mapstructure:"query" yaml:"query" json:"query"`
	// Headers holds static headers sent with every request.
	Headers map[string]string `mapstructure:"headers" yaml:"headers" json:"headers"`
	// RecordsPath is the dot path to the records array in the JSON body
	// ("data"); empty means the body itself is the array.
	RecordsPath string `mapstructure:"records_path" yaml:"records_path" json:"records_path"`
	// Pagination says how to ask for the following page.
	Pagination Pagination `mapstructure:"pagination" yaml:"pagination" json:"pagination"`
	// Incremental says how to ask for records changed since a checkpoint.
	Incremental Incremental `mapstructure:"incremental" yaml:"incremental" json:"incremental"`
	// Auth holds the credentials. Its secrets never appear in logs or errors.
	Auth Auth `mapstructure:"auth" yaml:"auth" json:"auth"`
	// ConditionalRequests sends If-None-Match with the ETag remembered for
	// the page, so unchanged pages come back as 304 and are skipped.
	ConditionalRequests bool `mapstructure:"conditional_requests" yaml:"conditional_requests" json:"conditional_requests"`
	// RateLimit bounds the request rate of every Fetch sharing the Source.
	RateLimit RateLimit `mapstructure:"rate_limit" yaml:"rate_limit" json:"rate_limit"`
	// Timeout bounds one HTTP request (default 30s).
	Timeout time.Duration `mapstructure:"timeout" yaml:"timeout" json:"timeout"`
	// MaxBodyBytes bounds a page's body (default 32 MiB); a larger page
	// fails permanently with failure.TypeSourceTooLarge.
	MaxBodyBytes int64 `mapstructure:"max_body_bytes" yaml:"max_body_bytes" json:"max_body_bytes"`
	// Retry bounds the short in-process retries of one Fetch.
	Retry Retry `mapstructure:"retry" yaml:"retry" json:"retry"`
}

// Pagination says how pages are requested and when the last one was read.
type Pagination struct {
	// Style is one of none, page, offset, cursor or link (empty = none).
	Style string `mapstructure:"style" yaml:"style" json:"style"`
	// PageParam is the page-number parameter of the page style (default "page").
	PageParam string `mapstructure:"page_param" yaml:"page_param" json:"page_param"`
	// StartPage is the number of the first page (default 1).
	StartPage int `mapstructure:"start_page" yaml:"start_page" json:"start_page"`
	// SizeParam is the page-size parameter of the page style (default "per_page").
	SizeParam string `mapstructure:"size_param" yaml:"size_param" json:"size_param"`
	// OffsetParam is the offset parameter of the offset style (default "offset").
	OffsetParam string `mapstructure:"offset_param" yaml:"offset_param" json:"offset_param"`
	// LimitParam is the page-size parameter of the offset, cursor and link
	// styles (default "limit").
	LimitParam string `mapstructure:"limit_param" yaml:"limit_param" json:"limit_param"`
	// CursorParam is the token parameter of the cursor style (default "cursor").
	CursorParam string `mapstructure:"cursor_param" yaml:"cursor_param" json:"cursor_param"`
	// NextCursorPath is the dot path of the next token in the body (default
	// "next_cursor"); a missing, null or empty token marks the last page.
	NextCursorPath string `mapstructure:"next_cursor_path" yaml:"next_cursor_path" json:"next_cursor_path"`
}

// Incremental says how the source is asked for changed records only.
type Incremental struct {
	// Param is the query parameter that receives Request.Since.Cursor
	// (e.g. "updated_since"); empty means the source always reads everything.
	Param string `mapstructure:"param" yaml:"param" json:"param"`
}

// Auth holds a source's credentials.
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

// RateLimit is a token bucket shared by every Fetch of one Source.
type RateLimit struct {
	// RequestsPerSecond is the sustained rate; 0 means unlimited.
	RequestsPerSecond float64 `mapstructure:"requests_per_second" yaml:"requests_per_second" json:"requests_per_second"`
	// Burst is how many requests may go at once (default 1 when limited).
	Burst int `mapstructure:"burst" yaml:"burst" json:"burst"`
}

// Retry bounds the in-process retries of one Fetch. They stay short:
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

// Validate reports every problem in c, each naming its field.
func (c Config) Validate() error {
	var errs []error
	add := func(field, format string, args ...any) {
		errs = append(errs, fmt.Errorf("%s: %s", field, fmt.Sprintf(format, args...)))
	}
	d := c.withDefaults()

	if c.BaseURL == "" {
		add("base_url", "required (e.g. \"https://api.example.com\")")
	} else if u, err := url.Parse(c.BaseURL); err != nil {
		add("base_url", "not a URL: %v", err)
	} else if u.Scheme != "http" && u.Scheme != "https" {
		add("base_url", "scheme %q is not http or https", u.Scheme)
	} else if u.Host == "" {
		add("base_url", "no host in %q", c.BaseURL)
	} else if u.User != nil {
		add("base_url", "credentials in the URL are not allowed (use auth)")
	}
	if strings.ContainsAny(c.Path, "?#") {
		add("path", "%q holds a query or fragment (use query)", c.Path)
	}
	for k := range c.Query {
		if k == "" {
			add("query", "empty parameter name")
		}
	}
	for k := range c.Headers {
		if !validHeaderName(k) {
			add("headers", "%q is not a valid header name", k)
		}
	}
	if err := checkPath(c.RecordsPath); err != nil {
		add("records_path", "%v", err)
	}

	p := d.Pagination
	switch p.Style {
	case StyleNone, StylePage, StyleOffset, StyleCursor, StyleLink:
	default:
		add("pagination.style", "unknown style %q (want none, page, offset, cursor or link)", c.Pagination.Style)
	}
	if c.Pagination.StartPage < 0 {
		add("pagination.start_page", "must not be negative, got %d", c.Pagination.StartPage)
	}
	if p.Style == StyleCursor {
		if err := checkPath(p.NextCursorPath); err != nil {
			add("pagination.next_cursor_path", "%v", err)
		}
		if p.NextCursorPath == "" {
			add("pagination.next_cursor_path", "required for the cursor style")
		}
	}
	// Parameters the connector sets must not collide with each other or
	// with static ones, or one would silently overwrite the other.
	owner := map[string]string{}
	claim := func(field, param string) {
		if param == "" {
			return
		}
		if prev, ok := owner[param]; ok {
			add(field, "parameter %q is already used by %s", param, prev)
			return
		}
		owner[param] = field
	}
	switch p.Style {
	case StylePage:
		claim("pagination.page_param", p.PageParam)
		claim("pagination.size_param", p.SizeParam)
	case StyleOffset:
		claim("pagination.offset_param", p.OffsetParam)
		claim("pagination.limit_param", p.LimitParam)
	case StyleCursor:
		claim("pagination.cursor_param", p.CursorParam)
		claim("pagination.limit_param", p.LimitParam)
	case StyleLink:
		claim("pagination.limit_param", p.LimitParam)
	}
	claim("incremental.param", c.Incremental.Param)
	for k := range c.Query {
		if prev, ok := owner[k]; ok {
			add("query", "parameter %q is set by %s", k, prev)
		}
	}

	a := d.Auth
	switch a.Kind {
	case AuthNone:
	case AuthBearer:
		if a.Token == "" {
			add("auth.token", "required for auth kind bearer")
		}
	case AuthAPIKey:
		if a.APIKey == "" {
			add("auth.api_key", "required for auth kind api_key")
		}
		if !validHeaderName(a.Header) {
			add("auth.header", "%q is not a valid header name", a.Header)
		}
	case AuthOAuth2:
		if a.TokenURL == "" {
			add("auth.token_url", "required for auth kind oauth2")
		} else if u, err := url.Parse(a.TokenURL); err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
			add("auth.token_url", "not an http(s) URL")
		}
		if a.ClientID == "" {
			add("auth.client_id", "required for auth kind oauth2")
		}
		if a.ClientSecret == "" {
			add("auth.client_secret", "required for auth kind oauth2")
		}
	default:
		add("auth.kind", "unknown kind %q (want none, bearer, api_key or oauth2)", c.Auth.Kind)
	}

	if c.RateLimit.RequestsPerSecond < 0 {
		add("rate_limit.requests_per_second", "must not be negative, got %g", c.RateLimit.RequestsPerSecond)
	}
	if c.RateLimit.Burst < 0 {
		add("rate_limit.burst", "must not be negative, got %d", c.RateLimit.Burst)
	}
	if c.Timeout < 0 {
		add("timeout", "must not be negative, got %s", c.Timeout)
	}
	if c.MaxBodyBytes < 0 {
		add("max_body_bytes", "must not be negative, got %d", c.MaxBodyBytes)
	}
	if c.Retry.Max < -1 || c.Retry.Max > maxRetryMax {
		add("retry.max", "%d is out of range (want -1 for none, 0 for the default %d, up to %d: Temporal owns long backoff)", c.Retry.Max, DefaultRetryMax, maxRetryMax)
	}
	if c.Retry.WaitMin < 0 {
		add("retry.wait_min", "must not be negative, got %s", c.Retry.WaitMin)
	}
	if c.Retry.WaitMax < 0 {
		add("retry.wait_max", "must not be negative, got %s", c.Retry.WaitMax)
	}
	if d.Retry.WaitMin > d.Retry.WaitMax {
		add("retry.wait_min", "%s is above retry.wait_max %s", d.Retry.WaitMin, d.Retry.WaitMax)
	}
	return errors.Join(errs...)
}

// withDefaults returns c with every unset key at its default.
func (c Config) withDefaults() Config {
	p := &c.Pagination
	if p.Style == "" {
		p.Style = StyleNone
	}
	setDefault(&p.PageParam, DefaultPageParam)
	setDefault(&p.SizeParam, DefaultSizeParam)
	setDefault(&p.OffsetParam, DefaultOffsetParam)
	setDefault(&p.LimitParam, DefaultLimitParam)
	setDefault(&p.CursorParam, DefaultCursorParam)
	setDefault(&p.NextCursorPath, DefaultNextCursorPath)
	if p.StartPage == 0 {
		p.StartPage = 1
	}
	if c.Auth.Kind == "" {
		c.Auth.Kind = AuthNone
	}
	setDefault(&c.Auth.Header, DefaultAPIKeyHeader)
	if c.RateLimit.RequestsPerSecond > 0 && c.RateLimit.Burst == 0 {
		c.RateLimit.Burst = 1
	}
	if c.Timeout == 0 {
		c.Timeout = DefaultTimeout
	}
	if c.MaxBodyBytes == 0 {
		c.MaxBodyBytes = DefaultMaxBodyBytes
	}
	switch c.Retry.Max {
	case 0:
		c.Retry.Max = DefaultRetryMax
	case -1:
		c.Retry.Max = 0
	}
	if c.Retry.WaitMin == 0 {
		c.Retry.WaitMin = DefaultRetryWaitMin
	}
	if c.Retry.WaitMax == 0 {
		c.Retry.WaitMax = DefaultRetryWaitMax
	}
	return c
}

func setDefault(s *string, def string) {
	if *s == "" {
		*s = def
	}
}

// checkPath reports a dot path with an empty segment ("a..b", ".a", "a.").
func checkPath(p string) error {
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

// validHeaderName reports whether s is an RFC 9110 token.
func validHeaderName(s string) bool {
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
