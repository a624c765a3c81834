package main

import (
	"fmt"
	"math"
	"slices"
	"strings"
	"time"
)

// quantiles are p50, p99 and the maximum (nearest rank).
func quantiles(ds []time.Duration) (p50, p99, top time.Duration, ok bool) {
	if len(ds) == 0 {
		return 0, 0, 0, false
	}
	s := slices.Clone(ds)
	slices.Sort(s)
	rank := func(p float64) time.Duration {
		return s[max(0, int(math.Ceil(p*float64(len(s))))-1)]
	}
	return rank(0.50), rank(0.99), s[len(s)-1], true
}

func ms(d time.Duration) float64 { return float64(d) / float64(time.Millisecond) }

// triple formats p50 / p99 / max in milliseconds.
func triple(ds []time.Duration) string {
	p50, p99, top, ok := quantiles(ds)
	if !ok {
		return fmt.Sprintf("%26s", "-")
	}
	return fmt.Sprintf("%7.1f /%7.1f /%8.1f", ms(p50), ms(p99), ms(top))
}

func printHeader() {
	fmt.Printf("%6s  %-22s %6s %7s  %-26s  %-26s  %-26s %10s %7s %5s\n",
		"rate/s", "contender", "events", "sent/s",
		"accept ms  p50 / p99 / max", "applied ms p50 / p99 / max", "caught-up ms p50/p99/max",
		"superseded", "non-2xx", "lost")
}

// printLegend says what each column measures.
func printLegend() {
	fmt.Print(`
accept     first request's start → the 2xx answer (retries included)
applied    first request's start → commit of the event's own row version (committed events only),
           stamped by a deferred trigger with clock_timestamp() at commit
caught-up  first request's start → first commit of the event's entity at its version or newer (every event)
superseded accepted, never committed as such: a newer version of the entity won in the same batch
           or was already in the table (counted stale by tether)
non-2xx    refused attempts (each retried by the sender); lost = entities not at their last accepted
           version + accepted deliveries missing from tether_event_deliveries + events never caught up
`)
}

func printRow(r *result) {
	fmt.Printf("%6d  %-22s %6d %7.1f  %s  %s  %s %10d %7d %5d\n",
		r.rate, r.contender, r.events, r.sentRate, triple(r.accept), triple(r.applied), triple(r.caught),
		r.superseded, r.non2xx, r.lost())
}

func printCPU(results []*result) {
	fmt.Println("time and CPU (CPU in % of one core over first send → last commit; the machine's total includes everything else it runs)")
	fmt.Printf("%6s  %-22s %8s %9s %10s %8s %8s %8s %8s %8s %10s\n",
		"rate/s", "contender", "wall s", "drain ms", "slip max", "bench", "temporal", "postgres", "machine", "batches", "ev/batch")
	for _, r := range results {
		batches, per := "-", "-"
		if r.counts != nil {
			batches = fmt.Sprint(r.batches)
			if r.batches > 0 {
				per = fmt.Sprintf("%.1f", float64(r.counts.Received)/float64(r.batches))
			}
		}
		fmt.Printf("%6d  %-22s %8.1f %9.0f %8.1fms %s %8s %10s\n",
			r.rate, r.contender, r.wall.Seconds(), ms(r.drain), ms(r.slipMax),
			r.cpu.cells(), batches, per)
	}
}

// printChecks prints what tether's shards counted beside the bench's own
// count, and every error seen.
func printChecks(results []*result) {
	fmt.Println("checks")
	for _, r := range results {
		var parts []string
		if c := r.counts; c != nil {
			parts = append(parts, fmt.Sprintf("shards counted received %d, inserted %d, updated %d, stale %d, superseded %d, duplicates %d, quarantined %d (bench: %d not committed)",
				c.Received, c.Inserted, c.Updated, c.Stale, c.Superseded, c.Duplicates, c.Quarantined, r.superseded))
			t := r.tasks
			parts = append(parts, fmt.Sprintf("%d workflow tasks, scheduled→started ms p50/p99/max %s, %d timed out, %d failed",
				t.tasks, strings.Join(strings.Fields(triple(t.waits)), ""), t.timedOut, t.failed))
		}
		if r.lost() > 0 {
			parts = append(parts, fmt.Sprintf("LOST: %d entities not at their last version, %d deliveries not recorded, %d events whose entity never reached their version",
				r.lostRows, r.lostDeliveries, r.notCaughtUp))
		}
		if r.failed > 0 {
			parts = append(parts, fmt.Sprintf("%d events never accepted after %d attempts", r.failed, maxAttempts))
		}
		if len(r.lastErrors) > 0 {
			parts = append(parts, "sender saw: "+strings.Join(r.lastErrors, "; "))
		}
		if len(r.shardErrs) > 0 {
			parts = append(parts, "shard errors: "+strings.Join(r.shardErrs, "; "))
		}
		if len(parts) == 0 {
			parts = append(parts, fmt.Sprintf("%d accepted, every entity at its last version", r.accepted))
		} else if r.lost() == 0 && r.failed == 0 {
			parts = append(parts, fmt.Sprintf("%d accepted, none lost", r.accepted))
		}
		fmt.Printf("%6d  %-22s %s\n", r.rate, r.contender, strings.Join(parts, "; "))
	}
}

// printTargets compares tether's figures with its targets.
func printTargets(results []*result) {
	var lines []string
	mark := func(ok bool) string {
		if ok {
			return "met"
		}
		return "MISSED"
	}
	for _, r := range results {
		if r.counts == nil {
			continue
		}
		if _, p99, _, ok := quantiles(r.accept); ok {
			lines = append(lines, fmt.Sprintf("accept p99 < 30 ms at %d/s: %.1f ms, %s", r.rate, ms(p99), mark(p99 < 30*time.Millisecond)))
		}
		if r.rate == 100 {
			if p50, p99, _, ok := quantiles(r.applied); ok {
				lines = append(lines, fmt.Sprintf("applied p50 < 20 ms at 100/s: %.1f ms, %s", ms(p50), mark(p50 < 20*time.Millisecond)))
				lines = append(lines, fmt.Sprintf("applied p99 < 100 ms at 100/s: %.1f ms, %s", ms(p99), mark(p99 < 100*time.Millisecond)))
			}
		}
		if r.rate >= 1000 {
			// Accepted at the rate: the open-loop sender kept to it (it
			// slips when answers are slow), nothing refused or lost.
			kept := r.sentRate >= 0.98*float64(r.rate)
			lines = append(lines, fmt.Sprintf("acceptance of %d/s without loss: sent at %.0f/s, %d refused attempts, %d lost, %d never accepted, %s",
				r.rate, r.sentRate, r.non2xx, r.lost(), r.failed, mark(kept && r.non2xx == 0 && r.lost() == 0 && r.failed == 0)))
		}
	}
	if len(lines) == 0 {
		return
	}
	fmt.Println("\ntether's targets")
	for _, l := range lines {
		fmt.Println("  " + l)
	}
}
