package httpclient

import (
	"context"
	"fmt"
	"log/slog"
	"net/http"
	"net/url"
	"strings"
	"time"

	"go.opentelemetry.io/contrib/instrumentation/net/http/otelhttp"

	cleanhttp "github.com/hashicorp/go-cleanhttp"
	retryablehttp "github.com/hashicorp/go-retryablehttp"

	"github.com/tetherflow/tether/activities/lib/failure"
)

// ErrorTypes are the failure types a Client's errors carry, so that a
// source's errors say "source" and a destination's say "sink".
type ErrorTypes struct {
	// HTTP: an error status retrying cannot fix.
	HTTP string
	// Auth: the API refused the credentials (401/403).
	Auth string
	// NotFound: the API has no such resource (404/410).
	NotFound string
	// Throttled: the API asked us to slow down (429, 503 + Retry-After).
	Throttled string
	// Unavailable: the API could not be reached or failed (5xx, network).
	Unavailable string
}

// Options configure a Client. Auth, RateLimit and Retry are taken as
// validated and as their WithDefaults methods return them (Retry's is not
// idempotent: it turns Max -1 into 0, and 0 into the default).
type Options struct {
	// Name identifies the integration in logs.
	Name string
	// Auth holds the credentials sent with every request.
	Auth Auth
	// RateLimit bounds the request rate of every request of the Client.
	RateLimit RateLimit
	// Retry bounds the short in-process retries of one request.
	Retry Retry
	// Timeout bounds one attempt (default 30s).
	Timeout time.Duration
	// Headers are static headers sent with every request.
	Headers map[string]string
	// UserAgent is sent as User-Agent.
	UserAgent string
	// Types are the failure types of the Client's errors.
	Types ErrorTypes
	// NoRedirects answers every redirect with its own 3xx status (for
	// writes: Go would turn a redirected POST into a GET). Otherwise
	// redirects are followed on the same host only.
	NoRedirects bool
	// Transport carries the requests, under the retries and the pacing, for
	// the API and the OAuth2 token endpoint alike (default: a pooled
	// transport of its own).
	Transport http.RoundTripper
	// Logger receives retries and token refreshes (default: discard).
	Logger *slog.Logger
	// Now is the clock used to read Retry-After and X-RateLimit-Reset and to
	// pace requests (default time.Now).
	Now func() time.Time
	// Sleep waits for the pacer (default: a timer that honours ctx).
	Sleep func(ctx context.Context, d time.Duration) error
}

// Client sends requests to one API with its credentials, paced by a token
// bucket and by the server's own word, with short inner retries, and
// classifies what goes wrong with package failure. It is safe for
// concurrent use.
type Client struct {
	name    string
	auth    Auth
	retry   Retry
	headers map[string]string
	agent   string
	types   ErrorTypes
	noRedir bool
	log     *slog.Logger
	now     func() time.Time

	pacer  *Pacer
	oauth  *oauthTokens // nil unless Auth.Kind is oauth2
	client *retryablehttp.Client
}

// New builds a Client.
func New(o Options) *Client {
	c := &Client{
		name:    o.Name,
		auth:    o.Auth,
		retry:   o.Retry,
		headers: o.Headers,
		agent:   o.UserAgent,
		types:   o.Types,
		noRedir: o.NoRedirects,
		log:     o.Logger,
		now:     o.Now,
	}
	if c.log == nil {
		c.log = slog.New(slog.DiscardHandler)
	}
	if c.now == nil {
		c.now = time.Now
	}
	timeout := o.Timeout
	if timeout == 0 {
		timeout = DefaultTimeout
	}
	transport := o.Transport
	if transport == nil {
		transport = cleanhttp.DefaultPooledTransport()
	}
	// Each attempt is a span under the step's when tracing is on.
	transport = otelhttp.NewTransport(transport)
	c.pacer = newPacer(o.RateLimit, c.retry.WaitMax, c.now, o.Sleep)
	redirects := sameHostRedirects
	if c.noRedir {
		redirects = noRedirects
	}
	c.client = &retryablehttp.Client{
		HTTPClient: &http.Client{
			Transport:     &pacedTransport{next: transport, pacer: c.pacer},
			Timeout:       timeout,
			CheckRedirect: redirects,
		},
		Logger:         nil, // retries are logged by RequestLogHook, through slog
		RetryMax:       c.retry.Max,
		RetryWaitMin:   c.retry.WaitMin,
		RetryWaitMax:   c.retry.WaitMax,
		CheckRetry:     c.checkRetry,
		Backoff:        c.backoff,
		ErrorHandler:   keepLastResponse,
		RequestLogHook: c.logRetry,
	}
	if c.auth.Kind == AuthOAuth2 {
		c.oauth = newOAuthTokens(c.auth, &http.Client{Transport: transport, Timeout: timeout}, c.types)
	}
	return c
}

// Pacer returns the Client's pacer, shared by all its requests.
func (c *Client) Pacer() *Pacer { return c.pacer }

// Do sends one request with the static headers, the credentials and the
// given header, paced and with short inner retries; body (JSON or nil) is
// sent again on every retry. With OAuth2, a 401 drops the cached token and
// the request is sent once more with a fresh one.
//
// Do returns the response whatever its status, its body open for the
// caller, or, when no answer came, a classified error (transient,
// throttled by the pacer, or the context's error when ctx ended).
func (c *Client) Do(ctx context.Context, method string, u *url.URL, body []byte, header http.Header) (*http.Response, error) {
	for attempt := 0; ; attempt++ {
		var payload any
		if body != nil {
			payload = body
		}
		req, err := retryablehttp.NewRequestWithContext(ctx, method, u.String(), payload)
		if err != nil {
			return nil, failure.Permanent(failure.TypeConfig, fmt.Errorf("%s %s: %w", method, RedactURL(u.String()), err))
		}
		req.Header.Set("Accept", "application/json")
		if c.agent != "" {
			req.Header.Set("User-Agent", c.agent)
		}
		for k, v := range c.headers {
			req.Header.Set(k, v)
		}
		for k, vs := range header {
			req.Header[http.CanonicalHeaderKey(k)] = vs
		}
		tok, err := c.authorize(req.Request)
		if err != nil {
			return nil, err
		}
		resp, err := c.client.Do(req)
		if err != nil {
			return nil, c.transportError(ctx, method, u, err)
		}
		if resp.StatusCode == http.StatusUnauthorized && c.oauth != nil && attempt == 0 {
			Drain(resp)
			c.oauth.invalidate(tok)
			c.log.InfoContext(ctx, "API refused the OAuth2 token; fetching a new one",
				"integration", c.name, "url", RedactURL(u.String()))
			continue
		}
		return resp, nil
	}
}

// JoinPath appends p to the base path with exactly one slash between.
func JoinPath(base, p string) string {
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

// SameOrigin reports whether u is on base's host (https may replace http):
// credentials are sent nowhere else.
func SameOrigin(base, u *url.URL) bool {
	if u.Host == "" || !strings.EqualFold(u.Host, base.Host) {
		return false
	}
	return u.Scheme == base.Scheme || (base.Scheme == "http" && u.Scheme == "https")
}

// sameHostRedirects follows redirects on the API's host only: Go drops
// Authorization on a cross-host redirect but not an API-key header. A
// refused redirect surfaces as its 3xx status.
func sameHostRedirects(req *http.Request, via []*http.Request) error {
	if len(via) >= 10 {
		return http.ErrUseLastResponse
	}
	if !SameOrigin(via[0].URL, req.URL) {
		return http.ErrUseLastResponse
	}
	return nil
}

// noRedirects answers every redirect with its 3xx status.
func noRedirects(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }
