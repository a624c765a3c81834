package schema

import (
	"hash/maphash"
	"sync"
	"sync/atomic"
)

// DefaultKnownRecords is how many records a Validator remembers as valid
// by the hash of their bytes, unless SetKnownRecords says otherwise.
const DefaultKnownRecords = 1 << 17

// knownRecords is the bound of every Validator's set of known-valid
// records (0: none are remembered).
var knownRecords atomic.Int64

func init() { knownRecords.Store(DefaultKnownRecords) }

// SetKnownRecords bounds how many records each Validator remembers as
// valid (ValidateRaw); 0 turns the memory off. It costs about 40 bytes a
// record of live heap, which the worker's garbage collector setting
// (GOGC=400) lets grow five times before a collection: the default,
// 131,072, keeps the worker's peak memory flat past that many records
// (at 1,048,576 its RSS grew from about 170 to 380 MiB between a
// 100,000- and a 1,000,000-record sync). Raise it for larger re-reads
// where the memory is there. A process sets it once, at start (the
// worker from worker.validation_cache).
func SetKnownRecords(n int) { knownRecords.Store(int64(max(n, 0))) }

// knownSet is the content hashes of records a Validator found valid. A
// record read again unchanged (a batch refresh, a reconciliation's full
// read, a re-read page) is then not validated again: the same bytes give
// the same verdict. Two independent 64-bit hashes make a collision (an
// invalid record taken for a valid one) a 2^-128 event per pair. The set
// only grows, up to its bound: a read larger than the bound keeps its
// first records (a set that forgot its oldest would forget every record
// of a long read before the next read comes back to it).
type knownSet struct {
	seeds [2]maphash.Seed
	mu    sync.RWMutex
	set   map[[2]uint64]struct{}
}

func newKnownSet() *knownSet {
	return &knownSet{seeds: [2]maphash.Seed{maphash.MakeSeed(), maphash.MakeSeed()}, set: map[[2]uint64]struct{}{}}
}

func (k *knownSet) hash(raw []byte) [2]uint64 {
	return [2]uint64{maphash.Bytes(k.seeds[0], raw), maphash.Bytes(k.seeds[1], raw)}
}

func (k *knownSet) has(h [2]uint64) bool {
	k.mu.RLock()
	_, ok := k.set[h]
	k.mu.RUnlock()
	return ok
}

func (k *knownSet) add(h [2]uint64) {
	limit := int(knownRecords.Load())
	k.mu.Lock()
	if len(k.set) < limit {
		k.set[h] = struct{}{}
	}
	k.mu.Unlock()
}

// ValidateRaw is Validate of rec, the value Decode made of raw, for a
// record whose bytes may have been validated before: a record this
// Validator found valid with the very same bytes is valid again without
// being checked (see SetKnownRecords).
func (v *Validator) ValidateRaw(raw []byte, rec any) []FieldError {
	if knownRecords.Load() == 0 {
		return v.Validate(rec)
	}
	v.knownOnce.Do(func() { v.known = newKnownSet() })
	h := v.known.hash(raw)
	if v.known.has(h) {
		v.knownHits.Add(1)
		return nil
	}
	errs := v.Validate(rec)
	if len(errs) == 0 {
		v.known.add(h)
	}
	return errs
}

// KnownHits counts the records ValidateRaw took as valid because it had
// validated the same bytes before.
func (v *Validator) KnownHits() int64 { return v.knownHits.Load() }
