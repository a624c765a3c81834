package pgsource

import (
	"context"
	"database/sql/driver"
	"errors"
	"fmt"
	"net"
	"strings"
	"syscall"
	"testing"

	"github.com/lib/pq"

	"github.com/tetherflow/tether/activities/lib/failure"
)

func TestSource_classify(t *testing.T) {
	t.Parallel()
	s := &Source{table: `"crm"."orders"`, where: "postgres://u:xxxxx@db.internal/crm", password: "s3cret-pw"}
	pgErr := func(code, msg string) error {
		return &pq.Error{Severity: "ERROR", Code: pq.ErrorCode(code), Message: msg}
	}
	refused := &net.OpError{Op: "dial", Net: "tcp", Err: syscall.ECONNREFUSED}
	tests := []struct {
		name          string
		give          error
		wantPermanent bool
		wantType      string
	}{
		{name: "undefined table", give: pgErr("42P01", `relation "orders" does not exist`), wantPermanent: true, wantType: failure.TypeConfig},
		{name: "undefined column", give: pgErr("42703", `column "x" does not exist`), wantPermanent: true, wantType: failure.TypeConfig},
		{name: "permission denied", give: pgErr("42501", "permission denied for table orders"), wantPermanent: true, wantType: failure.TypeConfig},
		{name: "syntax error", give: pgErr("42601", `syntax error at or near "AND"`), wantPermanent: true, wantType: failure.TypeConfig},
		{name: "bad password", give: pgErr("28P01", "password authentication failed"), wantPermanent: true, wantType: failure.TypeConfig},
		{name: "no such database", give: pgErr("3D000", `database "crm" does not exist`), wantPermanent: true, wantType: failure.TypeConfig},
		{name: "write in a read-only transaction", give: pgErr("25006", "cannot execute nextval() in a read-only transaction"), wantPermanent: true, wantType: failure.TypeConfig},
		{name: "division by zero in where", give: pgErr("22012", "division by zero"), wantPermanent: true, wantType: failure.TypeConfig},
		{name: "admin shutdown", give: pgErr("57P01", "terminating connection due to administrator command"), wantType: failure.TypeSourceUnavailable},
		{name: "cannot connect now", give: pgErr("57P03", "the database system is starting up"), wantType: failure.TypeSourceUnavailable},
		{name: "serialization failure", give: pgErr("40001", "could not serialize access"), wantType: failure.TypeSourceUnavailable},
		{name: "deadlock", give: pgErr("40P01", "deadlock detected"), wantType: failure.TypeSourceUnavailable},
		{name: "too many connections", give: pgErr("53300", "sorry, too many clients already"), wantType: failure.TypeSourceUnavailable},
		{name: "connection failure", give: pgErr("08006", "connection failure"), wantType: failure.TypeSourceUnavailable},
		{name: "connection refused", give: refused, wantType: failure.TypeSourceUnavailable},
		{name: "bad connection", give: driver.ErrBadConn, wantType: failure.TypeSourceUnavailable},
		{name: "unknown", give: errors.New("something odd"), wantType: failure.TypeSourceUnavailable},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			err := s.classify(context.Background(), fmt.Errorf("query: %w", tt.give), "read")
			if got := failure.IsPermanent(err); got != tt.wantPermanent {
				t.Errorf("IsPermanent(%v) = %v, want %v", err, got, tt.wantPermanent)
			}
			if !failure.IsType(err, tt.wantType) {
				t.Errorf("classify() = %v, want type %s", err, tt.wantType)
			}
			for _, w := range []string{`read "crm"."orders" on postgres://u:xxxxx@db.internal/crm: `, tt.give.Error()} {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("classify() = %q, want it to contain %q", err, w)
				}
			}
		})
	}

	t.Run("password scrubbed from driver messages", func(t *testing.T) {
		t.Parallel()
		err := s.classify(context.Background(), errors.New(`cannot use "s3cret-pw"`), "read")
		if strings.Contains(err.Error(), "s3cret-pw") || !strings.Contains(err.Error(), `"xxxxx"`) {
			t.Errorf("classify() = %q, want the password blanked", err)
		}
	})
	t.Run("cancelled activity is only wrapped", func(t *testing.T) {
		t.Parallel()
		ctx, cancel := context.WithCancel(context.Background())
		cancel()
		err := s.classify(ctx, errors.New("pq: canceling statement due to user request"), "read")
		if !errors.Is(err, context.Canceled) || failure.IsType(err, failure.TypeSourceUnavailable) {
			t.Errorf("classify() = %#v, want context.Canceled unclassified", err)
		}
	})
	t.Run("classified error kept as it is", func(t *testing.T) {
		t.Parallel()
		in := failure.Permanent(failure.TypeConfig, errors.New("bad"))
		if err := s.classify(context.Background(), in, "read"); err != in {
			t.Errorf("classify() = %v, want the same error", err)
		}
	})
	t.Run("detail and hint kept", func(t *testing.T) {
		t.Parallel()
		err := s.classify(context.Background(), &pq.Error{Code: "42501", Message: "permission denied", Detail: "d1", Hint: "h1"}, "read")
		if !strings.Contains(err.Error(), "; detail: d1; hint: h1") {
			t.Errorf("classify() = %q, want the detail and the hint", err)
		}
	})
}
