// Package steps runs tether's sync steps from a Temporal workflow of your
// own: an integration as workflow code, for flows a declarative
// integration cannot say (call an API per record, wait for a person's
// approval, branch).
//
// A Run is one run of an integration (a Go definition or an integration
// file the worker runs). Start registers it and pins the integration's
// current definition; then, in your workflow:
//
//	run, err := steps.Start(ctx, "onboarding", steps.Options{Records: true})
//	page, err := run.Stage(ctx, contact)       // or run.Fetch(ctx): the next page of the source
//	_, err = run.Validate(ctx, page)           // JSON Schema and key; invalid records quarantined
//	_, err = run.Transform(ctx, page)          // the mapping; refusals quarantined
//	_, err = run.ApplyStep(ctx, page, "billing") // one destination (or run.Apply: every one)
//	...
//	res, err := run.Finish(ctx, err)            // records how it ended
//
// The steps are the sync workflow's own activities, with the same
// guarantees: records travel by reference (the claim-check: a page's
// records are staged in PostgreSQL, only a reference is in history), every
// apply is idempotent and commits its batch with the run's state, invalid
// records are quarantined with their reasons, and an atomic integration's
// applied batches can be undone (Compensate). Saga collects compensations
// of your own beside them.
//
// A run with Options.Records applies records the workflow hands over
// (Stage): it reads no source, takes no writer lease and moves no
// checkpoint, so any number run at once (one per customer, say). A run
// without it reads the integration's source from its checkpoint (Fetch),
// under the integration's writer lease, and saves the checkpoint with
// each applied page, as the sync workflow does.
//
// Every step is an activity the worker registers (workers/app), visible
// in the Web UI with the page or destination it worked on. A Run lives in
// one workflow execution: finish it before continuing as new.
package steps
