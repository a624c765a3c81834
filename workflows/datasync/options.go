package datasync

import "github.com/tetherflow/tether/workflows/steps"

// The sync's activity options are the steps' (steps.ActivityOptions says
// what each is for): explicit timeouts and bounded retries, one set for
// every workflow that runs the steps.
var (
	stepOptions    = steps.DefaultActivityOptions()
	shortStep      = stepOptions.Bookkeeping
	fetchStep      = stepOptions.Fetch
	applyStep      = stepOptions.Apply
	compensateStep = stepOptions.Compensate
	localStep      = stepOptions.Local
)
