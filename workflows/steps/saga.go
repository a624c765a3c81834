package steps

import (
	"errors"
	"fmt"

	"go.temporal.io/sdk/workflow"
)

// Saga collects compensations as a workflow's steps succeed, and runs
// them, last first, when the workflow fails for good or is cancelled:
//
//	var saga steps.Saga
//	defer func() {
//		if err != nil {
//			err = errors.Join(err, saga.Compensate(ctx))
//		}
//	}()
//	... run.ApplyStep(ctx, page, "billing") ...
//	saga.Add("undo billing", run.Compensate)
//
// A Run's Compensate is one compensation (it undoes the run's batches in
// the right order itself); add your own activities' undo beside it.
type Saga struct {
	steps []sagaStep
}

type sagaStep struct {
	name string
	undo func(workflow.Context) error
}

// Add records undo as the compensation of a step that succeeded.
func (s *Saga) Add(name string, undo func(ctx workflow.Context) error) {
	s.steps = append(s.steps, sagaStep{name: name, undo: undo})
}

// Compensate runs the compensations added, last first, in a disconnected
// context (so they also run while the workflow is being cancelled). A
// compensation that fails does not stop the others: each undoes its own
// step. It returns every failure, naming its step, and forgets the
// compensations it ran.
func (s *Saga) Compensate(ctx workflow.Context) error {
	dctx, _ := workflow.NewDisconnectedContext(ctx)
	var errs []error
	for i := len(s.steps) - 1; i >= 0; i-- {
		st := s.steps[i]
		if err := st.undo(dctx); err != nil {
			errs = append(errs, fmt.Errorf("compensation %q: %w", st.name, err))
		}
	}
	s.steps = nil
	return errors.Join(errs...)
}
