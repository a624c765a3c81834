package integration

import (
	"context"
	"net/http"
	"strings"
	"sync/atomic"
	"testing"

	"github.com/tetherflow/tether/activities/connector/httpsource"
	"github.com/tetherflow/tether/activities/integration"
	"github.com/tetherflow/tether/activities/lib/failure"
	"github.com/tetherflow/tether/activities/lib/progress"
	"github.com/tetherflow/tether/starters/sandbox"
	"github.com/tetherflow/tether/workers/config"
	"github.com/tetherflow/tether/workers/integrations"
	"github.com/tetherflow/tether/workflows/datasync"
)

// lostLink drops the Link header from the n-th contacts page: the API
// "forgets" to say there is a next page, as the one in issue 14 did.
type lostLink struct {
	next http.RoundTripper
	n    int64
	seen atomic.Int64
}

func (l *lostLink) RoundTrip(req *http.Request) (*http.Response, error) {
	resp, err := l.next.RoundTrip(req)
	if err == nil && strings.HasPrefix(req.URL.Path, "/v1/contacts") && l.seen.Add(1) == l.n {
		resp.Header.Del("Link")
	}
	return resp, err
}

// linkContacts reads crm-contacts in full by Link headers, with the short
// read policy given.
func linkContacts(policy string) func(config.Connection) []integration.Definition {
	return func(crm config.Connection) []integration.Definition {
		d := integrations.CRMContacts(crm)
		src := *d.Source.HTTP
		src.Pagination = httpsource.Pagination{Style: httpsource.StyleLink}
		src.Query = map[string]string{"pagination": "link"}
		src.Incremental = httpsource.Incremental{}
		d.Source.HTTP = &src
		d.CursorField = ""
		d.ShortRead = policy
		return []integration.Definition{d}
	}
}

// TestShortRead_ALostNextLinkIsCaught: an API that stops sending its
// next link after 2 of 5 pages, while announcing 5000 records
// (X-Total-Count), fails the run by default, saying how many records were
// not read; under short_read: warn the run completes with the warning,
// which tether runs shows.
func TestShortRead_ALostNextLinkIsCaught(t *testing.T) {
	for _, policy := range []string{"", integration.ShortReadWarn} {
		t.Run("policy "+policy, func(t *testing.T) {
			lost := &lostLink{n: 2}
			s := newStack(t, stackOptions{
				sandbox:   sandbox.Options{Seed: 21, Contacts: 5000},
				defs:      linkContacts(policy),
				transport: func(rt http.RoundTripper) http.RoundTripper { lost.next = rt; return lost },
			})
			res, err := s.sync(datasync.Input{Integration: "crm-contacts"})
			const want = "the source announced 5000 records for the read but it ended after 2000: 3000 were not read"
			if policy == "" {
				if !failure.IsType(err, failure.TypeSourceShortRead) || !strings.Contains(err.Error(), want) {
					t.Fatalf("sync error = %v, want %s saying %q", err, failure.TypeSourceShortRead, want)
				}
				return
			}
			if err != nil || res.Status != progress.StatusCompleted || len(res.Warnings) != 1 || !strings.Contains(res.Warnings[0], want) {
				t.Fatalf("sync = %+v, %v; want completed with the warning %q", res, err, want)
			}
			runs, err := s.store.ListRuns(context.Background(), "crm-contacts", 1)
			if err != nil || len(runs) != 1 || !strings.Contains(runs[0].Error, "warning: ") || !strings.Contains(runs[0].Error, want) {
				t.Errorf("tether runs: %+v (%v), want the warning in its error column", runs, err)
			}
		})
	}
}
