package pgsource

import (
	"context"
	"errors"
	"fmt"
	"strings"

	"github.com/lib/pq"
	"go.temporal.io/sdk/temporal"

	"github.com/tetherflow/tether/activities/lib/failure"
)

// ErrorDetails are attached to every classified error, for the Web UI and
// for workflow code that reads ApplicationError.Details.
type ErrorDetails struct {
	// Table is the table read, as SQL ("public"."orders").
	Table string `json:"table"`
	// SQLState is the code PostgreSQL answered with, or "" when no answer came.
	SQLState string `json:"sqlState,omitempty"`
}

// permanentClasses are the SQLSTATE classes retrying cannot fix: the
// statement, the table, the credentials or the data it meets are wrong
// (feature not supported, cardinality, data exception, integrity,
// transaction state such as a write in the read-only transaction,
// authorization, routine exceptions, no such database or schema, syntax
// or access rule, program limit, check option, PL/pgSQL raise).
var permanentClasses = map[string]bool{
	"0A": true, "21": true, "22": true, "23": true, "25": true, "28": true,
	"2F": true, "38": true, "39": true, "3D": true, "3F": true, "42": true,
	"44": true, "54": true, "P0": true,
}

// sqlState returns the SQLSTATE carried by err, or "".
func sqlState(err error) string {
	var s interface{ SQLState() string }
	if errors.As(err, &s) {
		return s.SQLState()
	}
	return ""
}

// isPermanentState reports whether the SQLSTATE names a failure retrying
// cannot fix. Connection loss (08), serialization failures and deadlocks
// (40), exhausted resources (53), locks (55), operator intervention such
// as an admin shutdown (57), system errors (58, XX) and unknown classes
// are transient.
func isPermanentState(code string) bool {
	return len(code) == 5 && permanentClasses[code[:2]]
}

// classify turns err, met while doing what, into an error Temporal can act
// on: permanent failure.TypeConfig when the configuration (table, columns,
// where, credentials) must change, retryable failure.TypeSourceUnavailable
// otherwise. The message names the table and the DSN without its password.
// An error already classified is returned as it is, and one caused by the
// activity's own context ending is only wrapped.
func (s *Source) classify(ctx context.Context, err error, what string) error {
	if err == nil {
		return nil
	}
	var appErr *temporal.ApplicationError
	if errors.As(err, &appErr) {
		return err
	}
	where := fmt.Sprintf("%s %s on %s", what, s.table, s.where)
	if ctxErr := ctx.Err(); ctxErr != nil {
		// The activity is ending (cancelled or timed out); Temporal records why.
		return fmt.Errorf("%s: %w", where, ctxErr)
	}
	code := sqlState(err)
	msg := errors.New(s.scrub(where + ": " + pgMessage(err)))
	details := ErrorDetails{Table: s.table, SQLState: code}
	if isPermanentState(code) {
		return failure.Permanent(failure.TypeConfig, msg, details)
	}
	return failure.Transient(failure.TypeSourceUnavailable, msg, details)
}

// configError is a permanent failure.TypeConfig error about the table.
func (s *Source) configError(format string, args ...any) error {
	msg := fmt.Sprintf("postgres source %s on %s: ", s.table, s.where) + fmt.Sprintf(format, args...)
	return failure.Permanent(failure.TypeConfig, errors.New(s.scrub(msg)), ErrorDetails{Table: s.table})
}

// pgMessage renders err with what PostgreSQL added to it (detail, hint).
func pgMessage(err error) string {
	pe := pq.As(err)
	if pe == nil {
		return err.Error()
	}
	var b strings.Builder
	b.WriteString(pe.Error())
	if pe.Detail != "" {
		b.WriteString("; detail: ")
		b.WriteString(pe.Detail)
	}
	if pe.Hint != "" {
		b.WriteString("; hint: ")
		b.WriteString(pe.Hint)
	}
	return b.String()
}

// scrub blanks the password wherever a driver message might repeat it.
func (s *Source) scrub(msg string) string {
	if len(s.password) < 4 {
		return msg
	}
	return strings.ReplaceAll(msg, s.password, "xxxxx")
}
