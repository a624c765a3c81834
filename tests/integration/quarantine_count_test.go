package integration

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"net/http"
	"strings"
	"sync"
	"testing"

	"github.com/tetherflow/tether/activities/connector/httpsource"
	"github.com/tetherflow/tether/activities/integration"
	"github.com/tetherflow/tether/activities/store"
	"github.com/tetherflow/tether/starters/sandbox"
	"github.com/tetherflow/tether/workers/config"
	"github.com/tetherflow/tether/workers/integrations"
	"github.com/tetherflow/tether/workflows/datasync"
)

// repeatingSource answers the second page of contacts with the first
// page's records added: a source that gives records twice, as an
// unstable sort across pages does.
type repeatingSource struct {
	next  http.RoundTripper
	mu    sync.Mutex
	pages int
	first []json.RawMessage
}

func (r *repeatingSource) RoundTrip(req *http.Request) (*http.Response, error) {
	resp, err := r.next.RoundTrip(req)
	if err != nil || !strings.HasPrefix(req.URL.Path, "/v1/contacts") || resp.StatusCode != http.StatusOK {
		return resp, err
	}
	b, err := io.ReadAll(resp.Body)
	resp.Body.Close()
	if err != nil {
		return nil, err
	}
	var body map[string]json.RawMessage
	var data []json.RawMessage
	if json.Unmarshal(b, &body) == nil && json.Unmarshal(body["data"], &data) == nil {
		r.mu.Lock()
		r.pages++
		switch r.pages {
		case 1:
			r.first = data
		case 2:
			data = append(data, r.first...)
			body["data"], _ = json.Marshal(data)
			b, _ = json.Marshal(body)
		}
		r.mu.Unlock()
	}
	resp.Body = io.NopCloser(bytes.NewReader(b))
	resp.ContentLength = int64(len(b))
	resp.Header.Del("Content-Length")
	resp.Header.Del("ETag")
	return resp, nil
}

// TestQuarantine_CountsEqualTheEntries: when the source gives some records
// twice, invalid ones among them, the run counts each invalid record once,
// as many as its quarantine entries, and their repeats as skipped.
func TestQuarantine_CountsEqualTheEntries(t *testing.T) {
	src := &repeatingSource{}
	s := newStack(t, stackOptions{
		sandbox:   sandbox.Options{Seed: 21, Contacts: 3000, Faults: sandbox.Faults{InvalidRate: 0.02}},
		transport: func(rt http.RoundTripper) http.RoundTripper { src.next = rt; return src },
		// Full reads by page number, no cursor: nothing skips a repeat
		// before it is validated.
		defs: func(crm config.Connection) []integration.Definition {
			d := integrations.CRMContacts(crm)
			d.CursorField, d.Source.HTTP.Incremental = "", httpsource.Incremental{}
			return []integration.Definition{d}
		},
	})
	res := s.mustSync(datasync.Input{Integration: "crm-contacts"})
	entries, err := s.store.ListQuarantine(context.Background(), store.QuarantineFilter{Integration: "crm-contacts", RunID: res.RunID, PendingOnly: true})
	if err != nil {
		t.Fatal(err)
	}
	c := res.Counts
	if c.Invalid == 0 || c.Invalid != len(entries) {
		t.Errorf("the run counted %d invalid; the quarantine holds %d of its entries", c.Invalid, len(entries))
	}
	// Page 1's records come again on page 2: its invalid ones are
	// skipped there (their entries stay on page 1), its valid ones are
	// applied again as unchanged.
	repeated, onFirst := len(src.first), 0
	for _, e := range entries {
		if e.Page == 1 {
			onFirst++
		}
	}
	if c.Fetched != 3000+repeated || onFirst == 0 || c.Skipped != onFirst || c.Unchanged != repeated-onFirst {
		t.Errorf("fetched %d, skipped %d, unchanged %d; want %d fetched (%d repeated), the %d invalid repeats skipped and the rest unchanged",
			c.Fetched, c.Skipped, c.Unchanged, 3000+repeated, repeated, onFirst)
	}
	t.Logf("counts %+v, %d quarantine entries", c, len(entries))
}
