package sandbox

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
)

// apiClient sends real HTTP requests over loopback to a Server.
type apiClient struct {
	t   testing.TB
	url string
	c   *http.Client
}

// serve starts s on a loopback listener for the test.
func serve(t testing.TB, s *Server) *apiClient {
	t.Helper()
	ts := httptest.NewServer(s.Handler())
	t.Cleanup(ts.Close)
	return &apiClient{t: t, url: ts.URL, c: ts.Client()}
}

// newServed is mustNew and serve.
func newServed(t testing.TB, o Options) (*Server, *apiClient) {
	t.Helper()
	s := mustNew(t, o)
	return s, serve(t, s)
}

// try sends one request. A string or []byte body is sent as is, anything
// else but nil as JSON (with Content-Type application/json); header is
// name, value pairs, set last.
func (a *apiClient) try(method, path string, body any, header ...string) (response, error) {
	var rd io.Reader
	switch b := body.(type) {
	case nil:
	case string:
		rd = strings.NewReader(b)
	case []byte:
		rd = bytes.NewReader(b)
	default:
		j, err := json.Marshal(b)
		if err != nil {
			return response{}, err
		}
		rd = bytes.NewReader(j)
	}
	req, err := http.NewRequest(method, a.url+path, rd)
	if err != nil {
		return response{}, err
	}
	if body != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	for i := 0; i+1 < len(header); i += 2 {
		req.Header.Set(header[i], header[i+1])
	}
	resp, err := a.c.Do(req)
	if err != nil {
		return response{}, err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		return response{}, fmt.Errorf("%s %s: read body: %w", method, path, err)
	}
	return response{status: resp.StatusCode, header: resp.Header, body: b}, nil
}

// call is try that fails the test on a transport error; not for use
// outside the test goroutine.
func (a *apiClient) call(method, path string, body any, header ...string) response {
	a.t.Helper()
	r, err := a.try(method, path, body, header...)
	if err != nil {
		a.t.Fatalf("%s %s: %v", method, path, err)
	}
	return r
}

// apiError decodes the {"error": APIError} of a write API answer.
func (r response) apiError(t testing.TB) APIError {
	t.Helper()
	var e struct {
		Error *APIError `json:"error"`
	}
	if err := json.Unmarshal(r.body, &e); err != nil || e.Error == nil || e.Error.Type == "" || e.Error.Message == "" {
		t.Fatalf("status %d: body %q is not a write API error object", r.status, r.body)
	}
	if ct := r.header.Get("Content-Type"); ct != "application/json" {
		t.Fatalf("error with Content-Type %q", ct)
	}
	return *e.Error
}

// wantError checks the status and the error type (and field, if given) of
// an answer.
func (r response) wantError(t testing.TB, status int, typ, field string) APIError {
	t.Helper()
	if r.status != status {
		t.Fatalf("status %d, want %d: %s", r.status, status, r.body)
	}
	e := r.apiError(t)
	if e.Type != typ || (field != "" && e.Field != field) {
		t.Fatalf("error %+v, want type %q field %q", e, typ, field)
	}
	return e
}

// customer decodes an answer that must be a customer with the status.
func (r response) customer(t testing.TB, status int) Customer {
	t.Helper()
	if r.status != status {
		t.Fatalf("status %d, want %d: %s", r.status, status, r.body)
	}
	var c Customer
	if err := json.Unmarshal(r.body, &c); err != nil {
		t.Fatalf("decode customer: %v: %s", err, r.body)
	}
	if etag := r.header.Get("ETag"); etag != c.ETag() {
		t.Fatalf("ETag %q, body version %d", etag, c.Version)
	}
	return c
}

// cust is a customer body: an email and name, value pairs.
func cust(email string, kv ...any) map[string]any {
	m := map[string]any{"email": email}
	for i := 0; i+1 < len(kv); i += 2 {
		m[kv[i].(string)] = kv[i+1]
	}
	return m
}
