package datasync

import (
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/tetherflow/tether/activities/lib/failure"
	"github.com/tetherflow/tether/activities/lib/progress"
	"github.com/tetherflow/tether/activities/syncstep"
)

// TestSyncWorkflow_ShortRead: a read that ends with fewer records than the
// source announced fails the run by default, naming both numbers, or
// completes it with a warning under short_read: warn; a read that ends
// with the announced count, or one that announces none, completes.
func TestSyncWorkflow_ShortRead(t *testing.T) {
	tests := []struct {
		name        string
		total       int
		policy      string
		wantErr     string
		wantWarning string
	}{
		{name: "short, fail by default", total: 50, wantErr: "the source announced 50 records for the read but it ended after 30: 20 were not read"},
		{name: "short, warn", total: 50, policy: "warn", wantWarning: "page 3 (source page 3): the source announced 50 records for the read but it ended after 30: 20 were not read"},
		{name: "whole", total: 30},
		{name: "more than announced (added meanwhile)", total: 25},
		{name: "none announced", total: 0},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			f := &fakeSteps{pages: 3, perPage: 10, total: tt.total, plan: syncstep.Plan{PagesInFlight: 2, InvalidThreshold: 0.05, ShortRead: tt.policy}}
			env := newEnv(t, f)
			env.ExecuteWorkflow(SyncWorkflow, Input{Integration: "crm-contacts"})
			err := env.GetWorkflowError()
			if tt.wantErr != "" {
				require.Error(t, err)
				require.Equal(t, failure.TypeSourceShortRead, appErrorType(err))
				require.Contains(t, err.Error(), "FetchPage failed on page 3 (source page 3): "+tt.wantErr)
				// Pages before the short one may be applied (page 2 may be in
				// flight when page 3 ends short); the short page never is.
				require.Subset(t, []int{1, 2}, f.applied, "only pages before the short one are applied")
				return
			}
			require.NoError(t, err)
			var res Result
			require.NoError(t, env.GetWorkflowResult(&res))
			require.Equal(t, progress.StatusCompleted, res.Status)
			require.Equal(t, []int{1, 2, 3}, f.applied)
			if tt.wantWarning == "" {
				require.Empty(t, res.Warnings)
				return
			}
			require.Equal(t, []string{tt.wantWarning}, res.Warnings)
			require.Len(t, f.finished, 1)
			require.Equal(t, "warning: "+tt.wantWarning, f.finished[0].Error)
		})
	}
}

// TestSyncWorkflow_CountsGoOnFromTheCommittedOnes: a reset execution's
// counts start from the run's committed counts, and every batch stores
// the counts as of itself, without the pages read ahead of it.
func TestSyncWorkflow_CountsGoOnFromTheCommittedOnes(t *testing.T) {
	base := progress.Counts{Pages: 4, Fetched: 40, Checked: 40, Valid: 40, Inserted: 40}
	f := &fakeSteps{pages: 3, perPage: 10, baseCounts: base, plan: syncstep.Plan{PagesInFlight: 3, InvalidThreshold: 0.05}}
	env := newEnv(t, f)
	env.ExecuteWorkflow(SyncWorkflow, Input{Integration: "crm-contacts"})
	require.NoError(t, env.GetWorkflowError())
	var res Result
	require.NoError(t, env.GetWorkflowResult(&res))
	require.Equal(t, 70, res.Counts.Fetched)
	require.Equal(t, 70, res.Counts.Inserted)
	require.Equal(t, 7, res.Counts.Pages)
	// Batch n's counts cover pages 1..n of this execution on top of the
	// base, whatever was read ahead when it applied.
	require.Len(t, f.applyCounts, 3)
	for i, c := range f.applyCounts {
		n := i + 1
		require.Equal(t, 40+10*n, c.Fetched, "batch %d fetched", n)
		require.Equal(t, 40+10*n, c.Checked, "batch %d checked", n)
		require.Equal(t, 4+n, c.Pages, "batch %d pages", n)
	}
}
