package httpclient

import (
	"context"
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"net/url"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/tetherflow/tether/activities/lib/httpclient/httpclienttest"
)

// testTypes are distinct failure types, so a test sees which one was used.
var testTypes = ErrorTypes{HTTP: "T-HTTP", Auth: "T-Auth", NotFound: "T-NotFound", Throttled: "T-Throttled", Unavailable: "T-Unavailable"}

// newTestClient serves h on loopback and returns a Client for it.
func newTestClient(t *testing.T, h http.Handler, o Options) (*Client, *url.URL) {
	t.Helper()
	srv := httptest.NewServer(h)
	t.Cleanup(srv.Close)
	o.Types = testTypes
	o.Auth = o.Auth.WithDefaults()
	if o.Retry == (Retry{}) {
		o.Retry = Retry{Max: 2, WaitMin: time.Millisecond, WaitMax: 2 * time.Second}
	}
	u, err := url.Parse(srv.URL + "/v1/things")
	if err != nil {
		t.Fatal(err)
	}
	return New(o), u
}

func TestPacer_TokenBucketWaits(t *testing.T) {
	clk := httpclienttest.NewClock()
	p := newPacer(RateLimit{RequestsPerSecond: 10, Burst: 2}, time.Second, clk.Now, clk.Sleep)
	for i := range 5 {
		if err := p.Wait(context.Background()); err != nil {
			t.Fatalf("wait %d: %v", i, err)
		}
	}
	want := []time.Duration{100 * time.Millisecond, 100 * time.Millisecond, 100 * time.Millisecond}
	if got := clk.Waits(); !slices.Equal(got, want) {
		t.Errorf("waits = %v, want %v (burst 2, then one every 100ms)", got, want)
	}
}

func TestPacer_Observe(t *testing.T) {
	tests := []struct {
		name      string
		status    int
		header    map[string]string
		wantWait  time.Duration // slept before the next request
		wantThrot time.Duration // or: refused, with this wait
	}{
		{name: "remaining 0 with delta reset", status: 200, header: map[string]string{"X-RateLimit-Remaining": "0", "X-RateLimit-Reset": "2"}, wantWait: 2 * time.Second},
		{name: "remaining above 0", status: 200, header: map[string]string{"X-RateLimit-Remaining": "1", "X-RateLimit-Reset": "2"}},
		{name: "429 Retry-After", status: 429, header: map[string]string{"Retry-After": "1"}, wantWait: time.Second},
		{name: "503 Retry-After", status: 503, header: map[string]string{"Retry-After": "3"}, wantWait: 3 * time.Second},
		{name: "200 Retry-After is ignored", status: 200, header: map[string]string{"Retry-After": "3"}},
		{name: "Retry-After beyond the max wait", status: 429, header: map[string]string{"Retry-After": "60"}, wantThrot: 60 * time.Second},
		{name: "429 with reset only", status: 429, header: map[string]string{"X-RateLimit-Reset": "4"}, wantThrot: 4 * time.Second},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			clk := httpclienttest.NewClock()
			p := newPacer(RateLimit{}, 3*time.Second, clk.Now, clk.Sleep)
			resp := &http.Response{StatusCode: tt.status, Header: http.Header{}}
			for k, v := range tt.header {
				resp.Header.Set(k, v)
			}
			p.Observe(resp)
			err := p.Wait(context.Background())
			var te *throttleError
			switch {
			case tt.wantThrot > 0:
				if !errors.As(err, &te) || te.wait != tt.wantThrot {
					t.Fatalf("Wait = %v, want a throttle error of %s", err, tt.wantThrot)
				}
			case err != nil:
				t.Fatalf("Wait: %v", err)
			}
			var want []time.Duration
			if tt.wantWait > 0 {
				want = []time.Duration{tt.wantWait}
			}
			if got := clk.Waits(); !slices.Equal(got, want) {
				t.Errorf("waits = %v, want %v", got, want)
			}
		})
	}
}

func TestClient_DoSendsCredentialsHeadersAndBodyOnEveryRetry(t *testing.T) {
	tests := []struct {
		name       string
		auth       Auth
		wantHeader string
		wantValue  string
	}{
		{name: "bearer", auth: Auth{Kind: AuthBearer, Token: "s3cret-bearer"}, wantHeader: "Authorization", wantValue: "Bearer s3cret-bearer"},
		{name: "api key", auth: Auth{Kind: AuthAPIKey, Header: "X-Key", APIKey: "k3y-value"}, wantHeader: "X-Key", wantValue: "k3y-value"},
		{name: "none", auth: Auth{}, wantHeader: "Authorization", wantValue: ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var mu sync.Mutex
			var seen []*http.Request
			var bodies []string
			h := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				b, _ := io.ReadAll(r.Body)
				mu.Lock()
				seen = append(seen, r)
				bodies = append(bodies, string(b))
				n := len(seen)
				mu.Unlock()
				if n == 1 {
					w.WriteHeader(http.StatusBadGateway)
					return
				}
				w.WriteHeader(http.StatusCreated)
			})
			c, u := newTestClient(t, h, Options{Auth: tt.auth, Headers: map[string]string{"X-Static": "s"}, UserAgent: "tether-test"})
			resp, err := c.Do(context.Background(), http.MethodPost, u, []byte(`{"a":1}`), http.Header{"Idempotency-Key": {"k1"}})
			if err != nil {
				t.Fatal(err)
			}
			Drain(resp)
			if resp.StatusCode != http.StatusCreated || len(seen) != 2 {
				t.Fatalf("status %d after %d requests, want 201 after 2", resp.StatusCode, len(seen))
			}
			for i, r := range seen {
				if got := r.Header.Get(tt.wantHeader); got != tt.wantValue {
					t.Errorf("request %d: %s = %q, want %q", i, tt.wantHeader, got, tt.wantValue)
				}
				if r.Header.Get("X-Static") != "s" || r.Header.Get("Idempotency-Key") != "k1" || r.Header.Get("User-Agent") != "tether-test" {
					t.Errorf("request %d: headers %v", i, r.Header)
				}
				if bodies[i] != `{"a":1}` {
					t.Errorf("request %d: body %q", i, bodies[i])
				}
			}
		})
	}
}

func TestClient_StatusError(t *testing.T) {
	tests := []struct {
		status        int
		header        map[string]string
		wantType      string
		wantPermanent bool
		wantDelay     time.Duration
		wantIn        string
	}{
		{status: 500, wantType: "T-Unavailable"},
		{status: 503, wantType: "T-Unavailable"},
		{status: 503, header: map[string]string{"Retry-After": "30"}, wantType: "T-Throttled", wantDelay: 30 * time.Second},
		{status: 408, wantType: "T-Unavailable"},
		{status: 429, wantType: "T-Throttled", wantDelay: time.Second},
		{status: 429, header: map[string]string{"X-RateLimit-Reset": "7"}, wantType: "T-Throttled", wantDelay: 7 * time.Second},
		{status: 401, wantType: "T-Auth", wantPermanent: true},
		{status: 403, wantType: "T-Auth", wantPermanent: true},
		{status: 404, wantType: "T-NotFound", wantPermanent: true},
		{status: 410, wantType: "T-NotFound", wantPermanent: true},
		{status: 400, wantType: "T-HTTP", wantPermanent: true},
		{status: 307, header: map[string]string{"Location": "https://elsewhere.example/x?token=t"}, wantType: "T-HTTP", wantPermanent: true, wantIn: `redirect to "https://elsewhere.example/x?token=REDACTED" not followed (redirects are not followed)`},
		{status: 304, wantType: "T-HTTP", wantPermanent: true, wantIn: "not conditional"},
	}
	for _, tt := range tests {
		t.Run(http.StatusText(tt.status)+" "+strings.Join(mapKeys(tt.header), ","), func(t *testing.T) {
			clk := httpclienttest.NewClock()
			c := New(Options{Types: testTypes, Auth: Auth{Kind: AuthBearer, Token: "s3cret-bearer"}, Now: clk.Now, NoRedirects: true})
			resp := &http.Response{StatusCode: tt.status, Header: http.Header{}, Body: io.NopCloser(strings.NewReader(`{"error":"no luck","echo":"s3cret-bearer"}`))}
			for k, v := range tt.header {
				resp.Header.Set(k, v)
			}
			u, _ := url.Parse("http://127.0.0.1:1/v1/things?api_key=abc")
			err := c.StatusError(http.MethodPut, u, resp)
			ae := httpclienttest.AppError(t, err)
			if ae.Type() != tt.wantType || ae.NonRetryable() != tt.wantPermanent || ae.NextRetryDelay() != tt.wantDelay {
				t.Errorf("type %s permanent %v delay %s, want %s %v %s", ae.Type(), ae.NonRetryable(), ae.NextRetryDelay(), tt.wantType, tt.wantPermanent, tt.wantDelay)
			}
			msg := err.Error()
			if !strings.HasPrefix(msg, "PUT http://127.0.0.1:1/v1/things?api_key=REDACTED: status ") {
				t.Errorf("message %q does not start with the method and the redacted URL", msg)
			}
			if tt.wantIn != "" && !strings.Contains(msg, tt.wantIn) {
				t.Errorf("message %q does not say %q", msg, tt.wantIn)
			}
			if strings.Contains(msg, "s3cret-bearer") || strings.Contains(msg, "abc") {
				t.Errorf("message leaks a secret: %q", msg)
			}
			var d ErrorDetails
			if err := ae.Details(&d); err != nil || d.StatusCode != tt.status {
				t.Errorf("details = %+v, %v", d, err)
			}
		})
	}
}

func mapKeys(m map[string]string) []string {
	var ks []string
	for k := range m {
		ks = append(ks, k)
	}
	return ks
}

func TestClient_DoNoRedirects(t *testing.T) {
	var hits int
	h := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		hits++
		http.Redirect(w, r, "/v1/elsewhere", http.StatusMovedPermanently)
	})
	c, u := newTestClient(t, h, Options{NoRedirects: true})
	resp, err := c.Do(context.Background(), http.MethodPost, u, []byte(`{}`), nil)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusMovedPermanently || hits != 1 {
		t.Errorf("status %d after %d requests, want the 301 itself", resp.StatusCode, hits)
	}
}

func TestClient_DoTransportErrors(t *testing.T) {
	t.Run("no answer after the retries", func(t *testing.T) {
		c := New(Options{Types: testTypes, Retry: Retry{Max: 1, WaitMin: time.Millisecond, WaitMax: time.Millisecond}})
		u, _ := url.Parse("http://127.0.0.1:1/v1/things?token=abc")
		_, err := c.Do(context.Background(), http.MethodDelete, u, nil, nil)
		ae := httpclienttest.AppError(t, err)
		if ae.Type() != "T-Unavailable" || ae.NonRetryable() || !strings.Contains(err.Error(), "DELETE http://127.0.0.1:1/v1/things?token=REDACTED: no answer after 2 attempts") {
			t.Errorf("type %s: %v", ae.Type(), err)
		}
	})
	t.Run("context ended", func(t *testing.T) {
		c := New(Options{Types: testTypes, Retry: Retry{WaitMin: time.Millisecond, WaitMax: time.Millisecond}})
		u, _ := url.Parse("http://127.0.0.1:1/v1/things")
		ctx, cancel := context.WithCancel(context.Background())
		cancel()
		_, err := c.Do(ctx, http.MethodGet, u, nil, nil)
		if !errors.Is(err, context.Canceled) {
			t.Errorf("err = %v, want the context's", err)
		}
	})
}

func TestClient_QuoteRedactsSecrets(t *testing.T) {
	c := New(Options{Auth: Auth{Kind: AuthOAuth2, TokenURL: "http://127.0.0.1:1/token", ClientID: "id", ClientSecret: "very-secret-value"}})
	got := c.Quote([]byte("bad client\nsecret very-secret-value " + strings.Repeat("x", 300)))
	if strings.Contains(got, "very-secret-value") || !strings.HasPrefix(got, "bad client secret REDACTED x") || !strings.HasSuffix(got, "…") {
		t.Errorf("Quote = %q", got)
	}
	if got := c.Quote(nil); got != "(empty body)" {
		t.Errorf("Quote(nil) = %q", got)
	}
}

func TestConfig_Problems(t *testing.T) {
	tests := []struct {
		name string
		give func() []error
		want []string
	}{
		{name: "valid", give: func() []error {
			return append(append(Auth{Kind: AuthAPIKey, APIKey: "k"}.Problems("auth"), RateLimit{RequestsPerSecond: 1}.Problems("rate_limit")...), Retry{Max: -1}.Problems("retry")...)
		}},
		{name: "auth kind", give: func() []error { return Auth{Kind: "basic"}.Problems("auth") }, want: []string{`auth.kind: unknown kind "basic" (want none, bearer, api_key or oauth2)`}},
		{name: "bearer", give: func() []error { return Auth{Kind: AuthBearer}.Problems("auth") }, want: []string{`auth.token: required for auth kind bearer`}},
		{name: "api key", give: func() []error { return Auth{Kind: AuthAPIKey, Header: "Bad Header"}.Problems("auth") }, want: []string{
			`auth.api_key: required for auth kind api_key`, `auth.header: "Bad Header" is not a valid header name`}},
		{name: "oauth2", give: func() []error { return Auth{Kind: AuthOAuth2, TokenURL: "ftp://x"}.Problems("auth") }, want: []string{
			`auth.token_url: not an http(s) URL`, `auth.client_id: required for auth kind oauth2`, `auth.client_secret: required for auth kind oauth2`}},
		{name: "oauth2 no url", give: func() []error { return Auth{Kind: AuthOAuth2, ClientID: "a", ClientSecret: "b"}.Problems("auth") }, want: []string{`auth.token_url: required for auth kind oauth2`}},
		{name: "rate limit", give: func() []error { return RateLimit{RequestsPerSecond: -1, Burst: -2}.Problems("rate_limit") }, want: []string{
			`rate_limit.requests_per_second: must not be negative, got -1`, `rate_limit.burst: must not be negative, got -2`}},
		{name: "retry", give: func() []error { return Retry{Max: 11, WaitMin: -1, WaitMax: -1}.Problems("retry") }, want: []string{
			`retry.max: 11 is out of range`, `retry.wait_min: must not be negative, got -1ns`, `retry.wait_max: must not be negative, got -1ns`}},
		{name: "retry waits", give: func() []error { return Retry{WaitMin: 3 * time.Second}.Problems("retry") }, want: []string{`retry.wait_min: 3s is above retry.wait_max 2s`}},
		{name: "base url", give: func() []error {
			var errs []error
			for _, raw := range []string{"", "ftp://h", "http://", "http://u:p@h", "http://h/%zz"} {
				errs = append(errs, CheckBaseURL(raw))
			}
			return errs
		}, want: []string{`required`, `scheme "ftp" is not http or https`, `no host in "http://"`, `credentials in the URL are not allowed (use auth)`, `not a URL: `}},
		{name: "headers and dot paths", give: func() []error {
			return append(HeaderProblems("headers", map[string]string{"X-Ok": "", "Bad:": ""}), CheckDotPath("a..b"), CheckDotPath("a.b"))
		}, want: []string{`headers: "Bad:" is not a valid header name`, `"a..b" has an empty segment at position 2`, ``}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := tt.give()
			if len(got) != len(tt.want) {
				t.Fatalf("got %d problems, want %d: %v", len(got), len(tt.want), got)
			}
			for i, want := range tt.want {
				switch {
				case want == "" && got[i] != nil:
					t.Errorf("problem %d = %v, want none", i, got[i])
				case want != "" && (got[i] == nil || !strings.HasPrefix(got[i].Error(), want)):
					t.Errorf("problem %d = %v, want %q", i, got[i], want)
				}
			}
		})
	}
}

func TestParseRetryAfter(t *testing.T) {
	now := time.Date(2030, 1, 2, 3, 4, 5, 0, time.UTC)
	tests := []struct {
		give   string
		want   time.Duration
		wantOK bool
	}{
		{give: "7", want: 7 * time.Second, wantOK: true},
		{give: " 0 ", want: 0, wantOK: true},
		{give: now.Add(90 * time.Second).Format(http.TimeFormat), want: 90 * time.Second, wantOK: true},
		{give: now.Add(-time.Hour).Format(http.TimeFormat), want: 0, wantOK: true},
		{give: "-3"},
		{give: "soon"},
		{give: ""},
	}
	for _, tt := range tests {
		got, ok := ParseRetryAfter(tt.give, now)
		if got != tt.want || ok != tt.wantOK {
			t.Errorf("ParseRetryAfter(%q) = %s, %v; want %s, %v", tt.give, got, ok, tt.want, tt.wantOK)
		}
	}
}

func TestRedactURL(t *testing.T) {
	tests := []struct{ give, want string }{
		{give: "http://h/x?page=2&api_key=abc&access_token=t&sig=s", want: "http://h/x?access_token=REDACTED&api_key=REDACTED&page=2&sig=REDACTED"},
		{give: "http://user:pw@h/x", want: "http://h/x"},
		{give: "http://h/x?page=2", want: "http://h/x?page=2"},
	}
	for _, tt := range tests {
		if got := RedactURL(tt.give); got != tt.want {
			t.Errorf("RedactURL(%q) = %q, want %q", tt.give, got, tt.want)
		}
	}
}
