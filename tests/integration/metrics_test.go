package integration

import (
	"fmt"
	"io"
	"maps"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/tetherflow/tether/starters/devstack"
	"github.com/tetherflow/tether/starters/sandbox"
	"github.com/tetherflow/tether/workflows/datasync"
)

var reMetricsURL = regexp.MustCompile(`msg="metrics endpoint serving" url=(\S+)`)

// metricValue reads one sample of a text exposition; false when absent.
func metricValue(body, series string) (float64, bool) {
	for line := range strings.Lines(body) {
		if v, ok := strings.CutPrefix(strings.TrimSpace(line), series+" "); ok {
			f, err := strconv.ParseFloat(v, 64)
			return f, err == nil
		}
	}
	return 0, false
}

func TestWorkerProcess_ServesMetricsAndStopsOnAnAddressInUse(t *testing.T) {
	s := newStack(t, stackOptions{sandbox: sandbox.Options{Seed: 47, Contacts: 80}, noWorker: true})
	bin := workerBinary(t)
	logDir := t.TempDir()

	t.Run("address in use", func(t *testing.T) {
		taken, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		defer taken.Close()
		addr := taken.Addr().String()
		logFile := filepath.Join(logDir, "taken.log")
		w, err := devstack.StartProcess("worker", logFile, s.workerEnv("TETHER_METRICS_LISTEN="+addr), bin)
		if err != nil {
			t.Fatal(err)
		}
		select {
		case <-w.Done():
		case <-time.After(90 * time.Second):
			_ = w.Stop(5 * time.Second)
			t.Fatalf("the worker kept running with %s in use", addr)
		}
		_, exitErr := w.Exited()
		b, _ := os.ReadFile(logFile)
		if exitErr == nil {
			t.Errorf("the worker exited with status 0; log:\n%s", b)
		}
		want := fmt.Sprintf("worker: metrics endpoint on %s (metrics.listen / TETHER_METRICS_LISTEN): listen tcp %s: bind: address already in use", addr, addr)
		if !strings.Contains(string(b), want) {
			t.Errorf("the log lacks %q:\n%s", want, b)
		}
		if strings.Contains(string(b), "worker polling") {
			t.Errorf("the worker polled before it stopped:\n%s", b)
		}
	})

	t.Run("serves the destinations' calls", func(t *testing.T) {
		logFile := filepath.Join(logDir, "worker.log")
		w, err := devstack.StartProcess("worker", logFile, s.workerEnv(), bin)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { _ = w.Stop(10 * time.Second) })
		var url string
		for deadline := time.Now().Add(90 * time.Second); url == ""; {
			b, _ := os.ReadFile(logFile)
			if m := reMetricsURL.FindSubmatch(b); m != nil && strings.Contains(string(b), "worker polling") {
				url = string(m[1])
				break
			}
			if exited, err := w.Exited(); exited || time.Now().After(deadline) {
				t.Fatalf("the worker did not start serving metrics and polling (exited %v: %v):\n%s", exited, err, b)
			}
			time.Sleep(100 * time.Millisecond)
		}
		res := s.mustSync(datasync.Input{Integration: "crm-billing-customers"})
		if res.Counts.Inserted == 0 {
			t.Fatalf("the sync created no customer: %+v", res)
		}

		// The worker counts the run's completion as it reports the last
		// workflow task, which may be just after the client has the
		// result: read /metrics until the counter is there (or give up
		// and let the checks below say what is missing).
		var body string
		for deadline := time.Now().Add(30 * time.Second); ; time.Sleep(100 * time.Millisecond) {
			resp, err := http.Get(url)
			if err != nil {
				t.Fatal(err)
			}
			b, err := io.ReadAll(resp.Body)
			resp.Body.Close()
			if err != nil || resp.StatusCode != http.StatusOK {
				t.Fatalf("GET %s: %s %v", url, resp.Status, err)
			}
			body = string(b)
			if strings.Contains(body, "temporal_workflow_completed_total{") || time.Now().After(deadline) {
				break
			}
		}
		labels := `destination="billing",integration="crm-billing-customers"`
		if v, ok := metricValue(body, `tether_destination_requests_total{`+labels+`,outcome="ok"}`); !ok || v != float64(res.Counts.Inserted) {
			t.Errorf("ok calls %v (found %v), want one per customer created (%d)", v, ok, res.Counts.Inserted)
		}
		if v, ok := metricValue(body, `tether_destination_circuit_state{`+labels+`}`); !ok || v != 0 {
			t.Errorf("circuit state %v (found %v), want 0 (closed)", v, ok)
		}
		// Every destination of every integration the worker runs has its series.
		if _, ok := metricValue(body, `tether_destination_circuit_state{destination="notify/reversal",integration="customer-onboarding"}`); !ok {
			t.Errorf("no circuit state for customer-onboarding's notify reversals")
		}
		checkSyncMetrics(t, body, "crm-billing-customers", res)
		for _, want := range []string{"go_goroutines ", "process_resident_memory_bytes "} {
			if !strings.Contains(body, want) {
				t.Errorf("/metrics lacks %q", want)
			}
		}
	})
}

// checkSyncMetrics: the worker's /metrics after one completed run of an
// integration: its records by outcome equal the run's counts, one
// completed run, step latencies, its last success from the database, and
// the Temporal SDK's own metrics.
func checkSyncMetrics(t *testing.T, body, integration string, res datasync.Result) {
	t.Helper()
	in := `integration="` + integration + `"`
	for series, want := range map[string]float64{
		`tether_records_total{` + in + `,outcome="fetched"}`: float64(res.Counts.Fetched),
		`tether_records_total{` + in + `,outcome="valid"}`:   float64(res.Counts.Valid),
		`tether_records_total{` + in + `,outcome="applied"}`: float64(res.Counts.Applied()),
		`tether_runs_total{` + in + `,outcome="completed"}`:  1,
		`tether_state_read_ok`:                               1,
	} {
		if v, ok := metricValue(body, series); !ok || v != want {
			t.Errorf("%s = %v (found %v), want %v", series, v, ok, want)
		}
	}
	for _, step := range []string{"StartRun", "FetchPage", "ValidateBatch", "ApplyBatch", "FinishRun"} {
		series := `tether_step_duration_seconds_count{` + in + `,outcome="ok",step="` + step + `"}`
		if v, ok := metricValue(body, series); !ok || v < 1 {
			t.Errorf("%s = %v (found %v), want at least 1", series, v, ok)
		}
	}
	if v, ok := metricValue(body, `tether_last_success_timestamp_seconds{`+in+`}`); !ok || time.Since(time.Unix(int64(v), 0)) > 5*time.Minute {
		t.Errorf("last success %v (found %v), want the run's end", v, ok)
	}
	names := map[string]bool{}
	for line := range strings.Lines(body) {
		if name, _, ok := strings.Cut(line, "{"); ok && strings.HasPrefix(name, "temporal_") {
			names[name] = true
		}
	}
	t.Logf("Temporal SDK series: %v", slices.Sorted(maps.Keys(names)))
	for _, want := range []string{"temporal_request_total{", "temporal_activity_execution_latency_seconds_bucket{", "temporal_workflow_completed_total{"} {
		if !strings.Contains(body, want) {
			t.Errorf("/metrics lacks the Temporal SDK's %q", want)
		}
	}
}
