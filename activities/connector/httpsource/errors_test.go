package httpsource

import (
	"context"
	"fmt"
	"net"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/tetherflow/tether/activities/connector"
	"github.com/tetherflow/tether/activities/lib/cursor"
	"github.com/tetherflow/tether/activities/lib/failure"
	"github.com/tetherflow/tether/activities/lib/httpclient/httpclienttest"
)

func TestSource_FetchStatusErrors(t *testing.T) {
	tests := []struct {
		status        int
		wantType      string
		wantPermanent bool
		wantCalls     int // inner retries: Retry.Max is 2
	}{
		{status: 500, wantType: failure.TypeSourceUnavailable, wantCalls: 3},
		{status: 502, wantType: failure.TypeSourceUnavailable, wantCalls: 3},
		{status: 503, wantType: failure.TypeSourceUnavailable, wantCalls: 3},
		{status: 501, wantType: failure.TypeSourceUnavailable, wantCalls: 1},
		{status: 408, wantType: failure.TypeSourceUnavailable, wantCalls: 1},
		{status: 401, wantType: failure.TypeSourceAuth, wantPermanent: true, wantCalls: 1},
		{status: 403, wantType: failure.TypeSourceAuth, wantPermanent: true, wantCalls: 1},
		{status: 404, wantType: failure.TypeSourceNotFound, wantPermanent: true, wantCalls: 1},
		{status: 410, wantType: failure.TypeSourceNotFound, wantPermanent: true, wantCalls: 1},
		{status: 400, wantType: failure.TypeSourceHTTP, wantPermanent: true, wantCalls: 1},
		{status: 422, wantType: failure.TypeSourceHTTP, wantPermanent: true, wantCalls: 1},
		{status: 429, wantType: failure.TypeSourceThrottled, wantCalls: 1},
	}
	for _, tt := range tests {
		t.Run(fmt.Sprint(tt.status), func(t *testing.T) {
			api := &fakeAPI{n: 1, style: StyleNone, before: func(w http.ResponseWriter, r *http.Request, _ int) bool {
				w.Header().Set("Content-Type", "application/json")
				w.WriteHeader(tt.status)
				fmt.Fprintf(w, "{\"error\": \"no luck\",\n \"token\": \"s3cret-bearer\", \"pad\": %q}", strings.Repeat("x", 1000))
				return true
			}}
			s, srv := newTestSource(t, api, Config{RecordsPath: "data", Auth: Auth{Kind: AuthBearer, Token: "s3cret-bearer"}}, nil)
			_, err := s.Fetch(context.Background(), connector.Request{Limit: 5})
			ae := httpclienttest.AppError(t, err)
			if ae.Type() != tt.wantType || ae.NonRetryable() != tt.wantPermanent {
				t.Errorf("type %s permanent %v, want %s %v", ae.Type(), ae.NonRetryable(), tt.wantType, tt.wantPermanent)
			}
			msg := err.Error()
			for _, want := range []string{"GET " + srv.URL + "/v1/items: ", fmt.Sprintf("status %d", tt.status), "no luck"} {
				if !strings.Contains(msg, want) {
					t.Errorf("message %q does not name %q", msg, want)
				}
			}
			if strings.Contains(msg, "s3cret-bearer") || len(msg) > 600 {
				t.Errorf("message leaks the token or quotes the whole body: %q", msg)
			}
			var d ErrorDetails
			if err := ae.Details(&d); err != nil || d.StatusCode != tt.status || !strings.HasPrefix(d.URL, srv.URL) {
				t.Errorf("details = %+v, %v", d, err)
			}
			if api.calls() != tt.wantCalls {
				t.Errorf("requests = %d, want %d", api.calls(), tt.wantCalls)
			}
		})
	}
}

func TestSource_FetchTransportErrors(t *testing.T) {
	t.Run("connection refused", func(t *testing.T) {
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		addr := ln.Addr().String()
		ln.Close()
		s, err := New("test-items", Config{BaseURL: "http://" + addr, Path: "/v1/items", Retry: Retry{WaitMin: time.Millisecond, WaitMax: 5 * time.Millisecond}})
		if err != nil {
			t.Fatal(err)
		}
		_, err = s.Fetch(context.Background(), connector.Request{})
		ae := httpclienttest.AppError(t, err)
		if ae.Type() != failure.TypeSourceUnavailable || ae.NonRetryable() {
			t.Errorf("type %s permanent %v: %v", ae.Type(), ae.NonRetryable(), err)
		}
		if !strings.Contains(err.Error(), "after 3 attempts") || !strings.Contains(err.Error(), addr) {
			t.Errorf("message %q does not name the attempts and the address", err)
		}
	})
	t.Run("timeout", func(t *testing.T) {
		api := &fakeAPI{n: 1, style: StyleNone, before: func(w http.ResponseWriter, r *http.Request, _ int) bool {
			select {
			case <-time.After(2 * time.Second):
			case <-r.Context().Done():
			}
			return true
		}}
		s, _ := newTestSource(t, api, Config{Timeout: 50 * time.Millisecond, Retry: Retry{Max: -1}}, nil)
		_, err := s.Fetch(context.Background(), connector.Request{})
		ae := httpclienttest.AppError(t, err)
		if ae.Type() != failure.TypeSourceUnavailable || ae.NonRetryable() {
			t.Errorf("type %s permanent %v: %v", ae.Type(), ae.NonRetryable(), err)
		}
		if api.calls() != 1 {
			t.Errorf("requests = %d, want 1 with retry.max -1", api.calls())
		}
	})
	t.Run("redirect to another host is not followed", func(t *testing.T) {
		api := &fakeAPI{n: 1, style: StyleNone, before: func(w http.ResponseWriter, r *http.Request, _ int) bool {
			http.Redirect(w, r, "http://elsewhere.invalid/steal", http.StatusFound)
			return true
		}}
		s, _ := newTestSource(t, api, Config{Auth: Auth{Kind: AuthAPIKey, APIKey: "k3y-value"}}, nil)
		_, err := s.Fetch(context.Background(), connector.Request{})
		ae := httpclienttest.AppError(t, err)
		if ae.Type() != failure.TypeSourceHTTP || !ae.NonRetryable() || !strings.Contains(err.Error(), "status 302") {
			t.Errorf("type %s permanent %v: %v", ae.Type(), ae.NonRetryable(), err)
		}
	})
}

func TestSource_FetchMalformed(t *testing.T) {
	big := `{"data":[` + strings.Repeat(`{"id":1},`, 200) + `{"id":1}]}`
	tests := []struct {
		name        string
		contentType string
		body        string
		chunked     bool
		cfg         Config
		wantType    string
		wantIn      []string
	}{
		{name: "html", contentType: "text/html", body: "<html><body>Maintenance</body></html>", wantType: failure.TypeSourceMalformed, wantIn: []string{`content type "text/html"`, "Maintenance", "status 200"}},
		{name: "invalid JSON", contentType: "application/json", body: `{"data": [{"id": 1}, {"id": 2,]}`, wantType: failure.TypeSourceMalformed, wantIn: []string{"byte offset 31"}},
		{name: "invalid JSON without content type", body: `not json`, wantType: failure.TypeSourceMalformed, wantIn: []string{"byte offset 2", "not json"}},
		{name: "empty body", contentType: "application/json", body: ``, wantType: failure.TypeSourceMalformed, wantIn: []string{"empty body"}},
		{name: "records path missing", contentType: "application/json", body: `{"items": []}`, cfg: Config{RecordsPath: "data"}, wantType: failure.TypeSourceMalformed, wantIn: []string{`records path "data" is not in the body`}},
		{name: "nested records path missing", contentType: "application/json", body: `{"result": {"rows": 3}}`, cfg: Config{RecordsPath: "result.items"}, wantType: failure.TypeSourceMalformed, wantIn: []string{`"result.items"`}},
		{name: "records path not an array", contentType: "application/json", body: `{"data": {"id": 1}}`, cfg: Config{RecordsPath: "data"}, wantType: failure.TypeSourceMalformed, wantIn: []string{`records path "data" holds an object, not an array`}},
		{name: "body is an array, path expected an object", contentType: "application/json", body: `[1,2]`, cfg: Config{RecordsPath: "data"}, wantType: failure.TypeSourceMalformed, wantIn: []string{"the body is an array"}},
		{name: "body not an array with empty path", contentType: "application/problem+json", body: `{"data": []}`, wantType: failure.TypeSourceMalformed, wantIn: []string{"(body)", "holds an object"}},
		{name: "too large by Content-Length", contentType: "application/json", body: big, cfg: Config{RecordsPath: "data", MaxBodyBytes: 1024}, wantType: failure.TypeSourceTooLarge, wantIn: []string{"max_body_bytes 1024"}},
		{name: "too large streamed", contentType: "application/json", body: big, chunked: true, cfg: Config{RecordsPath: "data", MaxBodyBytes: 1024}, wantType: failure.TypeSourceTooLarge, wantIn: []string{"max_body_bytes 1024"}},
		{name: "cursor that never moves", contentType: "application/json", body: `{"data": [1], "next_cursor": "same"}`, cfg: Config{RecordsPath: "data", Pagination: Pagination{Style: StyleCursor}}, wantType: failure.TypeSourceMalformed, wantIn: []string{"repeats the current one"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			h := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				if tt.contentType != "" {
					w.Header().Set("Content-Type", tt.contentType)
				} else {
					w.Header()["Content-Type"] = nil // no sniffing
				}
				if tt.chunked {
					w.WriteHeader(http.StatusOK)
					w.(http.Flusher).Flush()
				}
				fmt.Fprint(w, tt.body)
			})
			s, _ := newTestSource(t, h, tt.cfg, nil)
			_, err := s.Fetch(context.Background(), connector.Request{Limit: 5, Position: cursor.Position{Token: "same"}})
			ae := httpclienttest.AppError(t, err)
			// A malformed page is asked again (a truncated body usually
			// comes whole next time); a page over the limit never fits.
			wantPermanent := tt.wantType != failure.TypeSourceMalformed
			if ae.Type() != tt.wantType || ae.NonRetryable() != wantPermanent {
				t.Errorf("type %s permanent %v, want %s permanent %v: %v", ae.Type(), ae.NonRetryable(), tt.wantType, wantPermanent, err)
			}
			if !wantPermanent && ae.NextRetryDelay() != MalformedRetryDelay {
				t.Errorf("next retry in %s, want %s", ae.NextRetryDelay(), MalformedRetryDelay)
			}
			for _, want := range tt.wantIn {
				if !strings.Contains(err.Error(), want) {
					t.Errorf("message %q does not say %q", err, want)
				}
			}
		})
	}
}

func TestSource_FetchLinkToAnotherHost(t *testing.T) {
	h := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		w.Header().Set("Link", `<https://evil.example/v1/items?page=2>; rel="next"`)
		fmt.Fprint(w, `{"data": [1]}`)
	})
	s, _ := newTestSource(t, h, Config{RecordsPath: "data", Pagination: Pagination{Style: StyleLink}}, nil)
	_, err := s.Fetch(context.Background(), connector.Request{Limit: 1})
	ae := httpclienttest.AppError(t, err)
	if ae.Type() != failure.TypeSourceMalformed || !strings.Contains(err.Error(), "not on the base_url's host") {
		t.Errorf("type %s: %v", ae.Type(), err)
	}
	_, err = s.Fetch(context.Background(), connector.Request{Position: cursor.Position{NextURL: "https://evil.example/x"}})
	if ae := httpclienttest.AppError(t, err); ae.Type() != failure.TypeConfig || !ae.NonRetryable() {
		t.Errorf("foreign NextURL in the position: type %s: %v", ae.Type(), err)
	}
}

func TestConfig_Validate(t *testing.T) {
	tests := []struct {
		name string
		give Config
		want []string // every problem, in order
	}{
		{
			name: "minimal is valid",
			give: Config{BaseURL: "http://127.0.0.1:8081", Path: "/v1/contacts"},
		},
		{
			name: "every kind of auth and style is valid",
			give: Config{BaseURL: "https://api.example.com/base", Pagination: Pagination{Style: "cursor"}, Auth: Auth{Kind: "oauth2", TokenURL: "https://id.example.com/token", ClientID: "a", ClientSecret: "b"}, Incremental: Incremental{Param: "since"}},
		},
		{
			name: "everything wrong at once",
			give: Config{
				BaseURL:     "ftp://example.com",
				Path:        "/v1/x?y=1",
				Query:       map[string]string{"page": "2"},
				Headers:     map[string]string{"Bad Header": "x"},
				RecordsPath: "data..items",
				Pagination:  Pagination{Style: "pages", StartPage: -1},
				Auth:        Auth{Kind: "basic"},
				RateLimit:   RateLimit{RequestsPerSecond: -1, Burst: -2},
				Timeout:     -time.Second,
				Retry:       Retry{Max: 50, WaitMin: 5 * time.Second, WaitMax: time.Second},
			},
			want: []string{
				`base_url: scheme "ftp" is not http or https`,
				`path: "/v1/x?y=1" holds a query or fragment (use query)`,
				`headers: "Bad Header" is not a valid header name`,
				`records_path: "data..items" has an empty segment at position 2`,
				`pagination.style: unknown style "pages" (want none, page, offset, cursor or link)`,
				`pagination.start_page: must not be negative, got -1`,
				`auth.kind: unknown kind "basic" (want none, bearer, api_key or oauth2)`,
				`rate_limit.requests_per_second: must not be negative, got -1`,
				`rate_limit.burst: must not be negative, got -2`,
				`timeout: must not be negative, got -1s`,
				`retry.max: 50 is out of range`,
				`retry.wait_min: 5s is above retry.wait_max 1s`,
			},
		},
		{
			name: "missing credentials and colliding parameters",
			give: Config{
				Pagination:  Pagination{Style: "page", SizeParam: "page"},
				Incremental: Incremental{Param: "limit"},
				Query:       map[string]string{"limit": "9"},
				Auth:        Auth{Kind: "oauth2", TokenURL: "not a url"},
			},
			want: []string{
				`base_url: required`,
				`pagination.size_param: parameter "page" is already used by pagination.page_param`,
				`query: parameter "limit" is set by incremental.param`,
				`auth.token_url: not an http(s) URL`,
				`auth.client_id: required for auth kind oauth2`,
				`auth.client_secret: required for auth kind oauth2`,
			},
		},
		{
			name: "incremental start without its parameter",
			give: Config{BaseURL: "http://x", Incremental: Incremental{Start: "1970-01-01T00:00:00Z"}},
			want: []string{`incremental.start: needs incremental.param`},
		},
		{
			name: "follow_pages with link pagination is valid",
			give: Config{BaseURL: "http://x", Pagination: Pagination{Style: "link"}, Incremental: Incremental{Param: "updated_since", FollowPages: true}},
		},
		{
			name: "follow_pages without its parameter",
			give: Config{BaseURL: "http://x", Pagination: Pagination{Style: "cursor"}, Incremental: Incremental{FollowPages: true}},
			want: []string{`incremental.follow_pages: needs incremental.param`},
		},
		{
			name: "follow_pages with offset pagination, which would skip records",
			give: Config{BaseURL: "http://x", Pagination: Pagination{Style: "offset"}, Incremental: Incremental{Param: "updated_since", FollowPages: true}},
			want: []string{`incremental.follow_pages: needs cursor or link pagination, got "offset": with page or offset pagination a record updated during the read shifts the following pages and one record would be skipped`},
		},
		{
			name: "bearer and api key need their secret",
			give: Config{BaseURL: "http://x", Auth: Auth{Kind: "bearer"}},
			want: []string{`auth.token: required for auth kind bearer`},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			httpclienttest.WantProblems(t, tt.give.Validate(), tt.want)
			if len(tt.want) == 0 {
				return
			}
			if _, err := New("x", tt.give); !failure.IsType(err, failure.TypeConfig) || !failure.IsPermanent(err) {
				t.Errorf("New() = %v, want a permanent config error", err)
			}
		})
	}
}
