package httpsource

import (
	"context"
	"fmt"
	"net/http"
	"strings"
	"testing"

	"github.com/tetherflow/tether/activities/connector"
	"github.com/tetherflow/tether/activities/lib/failure"
)

// TestSource_FetchTotal: the total a source announces for the read (the
// X-Total-Count header by default, another header, a body path) is on the
// page, so a read that ends short is caught; a total that is not a count
// is a malformed answer.
func TestSource_FetchTotal(t *testing.T) {
	tests := []struct {
		name    string
		total   Total
		header  http.Header
		body    string
		want    int
		wantErr string
	}{
		{name: "X-Total-Count by default", header: http.Header{"X-Total-Count": {"20000"}}, want: 20000},
		{name: "none announced", want: 0},
		{name: "another header", total: Total{Header: "X-Result-Count"}, header: http.Header{"X-Result-Count": {" 42 "}, "X-Total-Count": {"7"}}, want: 42},
		{name: "a body path", total: Total{Path: "meta.total"}, body: `,"meta":{"total":3}`, header: http.Header{"X-Total-Count": {"7"}}, want: 3},
		{name: "a body path absent", total: Total{Path: "meta.total"}, want: 0},
		{name: "ignored", total: Total{Ignore: true}, header: http.Header{"X-Total-Count": {"7"}}, want: 0},
		{name: "not a count", header: http.Header{"X-Total-Count": {"many"}}, wantErr: `header X-Total-Count: "many" is not a count of records`},
		{name: "negative", header: http.Header{"X-Total-Count": {"-1"}}, wantErr: "is not a count of records"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			h := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				for k, v := range tt.header {
					w.Header()[k] = v
				}
				w.Header().Set("Content-Type", "application/json")
				fmt.Fprintf(w, `{"data":[{"id":1}]%s}`, tt.body)
			})
			s, _ := newTestSource(t, h, Config{RecordsPath: "data", Total: tt.total}, nil)
			page, err := s.Fetch(context.Background(), connector.Request{Limit: 10})
			if tt.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) || !failure.IsType(err, failure.TypeSourceMalformed) {
					t.Fatalf("Fetch() error = %v, want a %s saying %q", err, failure.TypeSourceMalformed, tt.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if page.Total != tt.want {
				t.Errorf("Total = %d, want %d", page.Total, tt.want)
			}
		})
	}
}

// TestConfig_TotalProblems: a bad total setting is a configuration error
// naming the key.
func TestConfig_TotalProblems(t *testing.T) {
	for _, tt := range []struct {
		total Total
		want  string
	}{
		{Total{Path: "meta..total"}, "total.path"},
		{Total{Header: "X Total"}, "total.header"},
	} {
		cfg := Config{BaseURL: "http://127.0.0.1:1", Path: "/v1/items", Total: tt.total}
		err := cfg.Validate()
		if err == nil || !strings.Contains(err.Error(), tt.want) {
			t.Errorf("Validate(%+v) = %v, want a problem naming %s", tt.total, err, tt.want)
		}
	}
}
