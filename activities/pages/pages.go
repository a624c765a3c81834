// Package pages is the claim-check of a sync run: a fetched page's raw
// records are staged once in PostgreSQL and kept in a worker-local cache,
// and only a reference (syncstep.PageRef) travels through workflow history.
// A page then goes through the steps in stages, each computed once from
// the stage before it: raw (fetch), validated (package validate),
// transformed (package transform), applied (package apply). When a step
// lands on another worker, or after a crash, the page is rebuilt from the
// staged copy; validation and transformation are pure functions of the
// staged records and the pinned definition, so the rebuilt page is the
// same page.
package pages

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"sync"

	"github.com/tetherflow/tether/activities/connector"
	"github.com/tetherflow/tether/activities/store"
	"github.com/tetherflow/tether/activities/syncstep"
)

// DefaultCachePages bounds the cache unless told otherwise.
const DefaultCachePages = 64

// Page is one page on its way through the steps. Hold Mu while reading or
// computing a stage.
type Page struct {
	Mu  sync.Mutex
	Raw []json.RawMessage

	// The validated stage (package validate).
	Validated  bool
	Skipped    int
	Invalid    int
	ValidCount int // len(Valid) when validated; Valid is dropped once transformed
	Valid      []Valid

	// The transformed stage (package transform).
	Transformed      bool
	TransformInvalid int
	Rows             []connector.Row
	RowIndex         []int    // Rows[i] came from Raw[RowIndex[i]]
	RowKeys          []string // Rows[i]'s record key
	// Dropped counts, per field, the rows carrying a field no destination
	// stores (a Go Transform's extra fields).
	Dropped map[string]int
	// Unread counts, per row field, the records lacking the source path the
	// mapping reads into it, a path the schema does not describe.
	Unread map[string]int
}

// Valid is a record that passed validation.
type Valid struct {
	Index int
	Rec   map[string]any
	Key   string
}

// Quarantine is the quarantine entry of record index of the page ref, with
// the step that refused it and why.
func Quarantine(integration string, ref syncstep.PageRef, index int, raw json.RawMessage, key, step string, errs []store.ErrorDetail) store.QuarantineEntry {
	return store.QuarantineEntry{Integration: integration, RunID: ref.RunID, Page: ref.Page, Index: index,
		Key: key, Step: step, Payload: raw, Errors: errs}
}

// Pages stages pages and keeps the recent ones in memory, evicting the
// oldest beyond its capacity. The cache is an optimisation only: every
// page can be rebuilt from its staged copy.
type Pages struct {
	store *store.Store
	mu    sync.Mutex
	cap   int
	pages map[syncstep.PageRef]*Page
	order []syncstep.PageRef
}

// New returns the claim-check of a worker, staging in st and caching at
// most capacity pages (DefaultCachePages when not positive).
func New(st *store.Store, capacity int) *Pages {
	if capacity <= 0 {
		capacity = DefaultCachePages
	}
	return &Pages{store: st, cap: capacity, pages: make(map[syncstep.PageRef]*Page, capacity)}
}

// NewToken returns a fresh random token naming one fetch's staged copy
// (syncstep.PageRef.Stage).
func NewToken() string {
	var b [8]byte
	_, _ = rand.Read(b[:])
	return hex.EncodeToString(b[:])
}

// Stage keeps a page's records for the run's later steps: in PostgreSQL
// (the copy a rebuilt page reads) and in the cache.
func (p *Pages) Stage(ctx context.Context, ref syncstep.PageRef, records []json.RawMessage) error {
	if err := p.store.StagePage(ctx, ref.RunID, ref.Page, ref.Stage, records); err != nil {
		return err
	}
	p.put(ref, &Page{Raw: records})
	return nil
}

// Get returns the cached page or rebuilds it from the staged copy.
func (p *Pages) Get(ctx context.Context, ref syncstep.PageRef) (*Page, error) {
	p.mu.Lock()
	pg, ok := p.pages[ref]
	p.mu.Unlock()
	if ok {
		return pg, nil
	}
	raw, err := p.store.LoadPage(ctx, ref.RunID, ref.Page, ref.Stage)
	if err != nil {
		return nil, err
	}
	pg = &Page{Raw: raw}
	p.put(ref, pg)
	return pg, nil
}

func (p *Pages) put(ref syncstep.PageRef, pg *Page) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if _, ok := p.pages[ref]; !ok {
		p.order = append(p.order, ref)
	}
	p.pages[ref] = pg
	for len(p.order) > p.cap {
		delete(p.pages, p.order[0])
		p.order = p.order[1:]
	}
}

// Drop forgets a page once its last step applied it.
func (p *Pages) Drop(ref syncstep.PageRef) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if _, ok := p.pages[ref]; !ok {
		return
	}
	delete(p.pages, ref)
	for i, r := range p.order {
		if r == ref {
			p.order = append(p.order[:i], p.order[i+1:]...)
			break
		}
	}
}

// DropRun forgets every page of a run once it ended.
func (p *Pages) DropRun(runID string) {
	p.mu.Lock()
	defer p.mu.Unlock()
	kept := p.order[:0]
	for _, r := range p.order {
		if r.RunID == runID {
			delete(p.pages, r)
			continue
		}
		kept = append(kept, r)
	}
	p.order = kept
}
