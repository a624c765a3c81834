// Package postgres holds what every part of tether that talks to
// PostgreSQL shares and that knows nothing of tether's own tables: opening a
// pool with a clear error naming the (redacted) DSN, redacting DSNs for logs,
// reading a driver error's SQLSTATE and classifying it for Temporal, and
// pointing a DSN at a schema.
package postgres

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"net/url"
	"regexp"
	"strings"
	"time"

	"github.com/XSAM/otelsql"
	"go.opentelemetry.io/otel/attribute"

	_ "github.com/lib/pq" // PostgreSQL driver
	"go.temporal.io/sdk/temporal"

	"github.com/tetherflow/tether/activities/lib/failure"
)

// Querier is what a query needs: a pool (*sql.DB) or a transaction
// (*sql.Tx), so one function serves both.
type Querier interface {
	ExecContext(ctx context.Context, q string, args ...any) (sql.Result, error)
	QueryContext(ctx context.Context, q string, args ...any) (*sql.Rows, error)
	QueryRowContext(ctx context.Context, q string, args ...any) *sql.Row
}

// openTimeout bounds a Ping when ctx has no earlier deadline.
const openTimeout = 10 * time.Second

// redactedPassword replaces passwords in DSNs shown to people.
const redactedPassword = "xxxxx"

// Pool returns a pool on dsn without connecting. Its queries and
// transactions are traced (otelsql) under the caller's span when tracing
// is on; parameters are never recorded.
func Pool(dsn string) (*sql.DB, error) {
	return otelsql.Open("postgres", dsn,
		otelsql.WithAttributes(attribute.String("db.system.name", "postgresql")),
		otelsql.WithSpanOptions(otelsql.SpanOptions{
			OmitConnResetSession: true, OmitConnPrepare: true, OmitRows: true, OmitConnectorConnect: true,
			DisableErrSkip: true,
		}))
}

// Open opens a pool on dsn (Pool) and checks that PostgreSQL answers
// (Ping).
func Open(ctx context.Context, dsn string) (*sql.DB, error) {
	shown, secret := redactDSN(dsn)
	db, err := Pool(dsn)
	if err != nil {
		return nil, scrub(fmt.Errorf("open PostgreSQL at %s: %w", shown, err), secret)
	}
	if err := Ping(ctx, db, dsn); err != nil {
		_ = db.Close()
		return nil, err
	}
	return db, nil
}

// Ping checks that PostgreSQL answers on db, opened on dsn. When it does
// not, the error says PostgreSQL is unreachable and names the DSN with any
// password redacted, so a misconfigured worker says what it tried.
func Ping(ctx context.Context, db *sql.DB, dsn string) error {
	shown, secret := redactDSN(dsn)
	pctx, cancel := context.WithTimeout(ctx, openTimeout)
	defer cancel()
	if err := db.PingContext(pctx); err != nil {
		return scrub(fmt.Errorf("PostgreSQL at %s is unreachable: %w", shown, err), secret)
	}
	return nil
}

// RedactDSN returns dsn (URL or key=value form) with its password replaced,
// fit for logs and error messages.
func RedactDSN(dsn string) string {
	shown, _ := redactDSN(dsn)
	return shown
}

// redactDSN returns dsn with its password replaced, and the password.
func redactDSN(dsn string) (shown, secret string) {
	if strings.Contains(dsn, "://") {
		if u, err := url.Parse(dsn); err == nil {
			if p, ok := u.User.Password(); ok {
				secret = p
				u.User = url.UserPassword(u.User.Username(), redactedPassword)
			}
			q := u.Query()
			if p := q.Get("password"); p != "" {
				secret = p
				q.Set("password", redactedPassword)
				u.RawQuery = q.Encode()
			}
			return u.String(), secret
		}
		// Unparseable URL: hide whatever sits between "user:" and "@".
		re := regexp.MustCompile(`(://[^:/@]*:)([^@]*)(@)`)
		if m := re.FindStringSubmatch(dsn); m != nil {
			secret = m[2]
		}
		return re.ReplaceAllString(dsn, "${1}"+redactedPassword+"${3}"), secret
	}
	re := regexp.MustCompile(`(?i)(\bpassword\s*=\s*)('(?:[^'\\]|\\.)*'|[^\s]*)`)
	if m := re.FindStringSubmatch(dsn); m != nil {
		secret = strings.Trim(m[2], "'")
	}
	return re.ReplaceAllString(dsn, "${1}"+redactedPassword), secret
}

// scrub hides secret from err's message (a driver may quote the DSN it could
// not parse) while keeping err in the chain.
func scrub(err error, secret string) error {
	if secret == "" || !strings.Contains(err.Error(), secret) {
		return err
	}
	return &redactedError{msg: strings.ReplaceAll(err.Error(), secret, redactedPassword), err: err}
}

// redactedError is an error whose message has a secret removed.
type redactedError struct {
	msg string
	err error
}

// Error returns the redacted message.
func (e *redactedError) Error() string { return e.msg }

// Unwrap returns the original error.
func (e *redactedError) Unwrap() error { return e.err }

// sqlStater is implemented by PostgreSQL driver errors (lib/pq, pgx).
type sqlStater interface{ SQLState() string }

// SQLState returns the PostgreSQL SQLSTATE code carried by err, or "".
func SQLState(err error) string {
	var s sqlStater
	if errors.As(err, &s) {
		return s.SQLState()
	}
	return ""
}

// Classify wraps err, a PostgreSQL or connection error from doing what, as
// an application error Temporal can act on: connection loss, timeouts and
// PostgreSQL classes 08, 40, 53, 55, 57, 58 and XX are retryable
// (failure.TypeSinkUnavailable); classes 22, 23, 42, 0A, 2B, 3F, 44 and P0
// (bad data, constraint violations, bad SQL, rejecting triggers) are not
// (failure.TypeSinkSQL); classes 28 and 3D (bad credentials, no such
// database) are failure.TypeConfig. Unknown errors stay retryable: retry
// policies bound them. It returns nil for nil, err unchanged when it is
// already an application error, and context.Canceled and sql.ErrNoRows
// wrapped but unclassified (the caller knows what they mean).
func Classify(err error, what string) error {
	if err == nil {
		return nil
	}
	var appErr *temporal.ApplicationError
	if errors.As(err, &appErr) {
		if _, top := err.(*temporal.ApplicationError); top {
			return err
		}
		// Temporal only recognises an application error at the top of the
		// chain: rebuild it there, keeping its type and retry policy.
		return temporal.NewApplicationErrorWithOptions(what+": "+err.Error(), appErr.Type(),
			temporal.ApplicationErrorOptions{
				NonRetryable:   appErr.NonRetryable(),
				Cause:          errors.Unwrap(err),
				NextRetryDelay: appErr.NextRetryDelay(),
			})
	}
	wrapped := fmt.Errorf("%s: %w", what, err)
	if errors.Is(err, context.Canceled) || errors.Is(err, sql.ErrNoRows) {
		return wrapped
	}
	if code := SQLState(err); len(code) == 5 {
		return failure.PostgreSQL(wrapped, code)
	}
	return failure.Transient(failure.TypeSinkUnavailable, wrapped)
}

// WithSearchPath returns dsn (a URL) with its search_path run-time
// parameter set to schema: every connection of a pool opened on it reads
// and writes that schema.
func WithSearchPath(dsn, schema string) (string, error) {
	u, err := url.Parse(dsn)
	if err != nil {
		return "", fmt.Errorf("parse DSN %s: %w", RedactDSN(dsn), err)
	}
	q := u.Query()
	q.Set("search_path", schema)
	u.RawQuery = q.Encode()
	return u.String(), nil
}

// LazyTx is a transaction begun on its first use: a step hands it to the
// sinks of a batch (connector.Writer), which may call a remote API before
// they need it, and commits whatever was begun.
type LazyTx struct {
	db   *sql.DB
	what string
	tx   *sql.Tx
}

// NewLazyTx returns a transaction on db that begins when first asked for;
// what names it in errors ("apply batch 3").
func NewLazyTx(db *sql.DB, what string) *LazyTx { return &LazyTx{db: db, what: what} }

// Tx begins the transaction, or returns the one begun.
func (l *LazyTx) Tx(ctx context.Context) (*sql.Tx, error) {
	if l.tx == nil {
		tx, err := l.db.BeginTx(ctx, nil)
		if err != nil {
			return nil, Classify(err, "begin "+l.what)
		}
		l.tx = tx
	}
	return l.tx, nil
}

// Commit commits the transaction if one was begun.
func (l *LazyTx) Commit() error {
	if l.tx == nil {
		return nil
	}
	return Classify(l.tx.Commit(), "commit "+l.what)
}

// Rollback rolls back the transaction if one was begun and not committed.
func (l *LazyTx) Rollback() {
	if l.tx != nil {
		_ = l.tx.Rollback()
	}
}

// Joined is a LazyTx on a transaction the caller began and commits: a step
// that applies several sinks in one transaction hands it to each.
func Joined(tx *sql.Tx) *LazyTx { return &LazyTx{tx: tx, what: "the caller's transaction"} }
