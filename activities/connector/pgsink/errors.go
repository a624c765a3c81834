package pgsink

import (
	"context"
	"database/sql/driver"
	"errors"
	"fmt"
	"io"
	"net"
	"strings"

	"github.com/lib/pq"
	"go.temporal.io/sdk/temporal"

	"github.com/tetherflow/tether/activities/lib/failure"
)

// sqlState returns the SQLSTATE carried by err, or "".
func sqlState(err error) string {
	var s interface{ SQLState() string }
	if errors.As(err, &s) {
		return s.SQLState()
	}
	return ""
}

// isDataError reports whether err is PostgreSQL refusing data (SQLSTATE
// classes 22 and 23): something about particular rows, not the statement.
func isDataError(err error) bool {
	c := sqlState(err)
	return strings.HasPrefix(c, "22") || strings.HasPrefix(c, "23")
}

// pgDetail returns what PostgreSQL said about err beyond its message: the
// detail, constraint, column and table, for people reading the error.
func pgDetail(err error) string {
	var pe *pq.Error
	if !errors.As(err, &pe) {
		return ""
	}
	var parts []string
	if pe.Detail != "" {
		parts = append(parts, pe.Detail)
	}
	if pe.Constraint != "" {
		parts = append(parts, fmt.Sprintf("constraint %q", pe.Constraint))
	}
	if pe.Column != "" {
		parts = append(parts, fmt.Sprintf("column %q", pe.Column))
	}
	if pe.Table != "" && pe.Constraint == "" && pe.Column == "" {
		parts = append(parts, fmt.Sprintf("table %q", pe.Table))
	}
	return strings.Join(parts, "; ")
}

// rowMessage is the reason a row was rejected by PostgreSQL, as stored in
// quarantine: the message, then what PostgreSQL added.
func rowMessage(err error) string {
	msg := err.Error()
	var pe *pq.Error
	if errors.As(err, &pe) {
		msg = pe.Message
	}
	if d := pgDetail(err); d != "" {
		msg += " (" + d + ")"
	}
	return msg
}

// classify wraps err, from doing what, as an application error Temporal can
// act on: classes 22/23/42 (and 0A, 2B, 3F, 44, P0: unsupported, rejected by
// a trigger or rule, no such schema) are permanent TypeSinkSQL; 28 and 3D
// (credentials, database) permanent TypeConfig; connection loss, timeouts
// and every other class are retryable TypeSinkUnavailable. A cancelled
// context is only wrapped: the activity is being cancelled anyway.
func classify(err error, what string) error {
	if err == nil {
		return nil
	}
	var appErr *temporal.ApplicationError
	if errors.As(err, &appErr) {
		return err
	}
	if d := pgDetail(err); d != "" {
		err = fmt.Errorf("%w [%s]", err, d)
	}
	wrapped := fmt.Errorf("%s: %w", what, err)
	if errors.Is(err, context.Canceled) {
		return wrapped
	}
	if code := sqlState(err); len(code) == 5 {
		return failure.PostgreSQL(wrapped, code)
	}
	var netErr net.Error
	switch {
	case errors.Is(err, driver.ErrBadConn), errors.As(err, &netErr),
		errors.Is(err, io.EOF), errors.Is(err, io.ErrUnexpectedEOF),
		errors.Is(err, context.DeadlineExceeded):
		return failure.Transient(failure.TypeSinkUnavailable, wrapped)
	}
	// Unknown: retryable, bounded by the activity's retry policy.
	return failure.Transient(failure.TypeSinkUnavailable, wrapped)
}

// permanent is a non-retryable TypeSinkSQL error built from a message.
func permanent(format string, args ...any) error {
	return failure.Permanent(failure.TypeSinkSQL, fmt.Errorf(format, args...))
}
