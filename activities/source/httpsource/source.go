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

	cleanhttp "github.com/hashicorp/go-cleanhttp"
	retryablehttp "github.com/hashicorp/go-retryablehttp"
	"golang.org/x/time/rate"

	"github.com/tetherflow/tether/activities/failure"
	"github.com/tetherflow/tether/activities/source"
)

// Source reads pages of one integration from an HTTP API. It is safe for
// concurrent use: one Source serves every activity of a worker, so its
// rate limit and its OAuth2 token are shared by all of them.
type Source struct {
	integration string
	cfg         Config // with defaults
	base        *url.URL

	client *retryablehttp.Client
	pacer  *pacer
	oauth  *oauthTokens // nil unless Auth.Kind is oauth2
	memos  source.MemoStore
	log    *slog.Logger
	now    func() time.Time

	transport http.RoundTripper // under the retries and the pacer
}

var _ source.Source = (*Source)(nil)

// Option changes how New builds a Source.
type Option func(*Source)

// WithMemoStore lets the Source send If-None-Match with the ETag the
// pipeline remembered for a page (Config.ConditionalRequests).
func WithMemoStore(m source.MemoStore) Option {
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
	transport := s.transport
	if transport == nil {
		transport = cleanhttp.DefaultPooledTransport()
	}

	var limiter *rate.Limiter
	if cfg.RateLimit.RequestsPerSecond > 0 {
		limiter = rate.NewLimiter(rate.Limit(cfg.RateLimit.RequestsPerSecond), cfg.RateLimit.Burst)
	}
	s.pacer = &pacer{limiter: limiter, now: s.now, sleep: sleepCtx, maxWait: cfg.Retry.WaitMax}

	s.client = &retryablehttp.Client{
		HTTPClient: &http.Client{
			Transport:     &pacedTransport{next: transport, pacer: s.pacer},
			Timeout:       cfg.Timeout,
			CheckRedirect: sameHostRedirects,
		},
		Logger:         nil, // retries are logged by RequestLogHook, through slog
		RetryMax:       cfg.Retry.Max,
		RetryWaitMin:   cfg.Retry.WaitMin,
		RetryWaitMax:   cfg.Retry.WaitMax,
		CheckRetry:     s.checkRetry,
		Backoff:        s.backoff,
		ErrorHandler:   keepLastResponse,
		RequestLogHook: s.logRetry,
	}
	if cfg.Auth.Kind == AuthOAuth2 {
		s.oauth = newOAuthTokens(cfg.Auth, &http.Client{Transport: transport, Timeout: cfg.Timeout})
	}
	return s, nil
}

// Fetch reads the page at req.Position. Its errors are classified with
// package failure and name the method, the URL (without secrets), the
// status and the start of the body.
func (s *Source) Fetch(ctx context.Context, req source.Request) (source.Page, error) {
	u, err := s.requestURL(req)
	if err != nil {
		return source.Page{}, err
	}
	cacheKey := u.String()

	integration := req.Integration
	if integration == "" {
		integration = s.integration
	}
	var memo source.Memo
	var conditional bool
	if s.cfg.ConditionalRequests && s.memos != nil {
		m, ok, err := s.memos.Recall(ctx, integration, cacheKey)
		switch {
		case err != nil:
			// An unconditional request is always correct, only slower.
			s.log.WarnContext(ctx, "page memo unavailable; requesting the page unconditionally",
				"integration", integration, "url", redactURL(cacheKey), "error", err)
		case ok && m.ETag != "":
			memo, conditional = m, true
		}
	}

	start := time.Now()
	resp, err := s.send(ctx, u, memo.ETag, conditional)
	if err != nil {
		return source.Page{}, err
	}
	defer resp.Body.Close()

	page, err := s.readPage(resp, req, u, memo, conditional)
	if err != nil {
		return source.Page{}, err
	}
	page.CacheKey = cacheKey
	s.log.DebugContext(ctx, "fetched page", "integration", integration, "url", redactURL(cacheKey),
		"status", page.StatusCode, "records", page.RecordCount, "notModified", page.NotModified,
		"done", page.Done, "elapsed", time.Since(start))
	return page, nil
}

// send performs the GET with inner retries. With OAuth2, a 401 drops the
// cached token and the request is sent once more with a fresh one.
func (s *Source) send(ctx context.Context, u *url.URL, etag string, conditional bool) (*http.Response, error) {
	for attempt := 0; ; attempt++ {
		hreq, err := retryablehttp.NewRequestWithContext(ctx, http.MethodGet, u.String(), nil)
		if err != nil {
			return nil, failure.Permanent(failure.TypeConfig, fmt.Errorf("GET %s: %w", redactURL(u.String()), err))
		}
		hreq.Header.Set("Accept", "application/json")
		hreq.Header.Set("User-Agent", "tether-httpsource")
		for k, v := range s.cfg.Headers {
			hreq.Header.Set(k, v)
		}
		tok, err := s.authorize(hreq.Request)
		if err != nil {
			return nil, err
		}
		if conditional {
			hreq.Header.Set("If-None-Match", etag)
		}
		resp, err := s.client.Do(hreq)
		if err != nil {
			return nil, s.classifyTransportError(ctx, u, err)
		}
		if resp.StatusCode == http.StatusUnauthorized && s.oauth != nil && attempt == 0 {
			drain(resp)
			s.oauth.invalidate(tok)
			s.log.InfoContext(ctx, "source refused the OAuth2 token; fetching a new one",
				"integration", s.integration, "url", redactURL(u.String()))
			continue
		}
		return resp, nil
	}
}

// requestURL builds the URL of the page at req.Position.
func (s *Source) requestURL(req source.Request) (*url.URL, error) {
	p := s.cfg.Pagination
	pos := req.Position
	if p.Style == StyleLink && pos.NextURL != "" {
		u, err := url.Parse(pos.NextURL)
		if err == nil && !sameOrigin(s.base, u) {
			err = errors.New("not on the base_url's host")
		}
		if err != nil {
			return nil, failure.Permanent(failure.TypeConfig,
				fmt.Errorf("position next URL %s: %w", redactURL(pos.NextURL), err))
		}
		return u, nil
	}

	u := *s.base
	u.Path = joinPath(s.base.Path, s.cfg.Path)
	u.RawPath = ""
	q := u.Query()
	for k, v := range s.cfg.Query {
		q.Set(k, v)
	}
	if s.cfg.Incremental.Param != "" && req.Since.Cursor != "" {
		q.Set(s.cfg.Incremental.Param, req.Since.Cursor)
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

func (s *Source) pageNumber(pos source.Position) int {
	if pos.Page == 0 {
		return s.cfg.Pagination.StartPage
	}
	return pos.Page
}

// readPage turns a response into a Page, or a classified error.
func (s *Source) readPage(resp *http.Response, req source.Request, u *url.URL, memo source.Memo, conditional bool) (source.Page, error) {
	switch {
	case resp.StatusCode == http.StatusNotModified && conditional:
		etag := resp.Header.Get("ETag")
		if etag == "" {
			etag = memo.ETag
		}
		return source.Page{
			NotModified: true,
			Next:        memo.Next,
			Done:        memo.Done,
			RecordCount: memo.RecordCount,
			StatusCode:  resp.StatusCode,
			ETag:        etag,
		}, nil
	case resp.StatusCode == http.StatusNoContent:
		return source.Page{Done: true, StatusCode: resp.StatusCode, ETag: resp.Header.Get("ETag")}, nil
	case resp.StatusCode < 200 || resp.StatusCode > 299:
		return source.Page{}, s.statusError(resp, u)
	}

	body, err := s.readBody(resp, u)
	if err != nil {
		return source.Page{}, err
	}
	doc, err := s.parseBody(resp, u, body)
	if err != nil {
		return source.Page{}, err
	}
	records, err := doc.records(s.cfg.RecordsPath)
	if err != nil {
		return source.Page{}, s.malformed(resp, u, err)
	}
	next, done, err := s.advance(req, u, doc, resp, len(records))
	if err != nil {
		return source.Page{}, s.malformed(resp, u, err)
	}
	return source.Page{
		Records:     records,
		Next:        next,
		Done:        done,
		RecordCount: len(records),
		StatusCode:  resp.StatusCode,
		ETag:        resp.Header.Get("ETag"),
	}, nil
}

// advance works out where the following page is and whether this was the
// last one, per pagination style.
func (s *Source) advance(req source.Request, u *url.URL, doc document, resp *http.Response, n int) (source.Position, bool, error) {
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
					return source.Position{}, true, nil
				}
				return source.Position{Page: page + 1}, false, nil
			}
		}
		if short {
			return source.Position{}, true, nil
		}
		return source.Position{Page: page + 1}, false, nil
	case StyleOffset:
		if short {
			return source.Position{}, true, nil
		}
		return source.Position{Offset: pos.Offset + n}, false, nil
	case StyleCursor:
		tok, err := doc.text(p.NextCursorPath)
		if err != nil {
			return source.Position{}, false, fmt.Errorf("next cursor: %w", err)
		}
		if tok == "" {
			return source.Position{}, true, nil
		}
		if tok == pos.Token {
			return source.Position{}, false, fmt.Errorf("next cursor at %q repeats the current one %q: the read would never end", p.NextCursorPath, tok)
		}
		return source.Position{Token: tok}, false, nil
	case StyleLink:
		target, ok := nextLink(resp.Header.Values("Link"))
		if !ok {
			return source.Position{}, true, nil
		}
		next, err := u.Parse(target)
		if err != nil {
			return source.Position{}, false, fmt.Errorf("link rel=\"next\" %q: %w", redactURL(target), err)
		}
		if !sameOrigin(s.base, next) {
			return source.Position{}, false, fmt.Errorf("link rel=\"next\" %s is not on the base_url's host: credentials are not sent elsewhere", redactURL(next.String()))
		}
		if next.String() == u.String() {
			return source.Position{}, false, fmt.Errorf("link rel=\"next\" points at the page itself: the read would never end")
		}
		return source.Position{NextURL: next.String()}, false, nil
	default:
		return source.Position{}, true, nil
	}
}

// joinPath appends p to the base path with exactly one slash between.
func joinPath(base, p string) string {
	switch {
	case p == "":
		return base
	case base == "" || base == "/":
		if p[0] != '/' {
			return "/" + p
		}
		return p
	}
	for len(base) > 0 && base[len(base)-1] == '/' {
		base = base[:len(base)-1]
	}
	for len(p) > 0 && p[0] == '/' {
		p = p[1:]
	}
	return base + "/" + p
}

// sameOrigin reports whether u is on base's host (https may replace http).
func sameOrigin(base, u *url.URL) bool {
	if u.Host == "" || !strings.EqualFold(u.Host, base.Host) {
		return false
	}
	return u.Scheme == base.Scheme || (base.Scheme == "http" && u.Scheme == "https")
}

// sameHostRedirects follows redirects on the source's host only: Go drops
// Authorization on a cross-host redirect but not an API-key header. A
// refused redirect surfaces as its 3xx status.
func sameHostRedirects(req *http.Request, via []*http.Request) error {
	if len(via) >= 10 {
		return http.ErrUseLastResponse
	}
	if !sameOrigin(via[0].URL, req.URL) {
		return http.ErrUseLastResponse
	}
	return nil
}
