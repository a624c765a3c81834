package pgsink

import (
	"context"
	"database/sql/driver"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"strings"
	"testing"
	"time"

	"github.com/lib/pq"

	"github.com/tetherflow/tether/activities/lib/failure"
)

func TestClassify(t *testing.T) {
	tests := []struct {
		name          string
		give          error
		wantType      string // "" means not an application error
		wantPermanent bool
		wantText      []string
	}{
		{name: "value too long", give: &pq.Error{Code: "22001", Message: "value too long for type character varying(5)"},
			wantType: failure.TypeSinkSQL, wantPermanent: true, wantText: []string{"upsert into t", "22001"}},
		{name: "check constraint names the constraint",
			give:     &pq.Error{Code: "23514", Message: "new row violates check constraint", Constraint: "items_qty_check", Table: "items"},
			wantType: failure.TypeSinkSQL, wantPermanent: true, wantText: []string{`constraint "items_qty_check"`}},
		{name: "undefined column names the column", give: &pq.Error{Code: "42703", Message: "column does not exist", Column: "qty"},
			wantType: failure.TypeSinkSQL, wantPermanent: true, wantText: []string{`column "qty"`}},
		{name: "no such schema", give: &pq.Error{Code: "3F000", Message: "schema does not exist"},
			wantType: failure.TypeSinkSQL, wantPermanent: true},
		{name: "bad password", give: &pq.Error{Code: "28P01", Message: "password authentication failed"},
			wantType: failure.TypeConfig, wantPermanent: true},
		{name: "connection failure", give: &pq.Error{Code: "08006", Message: "connection failure"},
			wantType: failure.TypeSinkUnavailable},
		{name: "serialization failure", give: &pq.Error{Code: "40001", Message: "could not serialize access"},
			wantType: failure.TypeSinkUnavailable},
		{name: "deadlock", give: &pq.Error{Code: "40P01", Message: "deadlock detected"},
			wantType: failure.TypeSinkUnavailable},
		{name: "too many connections", give: &pq.Error{Code: "53300", Message: "too many connections"},
			wantType: failure.TypeSinkUnavailable},
		{name: "admin shutdown", give: &pq.Error{Code: "57P01", Message: "terminating connection"},
			wantType: failure.TypeSinkUnavailable},
		{name: "bad connection", give: driver.ErrBadConn, wantType: failure.TypeSinkUnavailable},
		{name: "network", give: &net.OpError{Op: "dial", Net: "tcp", Err: errors.New("connection refused")},
			wantType: failure.TypeSinkUnavailable},
		{name: "unexpected EOF", give: io.ErrUnexpectedEOF, wantType: failure.TypeSinkUnavailable},
		{name: "deadline", give: context.DeadlineExceeded, wantType: failure.TypeSinkUnavailable},
		{name: "cancelled is only wrapped", give: context.Canceled, wantText: []string{"upsert into t: context canceled"}},
		{name: "wrapped driver error keeps its class", give: fmt.Errorf("scan: %w", &pq.Error{Code: "22P02", Message: "bad"}),
			wantType: failure.TypeSinkSQL, wantPermanent: true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := classify(tt.give, "upsert into t")
			if !errors.Is(err, tt.give) && tt.wantType == "" {
				t.Errorf("classify() = %v, does not wrap %v", err, tt.give)
			}
			if tt.wantType != "" && !failure.IsType(err, tt.wantType) {
				t.Errorf("classify() = %v, want type %s", err, tt.wantType)
			}
			if failure.IsPermanent(err) != tt.wantPermanent {
				t.Errorf("classify() permanent = %v, want %v", failure.IsPermanent(err), tt.wantPermanent)
			}
			for _, w := range tt.wantText {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("classify() = %q, want it to contain %q", err, w)
				}
			}
		})
	}
	if classify(nil, "x") != nil {
		t.Error("classify(nil) != nil")
	}
}

func TestKeyString(t *testing.T) {
	tests := []struct {
		name string
		row  Row
		key  []string
		want string
	}{
		{name: "number", row: Row{"id": json.Number("42"), "x": 1}, key: []string{"id"}, want: "id=42"},
		{name: "composite", row: Row{"tenant": "acme", "id": 7}, key: []string{"tenant", "id"}, want: `tenant="acme", id=7`},
		{name: "missing and nil", row: Row{"a": nil}, key: []string{"a", "b"}, want: "a=NULL, b=NULL"},
		{name: "quotes escaped", row: Row{"k": `a"b, c=d`}, key: []string{"k"}, want: `k="a\"b, c=d"`},
		{name: "time", row: Row{"t": time.Date(2024, 5, 1, 0, 0, 0, 0, time.UTC)}, key: []string{"t"}, want: "t=2024-05-01T00:00:00Z"},
		{name: "float and bool", row: Row{"f": 1.5, "b": true}, key: []string{"f", "b"}, want: "f=1.5, b=true"},
		{name: "object is stable", row: Row{"o": map[string]any{"b": 1, "a": 2}}, key: []string{"o"}, want: `o={"a":2,"b":1}`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := KeyString(tt.row, tt.key); got != tt.want {
				t.Errorf("KeyString() = %q, want %q", got, tt.want)
			}
		})
	}
}
