// Package schedules keeps the Temporal Schedules of the integrations'
// declarations (integration.Definition.Schedules) on the server, as
// declared: Apply creates the missing ones, updates the changed ones,
// deletes those whose declaration is gone, and leaves the others alone.
//
//	[]integration.Definition ──Build──► []Desired ──Apply──► Temporal Schedules
//	  (validated)                    (id <integration>/<kind>,   (create / update /
//	                                  spec, policies, action,     unchanged / delete)
//	                                  Stamp with the hash)
//
// Every schedule it creates carries a Stamp in its memo (owner, integration,
// kind) and in its action's memo (the same, plus the hash of the
// declaration and action it was made from, and whether the declaration
// said paused). Apply touches a schedule only when its owner is Apply's
// (Options.Owner, by default the task queue): schedules created by anyone
// else are never updated or deleted. A schedule whose stored hash is the
// declaration's is unchanged: Apply does not call Update at all, so an
// unchanged declaration never disturbs a schedule, and a pause made by a
// person (or by a failed run) stays until the declaration's paused
// setting changes.
//
// Each kind starts one workflow, on the workers' task queue, with the
// search attributes IntegrationName and SyncStatus=Running:
//
//	sync       SyncWorkflow  {"integration":…,"trigger":"schedule"}                     overlap SKIP
//	refresh    SyncWorkflow  {"integration":…,"refresh":true,"trigger":"schedule"}      overlap SKIP
//	reconcile  ReconcileWorkflow {"integration":…,"dryRun":…,"trigger":"schedule","wait":true}  overlap BUFFER_ONE
//
// A sync or refresh still running when the next time comes makes that
// time skipped (the next run reads what it would have); a reconciliation
// due while one runs waits for it, once.
package schedules
