package sandbox

import (
	"cmp"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"net/url"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"
)

// fakeClock is a settable clock for Options.Now.
type fakeClock struct {
	mu  sync.Mutex
	now time.Time
}

func newFakeClock() *fakeClock {
	return &fakeClock{now: time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)}
}

func (c *fakeClock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.now
}

func (c *fakeClock) Advance(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.now = c.now.Add(d)
}

func mustNew(t testing.TB, o Options) *Server {
	t.Helper()
	s, err := New(o)
	if err != nil {
		t.Fatalf("New: %v", err)
	}
	return s
}

// response is one answer of the handler.
type response struct {
	status int
	header http.Header
	body   []byte
}

func (r response) errorMessage(t testing.TB) string {
	t.Helper()
	var e struct {
		Error string `json:"error"`
	}
	if err := json.Unmarshal(r.body, &e); err != nil || e.Error == "" {
		t.Fatalf("status %d: body %q is not a JSON error", r.status, r.body)
	}
	return e.Error
}

// do sends one request straight to the handler. target is a path with a
// query, or an absolute URL.
func do(t testing.TB, h http.Handler, method, target string, header http.Header, body io.Reader) response {
	t.Helper()
	req := httptest.NewRequest(method, target, body)
	for k, v := range header {
		req.Header[k] = v
	}
	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, req)
	return response{status: rec.Code, header: rec.Header(), body: rec.Body.Bytes()}
}

func get(t testing.TB, h http.Handler, target string, header http.Header) response {
	t.Helper()
	return do(t, h, http.MethodGet, target, header, nil)
}

// envelope is every pagination style's body.
type envelope struct {
	Data []json.RawMessage `json:"data"`
	Meta *struct {
		Page       int `json:"page"`
		PerPage    int `json:"per_page"`
		Offset     int `json:"offset"`
		Limit      int `json:"limit"`
		Total      int `json:"total"`
		TotalPages int `json:"total_pages"`
	} `json:"meta"`
	NextCursor *string `json:"next_cursor"`
}

// rowKey is what ordering is checked on.
type rowKey struct {
	ID        int64  `json:"id"`
	UpdatedAt string `json:"updated_at"`
}

func decodePage(t testing.TB, r response) (envelope, []rowKey) {
	t.Helper()
	if r.status != http.StatusOK {
		t.Fatalf("status %d: %s", r.status, r.body)
	}
	if ct := r.header.Get("Content-Type"); ct != "application/json" {
		t.Fatalf("Content-Type %q", ct)
	}
	var env envelope
	if err := json.Unmarshal(r.body, &env); err != nil {
		t.Fatalf("decode page: %v: %.200s", err, r.body)
	}
	keys := make([]rowKey, len(env.Data))
	for i, raw := range env.Data {
		if err := json.Unmarshal(raw, &keys[i]); err != nil {
			t.Fatalf("decode record: %v", err)
		}
	}
	return env, keys
}

// walk reads a whole listing in the given style and returns its records'
// keys in the order served. query holds extra parameters.
func walk(t testing.TB, h http.Handler, path, style string, size int, query url.Values) []rowKey {
	t.Helper()
	q := url.Values{}
	for k, v := range query {
		q[k] = v
	}
	q.Set("pagination", style)
	var all []rowKey
	for pages := 0; ; pages++ {
		if pages > 100000 {
			t.Fatalf("%s: no end after %d pages", style, pages)
		}
		switch style {
		case PaginationPage:
			q.Set("page", strconv.Itoa(pages+1))
			q.Set("per_page", strconv.Itoa(size))
		case PaginationOffset:
			q.Set("offset", strconv.Itoa(len(all)))
			q.Set("limit", strconv.Itoa(size))
		case PaginationCursor, PaginationLink:
			q.Set("limit", strconv.Itoa(size))
		}
		r := get(t, h, path+"?"+q.Encode(), nil)
		env, keys := decodePage(t, r)
		all = append(all, keys...)
		switch style {
		case PaginationPage:
			if env.Meta == nil || env.Meta.Page != pages+1 || env.Meta.PerPage != size {
				t.Fatalf("page meta %+v", env.Meta)
			}
			if pages+1 >= env.Meta.TotalPages {
				if len(all) != env.Meta.Total {
					t.Fatalf("walked %d records, meta total %d", len(all), env.Meta.Total)
				}
				return all
			}
		case PaginationOffset:
			if env.Meta == nil || env.Meta.Offset != len(all)-len(keys) || env.Meta.Limit != size {
				t.Fatalf("offset meta %+v", env.Meta)
			}
			if len(all) >= env.Meta.Total {
				return all
			}
		case PaginationCursor:
			if env.NextCursor == nil {
				return all
			}
			if len(keys) == 0 {
				t.Fatalf("empty page with a next_cursor")
			}
			q.Set("cursor", *env.NextCursor)
		case PaginationLink:
			next := nextLinkOf(t, r.header.Get("Link"))
			if next == "" {
				return all
			}
			u, err := url.Parse(next)
			if err != nil || !u.IsAbs() {
				t.Fatalf("Link target %q is not an absolute URL", next)
			}
			q = u.Query()
		}
	}
}

var linkNext = regexp.MustCompile(`^<([^>]+)>; rel="next"$`)

func nextLinkOf(t testing.TB, header string) string {
	t.Helper()
	if header == "" {
		return ""
	}
	m := linkNext.FindStringSubmatch(header)
	if m == nil {
		t.Fatalf("Link header %q is not <url>; rel=\"next\"", header)
	}
	return m[1]
}

// wantKeys is the listing a client should see: every record by id, or
// those updated at or after since by (updated_at, id).
func wantKeys(keys []rowKey, since *time.Time) []rowKey {
	out := slices.Clone(keys)
	if since == nil {
		slices.SortFunc(out, func(a, b rowKey) int { return cmp.Compare(a.ID, b.ID) })
		return out
	}
	out = slices.DeleteFunc(out, func(k rowKey) bool { return mustTime(k.UpdatedAt).Before(*since) })
	slices.SortFunc(out, func(a, b rowKey) int {
		return cmp.Or(mustTime(a.UpdatedAt).Compare(mustTime(b.UpdatedAt)), cmp.Compare(a.ID, b.ID))
	})
	return out
}

func mustTime(s string) time.Time {
	t, err := time.Parse(time.RFC3339Nano, s)
	if err != nil {
		panic(fmt.Sprintf("timestamp %q: %v", s, err))
	}
	return t
}

func contactKeys(cs []Contact) []rowKey {
	out := make([]rowKey, len(cs))
	for i, c := range cs {
		out[i] = rowKey{ID: c.ID, UpdatedAt: c.UpdatedAt}
	}
	return out
}

func companyKeys(cs []Company) []rowKey {
	out := make([]rowKey, len(cs))
	for i, c := range cs {
		out[i] = rowKey{ID: c.ID, UpdatedAt: c.UpdatedAt}
	}
	return out
}

// emailRE is a plain valid-email check, applied after trim and lower-casing.
var emailRE = regexp.MustCompile(`^[a-z0-9._%+-]+@[a-z0-9-]+(\.[a-z0-9-]+)*\.[a-z]{2,}$`)

// schemaProblem checks one served contact the way the contacts JSON schema
// does and returns the first violation, "" when it is valid.
func schemaProblem(raw json.RawMessage) string {
	var m map[string]any
	if err := json.Unmarshal(raw, &m); err != nil {
		return "not an object"
	}
	for _, k := range []string{"id", "uuid", "first_name", "last_name", "email", "status", "score", "opt_in", "created_at", "updated_at"} {
		if _, ok := m[k]; !ok {
			return "missing " + k
		}
	}
	if _, ok := m["id"].(float64); !ok {
		return "id not a number"
	}
	email, ok := m["email"].(string)
	if !ok || !emailRE.MatchString(strings.ToLower(strings.TrimSpace(email))) {
		return "email"
	}
	score, ok := m["score"].(float64)
	if !ok {
		return "score type"
	}
	if score < 0 || score > 100 {
		return "score range"
	}
	if !slices.Contains(ContactStatuses(), fmt.Sprint(m["status"])) {
		return "status enum"
	}
	if optIn, _ := m["opt_in"].(bool); optIn {
		if _, ok := m["opt_in_at"].(string); !ok {
			return "opt_in_at"
		}
	} else if _, ok := m["opt_in_at"]; ok {
		return "opt_in_at without opt_in"
	}
	return ""
}
