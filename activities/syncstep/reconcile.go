package syncstep

// Reconciliation activity names: a wire contract, never renamed.
const (
	ReconcileBeginName    = "ReconcileBegin"
	ReconcileScanName     = "ReconcileScan"
	ReconcileCompareName  = "ReconcileCompare"
	ReconcileClassifyName = "ReconcileClassify"
	ReconcileExtrasName   = "ReconcileExtras"
	ReconcileFinishName   = "ReconcileFinish"
	// FetchRepairName reads a page of the records a reconciliation found
	// missing, changed or invalid (its repair run).
	FetchRepairName = "FetchRepairPage"
)

// Policies for extra destination rows: rows the source no longer has.
const (
	// ExtrasReport only reports them.
	ExtrasReport = "report"
	// ExtrasDelete deletes them.
	ExtrasDelete = "delete"
	// ExtrasMark sets the integration's mark column on them (soft delete).
	ExtrasMark = "mark"
)

// ReconcileBeginInput registers a reconciliation.
type ReconcileBeginInput struct {
	Integration string `json:"integration"`
	ReconcileID string `json:"reconcileId"`
	WorkflowID  string `json:"workflowId"`
	DryRun      bool   `json:"dryRun,omitempty"`
	// Extras overrides the integration's extras policy.
	Extras  string `json:"extras,omitempty"`
	Trigger string `json:"trigger,omitempty"`
}

// ReconcilePlan is what the reconciliation runs with, pinned in history.
type ReconcilePlan struct {
	// Definition is the fingerprint of the integration's version.
	Definition string `json:"definition"`
	Chunks     int    `json:"chunks"`
	Extras     string `json:"extras"`
	MarkColumn string `json:"markColumn,omitempty"`
	BatchSize  int    `json:"batchSize"`
	// Table names the destination table, for reports.
	Table string `json:"table"`
}

// ReconcileScanInput reads the whole source once: to digest every chunk
// (Drill empty), or to stage the records of the chunks in Drill.
type ReconcileScanInput struct {
	Integration string `json:"integration"`
	ReconcileID string `json:"reconcileId"`
	Definition  string `json:"definition,omitempty"`
	Chunks      int    `json:"chunks"`
	BatchSize   int    `json:"batchSize"`
	Drill       []int  `json:"drill,omitempty"`
}

// ReconcileScanOutput counts what a scan read.
type ReconcileScanOutput struct {
	Pages   int `json:"pages"`
	Read    int `json:"read"`
	Valid   int `json:"valid"`
	Invalid int `json:"invalid"`
	// Staged records were kept for the comparison by key.
	Staged int `json:"staged"`
}

// ReconcileCompareInput compares the source's chunk digests with the
// destination's.
type ReconcileCompareInput struct {
	Integration string `json:"integration"`
	ReconcileID string `json:"reconcileId"`
	Definition  string `json:"definition,omitempty"`
	Chunks      int    `json:"chunks"`
	MarkColumn  string `json:"markColumn,omitempty"`
}

// ReconcileCompareOutput lists the chunks whose digests differ.
type ReconcileCompareOutput struct {
	DestinationRows int   `json:"destinationRows"`
	Differing       []int `json:"differing,omitempty"`
}

// ReconcileClassifyInput compares the staged source records of the
// differing chunks with the destination's rows, key by key.
type ReconcileClassifyInput struct {
	ReconcileCompareInput
	Drill []int `json:"drill"`
}

// ReconcileFound is what a reconciliation found.
type ReconcileFound struct {
	Missing int `json:"missing"`
	Changed int `json:"changed"`
	Extra   int `json:"extra"`
	Invalid int `json:"invalid"`
	// RowsCompared counts the destination rows compared key by key.
	RowsCompared int `json:"rowsCompared"`
	// Samples lists up to 10 keys per class ("missing", "changed", "extra",
	// "invalid").
	Samples map[string][]string `json:"samples,omitempty"`
}

// ReconcileExtrasInput deletes or marks the extra rows found.
type ReconcileExtrasInput struct {
	Integration string `json:"integration"`
	ReconcileID string `json:"reconcileId"`
	Definition  string `json:"definition,omitempty"`
	Policy      string `json:"policy"`
	MarkColumn  string `json:"markColumn,omitempty"`
}

// ReconcileFinishInput records how the reconciliation ended.
type ReconcileFinishInput struct {
	Integration string          `json:"integration"`
	ReconcileID string          `json:"reconcileId"`
	Status      string          `json:"status"`
	Report      ReconcileReport `json:"report"`
}

// ReconcileReport is what a reconciliation found and did: its workflow
// result, its progress query's answer while it runs, and its row in
// tether_reconciliations.
type ReconcileReport struct {
	Integration string `json:"integration"`
	ReconcileID string `json:"reconcileId"`
	// Status is running, completed, failed or cancelled.
	Status string `json:"status"`
	// Phase is the step running now (begin, digest source, compare
	// digests, read differing chunks, compare keys, repair, extras,
	// finish).
	Phase  string `json:"phase"`
	DryRun bool   `json:"dryRun,omitempty"`
	// Extras is the policy applied to extra rows: report, delete or mark.
	Extras          string `json:"extras"`
	Table           string `json:"table,omitempty"`
	Chunks          int    `json:"chunks"`
	ChunksDiffering int    `json:"chunksDiffering"`
	// SourceRead counts source records read (every scan), SourceRecords
	// the records the source has.
	SourceRead      int `json:"sourceRead"`
	SourceRecords   int `json:"sourceRecords"`
	DestinationRows int `json:"destinationRows"`
	ReconcileFound
	// Repaired counts rows the repair run wrote (inserted or updated);
	// RepairRun is its workflow id.
	Repaired  int    `json:"repaired"`
	RepairRun string `json:"repairRun,omitempty"`
	// ExtrasHandled counts extra rows deleted or marked.
	ExtrasHandled int    `json:"extrasHandled"`
	Error         string `json:"error,omitempty"`
}

// FetchRepairInput asks for the next page of a reconciliation's records
// to repair, after AfterOrd.
type FetchRepairInput struct {
	Integration string  `json:"integration"`
	Ref         PageRef `json:"ref"`
	Reconcile   string  `json:"reconcile"`
	AfterOrd    int64   `json:"afterOrd"`
	Limit       int     `json:"limit"`
	Definition  string  `json:"definition,omitempty"`
}
