package reconcile

// WorkflowType is the registered name of the reconciliation workflow, as
// typed in `temporal workflow start --type ReconcileWorkflow`.
const WorkflowType = "ReconcileWorkflow"

// QueryProgress is the query that returns the reconciliation's Report so far.
const QueryProgress = "progress"

// Input starts a reconciliation. Only Integration is required:
// {"integration":"crm-contacts"}.
type Input struct {
	// Integration is the registered integration's name.
	Integration string `json:"integration"`
	// DryRun reports the differences without repairing anything.
	DryRun bool `json:"dryRun,omitempty"`
	// Extras overrides the integration's policy for destination rows the
	// source no longer has: "report", "delete" or "mark".
	Extras string `json:"extras,omitempty"`
	// Trigger says who started the run ("cli", "schedule"...).
	Trigger string `json:"trigger,omitempty"`
	// Wait queues the run behind another run writing the integration
	// instead of failing at once (schedules set it).
	Wait bool `json:"wait,omitempty"`
}
