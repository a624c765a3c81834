package main

import (
	"fmt"
	"sort"
	"strings"
	"time"
)

// sample is what one contender's run did and cost.
type sample struct {
	dur                       time.Duration // wall time
	rows                      int           // rows in the destination table afterwards
	rss                       int64         // peak RSS of the contender's process, bytes (0: not measured)
	events, executions, pages int           // durable runs: history events, executions, pages
	spans                     int64         // traced variant: OTLP export requests
	cpu                       float64       // the machine's busy CPU-seconds over the timed span (0: unknown)
}

func (s sample) rate() float64 { return float64(s.rows) / s.dur.Seconds() }

// series is one contender's samples over the rounds.
type series struct {
	name    string
	samples []sample
}

// results are the samples of every contender (the durable variants each
// under durable/<key>), in the order they first ran.
type results struct {
	order []string
	by    map[string]*series
}

func (r *results) add(key, name string, s sample) {
	if r.by == nil {
		r.by = map[string]*series{}
	}
	if r.by[key] == nil {
		r.by[key] = &series{name: name}
		r.order = append(r.order, key)
	}
	r.by[key].samples = append(r.by[key].samples, s)
}

// stats are min, median and max.
type stats struct{ min, med, max float64 }

func statsOf(v []float64) stats {
	s := append([]float64(nil), v...)
	sort.Float64s(s)
	n := len(s)
	med := s[n/2]
	if n%2 == 0 {
		med = (s[n/2-1] + s[n/2]) / 2
	}
	return stats{s[0], med, s[n-1]}
}

func (s *series) stat(f func(sample) float64) stats {
	v := make([]float64, len(s.samples))
	for i, x := range s.samples {
		v[i] = f(x)
	}
	return statsOf(v)
}

func (s *series) wall() stats { return s.stat(func(x sample) float64 { return x.dur.Seconds() }) }
func (s *series) rate() stats { return s.stat(sample.rate) }
func (s *series) rss() stats  { return s.stat(func(x sample) float64 { return float64(x.rss) }) }
func (s *series) cpu() stats  { return s.stat(func(x sample) float64 { return x.cpu }) }

// progress prints one run's line as it ends.
func progress(name string, s sample, extra string) {
	rss := ""
	if s.rss > 0 {
		rss = ", peak RSS " + mib(float64(s.rss))
	}
	if extra != "" {
		extra = ", " + extra
	}
	cpu := ""
	if s.cpu > 0 {
		cpu = fmt.Sprintf(", machine CPU %.1f s busy = %.0f%% of %d cores", s.cpu, 100*s.cpu/s.dur.Seconds()/float64(numCPU()), numCPU())
	}
	fmt.Printf("  %-34s %9.3fs %9.0f records/s  (%d rows%s%s%s)\n", name, s.dur.Seconds(), s.rate(), s.rows, rss, cpu, extra)
}

func mib(b float64) string { return fmt.Sprintf("%.1f MiB", b/(1<<20)) }

// triple formats min / median / max, or the one value of a single run.
func triple(s stats, n int, f func(float64) string) string {
	if n == 1 || s.min == s.max && f(s.min) == "-" {
		return f(s.med)
	}
	return f(s.min) + " / " + f(s.med) + " / " + f(s.max)
}

func secs(v float64) string { return fmt.Sprintf("%.3fs", v) }
func recs(v float64) string { return fmt.Sprintf("%.0f", v) }
func cpus(v float64) string {
	if v == 0 {
		return "-"
	}
	return fmt.Sprintf("%.1f", v)
}
func mibs(v float64) string {
	if v == 0 {
		return "-"
	}
	return fmt.Sprintf("%.1f", v/(1<<20))
}

// print prints the summary: a line per contender over the rounds (the
// durable pipeline as deployed; its other variants ran in the first round
// only), history events, the variants' costs and the targets' ratios.
func (r *results) print(o options) {
	head := "wall"
	if o.runs > 1 {
		head = "wall min / median / max"
	}
	fmt.Printf("\nsummary over %d round(s), %d records each:\n", o.runs, o.records)
	fmt.Printf("%-40s %4s  %-30s  %-30s  %-30s  %s\n", "", "runs", head, strings.Replace(head, "wall", "records/s", 1),
		strings.Replace(head, "wall", "machine CPU s", 1), strings.Replace(head, "wall", "peak RSS MiB", 1))
	for _, key := range r.order {
		s := r.by[key]
		n := len(s.samples)
		name := s.name
		if n < o.runs {
			name += " (round 1)"
		}
		fmt.Printf("%-40s %4d  %-30s  %-30s  %-30s  %s\n", name, n, triple(s.wall(), n, secs), triple(s.rate(), n, recs), triple(s.cpu(), n, cpus), triple(s.rss(), n, mibs))
	}
	fmt.Println("(peak RSS: the worker process's for the durable pipeline, the Benthos process's for Benthos; the plain loop runs inside the bench process)")
	fmt.Println("(machine CPU: busy CPU-seconds of every process over the timed span: the contender and what serves it, PostgreSQL, the dev server, the sandbox)")

	d := r.by[durableName+"/default"]
	if d != nil {
		perExec := d.stat(func(x sample) float64 { return float64(x.events) / float64(max(1, x.executions)) })
		last := d.samples[len(d.samples)-1]
		fmt.Printf("\nhistory events per execution (durable): %s  (last round: %d events in %d execution(s), %d pages)\n",
			triple(perExec, len(d.samples), recs), last.events, last.executions, last.pages)
	}
	off, traced, enc := r.by[durableName+"/off"], r.by[durableName+"/traced"], r.by[durableName+"/encrypted"]
	if d != nil && off != nil && traced != nil && enc != nil {
		first := func(s *series) float64 { return s.samples[0].rate() }
		fmt.Printf("round 1 records/s vs telemetry off:      metrics %.2f, metrics + tracing %.2f\n", first(d)/first(off), first(traced)/first(off))
		fmt.Printf("round 1 records/s encrypted / plain:     %.2f (both with metrics on)\n", first(enc)/first(d))
	}

	fmt.Println("\ntargets (medians; durable = the pipeline as deployed, metrics on):")
	loop, benthos := r.by[loopName], r.by[benthosName]
	if d != nil && benthos != nil {
		ratio := d.wall().med / benthos.wall().med
		fmt.Printf("  durable wall / Benthos wall:         %.2f  (target <= 0.80): %s%s\n", ratio, metOrNot(ratio <= 0.8),
			perRound(d, benthos, o.runs, func(a, b sample) float64 { return a.dur.Seconds() / b.dur.Seconds() }))
	} else {
		fmt.Println("  durable wall / Benthos wall:         n/a (needs --contenders durable,benthos)")
	}
	if d != nil && loop != nil {
		ratio := d.rate().med / loop.rate().med
		fmt.Printf("  durable records/s / loop records/s:  %.2f  (target >= 0.90): %s%s\n", ratio, metOrNot(ratio >= 0.9),
			perRound(d, loop, o.runs, func(a, b sample) float64 { return a.rate() / b.rate() }))
	} else {
		fmt.Println("  durable records/s / loop records/s:  n/a (needs --contenders loop,durable)")
	}
	if o.runs == 1 {
		fmt.Println("  (one round: --runs N for min/median/max)")
	}
}

// perRound lists a ratio within each round (the two contenders ran back to
// back, so under a varying load these pair better than the medians do).
func perRound(a, b *series, runs int, f func(a, b sample) float64) string {
	if runs < 2 || len(a.samples) != len(b.samples) {
		return ""
	}
	v := make([]string, len(a.samples))
	for i := range a.samples {
		v[i] = fmt.Sprintf("%.2f", f(a.samples[i], b.samples[i]))
	}
	return "  (per round: " + strings.Join(v, ", ") + ")"
}

func metOrNot(ok bool) string {
	if ok {
		return "met"
	}
	return "NOT met"
}
