package httpsource

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"strings"
	"sync/atomic"
	"testing"

	"github.com/tetherflow/tether/activities/connector"
	"github.com/tetherflow/tether/activities/lib/cursor"
	"github.com/tetherflow/tether/activities/lib/failure"
	"github.com/tetherflow/tether/activities/lib/httpclient/httpclienttest"
)

func TestSource_FetchPaginationStyles(t *testing.T) {
	tests := []struct {
		name      string
		give      *fakeAPI
		pag       Pagination
		limit     int
		wantPages int
	}{
		{name: "none", give: &fakeAPI{n: 7, style: StyleNone}, pag: Pagination{Style: StyleNone}, limit: 5, wantPages: 1},
		{name: "page", give: &fakeAPI{n: 23, style: StylePage}, pag: Pagination{Style: StylePage}, limit: 5, wantPages: 5},
		{name: "page, exact multiple ends on an empty page", give: &fakeAPI{n: 20, style: StylePage}, pag: Pagination{Style: StylePage}, limit: 5, wantPages: 5},
		{name: "page with meta.total_pages", give: &fakeAPI{n: 20, style: StylePage, totalPages: true}, pag: Pagination{Style: StylePage}, limit: 5, wantPages: 4},
		// The server caps pages at 4 while 10 are asked for: the page count
		// keeps the read going where the short-page rule would stop early.
		{name: "page capped by server, total_pages decides", give: &fakeAPI{n: 23, style: StylePage, capPage: 4, totalPages: true}, pag: Pagination{Style: StylePage}, limit: 10, wantPages: 6},
		{name: "offset", give: &fakeAPI{n: 23, style: StyleOffset}, pag: Pagination{Style: StyleOffset}, limit: 5, wantPages: 5},
		{name: "cursor", give: &fakeAPI{n: 23, style: StyleCursor}, pag: Pagination{Style: StyleCursor}, limit: 5, wantPages: 5},
		{name: "link", give: &fakeAPI{n: 23, style: StyleLink}, pag: Pagination{Style: StyleLink}, limit: 5, wantPages: 5},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			api := tt.give
			s, _ := newTestSource(t, api, Config{RecordsPath: "data", Pagination: tt.pag}, nil)
			ids, pages := readAll(t, s, connector.Request{Limit: tt.limit})
			if len(ids) != api.n {
				t.Fatalf("read %d records, want %d: %v", len(ids), api.n, ids)
			}
			for i, id := range ids {
				if id != i {
					t.Fatalf("record %d has id %d: lost or duplicated records: %v", i, id, ids)
				}
			}
			if pages != tt.wantPages || api.calls() != tt.wantPages {
				t.Errorf("pages = %d, requests = %d, want %d", pages, api.calls(), tt.wantPages)
			}
		})
	}
}

func TestSource_FetchRequestURL(t *testing.T) {
	tests := []struct {
		name string
		cfg  Config
		give connector.Request
		want string // path and query
	}{
		{
			name: "page, first page is start_page, static query kept",
			cfg:  Config{Query: map[string]string{"status": "active"}, Pagination: Pagination{Style: StylePage}},
			give: connector.Request{Limit: 50},
			want: "/v1/items?page=1&per_page=50&status=active",
		},
		{
			name: "page, custom params and start page",
			cfg:  Config{Pagination: Pagination{Style: StylePage, PageParam: "p", SizeParam: "n", StartPage: 0}},
			give: connector.Request{Position: cursor.Position{Page: 3}, Limit: 10},
			want: "/v1/items?n=10&p=3",
		},
		{
			name: "offset with incremental cursor",
			cfg:  Config{Pagination: Pagination{Style: StyleOffset}, Incremental: Incremental{Param: "updated_since"}},
			give: connector.Request{Position: cursor.Position{Offset: 40}, Limit: 20, Since: cursor.Checkpoint{Cursor: "2024-01-01T00:00:00Z", Key: "7"}},
			want: "/v1/items?limit=20&offset=40&updated_since=2024-01-01T00%3A00%3A00Z",
		},
		{
			name: "incremental param not sent without a checkpoint",
			cfg:  Config{Pagination: Pagination{Style: StyleCursor}, Incremental: Incremental{Param: "updated_since"}},
			give: connector.Request{Limit: 5},
			want: "/v1/items?limit=5",
		},
		{
			name: "incremental start sent without a checkpoint",
			cfg:  Config{Pagination: Pagination{Style: StyleCursor}, Incremental: Incremental{Param: "updated_since", Start: "1970-01-01T00:00:00Z"}},
			give: connector.Request{Limit: 5},
			want: "/v1/items?limit=5&updated_since=1970-01-01T00%3A00%3A00Z",
		},
		{
			name: "incremental start gives way to the checkpoint",
			cfg:  Config{Pagination: Pagination{Style: StyleCursor}, Incremental: Incremental{Param: "updated_since", Start: "1970-01-01T00:00:00Z"}},
			give: connector.Request{Limit: 5, Since: cursor.Checkpoint{Cursor: "2024-01-01T00:00:00Z", Key: "7"}},
			want: "/v1/items?limit=5&updated_since=2024-01-01T00%3A00%3A00Z",
		},
		{
			name: "cursor token",
			cfg:  Config{Pagination: Pagination{Style: StyleCursor, CursorParam: "after"}},
			give: connector.Request{Position: cursor.Position{Token: "abc=="}, Limit: 5},
			want: "/v1/items?after=abc%3D%3D&limit=5",
		},
		{
			name: "link first page",
			cfg:  Config{Pagination: Pagination{Style: StyleLink, LimitParam: "size"}},
			give: connector.Request{Limit: 5},
			want: "/v1/items?size=5",
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var got atomic.Value
			h := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				got.Store(r.URL.RequestURI())
				w.Header().Set("Content-Type", "application/json")
				fmt.Fprint(w, `{"data": []}`)
			})
			tt.cfg.RecordsPath = "data"
			s, srv := newTestSource(t, h, tt.cfg, nil)
			page, err := s.Fetch(context.Background(), tt.give)
			if err != nil {
				t.Fatal(err)
			}
			if got.Load() != tt.want {
				t.Errorf("request = %v, want %s", got.Load(), tt.want)
			}
			if page.CacheKey != srv.URL+tt.want {
				t.Errorf("CacheKey = %s, want %s", page.CacheKey, srv.URL+tt.want)
			}
		})
	}
}

func TestSource_FetchRecordsUntouched(t *testing.T) {
	const body = `{"data":[ {"b":1,"a":  "x\u00e9"} ,{"n":1.50e3},"str",null ]}`
	h := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		fmt.Fprint(w, body)
	})
	s, _ := newTestSource(t, h, Config{RecordsPath: "data"}, nil)
	page, err := s.Fetch(context.Background(), connector.Request{Limit: 10})
	if err != nil {
		t.Fatal(err)
	}
	want := []string{`{"b":1,"a":  "x\u00e9"}`, `{"n":1.50e3}`, `"str"`, `null`}
	if len(page.Records) != len(want) {
		t.Fatalf("got %d records, want %d", len(page.Records), len(want))
	}
	for i, w := range want {
		if string(page.Records[i]) != w {
			t.Errorf("record %d = %s, want %s", i, page.Records[i], w)
		}
	}
	if !page.Done || page.StatusCode != 200 {
		t.Errorf("Done = %v, StatusCode = %d", page.Done, page.StatusCode)
	}
}

func TestSource_FetchNotModified(t *testing.T) {
	api := &fakeAPI{n: 12, style: StylePage}
	api.before = func(w http.ResponseWriter, r *http.Request, _ int) bool {
		if inm := r.Header.Get("If-None-Match"); inm != "" && inm == `"p-0-5"` {
			w.Header().Set("ETag", inm)
			w.WriteHeader(http.StatusNotModified)
			return true
		}
		return false
	}
	memos := &memoryMemos{}
	s, _ := newTestSource(t, api, Config{RecordsPath: "data", Pagination: Pagination{Style: StylePage}, ConditionalRequests: true}, nil, WithMemoStore(memos))
	ctx := context.Background()

	first, err := s.Fetch(ctx, connector.Request{Integration: "test-items", Limit: 5})
	if err != nil {
		t.Fatal(err)
	}
	if first.NotModified || first.ETag != `"p-0-5"` {
		t.Fatalf("first read: NotModified = %v, ETag = %q", first.NotModified, first.ETag)
	}
	if got := api.request(0).Header.Get("If-None-Match"); got != "" {
		t.Errorf("If-None-Match sent without a memo: %q", got)
	}
	// The pipeline remembers the page only after it committed it.
	memos.remember("test-items", first)

	again, err := s.Fetch(ctx, connector.Request{Integration: "test-items", Limit: 5})
	if err != nil {
		t.Fatal(err)
	}
	if got := api.request(1).Header.Get("If-None-Match"); got != `"p-0-5"` {
		t.Errorf("If-None-Match = %q, want the remembered ETag", got)
	}
	want := connector.Page{NotModified: true, Next: first.Next, Done: false, RecordCount: 5, StatusCode: 304, CacheKey: first.CacheKey, ETag: `"p-0-5"`}
	if fmt.Sprint(again) != fmt.Sprint(want) {
		t.Errorf("304 page = %+v, want %+v", again, want)
	}
	// The following page has no memo: read in full, and the read completes.
	ids, _ := readAll(t, s, connector.Request{Integration: "test-items", Limit: 5, Position: again.Next})
	if len(ids) != 7 || ids[0] != 5 {
		t.Errorf("after the 304 page read ids %v, want 5..11", ids)
	}

	t.Run("memo store down means an unconditional request", func(t *testing.T) {
		memos.err = errors.New("connection refused")
		page, err := s.Fetch(ctx, connector.Request{Integration: "test-items", Limit: 5})
		if err != nil {
			t.Fatal(err)
		}
		if page.NotModified || page.RecordCount != 5 {
			t.Errorf("page = %+v, want the full page", page)
		}
	})
}

func TestSource_FetchAuth(t *testing.T) {
	tests := []struct {
		name       string
		give       Auth
		wantHeader string
		wantValue  string
	}{
		{name: "none", give: Auth{Kind: AuthNone}, wantHeader: "Authorization", wantValue: ""},
		{name: "bearer", give: Auth{Kind: AuthBearer, Token: "s3cret-bearer"}, wantHeader: "Authorization", wantValue: "Bearer s3cret-bearer"},
		{name: "api key default header", give: Auth{Kind: AuthAPIKey, APIKey: "k3y-value"}, wantHeader: "X-API-Key", wantValue: "k3y-value"},
		{name: "api key custom header", give: Auth{Kind: AuthAPIKey, Header: "X-Custom-Key", APIKey: "k3y-value"}, wantHeader: "X-Custom-Key", wantValue: "k3y-value"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			api := &fakeAPI{n: 3, style: StyleNone}
			s, _ := newTestSource(t, api, Config{RecordsPath: "data", Auth: tt.give, Headers: map[string]string{"X-Tenant": "acme"}}, nil)
			if _, err := s.Fetch(context.Background(), connector.Request{Limit: 5}); err != nil {
				t.Fatal(err)
			}
			r := api.request(0)
			if got := r.Header.Get(tt.wantHeader); got != tt.wantValue {
				t.Errorf("%s = %q, want %q", tt.wantHeader, got, tt.wantValue)
			}
			if got := r.Header.Get("X-Tenant"); got != "acme" {
				t.Errorf("static header X-Tenant = %q", got)
			}
		})
	}
}

// tokenEndpoint issues tokens tok-1, tok-2, ... valid for expiresIn seconds.
type tokenEndpoint struct {
	expiresIn int
	status    int // when set, answer this error status instead
	hits      atomic.Int32
}

func (e *tokenEndpoint) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	n := e.hits.Add(1)
	id, secret, ok := r.BasicAuth()
	if !ok {
		_ = r.ParseForm()
		id, secret = r.PostForm.Get("client_id"), r.PostForm.Get("client_secret")
	}
	w.Header().Set("Content-Type", "application/json")
	if e.status != 0 || id != "client-1" || secret != "very-secret-value" {
		w.WriteHeader(max(e.status, http.StatusUnauthorized))
		fmt.Fprintf(w, `{"error":"invalid_client","error_description":"bad secret %s"}`, secret)
		return
	}
	fmt.Fprintf(w, `{"access_token":"tok-%d","token_type":"bearer","expires_in":%d}`, n, e.expiresIn)
}

func TestSource_FetchOAuth2(t *testing.T) {
	tests := []struct {
		name       string
		expiresIn  int
		rejectTok1 bool
		fetches    int
		wantTokens int32
		wantAPI    int
	}{
		// Cached: one token for many fetches.
		{name: "token cached across fetches", expiresIn: 3600, fetches: 10, wantTokens: 1, wantAPI: 10},
		// A token that expires within the refresh margin is refreshed before use.
		{name: "refreshed before expiry", expiresIn: 1, fetches: 3, wantTokens: 3, wantAPI: 3},
		// The API refuses tok-1: dropped, tok-2 fetched, request repeated once.
		{name: "401 drops the token and retries once", expiresIn: 3600, rejectTok1: true, fetches: 3, wantTokens: 2, wantAPI: 4},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			tokens := &tokenEndpoint{expiresIn: tt.expiresIn}
			mux := http.NewServeMux()
			mux.Handle("POST /oauth/token", tokens)
			api := &fakeAPI{n: 2, style: StyleNone}
			api.before = func(w http.ResponseWriter, r *http.Request, _ int) bool {
				auth := r.Header.Get("Authorization")
				if !strings.HasPrefix(auth, "Bearer tok-") || (tt.rejectTok1 && auth == "Bearer tok-1") {
					w.WriteHeader(http.StatusUnauthorized)
					return true
				}
				return false
			}
			mux.Handle("/v1/items", api)
			s, srv := newTestSource(t, mux, Config{RecordsPath: "data"}, nil)
			// Rebuild with the token URL now that the server's address is known.
			cfg := s.cfg
			cfg.Auth = Auth{Kind: AuthOAuth2, TokenURL: srv.URL + "/oauth/token", ClientID: "client-1", ClientSecret: "very-secret-value", Scopes: []string{"read"}}
			s, err := New("test-items", cfg)
			if err != nil {
				t.Fatal(err)
			}
			for i := range tt.fetches {
				if _, err := s.Fetch(context.Background(), connector.Request{Limit: 5}); err != nil {
					t.Fatalf("fetch %d: %v", i, err)
				}
			}
			if got := tokens.hits.Load(); got != tt.wantTokens {
				t.Errorf("token endpoint hit %d times, want %d", got, tt.wantTokens)
			}
			if got := api.calls(); got != tt.wantAPI {
				t.Errorf("API hit %d times, want %d", got, tt.wantAPI)
			}
		})
	}
}

func TestSource_FetchOAuth2Errors(t *testing.T) {
	tests := []struct {
		name          string
		tokenStatus   int
		apiAlways401  bool
		wantType      string
		wantPermanent bool
		wantIn        string
	}{
		{name: "token endpoint refuses the client", tokenStatus: http.StatusUnauthorized, wantType: failure.TypeSourceAuth, wantPermanent: true, wantIn: "status 401 (invalid_client)"},
		{name: "token endpoint down", tokenStatus: http.StatusBadGateway, wantType: failure.TypeSourceUnavailable, wantPermanent: false, wantIn: "status 502"},
		{name: "API refuses even a fresh token", apiAlways401: true, wantType: failure.TypeSourceAuth, wantPermanent: true, wantIn: "status 401"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			tokens := &tokenEndpoint{expiresIn: 3600, status: tt.tokenStatus}
			mux := http.NewServeMux()
			mux.Handle("POST /oauth/token", tokens)
			api := &fakeAPI{n: 2, style: StyleNone, before: func(w http.ResponseWriter, r *http.Request, _ int) bool {
				if tt.apiAlways401 {
					w.WriteHeader(http.StatusUnauthorized)
					fmt.Fprintf(w, "token %s refused", r.Header.Get("Authorization"))
					return true
				}
				return false
			}}
			mux.Handle("/v1/items", api)
			s, srv := newTestSource(t, mux, Config{RecordsPath: "data"}, nil)
			cfg := s.cfg
			cfg.Auth = Auth{Kind: AuthOAuth2, TokenURL: srv.URL + "/oauth/token", ClientID: "client-1", ClientSecret: "very-secret-value"}
			s, err := New("test-items", cfg)
			if err != nil {
				t.Fatal(err)
			}
			_, err = s.Fetch(context.Background(), connector.Request{Limit: 5})
			ae := httpclienttest.AppError(t, err)
			if ae.Type() != tt.wantType || ae.NonRetryable() != tt.wantPermanent {
				t.Errorf("type %s permanent %v, want %s %v: %v", ae.Type(), ae.NonRetryable(), tt.wantType, tt.wantPermanent, err)
			}
			if !strings.Contains(err.Error(), tt.wantIn) {
				t.Errorf("error %q does not say %q", err, tt.wantIn)
			}
			if strings.Contains(err.Error(), "very-secret-value") {
				t.Errorf("error leaks the client secret: %v", err)
			}
			if tt.apiAlways401 && api.calls() != 2 {
				t.Errorf("API hit %d times, want 2 (one retry with a fresh token)", api.calls())
			}
		})
	}
}

func TestSource_FetchConcurrentSafe(t *testing.T) {
	api := &fakeAPI{n: 50, style: StyleOffset}
	s, _ := newTestSource(t, api, Config{RecordsPath: "data", Pagination: Pagination{Style: StyleOffset}, RateLimit: RateLimit{RequestsPerSecond: 1000, Burst: 5}}, nil)
	errs := make(chan error, 10)
	for i := range 10 {
		go func() {
			page, err := s.Fetch(context.Background(), connector.Request{Position: cursor.Position{Offset: i * 5}, Limit: 5})
			if err == nil && page.RecordCount != 5 {
				err = fmt.Errorf("offset %d: %d records", i*5, page.RecordCount)
			}
			errs <- err
		}()
	}
	for range 10 {
		if err := <-errs; err != nil {
			t.Error(err)
		}
	}
}

func BenchmarkSource_parse1000(b *testing.B) {
	var sb strings.Builder
	sb.WriteString(`{"meta":{"total_pages":100},"data":[`)
	for i := range 1000 {
		if i > 0 {
			sb.WriteByte(',')
		}
		fmt.Fprintf(&sb, `{"id":%d,"email":"user%d@example.com","name":"User Number %d","company":{"id":%d,"name":"Acme"},"tags":["a","b"],"updated_at":"2024-05-01T10:00:00Z","score":12.5}`, i, i, i, i%50)
	}
	sb.WriteString(`],"next_cursor":"abc"}`)
	body := []byte(sb.String())
	b.SetBytes(int64(len(body)))
	b.ReportAllocs()
	for b.Loop() {
		doc, err := parseDocument(body)
		if err != nil {
			b.Fatal(err)
		}
		recs, err := doc.records("data")
		if err != nil || len(recs) != 1000 {
			b.Fatal(err, len(recs))
		}
		if _, _, err := doc.integer(totalPagesPath); err != nil {
			b.Fatal(err)
		}
	}
}
