package sandbox

import (
	"bytes"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"net/http"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"time"
)

// DeletedCustomer is what the change feed serves for a deleted customer
// (GET /v1/customers?updated_since=…&include_deleted=true): its id, the
// version the delete gave it, and when it was deleted.
type DeletedCustomer struct {
	ID        string `json:"id"`
	Deleted   bool   `json:"deleted"`
	Version   int    `json:"version"`
	UpdatedAt string `json:"updated_at"`
}

// changeList is the answer to a change-feed request.
type changeList struct {
	Data       []any  `json:"data"`
	HasMore    bool   `json:"has_more"`
	NextCursor string `json:"next_cursor,omitempty"`
}

// change is one entry of the feed: a live customer or a deletion.
type change struct {
	at   string // updated_at, timestampLayout: sorts as time
	id   string
	item any
}

// listChanges is GET /v1/customers?updated_since=T[&include_deleted=true]
// [&limit=N][&cursor=TOKEN]: the customers changed at or after T (an RFC
// 3339 time), and with include_deleted the deletions, ordered by
// (updated_at, id), limit at a time; next_cursor continues the feed.
// Called with s.wmu held.
func (s *Server) listChanges(q url.Values) reply {
	since, err := time.Parse(time.RFC3339Nano, q.Get("updated_since"))
	if err != nil {
		return failure(http.StatusBadRequest, ErrorTypeInvalidRequest, "updated_since",
			"updated_since: %q is not an RFC 3339 time", q.Get("updated_since")).reply()
	}
	limit, err := intParam(q, "limit", DefaultCustomerListLimit, 1)
	if err != nil {
		return failure(http.StatusBadRequest, ErrorTypeInvalidRequest, "limit", "%v", err).reply()
	}
	limit = min(limit, MaxCustomerListLimit)
	afterAt, afterID := "", ""
	if tok := q.Get("cursor"); tok != "" {
		b, err := base64.RawURLEncoding.DecodeString(tok)
		at, id, ok := strings.Cut(string(b), "|")
		if err != nil || !ok {
			return failure(http.StatusBadRequest, ErrorTypeInvalidRequest, "cursor", "cursor: %q is not a cursor this API gave", tok).reply()
		}
		afterAt, afterID = at, id
	}
	from := since.UTC().Format(timestampLayout)
	// Only the entries after the cursor are sorted, and only the page's
	// are copied: each page costs one pass over the customers.
	later := func(at, id string) bool {
		return at >= from && (afterAt == "" || at > afterAt || at == afterAt && id > afterID)
	}
	var feed []change
	for _, id := range s.ws.ids {
		if c := s.ws.byID[id]; later(c.UpdatedAt, id) {
			feed = append(feed, change{at: c.UpdatedAt, id: id, item: c})
		}
	}
	if q.Get("include_deleted") == "true" {
		for id, d := range s.ws.deleted {
			if later(d.UpdatedAt, id) {
				feed = append(feed, change{at: d.UpdatedAt, id: id, item: d})
			}
		}
	}
	slices.SortFunc(feed, func(a, b change) int {
		if c := strings.Compare(a.at, b.at); c != 0 {
			return c
		}
		return strings.Compare(a.id, b.id)
	})
	out := changeList{Data: []any{}}
	for _, c := range feed {
		if len(out.Data) == limit {
			out.HasMore = true
			last := feed[limit-1]
			out.NextCursor = base64.RawURLEncoding.EncodeToString([]byte(last.at + "|" + last.id))
			break
		}
		item := c.item
		if live, ok := item.(*Customer); ok {
			item = live.clone()
		}
		out.Data = append(out.Data, item)
	}
	return jsonReply(http.StatusOK, out)
}

// notify sends the change event of a customer to Options.Webhooks, from a
// goroutine (the write does not wait for it). Called with s.wmu held.
func (s *Server) notify(typ string, data any) {
	hook := s.opts.Webhooks
	if hook.URL == "" {
		return
	}
	s.ws.eventSeq++
	id := fmt.Sprintf("evt_%08d", s.ws.eventSeq)
	body, err := json.Marshal(map[string]any{"id": id, "type": typ, "data": data})
	if err != nil {
		return
	}
	go func() {
		for try := 0; try < 3; try++ {
			if try > 0 {
				time.Sleep(time.Duration(try) * 100 * time.Millisecond)
			}
			ts := strconv.FormatInt(time.Now().Unix(), 10)
			h := hmac.New(sha256.New, []byte(hook.Secret))
			h.Write([]byte(ts + "."))
			h.Write(body)
			req, err := http.NewRequest(http.MethodPost, hook.URL, bytes.NewReader(body))
			if err != nil {
				return
			}
			req.Header.Set("Content-Type", "application/json")
			req.Header.Set("X-Tether-Signature", "t="+ts+",v1="+hex.EncodeToString(h.Sum(nil)))
			req.Header.Set("X-Tether-Delivery", id)
			resp, err := http.DefaultClient.Do(req)
			if err != nil {
				continue
			}
			resp.Body.Close()
			if resp.StatusCode < 300 {
				return
			}
		}
	}()
}
