// Package datasync is the sync workflow: one run reads an integration's
// source page by page and applies it to the destination through durable,
// visible steps.
//
//	StartRun → (FetchPage → ValidateBatch → TransformBatch → ApplyBatch)* → FinishRun
//	                                          on failure, atomic: CompensateBatch (reverse order)
//
// In: {"integration": "<name>"} (plus optional full, maxPages). Out: a
// Result with the run's counts and (cursor, key) range. While it runs, the
// "progress" query reports pages, counts, the current step, the cursor and
// the last progress time; the IntegrationName and SyncStatus search
// attributes let the Web UI list every run of an integration.
//
// Fetches run in order (the next page's position comes from the previous
// page); validation, transformation and apply of up to PagesInFlight pages
// overlap the following fetches, and applies commit strictly in page order,
// each with its checkpoint. Records never enter history: steps pass page
// references. The run continues as new when Temporal suggests it, carrying
// its position, checkpoint and counts.
//
// An atomic integration keeps before-images of every batch; when the run
// fails for good or is cancelled, CompensateBatch restores them in reverse
// order in a disconnected context. A non-atomic run keeps what it committed,
// and the next run resumes from the checkpoint.
//
// A refresh ({"refresh": true}) reads the whole source, then runs
// SweepRefresh as one more batch: it deletes the destination rows the run
// did not see, and an atomic run's compensation undoes it with the rest.
package datasync
