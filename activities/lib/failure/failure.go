// Package failure classifies errors at the edge of every activity, so that
// Temporal retries what can succeed later and stops at once on what cannot.
//
// Permanent errors (bad input, 4xx other than 408/429, PostgreSQL classes
// 22/23/42) become non-retryable application errors with a stable type string
// that workflows and operators can branch on. Transient errors (network, 5xx,
// PostgreSQL 08/40/53/57) stay retryable. Throttling (429, 503 with
// Retry-After) is retryable with the server's requested delay.
package failure

import (
	"errors"
	"fmt"
	"time"

	"go.temporal.io/sdk/temporal"
)

// Stable error types. They appear in the Temporal Web UI and in workflow
// results; never rename one.
const (
	// TypeConfig: an integration or worker is misconfigured.
	TypeConfig = "ConfigError"
	// TypeSourceHTTP: the source answered with an HTTP error status.
	TypeSourceHTTP = "SourceHTTPError"
	// TypeSourceAuth: the source refused our credentials (401/403).
	TypeSourceAuth = "SourceAuthError"
	// TypeSourceNotFound: the source has no such resource (404/410).
	TypeSourceNotFound = "SourceNotFound"
	// TypeSourceThrottled: the source asked us to slow down (429, 503 + Retry-After).
	TypeSourceThrottled = "SourceThrottled"
	// TypeSourceUnavailable: the source could not be reached or failed (5xx, network).
	TypeSourceUnavailable = "SourceUnavailable"
	// TypeSourceMalformed: the source's answer could not be read (not JSON, no records).
	TypeSourceMalformed = "SourceMalformedResponse"
	// TypeSourceTooLarge: a page was larger than the configured limit.
	TypeSourceTooLarge = "SourcePageTooLarge"
	// TypeSourceShortRead: the source's read ended with fewer records than
	// it announced (a lost Link header, a server-side cap).
	TypeSourceShortRead = "SourceShortRead"
	// TypeSinkSQL: the destination rejected a write for a reason retrying cannot fix.
	TypeSinkSQL = "SinkSQLError"
	// TypeSinkUnavailable: the destination could not be reached (retryable).
	TypeSinkUnavailable = "SinkUnavailable"
	// TypeSinkHTTP: the destination answered with an HTTP error status a
	// retry cannot fix.
	TypeSinkHTTP = "SinkHTTPError"
	// TypeSinkAuth: the destination refused our credentials (401/403).
	TypeSinkAuth = "SinkAuthError"
	// TypeSinkNotFound: the destination has no such endpoint (404/410).
	TypeSinkNotFound = "SinkNotFound"
	// TypeSinkThrottled: the destination asked us to slow down (429, 503 + Retry-After).
	TypeSinkThrottled = "SinkThrottled"
	// TypeSinkMalformed: the destination's answer could not be read (not
	// JSON, no id where the configuration says it is).
	TypeSinkMalformed = "SinkMalformedResponse"
	// TypeCircuitOpen: calls to the destination are suspended after too
	// many failures (retryable, with the time left before the next probe).
	TypeCircuitOpen = "CircuitOpen"
	// TypeInvalidThreshold: too many records failed validation or transformation.
	TypeInvalidThreshold = "InvalidThresholdExceeded"
	// TypeStagedPageMissing: a staged page the step needs is gone (run cleaned up).
	TypeStagedPageMissing = "StagedPageMissing"
	// TypeCompensation: a compensation could not restore the destination.
	TypeCompensation = "CompensationFailed"
	// TypeRunFenced: a batch of a run that is being (or was) compensated
	// was refused.
	TypeRunFenced = "RunFenced"
	// TypeBusy: another run is writing the integration; only one writes at
	// a time.
	TypeBusy = "IntegrationBusy"
)

// Permanent wraps err as a non-retryable application error of the given type.
// details are attached for the Web UI (status codes, page numbers, counts).
//
// Return the result as it is: the SDK recognises an application error only
// at the top of the returned chain, so wrapping it again with fmt.Errorf
// would make it a retryable generic error.
func Permanent(typ string, err error, details ...any) error {
	if err == nil {
		return nil
	}
	return temporal.NewNonRetryableApplicationError(err.Error(), typ, unwrapCause(err), details...)
}

// Transient wraps err as a retryable application error of the given type.
func Transient(typ string, err error, details ...any) error {
	if err == nil {
		return nil
	}
	return temporal.NewApplicationErrorWithCause(err.Error(), typ, unwrapCause(err), details...)
}

// Throttled wraps err as a retryable application error that asks Temporal to
// wait at least retryAfter before the next attempt (Retry-After honoured).
func Throttled(typ string, err error, retryAfter time.Duration, details ...any) error {
	if err == nil {
		return nil
	}
	return temporal.NewApplicationErrorWithOptions(err.Error(), typ, temporal.ApplicationErrorOptions{
		Cause:          unwrapCause(err),
		Details:        details,
		NextRetryDelay: retryAfter,
	})
}

// IsType reports whether err is (or wraps) an application error of type typ.
func IsType(err error, typ string) bool {
	var appErr *temporal.ApplicationError
	return errors.As(err, &appErr) && appErr.Type() == typ
}

// IsPermanent reports whether err is a non-retryable application error.
func IsPermanent(err error) bool {
	var appErr *temporal.ApplicationError
	return errors.As(err, &appErr) && appErr.NonRetryable()
}

// unwrapCause returns no cause: the message already carries err.Error()
// with its whole chain, and Temporal appends a cause's text to the message,
// so passing one would say everything twice. (Go error chains do not survive
// serialization into history anyway.)
func unwrapCause(error) error { return nil }

// Errorf is fmt.Errorf kept here so callers classifying an error in one line
// read naturally: failure.Permanent(failure.TypeConfig, failure.Errorf(...)).
func Errorf(format string, args ...any) error { return fmt.Errorf(format, args...) }

// PostgreSQL classifies err by the SQLSTATE PostgreSQL answered with:
// classes 22/23/42 (and 0A, 2B, 3F, 44, P0: unsupported, rejected by a
// trigger or rule, no such schema) are permanent TypeSinkSQL; 28 and 3D
// (credentials, database) are permanent TypeConfig; 08, 40, 53, 55, 57, 58,
// XX and every other class are retryable TypeSinkUnavailable. The code is
// attached as a detail.
func PostgreSQL(err error, sqlstate string) error {
	if len(sqlstate) != 5 {
		return Transient(TypeSinkUnavailable, err)
	}
	switch sqlstate[:2] {
	case "22", "23", "42", "0A", "2B", "3F", "44", "P0":
		return Permanent(TypeSinkSQL, err, sqlstate)
	case "28", "3D":
		return Permanent(TypeConfig, err, sqlstate)
	}
	return Transient(TypeSinkUnavailable, err, sqlstate)
}
