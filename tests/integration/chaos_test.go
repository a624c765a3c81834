package integration

import (
	"context"
	"database/sql"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/tetherflow/tether/tests/chaos"
)

// TestChaos_Short runs three of `make chaos`'s scenarios small (package
// tests/chaos): workers SIGKILLed mid-sync, a source answering with 5xx,
// 429 bursts, slow, truncated and malformed pages, and a destination that
// commits and loses the answer. Each must end with the destination equal
// to the source row by row and the quarantine exactly the invalid
// records; how long they take is not checked.
func TestChaos_Short(t *testing.T) {
	admin, err := sql.Open("postgres", pgDSN())
	if err != nil {
		t.Fatal(err)
	}
	defer admin.Close()
	work, err := os.MkdirTemp("", "tether-chaos-test")
	if err != nil {
		t.Fatal(err)
	}
	e := &chaos.Env{
		DSN: pgDSN(), Temporal: devServer.FrontendHostPort(), Client: devServer.Client(),
		TemporalCLI: temporalCLI, WorkerBin: workerBinary(t), Work: work, Admin: admin,
	}
	if testing.Verbose() {
		e.Log = os.Stderr
	}
	// 30 batches of 100 rows, pages slowed a little, so that the faults
	// land while the sync runs.
	cfg := chaos.Config{Records: 3000, Kills: 2, BatchSize: 100, SourceLatency: 20 * time.Millisecond, InvalidRate: 0.02, Seed: 17, Timeout: 3 * time.Minute}
	scenarios, err := chaos.Select("kill-2w,source-faults,commit-lost")
	if err != nil {
		t.Fatal(err)
	}
	failed := false
	var results []chaos.Result
	for _, s := range scenarios {
		t.Run(s.Name, func(t *testing.T) {
			r := s.Run(context.Background(), e, cfg)
			results = append(results, r)
			if !r.OK() {
				failed = true
				t.Errorf("%s: %s; faults %s; notes %v", s.Name, r.Problem(), r.Faults, r.Notes)
			}
			if r.Injected == 0 {
				failed = true
				t.Errorf("%s: no fault landed (%s; %v)", s.Name, r.Faults, r.Notes)
			}
			if r.Check.Expected == 0 && r.Err == nil {
				t.Errorf("%s: nothing was expected in the destination", s.Name)
			}
		})
	}
	var table strings.Builder
	chaos.PrintTable(&table, results)
	t.Logf("\n%s", table.String())
	if failed {
		t.Logf("logs kept in %s", work)
	} else {
		os.RemoveAll(work)
	}
}
