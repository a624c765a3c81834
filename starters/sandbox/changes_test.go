package sandbox

import (
	"encoding/json"
	"net/url"
	"strings"
	"testing"
	"time"
)

// The change feed lists what changed at or after updated_since, deletions
// with include_deleted, in (updated_at, id) order, a page at a time.
func TestServer_CustomerChangeFeed(t *testing.T) {
	clock := newFakeClock()
	_, api := newServed(t, Options{Contacts: 10, Now: clock.Now})
	start := clock.Now()
	var ids []string
	for _, e := range []string{"a@example.com", "b@example.com", "c@example.com"} {
		ids = append(ids, api.call("POST", "/v1/customers", cust(e)).customer(t, 201).ID)
	}
	clock.Advance(time.Second)
	mid := clock.Now()
	api.call("PATCH", "/v1/customers/"+ids[0], map[string]any{"name": "Ada"}).customer(t, 200)
	clock.Advance(time.Second)
	api.call("DELETE", "/v1/customers/"+ids[1], nil)

	type entry struct {
		ID      string `json:"id"`
		Deleted bool   `json:"deleted"`
		Version int    `json:"version"`
		Name    string `json:"name"`
	}
	feed := func(since time.Time, extra string) (all []entry) {
		t.Helper()
		cursor := ""
		for page := 0; ; page++ {
			q := "/v1/customers?limit=2&updated_since=" + url.QueryEscape(since.Format(time.RFC3339Nano)) + extra
			if cursor != "" {
				q += "&cursor=" + cursor
			}
			r := api.call("GET", q, nil)
			var l struct {
				Data       []entry `json:"data"`
				HasMore    bool    `json:"has_more"`
				NextCursor string  `json:"next_cursor"`
			}
			if r.status != 200 || json.Unmarshal(r.body, &l) != nil {
				t.Fatalf("GET %s: %d %s", q, r.status, r.body)
			}
			all = append(all, l.Data...)
			if !l.HasMore {
				return all
			}
			if page > 5 || l.NextCursor == "" {
				t.Fatalf("the feed does not end: %s", r.body)
			}
			cursor = l.NextCursor
		}
	}
	show := func(es []entry) string {
		var s []string
		for _, e := range es {
			s = append(s, e.ID+map[bool]string{true: " deleted", false: ""}[e.Deleted])
		}
		return strings.Join(s, ", ")
	}
	if got, want := show(feed(start, "")), ids[2]+", "+ids[0]; got != want {
		t.Errorf("changes since the start: %s, want %s (creation, then the edit)", got, want)
	}
	got := feed(mid, "&include_deleted=true")
	if show(got) != ids[0]+", "+ids[1]+" deleted" || got[0].Name != "Ada" || got[0].Version != 2 || got[1].Version != 2 {
		t.Errorf("changes since the middle, with deletions: %+v", got)
	}
	api.call("GET", "/v1/customers?updated_since=yesterday", nil).wantError(t, 400, ErrorTypeInvalidRequest, "updated_since")
	api.call("GET", "/v1/customers?updated_since="+url.QueryEscape(start.Format(time.RFC3339))+"&cursor=zz", nil).wantError(t, 400, ErrorTypeInvalidRequest, "cursor")
}
