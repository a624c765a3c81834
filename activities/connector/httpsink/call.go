package httpsink

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"time"

	"github.com/sony/gobreaker/v2"

	"github.com/tetherflow/tether/activities/lib/failure"
	"github.com/tetherflow/tether/activities/lib/httpclient"
)

// maxAnswerBytes bounds an answer's body: a destination echoes records, it
// does not send pages.
const maxAnswerBytes = 16 << 20

// reply is an answer the caller classifies, its body read.
type reply struct {
	status int
	header http.Header
	body   []byte
}

// send makes one call: it waits for one of the max_in_flight slots, then
// goes through the circuit breaker to the client (pacing, credentials,
// short retries). Network errors, 408, 429 and 5xx come back as classified
// errors; every other answer as a reply.
func (s *Client) send(ctx context.Context, method string, u *url.URL, body []byte, header http.Header) (reply, error) {
	select {
	case s.slots <- struct{}{}:
	case <-ctx.Done():
		return reply{}, fmt.Errorf("%s %s: waiting for one of max_in_flight %d: %w",
			method, httpclient.RedactURL(u.String()), cap(s.slots), ctx.Err())
	}
	defer func() { <-s.slots }()
	rep, err := s.breaker.Execute(func() (reply, error) {
		return s.roundTrip(ctx, method, u, body, header)
	})
	if errors.Is(err, gobreaker.ErrOpenState) || errors.Is(err, gobreaker.ErrTooManyRequests) {
		err = s.circuitOpen(method, u)
	}
	s.metrics.called(rep, err)
	return rep, err
}

func (s *Client) roundTrip(ctx context.Context, method string, u *url.URL, body []byte, header http.Header) (reply, error) {
	resp, err := s.client.Do(ctx, method, u, body, header)
	if err != nil {
		return reply{}, err
	}
	defer resp.Body.Close()
	if code := resp.StatusCode; code == http.StatusRequestTimeout || code == http.StatusTooManyRequests || code >= 500 {
		return reply{}, s.client.StatusError(method, u, resp)
	}
	details := httpclient.ErrorDetails{StatusCode: resp.StatusCode, URL: httpclient.RedactURL(u.String())}
	b, err := io.ReadAll(io.LimitReader(resp.Body, maxAnswerBytes+1))
	if err != nil {
		return reply{}, failure.Transient(failure.TypeSinkUnavailable,
			fmt.Errorf("%s %s: status %d: reading the answer: %w", method, details.URL, resp.StatusCode, err), details)
	}
	if len(b) > maxAnswerBytes {
		return reply{}, failure.Permanent(failure.TypeSinkMalformed,
			fmt.Errorf("%s %s: status %d: the answer is over %d bytes", method, details.URL, resp.StatusCode, maxAnswerBytes), details)
	}
	return reply{status: resp.StatusCode, header: resp.Header, body: b}, nil
}

// statusError classifies an answer the caller does not handle.
func (s *Client) statusError(method string, u *url.URL, rep reply) error {
	return s.client.StatusError(method, u, &http.Response{
		StatusCode: rep.status,
		Header:     rep.header,
		Body:       io.NopCloser(bytes.NewReader(rep.body)),
	})
}

// newBreaker builds the circuit breaker of circuit_breaker: failures are
// calls that got no answer or a 408/5xx; throttling (the pacer's
// business), permanent errors and cancelled calls do not count.
func (s *Client) newBreaker() *gobreaker.CircuitBreaker[reply] {
	cb := s.cfg.CircuitBreaker
	return gobreaker.NewCircuitBreaker[reply](gobreaker.Settings{
		Name:         s.name,
		MaxRequests:  1, // one probe when half-open
		Interval:     cb.Window,
		BucketPeriod: max(cb.Window/10, time.Millisecond), // a rolling window
		Timeout:      cb.OpenFor,
		ReadyToTrip: func(c gobreaker.Counts) bool {
			done := c.TotalSuccesses + c.TotalFailures
			return done >= uint32(cb.MinRequests) && float64(c.TotalFailures) >= cb.FailureRate*float64(done)
		},
		IsSuccessful: func(err error) bool { return err == nil },
		IsExcluded: func(err error) bool {
			return err != nil && (errors.Is(err, context.Canceled) || errors.Is(err, context.DeadlineExceeded) ||
				failure.IsType(err, failure.TypeSinkThrottled) || failure.IsPermanent(err))
		},
		OnStateChange: func(name string, from, to gobreaker.State) {
			if to == gobreaker.StateOpen {
				s.openedAt.Store(time.Now().UnixNano())
			}
			s.metrics.circuitChanged(to)
			s.log.Warn("destination circuit breaker", "integration", name, "from", from.String(), "to", to.String())
		},
	})
}

// circuitOpen is the error of a call refused by the open circuit: a
// throttled error whose next retry delay is the time left before the
// breaker lets a probe through, so the workflow waits instead of retrying.
func (s *Client) circuitOpen(method string, u *url.URL) error {
	cb := s.cfg.CircuitBreaker
	wait := time.Until(time.Unix(0, s.openedAt.Load()).Add(cb.OpenFor))
	if wait <= 0 { // half-open, its probe in flight
		wait = min(cb.OpenFor, time.Second)
	}
	details := httpclient.ErrorDetails{URL: httpclient.RedactURL(u.String())}
	return failure.Throttled(failure.TypeCircuitOpen,
		fmt.Errorf("%s %s: not sent: the destination's circuit breaker is open (at least %g of its calls failed in the last %s); next call allowed in %s",
			method, details.URL, cb.FailureRate, cb.Window, wait.Round(time.Millisecond)),
		wait, details)
}
