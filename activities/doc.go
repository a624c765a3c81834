// Package activities is the map of tether's activities: what each
// workflow's steps do, one package per step or domain.
//
// The sync (workflows/datasync, and your own workflows through
// workflows/steps) runs, for every page:
//
//	run        StartRun, FinishRun: register the run, take the writer lease, pin the definition
//	fetch      FetchPage (or FetchQuarantinedPage, StageRecords): read and stage a page
//	validate   ValidateBatch: JSON Schema and key; invalid records quarantined
//	transform  TransformBatch: the mapping; refusals quarantined
//	apply      ApplyBatch, SweepRefresh: write a batch with its checkpoint, exactly once
//	compensate BeginCompensation, CompensateBatch: undo an atomic run's batches
//
// The other workflows' activities, by domain: reconcile (drift), events
// (webhook events) and capture (PostgreSQL change capture).
//
// What they share: syncstep (the wire contract: names, typed handles,
// inputs and outputs), catalog (the compiled integrations, by pinned
// version), pages (the claim-check), store (tether's state tables) and
// integration (what an integration is). Connectors (connector: HTTP and
// PostgreSQL sources and sinks) sit apart from the steps behind one
// contract; lib holds the leaf libraries.
package activities
