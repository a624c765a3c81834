package capture

import (
	"context"
	"errors"
	"fmt"

	"go.temporal.io/sdk/temporal"

	"github.com/tetherflow/tether/activities/connector/pgsource"
	"github.com/tetherflow/tether/activities/lib/failure"
	"github.com/tetherflow/tether/activities/lib/postgres"
)

// classify turns err, met while doing what on table, into an error Temporal
// can act on: permanent failure.TypeConfig when retrying cannot fix it (no
// such table, permission denied, bad SQL: the classes failure.PostgreSQL
// calls permanent), retryable failure.TypeSourceUnavailable otherwise
// (connection loss, lock timeouts, shutdowns). hints maps a SQLSTATE to
// advice appended to the message. An error already classified is returned
// as it is, and one caused by ctx ending is only wrapped.
func classify(ctx context.Context, err error, what, table string, hints map[string]string) error {
	if err == nil {
		return nil
	}
	var appErr *temporal.ApplicationError
	if errors.As(err, &appErr) {
		return err
	}
	if ctxErr := ctx.Err(); ctxErr != nil {
		return fmt.Errorf("%s: %w", what, ctxErr)
	}
	code := postgres.SQLState(err)
	msg := what + ": " + err.Error()
	if h := hints[code]; h != "" {
		msg += "; " + h
	}
	details := pgsource.ErrorDetails{Table: table, SQLState: code}
	if failure.IsPermanent(failure.PostgreSQL(err, code)) {
		return failure.Permanent(failure.TypeConfig, errors.New(msg), details)
	}
	return failure.Transient(failure.TypeSourceUnavailable, errors.New(msg), details)
}

// configError is a permanent failure.TypeConfig error about table.
func configError(table string, err error) error {
	return failure.Permanent(failure.TypeConfig, err, pgsource.ErrorDetails{Table: table})
}
