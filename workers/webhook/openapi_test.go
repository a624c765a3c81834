package webhook

import (
	"bytes"
	"context"
	"errors"
	"io"
	"net/http"
	"slices"
	"sort"
	"strconv"
	"strings"
	"testing"

	"github.com/getkin/kin-openapi/openapi3"
	"github.com/getkin/kin-openapi/openapi3filter"
	"github.com/getkin/kin-openapi/routers"
	"github.com/getkin/kin-openapi/routers/gorillamux"
)

// openAPIChecker validates requests and answers against openapi.yaml.
type openAPIChecker struct {
	doc    *openapi3.T
	router routers.Router
}

func newOpenAPIChecker(t *testing.T) *openAPIChecker {
	t.Helper()
	doc, err := openapi3.NewLoader().LoadFromData(OpenAPI)
	if err != nil {
		t.Fatalf("openapi.yaml: %v", err)
	}
	if err := doc.Validate(context.Background()); err != nil {
		t.Fatalf("openapi.yaml is not a valid OpenAPI 3 document: %v", err)
	}
	router, err := gorillamux.NewRouter(doc)
	if err != nil {
		t.Fatal(err)
	}
	return &openAPIChecker{doc: doc, router: router}
}

// do sends req to the real handler over loopback and checks the request
// and the answer (status, headers, body) against the document; it returns
// the status.
func (c *openAPIChecker) do(t *testing.T, req *http.Request, body []byte) int {
	t.Helper()
	check, err := http.NewRequest(req.Method, req.URL.String(), bytes.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	check.Header = req.Header.Clone()
	route, params, err := c.router.FindRoute(check)
	if errors.Is(err, routers.ErrMethodNotAllowed) {
		// A method the path does not take: its 405 is documented on the
		// path's POST.
		check.Method = http.MethodPost
		route, params, err = c.router.FindRoute(check)
	}
	if err != nil {
		t.Fatalf("%s %s is not in openapi.yaml: %v", req.Method, req.URL.Path, err)
	}
	in := &openapi3filter.RequestValidationInput{Request: check, PathParams: params, Route: route,
		Options: &openapi3filter.Options{AuthenticationFunc: openapi3filter.NoopAuthenticationFunc}}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	raw, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	out := &openapi3filter.ResponseValidationInput{RequestValidationInput: in, Status: resp.StatusCode, Header: resp.Header,
		Body: io.NopCloser(bytes.NewReader(raw)), Options: &openapi3filter.Options{IncludeResponseStatus: true}}
	if err := openapi3filter.ValidateResponse(context.Background(), out); err != nil {
		t.Errorf("%s %s answered %d %s, which openapi.yaml does not describe: %v", req.Method, req.URL.Path, resp.StatusCode, raw, err)
	}
	if op := route.Operation; op != nil {
		if r := op.Responses.Value(strconv.Itoa(resp.StatusCode)); r != nil && r.Value != nil {
			for name, h := range r.Value.Headers {
				if h.Value != nil && h.Value.Required && resp.Header.Get(name) == "" {
					t.Errorf("%d answer lacks the required header %s", resp.StatusCode, name)
				}
			}
		}
	}
	return resp.StatusCode
}

// TestOpenAPI_DescribesTheReceiverAsItAnswers: every answer the real
// receiver gives (each documented status driven by a request that causes
// it) matches openapi.yaml (status, headers, JSON body), every documented
// status of the POST is among them, and the document is served.
func TestOpenAPI_DescribesTheReceiverAsItAnswers(t *testing.T) {
	c := newOpenAPIChecker(t)
	small := crmSource()
	small.Name, small.MaxBody = "small", 16
	strict := crmSource()
	strict.Name, strict.OnInvalid = "strict", OnInvalidReject
	limited := crmSource()
	limited.Name, limited.RateLimit = "limited", RateLimit{PerSecond: 0.001, Burst: 1}
	h := newHarness(t, []Source{crmSource(), small, strict, limited})

	send := func(method, path, body, delivery, signature string) int {
		t.Helper()
		req, err := http.NewRequest(method, h.srv.URL+path, strings.NewReader(body))
		if err != nil {
			t.Fatal(err)
		}
		req.Header.Set("Content-Type", "application/json")
		if signature == "" {
			signature = Sign("", h.clock.now(), []byte(body), secretNew)
		}
		req.Header.Set(DefaultSignatureHeader, signature)
		if delivery != "" {
			req.Header.Set(DefaultDeliveryHeader, delivery)
		}
		return c.do(t, req, []byte(body))
	}
	invalid := `{"type":"contact.renamed","data":{"id":1,"updated_at":"2026-11-23T10:15:00Z"}}`
	seen := map[int]bool{}
	for _, tc := range []struct {
		name   string
		status int
		send   func() int
	}{
		{"accepted", 202, func() int { return send("POST", Path("crm"), validBody, "d-1", "") }},
		{"quarantined", 202, func() int { return send("POST", Path("crm"), invalid, "d-2", "") }},
		{"duplicate", 200, func() int { return send("POST", Path("crm"), validBody, "d-1", "") }},
		{"no delivery id", 400, func() int { return send("POST", Path("crm"), validBody, "", "") }},
		{"wrong secret", 401, func() int {
			return send("POST", Path("crm"), validBody, "d-3", Sign("", h.clock.now(), []byte(validBody), secretOther))
		}},
		{"unknown source", 404, func() int { return send("POST", Path("nope"), validBody, "d-4", "") }},
		{"not POST", 405, func() int { return send("GET", Path("crm"), "", "d-5", "") }},
		{"too large", 413, func() int { return send("POST", Path("small"), validBody, "d-6", "") }},
		{"schema-invalid, rejected", 422, func() int { return send("POST", Path("strict"), invalid, "d-7", "") }},
		{"rate limited", 429, func() int {
			send("POST", Path("limited"), validBody, "d-8", "")
			return send("POST", Path("limited"), validBody, "d-9", "")
		}},
		{"not recorded", 503, func() int {
			h.acc.setErr(errors.New("temporal unreachable"))
			defer h.acc.setErr(nil)
			return send("POST", Path("crm"), validBody, "d-10", "")
		}},
	} {
		if got := tc.send(); got != tc.status {
			t.Errorf("%s: %d, want %d", tc.name, got, tc.status)
		}
		seen[tc.status] = true
	}

	documented := []int{}
	for code := range c.doc.Paths.Find("/webhooks/{source}").Post.Responses.Map() {
		n, err := strconv.Atoi(code)
		if err != nil {
			t.Errorf("response %q is not a status code", code)
			continue
		}
		documented = append(documented, n)
	}
	sort.Ints(documented)
	for _, n := range documented {
		if !seen[n] {
			t.Errorf("openapi.yaml documents %d, which no request here caused", n)
		}
	}
	for n := range seen {
		if !slices.Contains(documented, n) {
			t.Errorf("the receiver answered %d, which openapi.yaml does not document", n)
		}
	}

	resp, err := http.Get(h.srv.URL + OpenAPIPath)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	served, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != 200 || !bytes.Equal(served, OpenAPI) || resp.Header.Get("Content-Type") != "application/yaml" {
		t.Errorf("GET %s: %d %s, %d bytes; want the document", OpenAPIPath, resp.StatusCode, resp.Header.Get("Content-Type"), len(served))
	}
}
