package httpsource

import (
	"context"
	"errors"
	"fmt"
	"io"
	"mime"
	"net/http"
	"net/url"
	"strings"
	"time"
	"unicode"

	retryablehttp "github.com/hashicorp/go-retryablehttp"

	"github.com/tetherflow/tether/activities/failure"
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
// answered at once and classified by Fetch; long waits belong to Temporal.
func (s *Source) checkRetry(ctx context.Context, resp *http.Response, err error) (bool, error) {
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
	if d, ok := retryAfter(resp, s.now()); ok {
		return d <= s.cfg.Retry.WaitMax, nil
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
// the pacer already holds every request of the Source until then.
func (s *Source) backoff(lo, hi time.Duration, attempt int, resp *http.Response) time.Duration {
	if _, ok := retryAfter(resp, s.now()); ok {
		return 0
	}
	return retryablehttp.DefaultBackoff(lo, hi, attempt, nil)
}

// logRetry logs each retry (attempt > 0) through slog.
func (s *Source) logRetry(_ retryablehttp.Logger, req *http.Request, attempt int) {
	if attempt > 0 {
		s.log.InfoContext(req.Context(), "retrying source request",
			"integration", s.integration, "url", redactURL(req.URL.String()), "attempt", attempt+1)
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

// keepLastResponse hands the last response to Fetch for classification
// (its body still open) or, when no response came, the last error.
func keepLastResponse(resp *http.Response, err error, attempts int) (*http.Response, error) {
	if err != nil {
		if resp != nil {
			drain(resp)
		}
		return nil, &attemptsError{attempts: attempts, err: err}
	}
	return resp, nil
}

// classifyTransportError classifies a request that got no usable answer.
func (s *Source) classifyTransportError(ctx context.Context, u *url.URL, err error) error {
	where := "GET " + redactURL(u.String())
	details := ErrorDetails{URL: redactURL(u.String())}
	var te *throttleError
	if errors.As(err, &te) {
		return failure.Throttled(failure.TypeSourceThrottled, fmt.Errorf("%s: %w", where, te), te.wait, details)
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
		return failure.Transient(failure.TypeSourceUnavailable,
			fmt.Errorf("%s: no answer after %d attempts: %w", where, attempts, err), details)
	}
	return failure.Transient(failure.TypeSourceUnavailable, fmt.Errorf("%s: no answer: %w", where, err), details)
}

// statusError classifies a non-2xx answer.
func (s *Source) statusError(resp *http.Response, u *url.URL) error {
	code := resp.StatusCode
	details := ErrorDetails{StatusCode: code, URL: redactURL(u.String())}
	snippet := s.snippet(resp)
	msg := fmt.Errorf("GET %s: status %d %s: body: %s", details.URL, code, http.StatusText(code), snippet)
	now := s.now()
	if d, ok := retryAfter(resp, now); ok {
		return failure.Throttled(failure.TypeSourceThrottled, msg, d, details)
	}
	switch {
	case code == http.StatusTooManyRequests:
		d := time.Second
		if t, ok := rateLimitReset(resp.Header, now); ok && t.After(now) {
			d = t.Sub(now)
		}
		return failure.Throttled(failure.TypeSourceThrottled, msg, d, details)
	case code == http.StatusRequestTimeout, code >= 500:
		return failure.Transient(failure.TypeSourceUnavailable, msg, details)
	case code == http.StatusUnauthorized, code == http.StatusForbidden:
		return failure.Permanent(failure.TypeSourceAuth, msg, details)
	case code == http.StatusNotFound, code == http.StatusGone:
		return failure.Permanent(failure.TypeSourceNotFound, msg, details)
	case code >= 300 && code < 400:
		loc := redactURL(resp.Header.Get("Location"))
		return failure.Permanent(failure.TypeSourceHTTP,
			fmt.Errorf("GET %s: status %d %s: redirect to %q not followed (another host, or too many)", details.URL, code, http.StatusText(code), loc), details)
	case code == http.StatusNotModified:
		return failure.Permanent(failure.TypeSourceHTTP,
			fmt.Errorf("GET %s: status 304 Not Modified to a request that was not conditional", details.URL), details)
	default:
		return failure.Permanent(failure.TypeSourceHTTP, msg, details)
	}
}

// readBody reads at most MaxBodyBytes of a 2xx body.
func (s *Source) readBody(resp *http.Response, u *url.URL) ([]byte, error) {
	limit := s.cfg.MaxBodyBytes
	details := ErrorDetails{StatusCode: resp.StatusCode, URL: redactURL(u.String())}
	tooLarge := func(size string) error {
		return failure.Permanent(failure.TypeSourceTooLarge,
			fmt.Errorf("GET %s: status %d: body of %s is over max_body_bytes %d: ask for smaller pages", details.URL, resp.StatusCode, size, limit), details)
	}
	if resp.ContentLength > limit {
		return nil, tooLarge(fmt.Sprintf("%d bytes", resp.ContentLength))
	}
	body, err := io.ReadAll(io.LimitReader(resp.Body, limit+1))
	if err != nil {
		return nil, failure.Transient(failure.TypeSourceUnavailable,
			fmt.Errorf("GET %s: status %d: reading body: %w", details.URL, resp.StatusCode, err), details)
	}
	if int64(len(body)) > limit {
		return nil, tooLarge("more than max_body_bytes")
	}
	return body, nil
}

// parseBody checks the content type and the JSON syntax of a 2xx body.
func (s *Source) parseBody(resp *http.Response, u *url.URL, body []byte) (document, error) {
	ct := resp.Header.Get("Content-Type")
	if ct != "" && !isJSONMediaType(ct) {
		return document{}, s.malformed(resp, u, fmt.Errorf("content type %q is not JSON: body: %s", ct, s.quote(body)))
	}
	doc, err := parseDocument(body)
	if err != nil {
		return document{}, s.malformed(resp, u, fmt.Errorf("body is not JSON (content type %q): %w; body: %s", ct, err, s.quote(body)))
	}
	return doc, nil
}

// malformed classifies an answer whose body cannot be read as a page.
func (s *Source) malformed(resp *http.Response, u *url.URL, err error) error {
	details := ErrorDetails{StatusCode: resp.StatusCode, URL: redactURL(u.String())}
	// Flattened (%v): failure.Permanent would repeat a wrapped cause's text
	// after the message, and these causes are descriptions, not sentinels.
	return failure.Permanent(failure.TypeSourceMalformed,
		fmt.Errorf("GET %s: status %d: %v", details.URL, resp.StatusCode, err), details)
}

func isJSONMediaType(ct string) bool {
	mt, _, err := mime.ParseMediaType(ct)
	if err != nil {
		return false
	}
	return mt == "application/json" || mt == "text/json" || strings.HasSuffix(mt, "+json")
}

// snippet reads the start of an error body for the message.
func (s *Source) snippet(resp *http.Response) string {
	b, _ := io.ReadAll(io.LimitReader(resp.Body, snippetBytes+1))
	return s.quote(b)
}

// quote renders the start of a body on one line, with any configured
// secret the server may have echoed blanked out.
func (s *Source) quote(b []byte) string {
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
	for _, secret := range []string{s.cfg.Auth.Token, s.cfg.Auth.APIKey, s.cfg.Auth.ClientSecret} {
		if len(secret) >= 4 {
			text = strings.ReplaceAll(text, secret, "REDACTED")
		}
	}
	if text == "" {
		return "(empty body)"
	}
	if truncated {
		text += "…"
	}
	return text
}

// redactURL removes user info and blanks secret-looking query values.
func redactURL(raw string) string {
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

// drain discards the rest of a body so the connection can be reused.
func drain(resp *http.Response) {
	_, _ = io.Copy(io.Discard, io.LimitReader(resp.Body, 64<<10))
	resp.Body.Close()
}
