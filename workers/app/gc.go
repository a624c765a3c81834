package app

import (
	"os"
	"runtime/debug"
)

// DefaultGCPercent is the garbage collector's target the worker binary
// runs with unless the GOGC environment variable sets one: the heap may
// grow to five times what is live before a collection, not twice. A sync
// allocates most of what it touches briefly (decoded records, validation,
// rows), so collections are a large share of its CPU at Go's default of
// 100. At 400 the worker's peak RSS on make bench's 100,000-record sync
// goes from about 80 to about 160 MiB and stays flat with the records
// synced, and the sync takes less CPU (docs/benchmarks.md). Set GOGC=100
// for Go's default, or GOMEMLIMIT to cap the heap in a small container.
const DefaultGCPercent = 400

// TuneGC sets the garbage collector's target to DefaultGCPercent unless
// GOGC is set, and returns the target in effect (-1: off) and whether
// GOGC chose it.
func TuneGC() (percent int, fromEnv bool) {
	if os.Getenv("GOGC") != "" {
		p := debug.SetGCPercent(-1)
		debug.SetGCPercent(p)
		return p, true
	}
	debug.SetGCPercent(DefaultGCPercent)
	return DefaultGCPercent, false
}
