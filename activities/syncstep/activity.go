package syncstep

import "go.temporal.io/sdk/workflow"

// None is the output of an activity that returns only an error.
type None struct{}

// Activity is one of tether's activities as workflow code calls it: its
// registered name (in histories and the Web UI, a wire contract) with its
// input and output types. Workflows start activities through these values,
// never by a bare name, so a wrong input or output type does not compile,
// and All lists every name so a test checks the worker registers each one
// (workers/app).
type Activity[I, O any] struct{ name string }

// NewActivity names an activity registered as name.
func NewActivity[I, O any](name string) Activity[I, O] { return Activity[I, O]{name: name} }

// Name is the activity's registered name.
func (a Activity[I, O]) Name() string { return a.name }

// Start schedules the activity with ctx's activity options.
func (a Activity[I, O]) Start(ctx workflow.Context, in I) Future[O] {
	return Future[O]{workflow.ExecuteActivity(ctx, a.name, in)}
}

// Run runs the activity with ctx's activity options and waits for its
// result.
func (a Activity[I, O]) Run(ctx workflow.Context, in I) (O, error) {
	return a.Start(ctx, in).Get(ctx)
}

// RunLocal runs the activity as a local activity (ctx's local activity
// options: no task-queue round trip, on the worker running the workflow)
// and waits for its result.
func (a Activity[I, O]) RunLocal(ctx workflow.Context, in I) (O, error) {
	return Future[O]{workflow.ExecuteLocalActivity(ctx, a.name, in)}.Get(ctx)
}

// Future is an activity's pending result.
type Future[O any] struct {
	// Future is the SDK's, for selectors.
	workflow.Future
}

// Get waits for the result.
func (f Future[O]) Get(ctx workflow.Context) (O, error) {
	var out O
	if _, none := any(out).(None); none {
		return out, f.Future.Get(ctx, nil)
	}
	err := f.Future.Get(ctx, &out)
	return out, err
}

// The activities of the sync workflow, and of replays, refreshes and
// repairs.
var (
	StartRun             = NewActivity[StartRunInput, StartRunOutput](StartRunName)
	FetchPage            = NewActivity[FetchPageInput, FetchPageOutput](FetchPageName)
	FetchQuarantinedPage = NewActivity[FetchQuarantinedInput, FetchPageOutput](FetchQuarantinedName)
	StageRecords         = NewActivity[StageRecordsInput, FetchPageOutput](StageRecordsName)
	ValidateBatch        = NewActivity[BatchInput, ValidateOutput](ValidateBatchName)
	TransformBatch       = NewActivity[BatchInput, TransformOutput](TransformBatchName)
	ApplyBatch           = NewActivity[ApplyInput, ApplyOutput](ApplyBatchName)
	SweepRefresh         = NewActivity[SweepRefreshInput, SweepRefreshOutput](SweepRefreshName)
	BeginCompensation    = NewActivity[BeginCompensationInput, BeginCompensationOutput](BeginCompensationName)
	CompensateBatch      = NewActivity[CompensateInput, CompensateOutput](CompensateBatchName)
	FinishRun            = NewActivity[FinishRunInput, None](FinishRunName)
)

// The activities of reconciliation.
var (
	ReconcileBegin    = NewActivity[ReconcileBeginInput, ReconcilePlan](ReconcileBeginName)
	ReconcileScan     = NewActivity[ReconcileScanInput, ReconcileScanOutput](ReconcileScanName)
	ReconcileCompare  = NewActivity[ReconcileCompareInput, ReconcileCompareOutput](ReconcileCompareName)
	ReconcileClassify = NewActivity[ReconcileClassifyInput, ReconcileFound](ReconcileClassifyName)
	ReconcileExtras   = NewActivity[ReconcileExtrasInput, int](ReconcileExtrasName)
	ReconcileFinish   = NewActivity[ReconcileFinishInput, None](ReconcileFinishName)
	FetchRepairPage   = NewActivity[FetchRepairInput, FetchPageOutput](FetchRepairName)
)

// The activities of change events and change capture.
var (
	ApplyEvents    = NewActivity[ApplyEventsInput, ApplyEventsOutput](ApplyEventsName)
	CaptureChanges = NewActivity[CaptureInput, CaptureOutput](CaptureChangesName)
	RemoveCapture  = NewActivity[CaptureInput, None](RemoveCaptureName)
)

// All names every activity tether's workflows call.
func All() []string {
	return []string{
		StartRun.Name(), FetchPage.Name(), FetchQuarantinedPage.Name(), StageRecords.Name(), ValidateBatch.Name(), TransformBatch.Name(),
		ApplyBatch.Name(), SweepRefresh.Name(), BeginCompensation.Name(), CompensateBatch.Name(), FinishRun.Name(),
		ReconcileBegin.Name(), ReconcileScan.Name(), ReconcileCompare.Name(), ReconcileClassify.Name(),
		ReconcileExtras.Name(), ReconcileFinish.Name(), FetchRepairPage.Name(),
		ApplyEvents.Name(), CaptureChanges.Name(), RemoveCapture.Name(),
		EraseRelated.Name(), EraseDestinations.Name(), EraseState.Name(),
		TwoWaySync.Name(), ResolveConflict.Name(),
	}
}
