package sandbox

import (
	"cmp"
	"fmt"
	"maps"
	"math"
	"math/rand/v2"
	"net/http"
	"slices"
	"sync"
	"time"
)

// Resource names accepted by Touch, Add and the /admin endpoints; they are
// also the collection paths /v1/contacts and /v1/companies.
const (
	ResourceContacts  = "contacts"
	ResourceCompanies = "companies"
)

// Stats counts the API requests a Server answered (everything but /admin
// and /healthz).
type Stats struct {
	// Total is the number of API requests answered.
	Total int `json:"total"`
	// ByStatus counts them by response status.
	ByStatus map[int]int `json:"by_status"`
	// NotModified counts 304 answers to If-None-Match.
	NotModified int `json:"not_modified"`
	// RateLimited counts 429 answers of the rate limit (not injected 429s).
	RateLimited int `json:"rate_limited"`
	// TokensIssued counts oauth2 access tokens issued.
	TokensIssued int `json:"tokens_issued"`
}

// table is one resource's served form: positions are ordered by id, and
// byUpd orders the same positions by (updated_at, id).
type table struct {
	ids   []int64
	upd   []int64 // updated_at, unix milliseconds
	raw   [][]byte
	byUpd []int32
}

func (t *table) reindex() {
	t.byUpd = t.byUpd[:0]
	for i := range t.ids {
		t.byUpd = append(t.byUpd, int32(i))
	}
	slices.SortFunc(t.byUpd, func(a, b int32) int {
		return cmp.Or(cmp.Compare(t.upd[a], t.upd[b]), cmp.Compare(a, b))
	})
}

// maxUpd is the latest updated_at in the table, 0 when empty.
func (t *table) maxUpd() int64 {
	if len(t.byUpd) == 0 {
		return 0
	}
	return t.upd[t.byUpd[len(t.byUpd)-1]]
}

// Server is an in-memory CRM API (contacts and companies to read) and
// billing API (customers and notifications to write). It is safe for
// concurrent use.
type Server struct {
	opts    Options
	vocab   *vocab
	handler http.Handler

	data        sync.RWMutex // guards the fields down to mutations
	contacts    []Contact    // clean records, by id; served through served()
	defects     []Defect     // per contact position
	invalid     int          // contacts with a defect
	invalidRate float64      // the rate defects were chosen for
	companies   []Company
	ct, co      table // contacts, companies
	mutations   uint64

	mu          sync.Mutex // guards the fields below
	faults      Faults
	rng         *rand.Rand
	stats       Stats
	windowStart time.Time
	windowCount int
	tokens      map[string]time.Time // oauth2 access token -> expiry
	wrng        *rand.Rand           // WriteFaults.ErrorRate draws
	writesSeen  int                  // writes matching WriteFaults since SetFaults

	wmu sync.Mutex // guards ws
	ws  writeStore // customers, notifications, idempotency keys, WriteStats

	bufs sync.Pool // *[]byte page buffers
}

// New builds a Server from opts, generating its data from opts.Seed.
func New(opts Options) (*Server, error) {
	o, err := opts.withDefaults()
	if err != nil {
		return nil, fmt.Errorf("sandbox options: %w", err)
	}
	s := &Server{
		opts:   o,
		vocab:  newVocab(),
		faults: o.Faults,
		rng:    rngFor(o.Seed, streamFaults, 0),
		wrng:   rngFor(o.Seed, streamWriteFaults, 0),
		stats:  Stats{ByStatus: map[int]int{}},
		tokens: map[string]time.Time{},
		ws:     newWriteStore(),
	}
	nco := max(1, o.Contacts/10)
	created, updated := timeline(o.Seed, streamCompany, nco)
	s.companies = make([]Company, nco)
	for i := range nco {
		s.companies[i] = s.vocab.newCompany(o.Seed, int64(i+1), created[i], updated[i])
	}
	created, updated = timeline(o.Seed, streamContact, o.Contacts)
	s.contacts = make([]Contact, o.Contacts)
	for i := range o.Contacts {
		s.contacts[i] = s.vocab.newContact(o.Seed, int64(i+1), nco, created[i], updated[i])
	}
	s.defects = make([]Defect, o.Contacts)
	s.chooseInvalid(o.Faults.InvalidRate)
	if err := s.encodeAll(); err != nil {
		return nil, err
	}
	s.handler = http.HandlerFunc(s.serveHTTP)
	return s, nil
}

// Handler serves the API (/v1/*, /oauth/token: rate-limited and counted in
// Stats), the admin endpoints and /healthz (neither limited nor counted).
func (s *Server) Handler() http.Handler { return s.handler }

// SetFaults replaces the fault injection (out-of-range values are clamped;
// FailNext, NonJSONNext and the write counts restart from the given
// values, and FailEvery and LostResponseEvery count writes from here). A
// new InvalidRate re-chooses the schema-invalid contacts without changing
// their updated_at, so set it before a sync reads them.
func (s *Server) SetFaults(f Faults) {
	f = f.normalized()
	s.mu.Lock()
	s.faults = f
	s.writesSeen = 0
	s.mu.Unlock()
	s.data.Lock()
	defer s.data.Unlock()
	if f.InvalidRate == s.invalidRate {
		return
	}
	before := slices.Clone(s.defects)
	s.chooseInvalid(f.InvalidRate)
	for i, d := range s.defects {
		if d == before[i] {
			continue
		}
		b, err := encodeContact(served(s.contacts[i], d))
		if err != nil {
			panic(err) // the records are generated: encoding cannot fail
		}
		s.ct.raw[i] = b
	}
}

// Faults returns the fault injection in force (with FailNext, NonJSONNext,
// Writes.FailNext and Writes.LostResponseNext counting down as they are
// used).
func (s *Server) Faults() Faults {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.faults
}

// Contacts returns every contact as it is currently served, ordered by id.
// The slice and the records are copies.
func (s *Server) Contacts() []Contact {
	s.data.RLock()
	defer s.data.RUnlock()
	out := make([]Contact, len(s.contacts))
	for i, c := range s.contacts {
		c = served(c, s.defects[i])
		c.Tags = slices.Clone(c.Tags)
		if c.OptInAt != nil {
			at := *c.OptInAt
			c.OptInAt = &at
		}
		out[i] = c
	}
	return out
}

// Companies returns every company as it is currently served, ordered by id.
func (s *Server) Companies() []Company {
	s.data.RLock()
	defer s.data.RUnlock()
	return slices.Clone(s.companies)
}

// InvalidContactIDs returns the ids of the contacts currently served in
// violation of the schema, sorted.
func (s *Server) InvalidContactIDs() []int64 {
	s.data.RLock()
	defer s.data.RUnlock()
	out := make([]int64, 0, s.invalid)
	for i, d := range s.defects {
		if d != DefectNone {
			out = append(out, s.contacts[i].ID)
		}
	}
	return out
}

// Stats returns a copy of the request counters.
func (s *Server) Stats() Stats {
	s.mu.Lock()
	defer s.mu.Unlock()
	st := s.stats
	st.ByStatus = maps.Clone(s.stats.ByStatus)
	return st
}

// Touch updates n records of resource ("contacts" or "companies"), chosen
// deterministically from the seed and the number of earlier mutations: each
// gets a changed field (a contact's score, sometimes its status; a
// company's head count) and one new updated_at strictly later than any
// existing one. It returns their ids, sorted; nil for an unknown resource.
// Schema-invalid contacts keep their defect.
func (s *Server) Touch(resource string, n int) []int64 {
	s.data.Lock()
	defer s.data.Unlock()
	t := s.table(resource)
	if t == nil || n <= 0 || len(t.ids) == 0 {
		return nil
	}
	r := rngFor(s.opts.Seed, streamTouch, s.mutations)
	s.mutations++
	stamp := s.nextStamp(t)
	at := formatMilli(stamp)
	positions := sample(r, len(t.ids), n)
	ids := make([]int64, len(positions))
	for k, i := range positions {
		ids[k] = t.ids[i]
		t.upd[i] = stamp
		var err error
		switch resource {
		case ResourceContacts:
			c := &s.contacts[i]
			c.Score = (c.Score + 1 + r.IntN(100)) % 101
			if r.IntN(10) < 3 {
				c.Status = ContactStatuses()[(slices.Index(ContactStatuses(), c.Status)+1+r.IntN(2))%3]
			}
			c.UpdatedAt = at
			t.raw[i], err = encodeContact(served(*c, s.defects[i]))
		case ResourceCompanies:
			c := &s.companies[i]
			delta := 1 + r.IntN(50)
			if c.Employees > delta && r.IntN(2) == 0 {
				delta = -delta
			}
			c.Employees += delta
			c.UpdatedAt = at
			t.raw[i], err = encodeCompany(*c)
		}
		if err != nil {
			panic(err) // the records are generated: encoding cannot fail
		}
	}
	t.reindex()
	return ids
}

// Add creates n new records of resource ("contacts" or "companies") with
// the next ids, created and updated at one time strictly later than any
// existing updated_at, and returns their ids; nil for an unknown resource.
// New contacts join the schema-invalid ones as needed to keep exactly
// round(n*InvalidRate) of them.
func (s *Server) Add(resource string, n int) []int64 {
	s.data.Lock()
	defer s.data.Unlock()
	t := s.table(resource)
	if t == nil || n <= 0 {
		return nil
	}
	s.mutations++
	stamp := s.nextStamp(t)
	first := int64(len(t.ids)) + 1
	if len(t.ids) > 0 {
		first = t.ids[len(t.ids)-1] + 1
	}
	from := len(t.ids)
	ids := make([]int64, n)
	for k := range n {
		id := first + int64(k)
		ids[k] = id
		t.ids = append(t.ids, id)
		t.upd = append(t.upd, stamp)
		switch resource {
		case ResourceContacts:
			s.contacts = append(s.contacts, s.vocab.newContact(s.opts.Seed, id, len(s.companies), stamp, stamp))
			s.defects = append(s.defects, DefectNone)
		case ResourceCompanies:
			s.companies = append(s.companies, s.vocab.newCompany(s.opts.Seed, id, stamp, stamp))
		}
	}
	t.raw = append(t.raw, make([][]byte, n)...)
	var err error
	switch resource {
	case ResourceContacts:
		s.extendInvalid(from)
		err = s.encodeContacts(from)
	case ResourceCompanies:
		err = s.encodeCompanies(from)
	}
	if err != nil {
		panic(err) // the records are generated: encoding cannot fail
	}
	t.reindex()
	return ids
}

func (s *Server) table(resource string) *table {
	switch resource {
	case ResourceContacts:
		return &s.ct
	case ResourceCompanies:
		return &s.co
	}
	return nil
}

// nextStamp is the updated_at of a mutation: now, or 1ms after the latest
// existing one if the clock is not past it.
func (s *Server) nextStamp(t *table) int64 {
	return max(s.opts.Now().UnixMilli(), t.maxUpd()+1)
}

// sample draws min(n, size) distinct positions in [0, size), sorted.
func sample(r *rand.Rand, size, n int) []int {
	if n >= size {
		out := make([]int, size)
		for i := range out {
			out[i] = i
		}
		return out
	}
	seen := make(map[int]bool, n)
	out := make([]int, 0, n)
	for len(out) < n {
		i := r.IntN(size)
		if !seen[i] {
			seen[i] = true
			out = append(out, i)
		}
	}
	slices.Sort(out)
	return out
}

// invalidRank orders contacts for the choice of schema-invalid ones.
func (s *Server) invalidRank(id int64) uint64 {
	return mix(s.opts.Seed ^ streamInvalid<<56 ^ uint64(id))
}

func (s *Server) defectFor(id int64) Defect {
	d := defects()
	return d[mix(s.invalidRank(id))%uint64(len(d))]
}

// chooseInvalid makes exactly round(n*rate) contacts schema-invalid: the
// ones of lowest rank.
func (s *Server) chooseInvalid(rate float64) {
	s.invalidRate = rate
	for i := range s.defects {
		s.defects[i] = DefectNone
	}
	s.invalid = 0
	s.pickInvalid(0, int(math.Round(float64(len(s.contacts))*rate)))
}

// extendInvalid tops the invalid contacts up to round(n*rate), choosing
// among the positions from `from` on (the ones just added), so that no
// existing contact changes validity.
func (s *Server) extendInvalid(from int) {
	want := int(math.Round(float64(len(s.contacts)) * s.invalidRate))
	s.pickInvalid(from, want-s.invalid)
}

// pickInvalid gives a defect to the k lowest-ranked contacts at positions
// from `from` on.
func (s *Server) pickInvalid(from, k int) {
	if k <= 0 {
		return
	}
	pos := make([]int, 0, len(s.contacts)-from)
	for i := from; i < len(s.contacts); i++ {
		pos = append(pos, i)
	}
	slices.SortFunc(pos, func(a, b int) int {
		return cmp.Compare(s.invalidRank(s.contacts[a].ID), s.invalidRank(s.contacts[b].ID))
	})
	for _, i := range pos[:min(k, len(pos))] {
		s.defects[i] = s.defectFor(s.contacts[i].ID)
		s.invalid++
	}
}

func (s *Server) encodeAll() error {
	s.ct = table{ids: make([]int64, len(s.contacts)), upd: make([]int64, len(s.contacts)), raw: make([][]byte, len(s.contacts))}
	for i, c := range s.contacts {
		s.ct.ids[i], s.ct.upd[i] = c.ID, parseMilli(c.UpdatedAt)
	}
	s.co = table{ids: make([]int64, len(s.companies)), upd: make([]int64, len(s.companies)), raw: make([][]byte, len(s.companies))}
	for i, c := range s.companies {
		s.co.ids[i], s.co.upd[i] = c.ID, parseMilli(c.UpdatedAt)
	}
	if err := s.encodeContacts(0); err != nil {
		return err
	}
	if err := s.encodeCompanies(0); err != nil {
		return err
	}
	s.ct.reindex()
	s.co.reindex()
	return nil
}

// encodeContacts renders the served JSON of contacts from position `from` on.
func (s *Server) encodeContacts(from int) error {
	for i := from; i < len(s.contacts); i++ {
		b, err := encodeContact(served(s.contacts[i], s.defects[i]))
		if err != nil {
			return err
		}
		s.ct.raw[i] = b
	}
	return nil
}

func (s *Server) encodeCompanies(from int) error {
	for i := from; i < len(s.companies); i++ {
		b, err := encodeCompany(s.companies[i])
		if err != nil {
			return err
		}
		s.co.raw[i] = b
	}
	return nil
}
