package httpsource

import (
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/tetherflow/tether/activities/lib/httpclient"
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
	AuthNone = httpclient.AuthNone
	// AuthBearer sends "Authorization: Bearer <token>".
	AuthBearer = httpclient.AuthBearer
	// AuthAPIKey sends the key in a header (X-API-Key unless Auth.Header says otherwise).
	AuthAPIKey = httpclient.AuthAPIKey
	// AuthOAuth2 obtains a token with the OAuth2 client credentials grant.
	AuthOAuth2 = httpclient.AuthOAuth2
)

// Defaults applied by New to every key left at its zero value.
const (
	DefaultTimeout        = httpclient.DefaultTimeout
	DefaultMaxBodyBytes   = 32 << 20
	DefaultRetryMax       = httpclient.DefaultRetryMax
	DefaultRetryWaitMin   = httpclient.DefaultRetryWaitMin
	DefaultRetryWaitMax   = httpclient.DefaultRetryWaitMax
	DefaultPageParam      = "page"
	DefaultSizeParam      = "per_page"
	DefaultOffsetParam    = "offset"
	DefaultLimitParam     = "limit"
	DefaultCursorParam    = "cursor"
	DefaultNextCursorPath = "next_cursor"
	DefaultAPIKeyHeader   = httpclient.DefaultAPIKeyHeader
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
	// Total says where the API announces how many records a read has, so
	// that a read ending with fewer is caught (the integration's
	// short_read policy). By default the X-Total-Count header, when sent.
	Total Total `mapstructure:"total" yaml:"total" json:"total,omitzero"`
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

// Total says where the API announces the number of records of a read.
type Total struct {
	// Header is the response header holding it (default "X-Total-Count").
	Header string `mapstructure:"header" yaml:"header" json:"header"`
	// Path, when set, is the dot path of the number in the body instead
	// (e.g. "meta.total").
	Path string `mapstructure:"path" yaml:"path" json:"path"`
	// Ignore disregards any announced total (an API whose count means
	// something else).
	Ignore bool `mapstructure:"ignore" yaml:"ignore" json:"ignore"`
}

// DefaultTotalHeader is the header an API announces its total in, unless
// told otherwise.
const DefaultTotalHeader = "X-Total-Count"

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
	// Start is Param's value when there is no checkpoint yet (a first
	// run, a full read), for APIs that list changes only with the filter
	// set (e.g. "1970-01-01T00:00:00Z"); empty: Param is left out then.
	Start string `mapstructure:"start" yaml:"start" json:"start,omitempty"`
	// FollowPages follows the API's next cursor or link from the first
	// page of a read to its last, with Param fixed at the read's start,
	// instead of asking again "since" the last record of every page. An
	// API's filter is usually inclusive (updated_since=t returns the
	// records updated at t), so asking again reads once more every record
	// sharing the last one's updated_at: many, when they share few values.
	// Only for cursor or link pagination whose token names a position in
	// the (updated_at, id) order (keyset pagination): a record updated
	// during the read then moves past the token and is read again later,
	// not skipped. With page or offset pagination that update shifts the
	// following pages and one record would be skipped, so it is refused.
	FollowPages bool `mapstructure:"follow_pages" yaml:"follow_pages" json:"follow_pages,omitempty"`
}

// Auth holds a source's credentials (shared with the HTTP sink). Its
// secrets never appear in logs or errors.
type Auth = httpclient.Auth

// RateLimit is a token bucket shared by every Fetch of one Source.
type RateLimit = httpclient.RateLimit

// Retry bounds the in-process retries of one Fetch. They stay short:
// anything longer is returned to Temporal, which owns long backoff.
type Retry = httpclient.Retry

// Validate reports every problem in c, each naming its field.
func (c Config) Validate() error {
	d := c.withDefaults()
	var errs configProblems
	errs = append(errs, c.requestProblems()...)
	errs = append(errs, c.paginationProblems(d)...)
	errs = append(errs, c.paramProblems(d)...)
	errs = append(errs, c.Auth.Problems("auth")...)
	errs = append(errs, c.RateLimit.Problems("rate_limit")...)
	if c.Timeout < 0 {
		errs.add("timeout", "must not be negative, got %s", c.Timeout)
	}
	if c.MaxBodyBytes < 0 {
		errs.add("max_body_bytes", "must not be negative, got %d", c.MaxBodyBytes)
	}
	errs = append(errs, c.Retry.Problems("retry")...)
	if c.Incremental.Start != "" && c.Incremental.Param == "" {
		errs.add("incremental.start", "needs incremental.param: it is that parameter's first value")
	}
	if c.Incremental.FollowPages {
		switch {
		case c.Incremental.Param == "":
			errs.add("incremental.follow_pages", "needs incremental.param: it follows the pages of an incremental read")
		case d.Pagination.Style != StyleCursor && d.Pagination.Style != StyleLink:
			errs.add("incremental.follow_pages", "needs cursor or link pagination, got %q: with page or offset pagination a record updated during the read shifts the following pages and one record would be skipped", d.Pagination.Style)
		}
	}
	return errors.Join(errs...)
}

// configProblems collects what is wrong with a config, each problem naming
// its field.
type configProblems []error

func (p *configProblems) add(field, format string, args ...any) {
	*p = append(*p, fmt.Errorf("%s: %s", field, fmt.Sprintf(format, args...)))
}

// requestProblems checks the request (base URL, path, query, headers) and
// where the records are in its answer.
func (c Config) requestProblems() configProblems {
	var errs configProblems
	if err := httpclient.CheckBaseURL(c.BaseURL); err != nil {
		errs.add("base_url", "%v", err)
	}
	if strings.ContainsAny(c.Path, "?#") {
		errs.add("path", "%q holds a query or fragment (use query)", c.Path)
	}
	for k := range c.Query {
		if k == "" {
			errs.add("query", "empty parameter name")
		}
	}
	errs = append(errs, httpclient.HeaderProblems("headers", c.Headers)...)
	if err := httpclient.CheckDotPath(c.RecordsPath); err != nil {
		errs.add("records_path", "%v", err)
	}
	if err := httpclient.CheckDotPath(c.Total.Path); err != nil {
		errs.add("total.path", "%v", err)
	}
	if h := c.Total.Header; h != "" {
		errs = append(errs, httpclient.HeaderProblems("total.header", map[string]string{h: "0"})...)
	}
	return errs
}

// paginationProblems checks the pagination style and what it needs (d is c
// with its defaults).
func (c Config) paginationProblems(d Config) configProblems {
	var errs configProblems
	p := d.Pagination
	switch p.Style {
	case StyleNone, StylePage, StyleOffset, StyleCursor, StyleLink:
	default:
		errs.add("pagination.style", "unknown style %q (want none, page, offset, cursor or link)", c.Pagination.Style)
	}
	if c.Pagination.StartPage < 0 {
		errs.add("pagination.start_page", "must not be negative, got %d", c.Pagination.StartPage)
	}
	if p.Style == StyleCursor {
		if err := httpclient.CheckDotPath(p.NextCursorPath); err != nil {
			errs.add("pagination.next_cursor_path", "%v", err)
		}
		if p.NextCursorPath == "" {
			errs.add("pagination.next_cursor_path", "required for the cursor style")
		}
	}
	return errs
}

// paramProblems checks that the query parameters the connector sets do not
// collide with each other or with static ones, or one would silently
// overwrite the other (d is c with its defaults).
func (c Config) paramProblems(d Config) configProblems {
	var errs configProblems
	owner := map[string]string{}
	claim := func(field, param string) {
		if param == "" {
			return
		}
		if prev, ok := owner[param]; ok {
			errs.add(field, "parameter %q is already used by %s", param, prev)
			return
		}
		owner[param] = field
	}
	p := d.Pagination
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
			errs.add("query", "parameter %q is set by %s", k, prev)
		}
	}
	return errs
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
	c.Auth = c.Auth.WithDefaults()
	c.RateLimit = c.RateLimit.WithDefaults()
	if c.Timeout == 0 {
		c.Timeout = DefaultTimeout
	}
	if c.MaxBodyBytes == 0 {
		c.MaxBodyBytes = DefaultMaxBodyBytes
	}
	c.Retry = c.Retry.WithDefaults()
	return c
}

func setDefault(s *string, def string) {
	if *s == "" {
		*s = def
	}
}
