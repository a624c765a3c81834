package httpsource

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/tetherflow/tether/activities/connector"
	"github.com/tetherflow/tether/activities/lib/cursor"
	"github.com/tetherflow/tether/activities/lib/httpclient/httpclienttest"
)

// fakeAPI serves a dataset of n records ({"id":i,...}) in the pagination
// style asked for, over real loopback HTTP, and records every request.
type fakeAPI struct {
	n          int
	style      string
	capPage    int  // page style: the server never returns more than this per page (0 = no cap)
	totalPages bool // page style: report meta.total_pages
	// before, when set, may answer the request itself (return true).
	before func(w http.ResponseWriter, r *http.Request, call int) bool

	mu       sync.Mutex
	requests []*http.Request
}

func (a *fakeAPI) calls() int {
	a.mu.Lock()
	defer a.mu.Unlock()
	return len(a.requests)
}

func (a *fakeAPI) request(i int) *http.Request {
	a.mu.Lock()
	defer a.mu.Unlock()
	return a.requests[i]
}

func (a *fakeAPI) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	a.mu.Lock()
	a.requests = append(a.requests, r.Clone(context.Background()))
	call := len(a.requests)
	a.mu.Unlock()
	if a.before != nil && a.before(w, r, call) {
		return
	}
	q := r.URL.Query()
	atoi := func(k string, def int) int {
		if v, err := strconv.Atoi(q.Get(k)); err == nil {
			return v
		}
		return def
	}
	from, limit := 0, a.n
	body := map[string]any{}
	switch a.style {
	case StylePage:
		limit = atoi("per_page", 10)
		if a.capPage > 0 && limit > a.capPage {
			limit = a.capPage
		}
		from = (atoi("page", 1) - 1) * limit
		if a.totalPages {
			body["meta"] = map[string]any{"total_pages": (a.n + limit - 1) / limit}
		}
	case StyleOffset:
		limit = atoi("limit", 10)
		from = atoi("offset", 0)
	case StyleCursor:
		limit = atoi("limit", 10)
		if c := q.Get("cursor"); c != "" {
			from, _ = strconv.Atoi(strings.TrimPrefix(c, "c"))
		}
		if from+limit < a.n {
			body["next_cursor"] = fmt.Sprintf("c%d", from+limit)
		} else {
			body["next_cursor"] = nil
		}
	case StyleLink:
		limit = atoi("limit", 10)
		from = atoi("after", 0)
		if from+limit < a.n {
			// A relative target with a comma in its query: both must survive.
			w.Header().Add("Link", fmt.Sprintf(`</v1/items?fields=id,name&after=%d&limit=%d>; rel="next last", <https://elsewhere.example/docs>; rel="help"`, from+limit, limit))
		}
	}
	recs := []json.RawMessage{}
	for i := from; i < from+limit && i < a.n; i++ {
		recs = append(recs, json.RawMessage(fmt.Sprintf(`{"id": %d, "name": "n%d"}`, i, i)))
	}
	body["data"] = recs
	w.Header().Set("Content-Type", "application/json; charset=utf-8")
	w.Header().Set("ETag", fmt.Sprintf(`"p-%d-%d"`, from, limit))
	_ = json.NewEncoder(w).Encode(body)
}

// newTestSource starts h on loopback and builds a Source for it. When clk is
// set, the Source reads time from it and sleeps through it.
func newTestSource(t *testing.T, h http.Handler, cfg Config, clk *httpclienttest.Clock, opts ...Option) (*Source, *httptest.Server) {
	t.Helper()
	srv := httptest.NewServer(h)
	t.Cleanup(srv.Close)
	if cfg.BaseURL == "" {
		cfg.BaseURL = srv.URL
	}
	if cfg.Path == "" {
		cfg.Path = "/v1/items"
	}
	if cfg.Retry.WaitMin == 0 {
		cfg.Retry.WaitMin = time.Millisecond
		cfg.Retry.WaitMax = 2 * time.Second
	}
	if clk != nil {
		opts = append(opts, WithClock(clk.Now), func(s *Source) { s.sleep = clk.Sleep })
	}
	s, err := New("test-items", cfg, opts...)
	if err != nil {
		t.Fatalf("New: %v", err)
	}
	return s, srv
}

// readAll fetches page after page until Done and returns every record id.
func readAll(t *testing.T, s *Source, req connector.Request) ([]int, int) {
	t.Helper()
	var ids []int
	pages := 0
	for {
		page, err := s.Fetch(context.Background(), req)
		if err != nil {
			t.Fatalf("Fetch page %d at %+v: %v", pages+1, req.Position, err)
		}
		pages++
		if page.RecordCount != len(page.Records) {
			t.Fatalf("page %d: RecordCount %d, len(Records) %d", pages, page.RecordCount, len(page.Records))
		}
		for _, r := range page.Records {
			var rec struct{ ID int }
			if err := json.Unmarshal(r, &rec); err != nil {
				t.Fatalf("record %s: %v", r, err)
			}
			ids = append(ids, rec.ID)
		}
		if page.Done {
			return ids, pages
		}
		if pages > 100 {
			t.Fatalf("no last page after 100 pages")
		}
		req.Position = page.Next
	}
}

// memoryMemos is a MemoStore in memory.
type memoryMemos struct {
	mu    sync.Mutex
	memos map[string]cursor.Memo
	err   error
}

func (m *memoryMemos) Recall(_ context.Context, integration, cacheKey string) (cursor.Memo, bool, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.err != nil {
		return cursor.Memo{}, false, m.err
	}
	memo, ok := m.memos[integration+" "+cacheKey]
	return memo, ok, nil
}

func (m *memoryMemos) remember(integration string, p connector.Page) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.memos == nil {
		m.memos = map[string]cursor.Memo{}
	}
	m.memos[integration+" "+p.CacheKey] = cursor.Memo{ETag: p.ETag, Next: p.Next, Done: p.Done, RecordCount: p.RecordCount}
}
