package httpsource

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"time"

	"github.com/tetherflow/tether/activities/connector"
	"github.com/tetherflow/tether/activities/lib/cursor"
	"github.com/tetherflow/tether/activities/lib/failure"
	"github.com/tetherflow/tether/activities/lib/httpclient"
)

// Source reads pages of one integration from an HTTP API. It is safe for
// concurrent use: one Source serves every activity of a worker, so its
// rate limit and its OAuth2 token are shared by all of them.
type Source struct {
	integration string
	cfg         Config // with defaults
	base        *url.URL

	client *httpclient.Client
	memos  connector.MemoStore
	log    *slog.Logger

	// Taken by New for the client.
	now       func() time.Time
	sleep     func(ctx context.Context, d time.Duration) error // nil = real timers
	transport http.RoundTripper                                // under the retries and the pacer
}

var _ connector.Source = (*Source)(nil)

// Option changes how New builds a Source.
type Option func(*Source)

// WithMemoStore lets the Source send If-None-Match with the ETag the
// pipeline remembered for a page (Config.ConditionalRequests).
func WithMemoStore(m connector.MemoStore) Option {
	return func(s *Source) { s.memos = m }
}

// WithLogger sets where requests, retries and token refreshes are logged
// (at debug and info level; never with credentials). Default: discard.
func WithLogger(l *slog.Logger) Option {
	return func(s *Source) {
		if l != nil {
			s.log = l
		}
	}
}

// WithTransport sets the transport under the retries and the rate limit,
// for the API and the OAuth2 token endpoint alike (tests, proxies).
func WithTransport(rt http.RoundTripper) Option {
	return func(s *Source) {
		if rt != nil {
			s.transport = rt
		}
	}
}

// WithClock sets the clock used to read Retry-After and X-RateLimit-Reset.
func WithClock(now func() time.Time) Option {
	return func(s *Source) {
		if now != nil {
			s.now = now
		}
	}
}

// New validates cfg and builds the Source of the named integration.
func New(integration string, cfg Config, opts ...Option) (*Source, error) {
	if err := cfg.Validate(); err != nil {
		return nil, failure.Permanent(failure.TypeConfig, fmt.Errorf("http source %q: %w", integration, err))
	}
	cfg = cfg.withDefaults()
	base, err := url.Parse(cfg.BaseURL)
	if err != nil { // unreachable after Validate, kept for safety
		return nil, failure.Permanent(failure.TypeConfig, fmt.Errorf("http source %q: base_url: %w", integration, err))
	}
	s := &Source{
		integration: integration,
		cfg:         cfg,
		base:        base,
		log:         slog.New(slog.DiscardHandler),
		now:         time.Now,
	}
	for _, o := range opts {
		o(s)
	}
	s.client = httpclient.New(httpclient.Options{
		Name:      integration,
		Auth:      cfg.Auth,
		RateLimit: cfg.RateLimit,
		Retry:     cfg.Retry,
		Timeout:   cfg.Timeout,
		Headers:   cfg.Headers,
		UserAgent: "tether-httpsource",
		Types:     errorTypes,
		Transport: s.transport,
		Logger:    s.log,
		Now:       s.now,
		Sleep:     s.sleep,
	})
	return s, nil
}

// Capabilities: an HTTP source filters by cursor when its incremental
// parameter is set, and answers "not modified" from page memos with
// conditional requests.
func (s *Source) Capabilities() connector.Capabilities {
	return connector.Capabilities{Kind: "http", Incremental: s.cfg.Incremental.Param != "", Conditional: s.cfg.ConditionalRequests,
		FollowsPages: s.cfg.Incremental.Param != "" && s.cfg.Incremental.FollowPages}
}

// Fetch reads the page at req.Position. Its errors are classified with
// package failure and name the method, the URL (without secrets), the
// status and the start of the body.
func (s *Source) Fetch(ctx context.Context, req connector.Request) (connector.Page, error) {
	u, err := s.requestURL(req)
	if err != nil {
		return connector.Page{}, err
	}
	cacheKey := u.String()

	integration := req.Integration
	if integration == "" {
		integration = s.integration
	}
	var memo cursor.Memo
	var conditional bool
	if s.cfg.ConditionalRequests && s.memos != nil && !req.Unconditional {
		m, ok, err := s.memos.Recall(ctx, integration, cacheKey)
		switch {
		case err != nil:
			// An unconditional request is always correct, only slower.
			s.log.WarnContext(ctx, "page memo unavailable; requesting the page unconditionally",
				"integration", integration, "url", httpclient.RedactURL(cacheKey), "error", err)
		case ok && m.ETag != "":
			memo, conditional = m, true
		}
	}

	start := time.Now()
	resp, err := s.send(ctx, u, memo.ETag, conditional)
	if err != nil {
		return connector.Page{}, err
	}
	defer resp.Body.Close()

	page, err := s.readPage(resp, req, u, memo, conditional)
	if err != nil {
		return connector.Page{}, err
	}
	page.CacheKey = cacheKey
	s.log.DebugContext(ctx, "fetched page", "integration", integration, "url", httpclient.RedactURL(cacheKey),
		"status", page.StatusCode, "records", page.RecordCount, "notModified", page.NotModified,
		"done", page.Done, "elapsed", time.Since(start))
	return page, nil
}

// send performs the GET, with If-None-Match when conditional.
func (s *Source) send(ctx context.Context, u *url.URL, etag string, conditional bool) (*http.Response, error) {
	var header http.Header
	if conditional {
		header = http.Header{"If-None-Match": {etag}}
	}
	return s.client.Do(ctx, http.MethodGet, u, nil, header)
}

// requestURL builds the URL of the page at req.Position.
func (s *Source) requestURL(req connector.Request) (*url.URL, error) {
	p := s.cfg.Pagination
	pos := req.Position
	if p.Style == StyleLink && pos.NextURL != "" {
		u, err := url.Parse(pos.NextURL)
		if err == nil && !httpclient.SameOrigin(s.base, u) {
			err = errors.New("not on the base_url's host")
		}
		if err != nil {
			return nil, failure.Permanent(failure.TypeConfig,
				fmt.Errorf("position next URL %s: %w", httpclient.RedactURL(pos.NextURL), err))
		}
		return u, nil
	}

	u := *s.base
	u.Path = httpclient.JoinPath(s.base.Path, s.cfg.Path)
	u.RawPath = ""
	q := u.Query()
	for k, v := range s.cfg.Query {
		q.Set(k, v)
	}
	if inc := s.cfg.Incremental; inc.Param != "" && req.Since.Cursor != "" {
		q.Set(inc.Param, req.Since.Cursor)
	} else if inc.Param != "" && inc.Start != "" {
		q.Set(inc.Param, inc.Start)
	}
	limit := ""
	if req.Limit > 0 {
		limit = strconv.Itoa(req.Limit)
	}
	setLimit := func(param string) {
		if limit != "" {
			q.Set(param, limit)
		}
	}
	switch p.Style {
	case StylePage:
		q.Set(p.PageParam, strconv.Itoa(s.pageNumber(pos)))
		setLimit(p.SizeParam)
	case StyleOffset:
		q.Set(p.OffsetParam, strconv.Itoa(pos.Offset))
		setLimit(p.LimitParam)
	case StyleCursor:
		if pos.Token != "" {
			q.Set(p.CursorParam, pos.Token)
		}
		setLimit(p.LimitParam)
	case StyleLink:
		setLimit(p.LimitParam)
	}
	u.RawQuery = q.Encode() // sorted: the same page always has the same cache key
	return &u, nil
}

func (s *Source) pageNumber(pos cursor.Position) int {
	if pos.Page == 0 {
		return s.cfg.Pagination.StartPage
	}
	return pos.Page
}

// readPage turns a response into a Page, or a classified error.
func (s *Source) readPage(resp *http.Response, req connector.Request, u *url.URL, memo cursor.Memo, conditional bool) (connector.Page, error) {
	switch {
	case resp.StatusCode == http.StatusNotModified && conditional:
		etag := resp.Header.Get("ETag")
		if etag == "" {
			etag = memo.ETag
		}
		return connector.Page{
			NotModified: true,
			Next:        memo.Next,
			Done:        memo.Done,
			RecordCount: memo.RecordCount,
			StatusCode:  resp.StatusCode,
			ETag:        etag,
		}, nil
	case resp.StatusCode == http.StatusNoContent:
		return connector.Page{Done: true, StatusCode: resp.StatusCode, ETag: resp.Header.Get("ETag")}, nil
	case resp.StatusCode < 200 || resp.StatusCode > 299:
		return connector.Page{}, s.client.StatusError(http.MethodGet, u, resp)
	}

	body, err := s.readBody(resp, u)
	if err != nil {
		return connector.Page{}, err
	}
	doc, err := s.parseBody(resp, u, body)
	if err != nil {
		return connector.Page{}, err
	}
	records, err := doc.records(s.cfg.RecordsPath)
	if err != nil {
		return connector.Page{}, s.malformed(resp, u, err)
	}
	next, done, err := s.advance(req, u, doc, resp, len(records))
	if err != nil {
		return connector.Page{}, s.malformed(resp, u, err)
	}
	total, err := s.total(resp, doc)
	if err != nil {
		return connector.Page{}, s.malformed(resp, u, err)
	}
	return connector.Page{
		Records:     records,
		Next:        next,
		Done:        done,
		RecordCount: len(records),
		StatusCode:  resp.StatusCode,
		ETag:        resp.Header.Get("ETag"),
		Total:       total,
	}, nil
}

// total is the number of records the API announces for the read (Config.
// Total), 0 when it announces none.
func (s *Source) total(resp *http.Response, doc document) (int, error) {
	t := s.cfg.Total
	switch {
	case t.Ignore:
		return 0, nil
	case t.Path != "":
		if !doc.isObject() {
			return 0, nil
		}
		n, ok, err := doc.integer(t.Path)
		if err != nil {
			return 0, fmt.Errorf("total %s: %w", t.Path, err)
		}
		if !ok {
			return 0, nil
		}
		return max(n, 0), nil
	}
	h := t.Header
	if h == "" {
		h = DefaultTotalHeader
	}
	v := strings.TrimSpace(resp.Header.Get(h))
	if v == "" {
		return 0, nil
	}
	n, err := strconv.Atoi(v)
	if err != nil || n < 0 {
		return 0, fmt.Errorf("header %s: %q is not a count of records", h, v)
	}
	return n, nil
}

// advance works out where the following page is and whether this was the
// last one, per pagination style.
func (s *Source) advance(req connector.Request, u *url.URL, doc document, resp *http.Response, n int) (cursor.Position, bool, error) {
	p := s.cfg.Pagination
	pos := req.Position
	short := n == 0 || (req.Limit > 0 && n < req.Limit)
	switch p.Style {
	case StylePage:
		page := s.pageNumber(pos)
		// A page count, when the API gives one, decides: it is not fooled by
		// a server that caps the page size below the one asked for.
		if doc.isObject() {
			if total, ok, err := doc.integer(totalPagesPath); err == nil && ok {
				if page >= total || n == 0 {
					return cursor.Position{}, true, nil
				}
				return cursor.Position{Page: page + 1}, false, nil
			}
		}
		if short {
			return cursor.Position{}, true, nil
		}
		return cursor.Position{Page: page + 1}, false, nil
	case StyleOffset:
		if short {
			return cursor.Position{}, true, nil
		}
		return cursor.Position{Offset: pos.Offset + n}, false, nil
	case StyleCursor:
		tok, err := doc.text(p.NextCursorPath)
		if err != nil {
			return cursor.Position{}, false, fmt.Errorf("next cursor: %w", err)
		}
		if tok == "" {
			return cursor.Position{}, true, nil
		}
		if tok == pos.Token {
			return cursor.Position{}, false, fmt.Errorf("next cursor at %q repeats the current one %q: the read would never end", p.NextCursorPath, tok)
		}
		return cursor.Position{Token: tok}, false, nil
	case StyleLink:
		target, ok := nextLink(resp.Header.Values("Link"))
		if !ok {
			return cursor.Position{}, true, nil
		}
		next, err := u.Parse(target)
		if err != nil {
			return cursor.Position{}, false, fmt.Errorf("link rel=\"next\" %q: %w", httpclient.RedactURL(target), err)
		}
		if !httpclient.SameOrigin(s.base, next) {
			return cursor.Position{}, false, fmt.Errorf("link rel=\"next\" %s is not on the base_url's host: credentials are not sent elsewhere", httpclient.RedactURL(next.String()))
		}
		if next.String() == u.String() {
			return cursor.Position{}, false, fmt.Errorf("link rel=\"next\" points at the page itself: the read would never end")
		}
		return cursor.Position{NextURL: next.String()}, false, nil
	default:
		return cursor.Position{}, true, nil
	}
}
