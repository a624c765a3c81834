package postgres_test

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"strings"
	"testing"

	"go.temporal.io/sdk/temporal"

	"github.com/tetherflow/tether/activities/lib/failure"
	"github.com/tetherflow/tether/activities/lib/postgres"
	"github.com/tetherflow/tether/tests/pgtest"
)

func TestOpen(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name     string
		give     string
		wantIn   []string
		wantNots []string
	}{
		{"URL", "postgres://tether:s3cret@127.0.0.1:1/test?sslmode=disable",
			[]string{"PostgreSQL at", "127.0.0.1:1", "tether:xxxxx@", "unreachable"}, []string{"s3cret"}},
		{"key=value", "host=127.0.0.1 port=1 user=tether password='s3 cret' dbname=test sslmode=disable",
			[]string{"PostgreSQL at", "host=127.0.0.1 port=1", "password=xxxxx", "unreachable"}, []string{"s3 cret", "s3"}},
		{"password in query", "postgres://tether@127.0.0.1:1/test?password=s3cret&sslmode=disable",
			[]string{"127.0.0.1:1", "password=xxxxx", "unreachable"}, []string{"s3cret"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			db, err := postgres.Open(t.Context(), tt.give)
			if err == nil {
				_ = db.Close()
				t.Fatal("Open of an unreachable server succeeded")
			}
			for _, s := range tt.wantIn {
				if !strings.Contains(err.Error(), s) {
					t.Errorf("error %q does not contain %q", err, s)
				}
			}
			for _, s := range tt.wantNots {
				if strings.Contains(err.Error(), s) {
					t.Errorf("error %q reveals %q", err, s)
				}
			}
		})
	}

	t.Run("reachable", func(t *testing.T) {
		t.Parallel()
		db, err := postgres.Open(t.Context(), pgtest.BaseDSN())
		if err != nil {
			t.Fatalf("postgres.Open(%s): %v", postgres.RedactDSN(pgtest.BaseDSN()), err)
		}
		defer db.Close()
		if err := db.PingContext(t.Context()); err != nil {
			t.Fatal(err)
		}
	})
}

func TestRedactDSN(t *testing.T) {
	t.Parallel()
	tests := []struct {
		give, want string
	}{
		{"postgres://u:pw@h:5432/db?sslmode=disable", "postgres://u:xxxxx@h:5432/db?sslmode=disable"},
		{"postgres://u@h/db", "postgres://u@h/db"},
		{"postgres://u@h/db?password=pw", "postgres://u@h/db?password=xxxxx"},
		{"postgres://u:p%zz@h/db", "postgres://u:xxxxx@h/db"},
		{"host=h password=pw user=u", "host=h password=xxxxx user=u"},
		{"host=h password = 'p w\\' x' user=u", "host=h password = xxxxx user=u"},
		{"host=h user=u", "host=h user=u"},
	}
	for _, tt := range tests {
		if got := postgres.RedactDSN(tt.give); got != tt.want {
			t.Errorf("postgres.RedactDSN(%q) = %q, want %q", tt.give, got, tt.want)
		}
	}
}

func TestClassify(t *testing.T) {
	t.Parallel()
	sc := pgtest.New(t)
	ctx := t.Context()
	if _, err := sc.DB.Exec(`CREATE TABLE k (id int PRIMARY KEY); INSERT INTO k VALUES (1)`); err != nil {
		t.Fatal(err)
	}
	// raise makes PostgreSQL itself report an error of the given SQLSTATE
	// (for classes a test cannot provoke reliably: deadlocks, lost connections).
	raise := func(code string) error {
		_, err := sc.DB.ExecContext(ctx, fmt.Sprintf(`DO $$ BEGIN RAISE EXCEPTION 'raised %[1]s' USING ERRCODE = '%[1]s'; END $$`, code))
		return err
	}
	timeout := func() error {
		tx, err := sc.DB.BeginTx(ctx, nil)
		if err != nil {
			return err
		}
		defer func() { _ = tx.Rollback() }()
		if _, err := tx.Exec(`SET LOCAL statement_timeout = '10ms'`); err != nil {
			return err
		}
		_, err = tx.Exec(`SELECT pg_sleep(1)`)
		return err
	}
	unreachable := func() error {
		db, err := sql.Open("postgres", "postgres://u@127.0.0.1:1/x?sslmode=disable")
		if err != nil {
			return err
		}
		defer db.Close()
		return db.PingContext(ctx)
	}
	tests := []struct {
		name      string
		give      func() error
		wantCode  string // "" when no PostgreSQL error is expected
		wantType  string
		wantRetry bool
	}{
		{"22 division by zero", func() error { _, err := sc.DB.Exec(`SELECT 1/0`); return err }, "22012", failure.TypeSinkSQL, false},
		{"22 bad json", func() error { _, err := sc.DB.Exec(`SELECT '{x'::jsonb`); return err }, "22P02", failure.TypeSinkSQL, false},
		{"23 unique violation", func() error { _, err := sc.DB.Exec(`INSERT INTO k VALUES (1)`); return err }, "23505", failure.TypeSinkSQL, false},
		{"42 undefined table", func() error { _, err := sc.DB.Exec(`SELECT * FROM no_such_table`); return err }, "42P01", failure.TypeSinkSQL, false},
		{"42 syntax error", func() error { _, err := sc.DB.Exec(`SELEC 1`); return err }, "42601", failure.TypeSinkSQL, false},
		{"57 statement timeout", timeout, "57014", failure.TypeSinkUnavailable, true},
		{"40 serialization failure", func() error { return raise("40001") }, "40001", failure.TypeSinkUnavailable, true},
		{"40 deadlock", func() error { return raise("40P01") }, "40P01", failure.TypeSinkUnavailable, true},
		{"53 too many connections", func() error { return raise("53300") }, "53300", failure.TypeSinkUnavailable, true},
		{"08 connection failure", func() error { return raise("08006") }, "08006", failure.TypeSinkUnavailable, true},
		{"P0 trigger rejects", func() error { return raise("P0001") }, "P0001", failure.TypeSinkSQL, false},
		{"28 bad credentials", func() error { return raise("28P01") }, "28P01", failure.TypeConfig, false},
		{"connection refused", unreachable, "", failure.TypeSinkUnavailable, true},
		{"deadline", func() error { return context.DeadlineExceeded }, "", failure.TypeSinkUnavailable, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			cause := tt.give()
			if cause == nil {
				t.Fatal("no error to classify")
			}
			if got := postgres.SQLState(cause); got != tt.wantCode {
				t.Fatalf("SQLSTATE of %v = %q, want %q", cause, got, tt.wantCode)
			}
			err := postgres.Classify(cause, "apply batch 3")
			var appErr *temporal.ApplicationError
			if !errors.As(err, &appErr) {
				t.Fatalf("postgres.Classify(%v) = %T %v; want an application error", cause, err, err)
			}
			if _, top := err.(*temporal.ApplicationError); !top {
				t.Errorf("Classify returned %T; Temporal needs the application error on top", err)
			}
			if appErr.Type() != tt.wantType || appErr.NonRetryable() == tt.wantRetry {
				t.Errorf("postgres.Classify(%v): type %q retryable %v; want %q %v", cause, appErr.Type(), !appErr.NonRetryable(), tt.wantType, tt.wantRetry)
			}
			if !strings.HasPrefix(appErr.Message(), "apply batch 3: ") {
				t.Errorf("message %q does not start with what was done", appErr.Message())
			}
			// The SQLSTATE survives into the failure's text (the Go chain
			// does not survive serialization into history anyway).
			if tt.wantCode != "" && !strings.Contains(err.Error(), tt.wantCode) {
				t.Errorf("the SQLSTATE %s is not in the failure %v", tt.wantCode, err)
			}
		})
	}

	passThrough := []struct {
		name string
		give error
		want func(error) bool
	}{
		{"nil", nil, func(err error) bool { return err == nil }},
		{"no rows", sql.ErrNoRows, func(err error) bool {
			var appErr *temporal.ApplicationError
			return errors.Is(err, sql.ErrNoRows) && !errors.As(err, &appErr)
		}},
		{"cancelled", context.Canceled, func(err error) bool { return errors.Is(err, context.Canceled) }},
		{"already classified", failure.Permanent(failure.TypeStagedPageMissing, errors.New("gone")), func(err error) bool {
			return failure.IsType(err, failure.TypeStagedPageMissing) && failure.IsPermanent(err) && err.Error() != "" &&
				!strings.Contains(err.Error(), "load:")
		}},
		{"classified, then wrapped", fmt.Errorf("step: %w", failure.Permanent(failure.TypeStagedPageMissing, errors.New("gone"))), func(err error) bool {
			_, top := err.(*temporal.ApplicationError)
			return top && failure.IsType(err, failure.TypeStagedPageMissing) && failure.IsPermanent(err) && strings.HasPrefix(err.Error(), "load: step: ")
		}},
	}
	for _, tt := range passThrough {
		if got := postgres.Classify(tt.give, "load"); !tt.want(got) {
			t.Errorf("postgres.Classify(%s) = %T %v", tt.name, got, got)
		}
	}
}
