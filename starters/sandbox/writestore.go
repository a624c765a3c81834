package sandbox

import (
	"encoding/json"
	"fmt"
	"maps"
	"slices"
	"strconv"
	"strings"
	"time"
)

// IdempotencyKeyTTL is how long an Idempotency-Key is remembered, from its
// first successful use (as long as Stripe keeps them).
const IdempotencyKeyTTL = 24 * time.Hour

// WriteStats counts the requests of the write API (POST, PUT, PATCH,
// DELETE on /v1/customers... and /v1/notifications), whatever they were
// answered: 401s, 429s and injected failures included. They are also
// counted in Stats.
type WriteStats struct {
	// Total is the number of write requests answered.
	Total int `json:"total"`
	// ByMethod counts them by method, then by response status.
	ByMethod map[string]map[int]int `json:"by_method"`
	// Replays counts answers replayed for a known Idempotency-Key: whole
	// requests and batch items.
	Replays int `json:"replays"`
	// Injected counts writes refused by WriteFaults before being processed.
	Injected int `json:"injected"`
	// LostResponses counts writes processed and then answered 500 by
	// WriteFaults.LostResponseNext or LostResponseEvery.
	LostResponses int `json:"lost_responses"`
	// RateLimited counts write requests answered 429 by the rate limit.
	RateLimited int `json:"rate_limited"`
	// BatchItems counts the items of processed batches by their status.
	BatchItems map[int]int `json:"batch_items"`
}

func (st WriteStats) clone() WriteStats {
	st.ByMethod = maps.Clone(st.ByMethod)
	for m, by := range st.ByMethod {
		st.ByMethod[m] = maps.Clone(by)
	}
	st.BatchItems = maps.Clone(st.BatchItems)
	return st
}

// writeStore is the state of the write API. It is guarded by Server.wmu.
type writeStore struct {
	seq      int64                      // number of the last customer created
	byID     map[string]*Customer       // live customers
	ids      []string                   // live customer ids, sorted (creation order)
	byEmail  map[string]string          // normEmail -> id, live customers
	deleted  map[string]DeletedCustomer // deleted customers, for the change feed
	eventSeq int64                      // number of the last change event sent
	noteSeq  int64
	notes    []json.RawMessage // notifications, compacted, in order
	keys     map[string]idemEntry
	stats    WriteStats
}

func newWriteStore() writeStore {
	return writeStore{
		byID:    map[string]*Customer{},
		byEmail: map[string]string{},
		deleted: map[string]DeletedCustomer{},
		keys:    map[string]idemEntry{},
		stats:   WriteStats{ByMethod: map[string]map[int]int{}, BatchItems: map[int]int{}},
	}
}

// idemEntry is what an Idempotency-Key stands for.
type idemEntry struct {
	sum  [32]byte // of the request: method, path, canonical body
	what string   // method and path of the request, for messages
	rep  reply    // the answer to replay
	at   time.Time
}

// seqID is prefix and the base-36 digits of n, zero-padded to 8.
func seqID(prefix string, n int64) string {
	d := strconv.FormatInt(n, 36)
	if len(d) < customerIDDigits {
		d = strings.Repeat("0", customerIDDigits-len(d)) + d
	}
	return prefix + d
}

// Customers returns every customer, sorted by id (creation order). The
// slice and the records are copies.
func (s *Server) Customers() []Customer {
	s.wmu.Lock()
	defer s.wmu.Unlock()
	out := make([]Customer, len(s.ws.ids))
	for i, id := range s.ws.ids {
		out[i] = s.ws.byID[id].clone()
	}
	return out
}

// Customer returns a copy of the customer id, and whether it exists.
func (s *Server) Customer(id string) (Customer, bool) {
	s.wmu.Lock()
	defer s.wmu.Unlock()
	c, ok := s.ws.byID[id]
	if !ok {
		return Customer{}, false
	}
	return c.clone(), true
}

// Notifications returns the bodies accepted by POST /v1/notifications, in
// the order they were accepted, compacted. Idempotent replays are not
// repeated.
func (s *Server) Notifications() []json.RawMessage {
	s.wmu.Lock()
	defer s.wmu.Unlock()
	out := make([]json.RawMessage, len(s.ws.notes))
	for i, n := range s.ws.notes {
		out[i] = slices.Clone(n)
	}
	return out
}

// WriteStats returns a copy of the write API counters.
func (s *Server) WriteStats() WriteStats {
	s.wmu.Lock()
	defer s.wmu.Unlock()
	return s.ws.stats.clone()
}

// ResetCustomers returns the write API to the state of a new server: no
// customers (ids restart at cus_00000001), no notifications, no remembered
// idempotency keys, zero WriteStats. Faults and Stats are kept.
func (s *Server) ResetCustomers() {
	s.wmu.Lock()
	defer s.wmu.Unlock()
	s.ws = newWriteStore()
}

// SeedCustomers creates customers as POST /v1/customers would, without
// HTTP, idempotency keys or faults, and returns them with their ids,
// versions and timestamps. Only the writable fields are read (Email, Name,
// ExternalRef, Plan, Extra); a customer with an ID is an error. It creates
// all of them or, on the first invalid or conflicting one, none.
func (s *Server) SeedCustomers(cs ...Customer) ([]Customer, error) {
	s.wmu.Lock()
	defer s.wmu.Unlock()
	// Check everything first, so that a failure leaves nothing behind.
	emails := map[string]int{}
	for i, c := range cs {
		if c.ID != "" {
			return nil, fmt.Errorf("seed customer %d: id %q: ids are assigned by the server", i, c.ID)
		}
		if _, e := customerFromDoc(c.document(), modeCreate, ""); e != nil {
			return nil, fmt.Errorf("seed customer %d: %s", i, e.Message)
		}
		norm := normEmail(c.Email)
		if id, ok := s.ws.byEmail[norm]; ok {
			return nil, fmt.Errorf("seed customer %d: email %q belongs to customer %s", i, c.Email, id)
		}
		if j, ok := emails[norm]; ok {
			return nil, fmt.Errorf("seed customer %d: email %q is also the email of seed customer %d", i, c.Email, j)
		}
		emails[norm] = i
	}
	out := make([]Customer, len(cs))
	for i, c := range cs {
		created, f := s.insertCustomer(c.document())
		if f != nil {
			panic(fmt.Sprintf("sandbox: seed customer %d checked, then refused: %s", i, f.err.Message))
		}
		out[i] = created
	}
	return out, nil
}

// insertCustomer validates a customer document and creates the customer:
// 422 when invalid, 409 when the email is taken. Called with s.wmu held.
func (s *Server) insertCustomer(doc map[string]json.RawMessage) (Customer, *apiFailure) {
	c, e := customerFromDoc(doc, modeCreate, "")
	if e != nil {
		return Customer{}, &apiFailure{status: 422, err: *e}
	}
	if f := s.emailTaken(c.Email, ""); f != nil {
		return Customer{}, f
	}
	s.ws.seq++
	c.ID = seqID(customerIDPrefix, s.ws.seq)
	c.Version = 1
	c.CreatedAt = formatMilli(s.opts.Now().UnixMilli())
	c.UpdatedAt = c.CreatedAt
	stored := c.clone()
	s.ws.byID[c.ID] = &stored
	s.ws.ids = append(s.ws.ids, c.ID) // the newest id is the greatest
	s.ws.byEmail[normEmail(c.Email)] = c.ID
	return c, nil
}

// emailTaken is a 409 when email belongs to a customer other than self.
// Called with s.wmu held.
func (s *Server) emailTaken(email, self string) *apiFailure {
	id, ok := s.ws.byEmail[normEmail(email)]
	if !ok || id == self {
		return nil
	}
	return &apiFailure{status: 409, err: APIError{
		Type:       ErrorTypeConflict,
		Message:    fmt.Sprintf("email %q belongs to customer %s (emails are unique, without regard to case)", email, id),
		Field:      "email",
		ExistingID: id,
	}}
}

// removeCustomer deletes a live customer. Called with s.wmu held.
func (s *Server) removeCustomer(id string) {
	c := s.ws.byID[id]
	delete(s.ws.byID, id)
	delete(s.ws.byEmail, normEmail(c.Email))
	if i, ok := slices.BinarySearch(s.ws.ids, id); ok {
		s.ws.ids = slices.Delete(s.ws.ids, i, i+1)
	}
}
