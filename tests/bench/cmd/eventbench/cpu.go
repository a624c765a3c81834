package main

import (
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"
)

// clockTicks is USER_HZ, the unit of /proc CPU times (100 on Linux).
const clockTicks = 100

// cpuSample is CPU time so far, in clock ticks, read from /proc (Linux;
// zero elsewhere).
type cpuSample struct {
	self, dev   uint64         // this process; the dev server
	pg          map[int]uint64 // each postgres process
	busy, total uint64         // the whole machine, all CPUs
	ok          bool
}

// cpuUse is CPU used over a span, in percent of one CPU.
type cpuUse struct {
	self, dev, pg, machine float64
	ok                     bool
}

// cells are the bench, dev server, PostgreSQL and machine columns of a
// report's CPU table, 8 wide each ("-" when not measured).
func (u cpuUse) cells() string {
	pct := func(v float64) string {
		if !u.ok {
			return "-"
		}
		return fmt.Sprintf("%.0f%%", v)
	}
	return fmt.Sprintf("%8s %8s %8s %8s", pct(u.self), pct(u.dev), pct(u.pg), pct(u.machine))
}

func sampleCPU(devPid int) cpuSample {
	s := cpuSample{pg: map[int]uint64{}}
	b, err := os.ReadFile("/proc/stat")
	if err != nil {
		return s
	}
	line, _, _ := strings.Cut(string(b), "\n")
	f := strings.Fields(line)
	if len(f) < 9 || f[0] != "cpu" {
		return s
	}
	for i, v := range f[1:9] { // user nice system idle iowait irq softirq steal
		n, _ := strconv.ParseUint(v, 10, 64)
		s.total += n
		if i != 3 && i != 4 {
			s.busy += n
		}
	}
	s.self, _ = procTicks(os.Getpid())
	if devPid > 0 {
		s.dev, _ = procTicks(devPid)
	}
	dirs, _ := filepath.Glob("/proc/[0-9]*")
	for _, d := range dirs {
		pid, err := strconv.Atoi(filepath.Base(d))
		if err != nil {
			continue
		}
		if comm, _ := os.ReadFile(d + "/comm"); strings.TrimSpace(string(comm)) != "postgres" {
			continue
		}
		if t, ok := procTicks(pid); ok {
			s.pg[pid] = t
		}
	}
	s.ok = true
	return s
}

// since is the CPU used from prev to s over wall.
func (s cpuSample) since(prev cpuSample, wall time.Duration) cpuUse {
	if !s.ok || !prev.ok || wall <= 0 {
		return cpuUse{}
	}
	pct := func(ticks uint64) float64 {
		return float64(ticks) / clockTicks / wall.Seconds() * 100
	}
	var pg uint64
	for pid, t := range s.pg {
		if p, ok := prev.pg[pid]; ok && t >= p {
			pg += t - p
		} else if !ok {
			pg += t // a backend started in between
		}
	}
	u := cpuUse{self: pct(s.self - prev.self), dev: pct(s.dev - prev.dev), pg: pct(pg), ok: true}
	if dt := s.total - prev.total; dt > 0 {
		// Busy share of all CPUs, in percent of one CPU.
		u.machine = float64(s.busy-prev.busy) / float64(dt) * 100 * float64(numCPUs())
	}
	return u
}

// procTicks is a process's user + system CPU time.
func procTicks(pid int) (uint64, bool) {
	b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/stat")
	if err != nil {
		return 0, false
	}
	// The fields after the command (which may hold spaces) in parentheses.
	i := strings.LastIndexByte(string(b), ')')
	if i < 0 {
		return 0, false
	}
	f := strings.Fields(string(b)[i+1:])
	if len(f) < 13 { // state ppid ... utime(12) stime(13)
		return 0, false
	}
	u, err1 := strconv.ParseUint(f[11], 10, 64)
	s, err2 := strconv.ParseUint(f[12], 10, 64)
	return u + s, err1 == nil && err2 == nil
}

// childProcess finds the child process running bin and returns its pid
// and command line.
func childProcess(bin string) (int, string) {
	self := os.Getpid()
	dirs, _ := filepath.Glob("/proc/[0-9]*")
	for _, d := range dirs {
		b, err := os.ReadFile(d + "/stat")
		if err != nil {
			continue
		}
		i := strings.LastIndexByte(string(b), ')')
		if i < 0 {
			continue
		}
		f := strings.Fields(string(b)[i+1:])
		if len(f) < 2 || f[1] != strconv.Itoa(self) {
			continue
		}
		cmd, err := os.ReadFile(d + "/cmdline")
		if err != nil {
			continue
		}
		args := strings.Split(strings.TrimRight(string(cmd), "\x00"), "\x00")
		if len(args) == 0 || args[0] != bin {
			continue
		}
		pid, _ := strconv.Atoi(filepath.Base(d))
		return pid, strings.Join(args, " ")
	}
	return 0, ""
}

func numCPUs() int {
	b, err := os.ReadFile("/proc/stat")
	if err != nil {
		return 1
	}
	n := 0
	for line := range strings.SplitSeq(string(b), "\n") {
		if strings.HasPrefix(line, "cpu") && len(line) > 3 && line[3] >= '0' && line[3] <= '9' {
			n++
		}
	}
	return max(1, n)
}

// loadAverage is the 1, 5 and 15 minute load average.
func loadAverage() string {
	b, _ := os.ReadFile("/proc/loadavg")
	f := strings.Fields(string(b))
	return strings.Join(f[:min(3, len(f))], " ")
}
