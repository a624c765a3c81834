package integration

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"path/filepath"
	"reflect"
	"regexp"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	commonpb "go.temporal.io/api/common/v1"
	"go.temporal.io/api/enums/v1"
	"go.temporal.io/api/workflowservice/v1"
	"go.temporal.io/sdk/temporal"

	"github.com/tetherflow/tether/activities/lib/cursor"
	"github.com/tetherflow/tether/activities/lib/failure"
	"github.com/tetherflow/tether/activities/lib/progress"
	"github.com/tetherflow/tether/starters/devstack"
	"github.com/tetherflow/tether/starters/sandbox"
	"github.com/tetherflow/tether/workflows/datasync"
)

// pageFault answers, or rewrites, the n-th request to a path (1-based)
// while it is armed; every other request passes through.
type pageFault struct {
	next   http.RoundTripper
	path   string
	n      int64
	armed  atomic.Bool
	seen   atomic.Int64
	status int                      // answer this status instead, or
	mutate func(body []byte) []byte // rewrite the body
}

func (f *pageFault) RoundTrip(req *http.Request) (*http.Response, error) {
	if !f.armed.Load() || !strings.HasPrefix(req.URL.Path, f.path) || req.URL.Path == "/oauth/token" {
		return f.next.RoundTrip(req)
	}
	n := f.seen.Add(1)
	if n != f.n {
		return f.next.RoundTrip(req)
	}
	if f.status != 0 {
		return &http.Response{StatusCode: f.status, Status: http.StatusText(f.status), Request: req,
			Header: http.Header{"Content-Type": {"application/json"}},
			Body:   io.NopCloser(strings.NewReader(`{"error":"injected by the test"}`))}, nil
	}
	resp, err := f.next.RoundTrip(req)
	if err != nil || f.mutate == nil {
		return resp, err
	}
	b, err := io.ReadAll(resp.Body)
	resp.Body.Close()
	if err != nil {
		return nil, err
	}
	b = f.mutate(b)
	resp.Body = io.NopCloser(bytes.NewReader(b))
	resp.ContentLength = int64(len(b))
	resp.Header.Del("Content-Length")
	resp.Header.Del("ETag")
	return resp, nil
}

var reEmployees = regexp.MustCompile(`"employees":\d+`)

// companyRows snapshots crm_companies.
func companyRows(s *stack) map[int64]map[string]any { return s.tableRows("crm_companies") }

func TestSaga_AtomicRunRestoresDestinationOnFailureAtEachStep(t *testing.T) {
	tests := []struct {
		name     string
		fault    func(f *pageFault)
		blockSQL string // installed before the failing run (apply failure)
		wantType string
	}{
		{
			name:     "fetch fails for good (403)",
			fault:    func(f *pageFault) { f.status = http.StatusForbidden },
			wantType: failure.TypeSourceAuth,
		},
		{
			name: "validation passes the threshold",
			fault: func(f *pageFault) {
				f.mutate = func(b []byte) []byte {
					return bytes.ReplaceAll(b, []byte(`"industry":"`), []byte(`"industry":"not-an-industry-`))
				}
			},
			wantType: failure.TypeInvalidThreshold,
		},
		{
			name: "transformation passes the threshold",
			fault: func(f *pageFault) {
				// Valid JSON Schema integers that do not fit the destination's int.
				f.mutate = func(b []byte) []byte { return reEmployees.ReplaceAll(b, []byte(`"employees":1e30`)) }
			},
			wantType: failure.TypeInvalidThreshold,
		},
		{
			name:     "apply fails for good (permission denied)",
			blockSQL: `CREATE FUNCTION block_late_rows() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN IF NEW.id > 1000 THEN RAISE EXCEPTION 'writes to company % are blocked', NEW.id USING ERRCODE = '42501'; END IF; RETURN NEW; END $$; CREATE TRIGGER block_late_rows BEFORE INSERT OR UPDATE ON crm_companies FOR EACH ROW EXECUTE FUNCTION block_late_rows();`,
			wantType: failure.TypeSinkSQL,
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			fault := &pageFault{path: "/v1/companies", n: 3}
			if tt.fault != nil {
				tt.fault(fault)
			}
			s := newStack(t, stackOptions{
				sandbox:   sandbox.Options{Seed: 11, Contacts: 20000}, // 2,000 companies: 4 pages of 500
				transport: func(rt http.RoundTripper) http.RoundTripper { fault.next = rt; return fault },
			})
			// The state before the failing run: a first sync, then changes upstream.
			s.mustSync(datasync.Input{Integration: "crm-companies"})
			s.sandbox.Touch("companies", 300)
			s.sandbox.Add("companies", 30)
			before := companyRows(s)
			cpBefore, _, err := s.store.LoadCheckpoint(context.Background(), s.schema.DB, "crm-companies")
			if err != nil {
				t.Fatal(err)
			}
			if tt.blockSQL != "" {
				if _, err := s.schema.DB.Exec(tt.blockSQL); err != nil {
					t.Fatal(err)
				}
			} else {
				fault.armed.Store(true)
			}

			res, err := s.sync(datasync.Input{Integration: "crm-companies"})
			var appErr *temporal.ApplicationError
			if !errors.As(err, &appErr) || appErr.Type() != tt.wantType {
				t.Fatalf("want a %s failure, got %v", tt.wantType, err)
			}
			if res.Status != "" && res.Status != progress.StatusCompensated {
				t.Errorf("status %q, want %q", res.Status, progress.StatusCompensated)
			}
			if after := companyRows(s); !reflect.DeepEqual(before, after) {
				t.Errorf("crm_companies not restored: %d rows before, %d after", len(before), len(after))
			}
			runs, err := s.store.ListRuns(context.Background(), "crm-companies", 1)
			if err != nil || len(runs) != 1 || runs[0].Status != progress.StatusCompensated || runs[0].ErrorType != tt.wantType {
				t.Errorf("last run on record: %+v (err %v)", runs, err)
			}
			cpAfter, _, err := s.store.LoadCheckpoint(context.Background(), s.schema.DB, "crm-companies")
			if err != nil || cpAfter.Checkpoint != cpBefore.Checkpoint || cpAfter.Position != (cursor.Position{}) {
				t.Errorf("checkpoint after compensation %+v, want %+v from the start", cpAfter, cpBefore)
			}
			if n := s.count(`SELECT count(*) FROM tether_before_images`); n != 0 {
				t.Errorf("before-images left behind: %d", n)
			}

			// With the fault gone, the next run applies the changes.
			fault.armed.Store(false)
			if tt.blockSQL != "" {
				if _, err := s.schema.DB.Exec(`DROP TRIGGER block_late_rows ON crm_companies`); err != nil {
					t.Fatal(err)
				}
			}
			res2 := s.mustSync(datasync.Input{Integration: "crm-companies"})
			if res2.Counts.Updated != 300 || res2.Counts.Inserted != 30 {
				t.Errorf("run after repair: counts %+v, want 300 updated and 30 inserted", res2.Counts)
			}
		})
	}
}

func TestSaga_CancelledAtomicRunIsCompensated(t *testing.T) {
	s := newStack(t, stackOptions{sandbox: sandbox.Options{Seed: 12, Contacts: 20000, Faults: sandbox.Faults{Latency: 300 * time.Millisecond}}})
	run := s.start(datasync.Input{Integration: "crm-companies"})
	deadline := time.Now().Add(time.Minute)
	for s.count(`SELECT count(*) FROM tether_applied_batches`) < 2 {
		if time.Now().After(deadline) {
			t.Fatal("no batch applied within a minute")
		}
		time.Sleep(20 * time.Millisecond)
	}
	if err := s.client.CancelWorkflow(context.Background(), run.GetID(), ""); err != nil {
		t.Fatal(err)
	}
	_, err := s.wait(run)
	var canceled *temporal.CanceledError
	if !errors.As(err, &canceled) {
		t.Fatalf("want cancelled, got %v", err)
	}
	if n := s.count(`SELECT count(*) FROM crm_companies`); n != 0 {
		t.Errorf("crm_companies has %d rows after the cancelled atomic run, want 0 as before it", n)
	}
	runs, _ := s.store.ListRuns(context.Background(), "crm-companies", 1)
	if len(runs) != 1 || runs[0].Status != progress.StatusCompensated {
		t.Errorf("run on record: %+v", runs)
	}
}

func TestSaga_NonAtomicRunKeepsBatchesAndResumesAfterFailureAtEachStep(t *testing.T) {
	tests := []struct {
		name     string
		fault    func(f *pageFault)
		blockSQL string
		wantType string
		wantText string
	}{
		{name: "fetch (404)", fault: func(f *pageFault) { f.status = http.StatusNotFound },
			wantType: failure.TypeSourceNotFound, wantText: "FetchPage failed on page 4"},
		{name: "validation over the threshold", fault: func(f *pageFault) {
			f.mutate = func(b []byte) []byte { return bytes.ReplaceAll(b, []byte(`"status":"`), []byte(`"status":"unknown-`)) }
		}, wantType: failure.TypeInvalidThreshold, wantText: "over the integration's threshold"},
		{name: "transformation over the threshold", fault: func(f *pageFault) {
			// Valid JSON Schema integers that do not fit the mapping's int cast.
			f.mutate = func(b []byte) []byte { return reCompany.ReplaceAll(b, []byte(`"company_id":1e30`)) }
		}, wantType: failure.TypeInvalidThreshold, wantText: "over the integration's threshold"},
		{name: "apply (permission denied)",
			blockSQL: `CREATE FUNCTION block_late_rows() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN IF NEW.id > 3600 THEN RAISE EXCEPTION 'writes to contact % are blocked', NEW.id USING ERRCODE = '42501'; END IF; RETURN NEW; END $$; CREATE TRIGGER block_late_rows BEFORE INSERT OR UPDATE ON crm_contacts FOR EACH ROW EXECUTE FUNCTION block_late_rows();`,
			wantType: failure.TypeSinkSQL, wantText: "ApplyBatch failed on page"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			fault := &pageFault{path: "/v1/contacts", n: 4}
			if tt.fault != nil {
				tt.fault(fault)
				fault.armed.Store(true)
			}
			s := newStack(t, stackOptions{
				sandbox:   sandbox.Options{Seed: 13, Contacts: 6000},
				transport: func(rt http.RoundTripper) http.RoundTripper { fault.next = rt; return fault },
			})
			if tt.blockSQL != "" {
				// The table exists once a run has started: create it first.
				if _, err := s.sync(datasync.Input{Integration: "crm-contacts", MaxPages: 1}); err != nil {
					t.Fatal(err)
				}
				if _, err := s.schema.DB.Exec(tt.blockSQL); err != nil {
					t.Fatal(err)
				}
			}
			_, err := s.sync(datasync.Input{Integration: "crm-contacts"})
			var appErr *temporal.ApplicationError
			if !errors.As(err, &appErr) || appErr.Type() != tt.wantType {
				t.Fatalf("want %s, got %v", tt.wantType, err)
			}
			if !strings.Contains(err.Error(), tt.wantText) {
				t.Errorf("failure does not say %q: %v", tt.wantText, err)
			}
			// The committed batches are kept, and the checkpoint covers
			// exactly them.
			kept := s.count(`SELECT count(*) FROM crm_contacts`)
			if kept < 1000 || kept >= 6000 {
				t.Errorf("%d rows kept after the failure, want the committed batches only", kept)
			}
			cp, _, err := s.store.LoadCheckpoint(context.Background(), s.schema.DB, "crm-contacts")
			if err != nil {
				t.Fatal(err)
			}
			if n := s.count(`SELECT count(*) FROM crm_contacts WHERE (updated_at, id) > ($1::timestamptz, $2::bigint)`, cp.Checkpoint.Cursor, cp.Checkpoint.Key); n != 0 {
				t.Errorf("%d rows beyond the checkpoint %+v: the checkpoint lags the data", n, cp.Checkpoint)
			}
			// Fixed: the next run resumes from the checkpoint and completes.
			fault.armed.Store(false)
			if tt.blockSQL != "" {
				if _, err := s.schema.DB.Exec(`DROP TRIGGER block_late_rows ON crm_contacts`); err != nil {
					t.Fatal(err)
				}
			}
			res := s.mustSync(datasync.Input{Integration: "crm-contacts"})
			if res.Counts.Inserted != 6000-kept {
				t.Errorf("resumed run inserted %d, want the remaining %d (counts %+v)", res.Counts.Inserted, 6000-kept, res.Counts)
			}
			checkContacts(t, s)
		})
	}
}

var reCompany = regexp.MustCompile(`"company_id":\d+`)

func TestSaga_ResetFailedRunResumesFromTheCheckpointWithoutDuplicates(t *testing.T) {
	// Page 4 is refused (401) until the operator fixes the credentials.
	fault := &pageFault{path: "/v1/contacts", n: 4, status: http.StatusUnauthorized}
	fault.armed.Store(true)
	s := newStack(t, stackOptions{
		sandbox:   sandbox.Options{Seed: 14, Contacts: 6000},
		transport: func(rt http.RoundTripper) http.RoundTripper { fault.next = rt; return fault },
	})
	run := s.start(datasync.Input{Integration: "crm-contacts"})
	_, err := s.wait(run)
	if err == nil {
		t.Fatal("want the run to fail at page 4")
	}
	kept := s.count(`SELECT count(*) FROM crm_contacts`)

	// The operator fixes the credentials and resets the run in the Web UI
	// (Reset → first workflow task).
	fault.armed.Store(false)
	ctx := context.Background()
	newRun := resetToFirstTask(t, s, run.GetID(), run.GetRunID())
	var res datasync.Result
	if err := s.client.GetWorkflow(ctx, run.GetID(), newRun).Get(ctx, &res); err != nil {
		t.Fatalf("reset run: %v", err)
	}
	// The run's counts are the whole run's, both executions: the reset one
	// went on from the counts of the last batch the first one committed,
	// so no record counts twice; tether runs agrees.
	if res.Counts.Inserted != 6000 || res.Counts.Checked != 6000 || res.Counts.Valid != 6000 {
		t.Errorf("reset run counts %+v: want 6000 records checked, valid and inserted over both executions (%d by the first)", res.Counts, kept)
	}
	runs, err := s.store.ListRuns(ctx, "crm-contacts", 0)
	if err != nil || len(runs) != 1 || runs[0].Counts != res.Counts {
		t.Errorf("tether runs: %+v (%v), want one run with the result's counts %+v", runs, err, res.Counts)
	}
	checkContacts(t, s)
}

// resetToFirstTask resets a closed run to its first workflow task, as the
// Web UI's "Reset → first workflow task" does, and returns the new run id.
func resetToFirstTask(t *testing.T, s *stack, workflowID, runID string) string {
	return resetToTask(t, s, workflowID, runID, 1, "")
}

// resetToTask resets a closed run to the end of its nth completed workflow
// task, as identity (the caller's when empty), and returns the new run id.
func resetToTask(t *testing.T, s *stack, workflowID, runID string, nth int, identity string) string {
	t.Helper()
	reset, err := s.client.ResetWorkflowExecution(context.Background(), &workflowservice.ResetWorkflowExecutionRequest{
		Namespace:                 "default",
		WorkflowExecution:         &commonpb.WorkflowExecution{WorkflowId: workflowID, RunId: runID},
		Reason:                    "source fixed",
		WorkflowTaskFinishEventId: nthTaskCompleted(t, s, workflowID, runID, nth),
		RequestId:                 runID + "-reset",
		Identity:                  identity,
	})
	if err != nil {
		t.Fatalf("reset: %v", err)
	}
	return reset.GetRunId()
}

// nthTaskCompleted is the event id of the run's nth completed workflow task.
func nthTaskCompleted(t *testing.T, s *stack, workflowID, runID string, nth int) int64 {
	t.Helper()
	seen := 0
	iter := s.client.GetWorkflowHistory(context.Background(), workflowID, runID, false, 0)
	for iter.HasNext() {
		ev, err := iter.Next()
		if err != nil {
			t.Fatal(err)
		}
		if ev.GetEventType() == enums.EVENT_TYPE_WORKFLOW_TASK_COMPLETED {
			if seen++; seen == nth {
				return ev.GetEventId()
			}
		}
	}
	t.Fatalf("run %s has %d completed workflow tasks, not %d", runID, seen, nth)
	return 0
}

// A reset execution reuses the run's id and numbers its pages from 1 again,
// on several worker processes whose caches hold pages of the first
// execution: every invalid record is still quarantined exactly once, and
// every valid one applied exactly once.
func TestSaga_ResetRunOnSeveralWorkersQuarantinesEachInvalidRecordOnce(t *testing.T) {
	faults := sandbox.Faults{InvalidRate: 0.03, Latency: 50 * time.Millisecond}
	s := newStack(t, stackOptions{sandbox: sandbox.Options{Seed: 16, Contacts: 8000, Faults: faults}, noWorker: true})
	bin := workerBinary(t)
	logDir := t.TempDir()
	for i := 1; i <= 2; i++ {
		w, err := devstack.StartProcess(fmt.Sprintf("worker-%d", i), filepath.Join(logDir, fmt.Sprintf("worker-%d.log", i)),
			s.workerEnv(), bin)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { _ = w.Stop(10 * time.Second) })
	}
	run := s.start(datasync.Input{Integration: "crm-contacts"})
	// Once a few batches are in, the source starts refusing the credentials.
	deadline := time.Now().Add(time.Minute)
	for s.count(`SELECT count(*) FROM tether_applied_batches`) < 3 {
		if time.Now().After(deadline) {
			t.Fatal("no batches applied within a minute")
		}
		time.Sleep(10 * time.Millisecond)
	}
	broken := faults
	broken.FailNext, broken.FailStatus = 1_000_000, http.StatusUnauthorized
	s.sandbox.SetFaults(broken)
	if _, err := s.wait(run); !failure.IsType(err, failure.TypeSourceAuth) {
		t.Fatalf("want the run to fail with %s, got %v", failure.TypeSourceAuth, err)
	}
	kept := s.count(`SELECT count(*) FROM crm_contacts`)
	if kept == 0 || kept >= 8000 {
		t.Fatalf("%d rows after the failed run; the test needs a run that failed half-way", kept)
	}

	s.sandbox.SetFaults(faults)
	newRun := resetToFirstTask(t, s, run.GetID(), run.GetRunID())
	var res datasync.Result
	if err := s.client.GetWorkflow(context.Background(), run.GetID(), newRun).Get(context.Background(), &res); err != nil {
		t.Fatalf("reset run: %v", err)
	}
	checkContacts(t, s)
	checkQuarantinedOnce(t, s, s.sandbox.InvalidContactIDs())
	// Counted once too, over both executions: the quarantined count is the
	// quarantine's entries.
	invalid := len(s.sandbox.InvalidContactIDs())
	if res.Counts.Invalid != invalid || res.Counts.Valid != 8000-invalid || res.Counts.Checked != 8000 {
		t.Errorf("run counts %+v, want 8000 checked: %d invalid (the quarantine's entries), the rest valid", res.Counts, invalid)
	}
}
