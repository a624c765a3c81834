package store

import (
	"encoding/json"
	"reflect"
	"testing"

	"github.com/tetherflow/tether/activities/lib/cursor"
	"github.com/tetherflow/tether/activities/lib/progress"
)

func TestStore_QuarantinedKeys(t *testing.T) {
	t.Parallel()
	s := newStore(t)
	ctx := t.Context()
	entry := func(integration, run, key string, index int) QuarantineEntry {
		return QuarantineEntry{Integration: integration, RunID: run, Page: 1, Index: index, Key: key, Step: StepValidate,
			Payload: json.RawMessage(`{"id":1}`), Errors: []ErrorDetail{{Message: "bad"}}}
	}
	if _, err := s.Quarantine(ctx, nil, []QuarantineEntry{
		entry("crm", "refresh-1", "42", 0), entry("crm", "refresh-1", "abc", 1), entry("crm", "refresh-1", "", 2),
		entry("crm", "sync-0", "7", 3), entry("other", "refresh-1", "99", 4), entry("crm", "sync-0", "8", 5),
	}); err != nil {
		t.Fatal(err)
	}
	// Key 8, quarantined by an earlier run, is met again by the refresh:
	// the pending entry moves to it.
	if _, err := s.Quarantine(ctx, nil, []QuarantineEntry{entry("crm", "refresh-1", "8", 5)}); err != nil {
		t.Fatal(err)
	}
	got, err := s.QuarantinedKeys(ctx, "crm", "refresh-1")
	if err != nil {
		t.Fatalf("QuarantinedKeys() = %v", err)
	}
	if want := []string{"42", "8", "abc"}; !reflect.DeepEqual(got, want) {
		t.Errorf("QuarantinedKeys() = %q, want %q", got, want)
	}
	none, err := s.QuarantinedKeys(ctx, "crm", "no-such-run")
	if err != nil || none == nil || len(none) != 0 {
		t.Errorf("QuarantinedKeys() of a run that quarantined nothing = %#v, %v; want an empty, non-nil list", none, err)
	}
}

func TestStore_EndedRefreshRuns(t *testing.T) {
	t.Parallel()
	s := newStore(t)
	ctx := t.Context()
	runs := []struct {
		id, integration, kind, status string
	}{
		{"r-failed", "crm", KindRefresh, progress.StatusFailed},
		{"r-compensated", "crm", KindRefresh, progress.StatusCompensated},
		{"r-running", "crm", KindRefresh, progress.StatusRunning},
		{"r-now", "crm", KindRefresh, progress.StatusCompleted},
		{"s-failed", "crm", KindSync, progress.StatusFailed},
		{"o-failed", "other", KindRefresh, progress.StatusFailed},
	}
	for _, r := range runs {
		if err := s.BeginRun(ctx, Run{RunID: r.id, Integration: r.integration, WorkflowID: "wf-" + r.id, Kind: r.kind}); err != nil {
			t.Fatalf("BeginRun(%s): %v", r.id, err)
		}
		if r.status != progress.StatusRunning {
			if err := s.FinishRun(ctx, r.id, r.status, progress.Counts{}, cursor.Checkpoint{}, "", ""); err != nil {
				t.Fatalf("FinishRun(%s): %v", r.id, err)
			}
		}
	}
	got, err := s.EndedRefreshRuns(ctx, "crm", "r-now")
	if err != nil {
		t.Fatalf("EndedRefreshRuns() = %v", err)
	}
	if want := []string{"r-compensated", "r-failed"}; !reflect.DeepEqual(got, want) {
		t.Errorf("EndedRefreshRuns() = %q, want %q", got, want)
	}
}
