package datasync

import (
	"fmt"

	"go.temporal.io/sdk/workflow"

	"github.com/tetherflow/tether/activities/syncstep"
	"github.com/tetherflow/tether/workflows/steps"
)

// undo compensates a failed or cancelled atomic run. It reports whether
// anything was undone, and the batches left to restore by hand.
func (r *run) undo(ctx workflow.Context) (undone bool, left []string) {
	if workflow.GetVersion(ctx, versionBeginCompensation, workflow.DefaultVersion, 1) == workflow.DefaultVersion {
		if r.st.ApplyStarted == 0 {
			return false, nil
		}
		return true, r.compensate(ctx, r.st.ApplyStarted)
	}
	// Fence the run and put its checkpoint back before restoring a row.
	r.progressed(ctx, syncstep.BeginCompensationName)
	begin, err := syncstep.BeginCompensation.Run(steps.WithSummary(ctx, shortStep, syncstep.BeginCompensationName+" · fence the run, put its checkpoint back"),
		syncstep.BeginCompensationInput{Integration: r.in.Integration, Kind: r.kind(), RunID: r.st.RunID,
			Definition: r.st.Plan.Definition})
	if err != nil {
		// Undo what this execution applied anyway; FinishRun puts the
		// checkpoint back once every batch is restored.
		r.log.Error("compensation could not fence the run; undoing this execution's batches", "error", err)
	}
	// Batches an execution before a reset applied count too.
	last := max(r.st.ApplyStarted, begin.LastBatch)
	if last == 0 {
		return false, nil
	}
	return true, r.compensate(ctx, last)
}

// compensation is one (batch, destination) to undo.
type compensation struct {
	seq, step int
}

func (c compensation) String(names []string) string {
	if names[c.step] == "" {
		return fmt.Sprint(c.seq)
	}
	return fmt.Sprintf("%d/%s", c.seq, names[c.step])
}

// compensate undoes applied batches from last down to 1, each in every
// destination from the last step to the first, and returns what is left
// to restore by hand ("seq" or "seq/destination"). It stops at the first
// (batch, destination) it cannot restore: restoring earlier batches over it
// would make their images wrong.
func (r *run) compensate(ctx workflow.Context, last int) []string {
	names := r.steps()
	var todo []compensation
	for seq := last; seq >= 1; seq-- {
		top := len(names) - 1
		if seq == r.st.ApplyStarted && last == r.st.ApplyStarted {
			top = min(top, r.st.ApplyStep) // later steps never started
		}
		for step := top; step >= 0; step-- {
			todo = append(todo, compensation{seq: seq, step: step})
		}
	}
	for i, c := range todo {
		r.progressed(ctx, fmt.Sprintf("%s %s", syncstep.CompensateBatchName, c.String(names)))
		summary := fmt.Sprintf("%s %d · restore", syncstep.CompensateBatchName, c.seq)
		if names[c.step] != "" {
			summary += " in " + names[c.step]
		}
		_, err := syncstep.CompensateBatch.Run(steps.WithSummary(ctx, compensateStep, summary), syncstep.CompensateInput{
			Integration: r.in.Integration, RunID: r.st.RunID, Seq: c.seq, Step: c.step,
			Definition: r.st.Plan.Definition,
		})
		if err != nil {
			r.log.Error("compensation failed", "batch", c.String(names), "error", err)
			left := make([]string, 0, len(todo)-i)
			for _, l := range todo[i:] {
				left = append(left, l.String(names))
			}
			r.compensationError = err
			return left
		}
	}
	return nil
}
