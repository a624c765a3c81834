package sandbox

import (
	"time"
)

// streamWriteFaults is the RNG stream of WriteFaults.ErrorRate, apart from
// the one of read faults so that writes do not shift read fault choices.
const streamWriteFaults uint64 = 0xfb

// writeFaultKind is what WriteFaults do to one write.
type writeFaultKind int

const (
	writeOK      writeFaultKind = iota
	writeRefused                // FailNext, FailEvery: FailStatus, nothing written
	writeErrored                // ErrorRate: 500, nothing written
	writeLost                   // LostResponse*: written, then 500
)

// writeFaultDraw is the fault chosen for one write.
type writeFaultDraw struct {
	kind               writeFaultKind
	latency            time.Duration
	status, retryAfter int
}

// drawWriteFault chooses the fault of one write of resource by method and
// counts it down.
func (s *Server) drawWriteFault(resource, method string) writeFaultDraw {
	s.mu.Lock()
	defer s.mu.Unlock()
	f := &s.faults.Writes
	if !f.matches(resource, method) {
		return writeFaultDraw{}
	}
	s.writesSeen++
	n := s.writesSeen
	d := writeFaultDraw{latency: f.Latency, status: f.FailStatus, retryAfter: f.FailRetryAfter}
	switch {
	case f.FailNext > 0:
		f.FailNext--
		d.kind = writeRefused
	case f.FailEvery > 0 && n%f.FailEvery == 0:
		d.kind = writeRefused
	case f.ErrorRate > 0 && s.wrng.Float64() < f.ErrorRate:
		d.kind = writeErrored
	case f.LostResponseNext > 0:
		f.LostResponseNext--
		d.kind = writeLost
	case f.LostResponseEvery > 0 && n%f.LostResponseEvery == 0:
		d.kind = writeLost
	}
	return d
}
