package httpclient

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strings"
	"time"
	"unicode"

	retryablehttp "github.com/hashicorp/go-retryablehttp"

	"github.com/tetherflow/tether/activities/lib/failure"
)

// ErrorDetails are attached to every classified HTTP error, for the Web UI
// and for workflow code that reads ApplicationError.Details.
type ErrorDetails struct {
	// StatusCode is the HTTP status, or 0 when no answer came.
	StatusCode int `json:"statusCode"`
	// URL is the request URL, with secret-looking query values redacted.
	URL string `json:"url"`
}

// snippetBytes bounds the part of a body quoted in an error message.
const snippetBytes = 256

// checkRetry is the inner retry policy: network errors, 5xx, and 429/503
// whose Retry-After is short enough to wait in process. Everything else is
// answered at once and classified by the caller; long waits belong to
// Temporal.
func (c *Client) checkRetry(ctx context.Context, resp *http.Response, err error) (bool, error) {
	if ctx.Err() != nil {
		return false, ctx.Err()
	}
	if err != nil {
		var te *throttleError
		if errors.As(err, &te) {
			return false, nil
		}
		return true, nil // network error or timeout
	}
	if d, ok := RetryAfter(resp, c.now()); ok {
		return d <= c.retry.WaitMax, nil
	}
	switch {
	case resp.StatusCode == http.StatusTooManyRequests:
		return false, nil
	case resp.StatusCode == http.StatusNotImplemented:
		return false, nil
	case resp.StatusCode >= 500:
		return true, nil
	}
	return false, nil
}

// backoff waits exponentially between retries, except after a Retry-After:
// the pacer already holds every request of the Client until then.
func (c *Client) backoff(lo, hi time.Duration, attempt int, resp *http.Response) time.Duration {
	if _, ok := RetryAfter(resp, c.now()); ok {
		return 0
	}
	return retryablehttp.DefaultBackoff(lo, hi, attempt, nil)
}

// logRetry logs each retry (attempt > 0) through slog.
func (c *Client) logRetry(_ retryablehttp.Logger, req *http.Request, attempt int) {
	if attempt > 0 {
		c.log.InfoContext(req.Context(), "retrying HTTP request", "integration", c.name,
			"method", req.Method, "url", RedactURL(req.URL.String()), "attempt", attempt+1)
	}
}

// attemptsError records how many attempts an error took.
type attemptsError struct {
	attempts int
	err      error
}

func (e *attemptsError) Error() string {
	if e.attempts <= 1 {
		return e.err.Error()
	}
	return fmt.Sprintf("giving up after %d attempts: %v", e.attempts, e.err)
}

func (e *attemptsError) Unwrap() error { return e.err }

// keepLastResponse hands the last response to the caller for
// classification (its body still open) or, when no response came, the
// last error.
func keepLastResponse(resp *http.Response, err error, attempts int) (*http.Response, error) {
	if err != nil {
		if resp != nil {
			Drain(resp)
		}
		return nil, &attemptsError{attempts: attempts, err: err}
	}
	return resp, nil
}

// transportError classifies a request that got no usable answer.
func (c *Client) transportError(ctx context.Context, method string, u *url.URL, err error) error {
	where := method + " " + RedactURL(u.String())
	details := ErrorDetails{URL: RedactURL(u.String())}
	var te *throttleError
	if errors.As(err, &te) {
		return failure.Throttled(c.types.Throttled, fmt.Errorf("%s: %w", where, te), te.wait, details)
	}
	if ctxErr := ctx.Err(); ctxErr != nil {
		// The activity is ending (cancelled or timed out): say so plainly and
		// keep the context's error in the chain; Temporal records why.
		return fmt.Errorf("%s: %w", where, ctxErr)
	}
	// Drop the *url.Error layer: it repeats the URL, unredacted.
	attempts := 1
	var ae *attemptsError
	if errors.As(err, &ae) {
		attempts, err = ae.attempts, ae.err
	}
	var ue *url.Error
	if errors.As(err, &ue) {
		err = ue.Err
	}
	if attempts > 1 {
		return failure.Transient(c.types.Unavailable,
			fmt.Errorf("%s: no answer after %d attempts: %w", where, attempts, err), details)
	}
	return failure.Transient(c.types.Unavailable, fmt.Errorf("%s: no answer: %w", where, err), details)
}

// StatusError classifies a non-2xx answer to method u: Retry-After and 429
// are throttled (with the delay the server asked for, or its
// X-RateLimit-Reset, or 1s); 408 and 5xx transient; 401/403, 404/410,
// redirects and every other status permanent. The message quotes the start
// of resp's body, which StatusError reads.
func (c *Client) StatusError(method string, u *url.URL, resp *http.Response) error {
	code := resp.StatusCode
	details := ErrorDetails{StatusCode: code, URL: RedactURL(u.String())}
	where := method + " " + details.URL
	msg := fmt.Errorf("%s: status %d %s: body: %s", where, code, http.StatusText(code), c.Snippet(resp))
	now := c.now()
	if d, ok := RetryAfter(resp, now); ok {
		return failure.Throttled(c.types.Throttled, msg, d, details)
	}
	switch {
	case code == http.StatusTooManyRequests:
		d := time.Second
		if t, ok := RateLimitReset(resp.Header, now); ok && t.After(now) {
			d = t.Sub(now)
		}
		return failure.Throttled(c.types.Throttled, msg, d, details)
	case code == http.StatusRequestTimeout, code >= 500:
		return failure.Transient(c.types.Unavailable, msg, details)
	case code == http.StatusUnauthorized, code == http.StatusForbidden:
		return failure.Permanent(c.types.Auth, msg, details)
	case code == http.StatusNotFound, code == http.StatusGone:
		return failure.Permanent(c.types.NotFound, msg, details)
	case code >= 300 && code < 400 && code != http.StatusNotModified:
		why := "another host, or too many"
		if c.noRedir {
			why = "redirects are not followed"
		}
		loc := RedactURL(resp.Header.Get("Location"))
		return failure.Permanent(c.types.HTTP,
			fmt.Errorf("%s: status %d %s: redirect to %q not followed (%s)", where, code, http.StatusText(code), loc, why), details)
	case code == http.StatusNotModified:
		return failure.Permanent(c.types.HTTP,
			fmt.Errorf("%s: status 304 Not Modified to a request that was not conditional", where), details)
	default:
		return failure.Permanent(c.types.HTTP, msg, details)
	}
}

// Snippet reads the start of an error body and renders it with Quote.
func (c *Client) Snippet(resp *http.Response) string {
	b, _ := io.ReadAll(io.LimitReader(resp.Body, snippetBytes+1))
	return c.Quote(b)
}

// Quote renders the start of a body on one line, at most 256 bytes, with
// any configured secret the server may have echoed blanked out.
func (c *Client) Quote(b []byte) string {
	truncated := len(b) > snippetBytes
	if truncated {
		b = b[:snippetBytes]
	}
	text := strings.ToValidUTF8(string(b), "\uFFFD")
	text = strings.Map(func(r rune) rune {
		if unicode.IsControl(r) {
			return ' '
		}
		return r
	}, text)
	text = strings.TrimSpace(text)
	text = c.Redact(text)
	if text == "" {
		return "(empty body)"
	}
	if truncated {
		text += "…"
	}
	return text
}

// Redact blanks out every configured secret found in text.
func (c *Client) Redact(text string) string {
	for _, secret := range c.auth.secrets() {
		if len(secret) >= 4 {
			text = strings.ReplaceAll(text, secret, "REDACTED")
		}
	}
	return text
}

// RedactURL removes user info and blanks secret-looking query values.
func RedactURL(raw string) string {
	u, err := url.Parse(raw)
	if err != nil {
		return "(unparsable URL)"
	}
	u.User = nil
	if u.RawQuery == "" {
		return u.String()
	}
	q := u.Query()
	changed := false
	for k := range q {
		lk := strings.ToLower(k)
		secret := lk == "key" || lk == "sig" || lk == "code"
		for _, p := range [...]string{"token", "secret", "password", "passwd", "apikey", "api_key", "api-key", "signature", "credential", "auth", "session"} {
			secret = secret || strings.Contains(lk, p)
		}
		if secret {
			q[k] = []string{"REDACTED"}
			changed = true
		}
	}
	if changed {
		u.RawQuery = q.Encode()
	}
	return u.String()
}

// Drain discards the rest of a body so the connection can be reused, and
// closes it.
func Drain(resp *http.Response) {
	_, _ = io.Copy(io.Discard, io.LimitReader(resp.Body, 64<<10))
	resp.Body.Close()
}
