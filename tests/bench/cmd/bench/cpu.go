package main

import (
	"os"
	"strconv"
	"strings"
)

// clockTicks is USER_HZ, the unit of /proc/stat's times (100 on Linux
// everywhere it matters).
const clockTicks = 100

// cpuMeter measures the machine's busy CPU time over a span, from
// /proc/stat: every process's, so the contender's and what serves it
// (PostgreSQL, the dev server, the sandbox in this process) together. On a
// machine doing nothing else, that is what the job cost.
type cpuMeter struct {
	busy0 uint64
	ok    bool
}

func startCPU() cpuMeter {
	busy, ok := machineBusy()
	return cpuMeter{busy0: busy, ok: ok}
}

// seconds is the busy CPU time since startCPU, in CPU-seconds; 0 when
// /proc/stat cannot be read.
func (m cpuMeter) seconds() float64 {
	busy, ok := machineBusy()
	if !m.ok || !ok || busy < m.busy0 {
		return 0
	}
	return float64(busy-m.busy0) / clockTicks
}

// machineBusy is the machine's CPU time spent other than idle or waiting
// on I/O, in ticks.
func machineBusy() (uint64, bool) {
	b, err := os.ReadFile("/proc/stat")
	if err != nil {
		return 0, false
	}
	line, _, _ := strings.Cut(string(b), "\n")
	f := strings.Fields(line)
	if len(f) < 6 || f[0] != "cpu" {
		return 0, false
	}
	var total, idle uint64
	for i, s := range f[1:] {
		if i >= 8 { // guest times are already in user and nice
			break
		}
		v, err := strconv.ParseUint(s, 10, 64)
		if err != nil {
			return 0, false
		}
		total += v
		if i == 3 || i == 4 { // idle, iowait
			idle += v
		}
	}
	return total - idle, true
}
