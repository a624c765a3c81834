package httpsource

import (
	"fmt"
	"io"
	"mime"
	"net/http"
	"net/url"
	"strings"
	"time"

	"github.com/tetherflow/tether/activities/lib/failure"
	"github.com/tetherflow/tether/activities/lib/httpclient"
)

// ErrorDetails are attached to every classified HTTP error, for the Web UI
// and for workflow code that reads ApplicationError.Details.
type ErrorDetails = httpclient.ErrorDetails

// errorTypes are the failure types of the Source's HTTP errors.
var errorTypes = httpclient.ErrorTypes{
	HTTP:        failure.TypeSourceHTTP,
	Auth:        failure.TypeSourceAuth,
	NotFound:    failure.TypeSourceNotFound,
	Throttled:   failure.TypeSourceThrottled,
	Unavailable: failure.TypeSourceUnavailable,
}

// readBody reads at most MaxBodyBytes of a 2xx body.
func (s *Source) readBody(resp *http.Response, u *url.URL) ([]byte, error) {
	limit := s.cfg.MaxBodyBytes
	details := ErrorDetails{StatusCode: resp.StatusCode, URL: httpclient.RedactURL(u.String())}
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
		return document{}, s.malformed(resp, u, fmt.Errorf("content type %q is not JSON: body: %s", ct, s.client.Quote(body)))
	}
	doc, err := parseDocument(body)
	if err != nil {
		return document{}, s.malformed(resp, u, fmt.Errorf("body is not JSON (content type %q): %w; body: %s", ct, err, s.client.Quote(body)))
	}
	return doc, nil
}

// malformed classifies an answer whose body cannot be read as a page.
func (s *Source) malformed(resp *http.Response, u *url.URL, err error) error {
	details := ErrorDetails{StatusCode: resp.StatusCode, URL: httpclient.RedactURL(u.String())}
	// Flattened (%v): the failure would repeat a wrapped cause's text after
	// the message, and these causes are descriptions, not sentinels.
	//
	// Retryable, a second later: a truncated page, or a proxy's error page
	// sent with status 200, is usually right on the next try. The fetch
	// step's retry policy bounds the attempts; a page that stays malformed
	// fails the run with the last defect.
	return failure.Throttled(failure.TypeSourceMalformed,
		fmt.Errorf("GET %s: status %d: %v", details.URL, resp.StatusCode, err), MalformedRetryDelay, details)
}

// MalformedRetryDelay is how long a malformed page waits before it is
// asked again.
const MalformedRetryDelay = time.Second

func isJSONMediaType(ct string) bool {
	mt, _, err := mime.ParseMediaType(ct)
	if err != nil {
		return false
	}
	return mt == "application/json" || mt == "text/json" || strings.HasSuffix(mt, "+json")
}
