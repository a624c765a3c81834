package integration

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"reflect"
	"slices"
	"strings"
	"testing"
	"testing/fstest"
	"time"

	"go.temporal.io/sdk/client"
	"go.temporal.io/sdk/temporal"

	"github.com/tetherflow/tether/activities/connector/pgsink"
	"github.com/tetherflow/tether/activities/integration"
	"github.com/tetherflow/tether/activities/lib/failure"
	"github.com/tetherflow/tether/activities/lib/progress"
	"github.com/tetherflow/tether/activities/syncstep"
	"github.com/tetherflow/tether/starters/cli"
	"github.com/tetherflow/tether/starters/sandbox"
	"github.com/tetherflow/tether/workers/config"
	"github.com/tetherflow/tether/workers/integrations"
	"github.com/tetherflow/tether/workers/schedules"
	"github.com/tetherflow/tether/workflows/datasync"
	"github.com/tetherflow/tether/workflows/reconcile"
)

// reconcileRun runs a reconciliation to its end.
func (s *stack) reconcile(in reconcile.Input) (syncstep.ReconcileReport, error) {
	s.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	if in.Trigger == "" {
		in.Trigger = "test"
	}
	run, err := s.client.ExecuteWorkflow(ctx, client.StartWorkflowOptions{
		ID:        fmt.Sprintf("%s/reconcile/%s/%d", in.Integration, in.Trigger, time.Now().UnixNano()),
		TaskQueue: s.taskQueue,
	}, reconcile.WorkflowType, in)
	if err != nil {
		s.t.Fatalf("start reconciliation of %s: %v", in.Integration, err)
	}
	var rep syncstep.ReconcileReport
	err = run.Get(ctx, &rep)
	if ctx.Err() != nil {
		s.t.Fatalf("reconciliation %s did not finish in 5 minutes", run.GetID())
	}
	s.record(run.GetID())
	if rep.RepairRun != "" {
		s.record(rep.RepairRun)
	}
	return rep, err
}

func (s *stack) mustReconcile(in reconcile.Input) syncstep.ReconcileReport {
	s.t.Helper()
	rep, err := s.reconcile(in)
	if err != nil {
		s.t.Fatalf("reconciliation of %s failed: %v", in.Integration, err)
	}
	return rep
}

// exec runs SQL that must succeed.
func (s *stack) exec(query string, args ...any) {
	s.t.Helper()
	if _, err := s.schema.DB.Exec(query, args...); err != nil {
		s.t.Fatalf("%s: %v", query, err)
	}
}

// sortedSample returns the report's sample keys of a class, sorted.
func sortedSample(rep syncstep.ReconcileReport, class string) []string {
	out := slices.Clone(rep.Samples[class])
	slices.Sort(out)
	return out
}

func idsText(ids ...int64) []string {
	out := make([]string, len(ids))
	for i, id := range ids {
		out[i] = fmt.Sprint(id)
	}
	slices.Sort(out)
	return out
}

// TestReconcile_RepairsSeededDriftExactly seeds every kind of drift into a
// synced table (rows deleted, edited by hand, added, records changed at
// the source, and a row whose source record is now invalid), then: a dry
// run reports it and writes nothing; a real run repairs exactly those rows
// and deletes the extras; a second run finds nothing and writes nothing.
func TestReconcile_RepairsSeededDriftExactly(t *testing.T) {
	s := newStack(t, stackOptions{sandbox: sandbox.Options{Contacts: 2500, Faults: sandbox.Faults{InvalidRate: 0.01}}})
	s.mustSync(datasync.Input{Integration: "crm-contacts"})
	synced := s.tableRows("crm_contacts")
	if len(synced) < 2000 {
		t.Fatalf("synced %d rows, want most of 2500", len(synced))
	}
	ids := slices.Sorted(maps.Keys(synced))
	// An invalid record the source still serves with its key.
	var invalid []int64
	for _, k := range s.quarantinedKeys("crm-contacts") {
		var id int64
		if _, err := fmt.Sscan(k, &id); err == nil && id > 0 {
			invalid = append(invalid, id)
		}
	}
	if len(invalid) == 0 {
		t.Fatal("the sandbox served no invalid contact with a key to test with")
	}

	// Drift.
	missing := []int64{ids[3], ids[400], ids[1200], ids[1900], ids[len(ids)-1]}
	edited := []int64{ids[10], ids[700], ids[1500], ids[2000]}
	extra := []int64{9_000_001, 9_000_002, 9_000_003}
	for _, id := range missing {
		s.exec(`DELETE FROM crm_contacts WHERE id = $1`, id)
	}
	for _, id := range edited {
		s.exec(`UPDATE crm_contacts SET first_name = 'edited by hand', score = score + 1 WHERE id = $1`, id)
	}
	for _, id := range extra {
		s.exec(`INSERT INTO crm_contacts SELECT $1::bigint, uuid, first_name, last_name, full_name, 'x'||$1::text||'@example.com', phone, company_id,
			status, score, opt_in, opt_in_at, website, city, country, tags, created_at, updated_at FROM crm_contacts WHERE id = $2`, id, ids[20])
	}
	// A row whose source record is invalid now: not extra, never deleted.
	s.exec(`INSERT INTO crm_contacts SELECT $1::bigint, uuid, first_name, last_name, full_name, 'inv'||$1::text||'@example.com', phone, company_id,
		status, score, opt_in, opt_in_at, website, city, country, tags, created_at, updated_at FROM crm_contacts WHERE id = $2`, invalid[0], ids[21])
	var touched []int64
	for _, id := range s.sandbox.Touch("contacts", 6) {
		if _, ok := synced[id]; ok && !slices.Contains(missing, id) && !slices.Contains(edited, id) {
			touched = append(touched, id)
		}
	}
	drifted := s.tableRows("crm_contacts")

	// Dry run: reports, writes nothing.
	dry := s.mustReconcile(reconcile.Input{Integration: "crm-contacts", DryRun: true, Extras: integration.ExtrasDelete})
	wantChanged := len(edited) + len(touched)
	if dry.Missing != len(missing) || dry.Changed != wantChanged || dry.Extra != len(extra) {
		t.Fatalf("dry run found missing %d changed %d extra %d, want %d, %d, %d (report %+v)",
			dry.Missing, dry.Changed, dry.Extra, len(missing), wantChanged, len(extra), dry)
	}
	if !dry.DryRun || dry.Repaired != 0 || dry.ExtrasHandled != 0 || dry.Extras != integration.ExtrasReport {
		t.Fatalf("dry run repaired something: %+v", dry)
	}
	if got := sortedSample(dry, "missing"); !reflect.DeepEqual(got, idsText(missing...)) {
		t.Errorf("missing sample %v, want %v", got, idsText(missing...))
	}
	if got := s.tableRows("crm_contacts"); !reflect.DeepEqual(got, drifted) {
		t.Fatal("the dry run changed the destination")
	}
	if dry.ChunksDiffering == 0 || dry.ChunksDiffering >= dry.Chunks {
		t.Errorf("%d of %d chunks differ: the digests should narrow the comparison", dry.ChunksDiffering, dry.Chunks)
	}
	if dry.RowsCompared >= len(drifted) {
		t.Errorf("compared %d rows key by key out of %d: only differing chunks should be", dry.RowsCompared, len(drifted))
	}

	// Repair.
	rep := s.mustReconcile(reconcile.Input{Integration: "crm-contacts", Extras: integration.ExtrasDelete})
	if rep.Missing != len(missing) || rep.Changed != wantChanged || rep.Extra != len(extra) {
		t.Fatalf("found missing %d changed %d extra %d, want %d, %d, %d", rep.Missing, rep.Changed, rep.Extra, len(missing), wantChanged, len(extra))
	}
	if rep.Repaired != len(missing)+wantChanged || rep.ExtrasHandled != len(extra) {
		t.Fatalf("repaired %d and deleted %d, want %d and %d (report %+v)", rep.Repaired, rep.ExtrasHandled, len(missing)+wantChanged, len(extra), rep)
	}
	after := s.tableRows("crm_contacts")
	for id, row := range synced {
		if slices.Contains(touched, id) {
			continue // changed at the source: checked below
		}
		if !reflect.DeepEqual(after[id], row) {
			t.Errorf("row %d after repair:\n got %v\nwant %v", id, after[id], row)
		}
	}
	for _, id := range extra {
		if _, ok := after[id]; ok {
			t.Errorf("extra row %d was not deleted", id)
		}
	}
	if _, ok := after[invalid[0]]; !ok {
		t.Errorf("row %d, whose source record is invalid, was deleted", invalid[0])
	}
	if len(after) != len(synced)+1 {
		t.Errorf("%d rows after repair, want %d", len(after), len(synced)+1)
	}
	// The touched records now hold the source's version: an incremental
	// sync reading them again finds nothing to change.
	inc := s.mustSync(datasync.Input{Integration: "crm-contacts"})
	if inc.Counts.Inserted != 0 || inc.Counts.Updated != 0 {
		t.Errorf("sync after repair wrote %d inserts and %d updates, want none", inc.Counts.Inserted, inc.Counts.Updated)
	}

	// The report is in PostgreSQL.
	var m, c, x, repaired, handled int
	if err := s.schema.DB.QueryRow(`SELECT missing, changed, extra, repaired, extras_handled FROM tether_reconciliations
		WHERE reconcile_id = $1 AND status = $2`, rep.ReconcileID, progress.StatusCompleted).Scan(&m, &c, &x, &repaired, &handled); err != nil {
		t.Fatalf("read the reconciliation's report: %v", err)
	}
	if m != rep.Missing || c != rep.Changed || x != rep.Extra || repaired != rep.Repaired || handled != rep.ExtrasHandled {
		t.Errorf("stored report %d/%d/%d/%d/%d differs from the result %+v", m, c, x, repaired, handled, rep)
	}

	// Nothing left: a second run finds nothing and writes nothing.
	before := s.tableRows("crm_contacts")
	again := s.mustReconcile(reconcile.Input{Integration: "crm-contacts", Extras: integration.ExtrasDelete})
	if again.ChunksDiffering != 0 || again.Missing+again.Changed+again.Extra+again.Repaired+again.ExtrasHandled != 0 {
		t.Fatalf("second reconciliation found drift: %+v", again)
	}
	if again.SourceRead != again.SourceRecords {
		t.Errorf("a run without drift read the source %d records, want one pass of %d", again.SourceRead, again.SourceRecords)
	}
	if got := s.tableRows("crm_contacts"); !reflect.DeepEqual(got, before) {
		t.Error("the reconciliation without drift changed the destination")
	}
	if n := s.count(`SELECT count(*) FROM tether_reconcile_rows`) + s.count(`SELECT count(*) FROM tether_reconcile_chunks`); n != 0 {
		t.Errorf("%d staged reconciliation rows left behind", n)
	}
}

// TestReconcile_MarksExtrasAndLeavesThemMarked: the mark policy sets the
// soft-delete column of extra rows, and marked rows are not extra again.
func TestReconcile_MarksExtrasAndLeavesThemMarked(t *testing.T) {
	defs := func(crm config.Connection) []integration.Definition {
		d := integrations.CRMContacts(crm)
		d.Name = "crm-contacts-marked"
		table := *d.Destination.Postgres
		table.Name = "crm_contacts_marked"
		table.Columns = append(slices.Clone(table.Columns), pgsink.Column{Name: "deleted_at", Type: pgsink.TypeTimestamptz})
		d.Destination.Postgres = &table
		d.Reconcile = integration.Reconcile{Extras: integration.ExtrasMark, MarkColumn: "deleted_at", Chunks: 64}
		return []integration.Definition{d}
	}
	s := newStack(t, stackOptions{sandbox: sandbox.Options{Contacts: 300}, defs: defs})
	s.mustSync(datasync.Input{Integration: "crm-contacts-marked"})
	s.exec(`INSERT INTO crm_contacts_marked (id, email, created_at, updated_at) VALUES
		(8000001, 'a@example.com', now(), now()), (8000002, 'b@example.com', now(), now())`)

	// The starter's dry run reports them.
	var out, errOut strings.Builder
	if code := cli.Run(context.Background(), []string{"reconcile", "crm-contacts-marked", "--dry-run", "--watch",
		"--address", devServer.FrontendHostPort(), "--task-queue", s.taskQueue}, &out, &errOut); code != 0 {
		t.Fatalf("tether reconcile --dry-run: exit %d: %s", code, errOut.String())
	}
	for _, want := range []string{"Completed (dry run, extras: report)", "extra    2   e.g. (8000001), (8000002)", "missing  0"} {
		if !strings.Contains(out.String(), want) {
			t.Errorf("tether reconcile output lacks %q:\n%s", want, out.String())
		}
	}
	if n := s.count(`SELECT count(*) FROM crm_contacts_marked WHERE deleted_at IS NOT NULL`); n != 0 {
		t.Fatalf("the dry run marked %d rows", n)
	}

	rep := s.mustReconcile(reconcile.Input{Integration: "crm-contacts-marked"})
	if rep.Extra != 2 || rep.ExtrasHandled != 2 || rep.Extras != integration.ExtrasMark || rep.Chunks != 64 {
		t.Fatalf("report %+v, want 2 extras marked in 64 chunks", rep)
	}
	if n := s.count(`SELECT count(*) FROM crm_contacts_marked WHERE deleted_at IS NOT NULL`); n != 2 {
		t.Fatalf("%d rows marked, want 2", n)
	}
	if n := s.count(`SELECT count(*) FROM crm_contacts_marked WHERE id >= 8000001 AND deleted_at IS NOT NULL`); n != 2 {
		t.Fatalf("the marked rows are not the extras")
	}
	again := s.mustReconcile(reconcile.Input{Integration: "crm-contacts-marked"})
	if again.Extra != 0 || again.ChunksDiffering != 0 {
		t.Fatalf("marked rows were found again: %+v", again)
	}
}

// TestWriterLease_OneRunWritesAnIntegrationAtATime: a run started while
// another writes the integration is refused with a message naming that
// run; started with wait, it queues, and it goes once the holder is gone
// (here: terminated, so its lease is stale and taken over).
func TestWriterLease_OneRunWritesAnIntegrationAtATime(t *testing.T) {
	s := newStack(t, stackOptions{sandbox: sandbox.Options{Contacts: 50}})
	ctx := context.Background()
	// A run that holds the lease and never ends on its own: a workflow no
	// worker polls for.
	holder, err := s.client.ExecuteWorkflow(ctx, client.StartWorkflowOptions{
		ID: "crm-contacts/sync/schedule/holder-" + s.taskQueue, TaskQueue: s.taskQueue + "-nobody",
	}, datasync.WorkflowType, datasync.Input{Integration: "crm-contacts"})
	if err != nil {
		t.Fatal(err)
	}
	s.exec(`INSERT INTO tether_writers (integration, run_id, workflow_id, kind, trigger) VALUES ('crm-contacts', $1, $2, 'sync', 'schedule')`,
		holder.GetID()+"/"+holder.GetRunID(), holder.GetID())

	_, err = s.sync(datasync.Input{Integration: "crm-contacts"})
	var appErr *temporal.ApplicationError
	if !errors.As(err, &appErr) || appErr.Type() != failure.TypeBusy {
		t.Fatalf("second run: got %v, want an %s error", err, failure.TypeBusy)
	}
	for _, want := range []string{holder.GetID(), "only one run writes an integration at a time", "--wait"} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("refusal %q does not say %q", err, want)
		}
	}
	if n := s.count(`SELECT count(*) FROM crm_contacts`); n != 0 {
		t.Fatalf("the refused run wrote %d rows", n)
	}
	// A reconciliation is refused alike (a dry run is not: it writes nothing).
	if _, err := s.reconcile(reconcile.Input{Integration: "crm-contacts"}); !errors.As(err, &appErr) || appErr.Type() != failure.TypeBusy {
		t.Fatalf("reconciliation: got %v, want %s", err, failure.TypeBusy)
	}
	if _, err := s.reconcile(reconcile.Input{Integration: "crm-contacts", DryRun: true}); err != nil {
		t.Fatalf("a dry run needs no lease: %v", err)
	}

	// Queued: it waits while the holder runs...
	queued := s.start(datasync.Input{Integration: "crm-contacts", Wait: true})
	deadline := time.Now().Add(time.Minute)
	for {
		rep := queryProgress(t, s, queued.GetID())
		if strings.Contains(rep.Throttled, "waiting for another run") {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("queued run never showed it waits: %+v", rep)
		}
		time.Sleep(200 * time.Millisecond)
	}
	if n := s.count(`SELECT count(*) FROM crm_contacts`); n != 0 {
		t.Fatalf("the queued run wrote %d rows while the holder ran", n)
	}
	// ...and goes once the holder is gone.
	if err := s.client.TerminateWorkflow(ctx, holder.GetID(), "", "test: holder gone"); err != nil {
		t.Fatal(err)
	}
	res, err := s.wait(queued)
	if err != nil || res.Status != progress.StatusCompleted {
		t.Fatalf("queued run: %v (%+v)", err, res)
	}
	if n := s.count(`SELECT count(*) FROM crm_contacts`); n == 0 {
		t.Fatal("the queued run wrote nothing")
	}
	if n := s.count(`SELECT count(*) FROM tether_writers`); n != 0 {
		t.Errorf("%d leases left after every run ended", n)
	}
}

// TestReconcile_PostgresSource: a PostgreSQL source is reconciled the
// same way (full read in key order); extras are only reported by default.
func TestReconcile_PostgresSource(t *testing.T) {
	s := newStack(t, stackOptions{noWorker: true})
	s.exec(`
CREATE TABLE source_orders (id bigint PRIMARY KEY, customer_email text, total numeric, updated_at timestamptz NOT NULL);
INSERT INTO source_orders
SELECT g, 'buyer' || g || '@example.com', g * 1.25, timestamptz '2026-01-01' + (g % 97) * interval '1 minute'
FROM generate_series(1, 3000) g`)
	s.restartWorker([]integration.Definition{ordersFromPostgres(s.schema.DSN)},
		withSchemaFiles(t, fstest.MapFS{"orders.schema.json": {Data: []byte(ordersSchema)}}))
	s.mustSync(datasync.Input{Integration: "pg-orders"})
	synced := s.tableRows("orders_copy")

	s.exec(`DELETE FROM orders_copy WHERE id IN (5, 2999)`)
	s.exec(`UPDATE orders_copy SET total = total + 100 WHERE id IN (10, 1500, 2500)`)
	s.exec(`INSERT INTO orders_copy VALUES (70001, 'x@example.com', 1, now()), (70002, 'y@example.com', 2, now())`)

	rep := s.mustReconcile(reconcile.Input{Integration: "pg-orders"})
	if rep.Missing != 2 || rep.Changed != 3 || rep.Extra != 2 || rep.Repaired != 5 || rep.ExtrasHandled != 0 || rep.Extras != integration.ExtrasReport {
		t.Fatalf("report %+v, want 2 missing, 3 changed, 2 extras reported, 5 repaired", rep)
	}
	if got := sortedSample(rep, "changed"); !reflect.DeepEqual(got, idsText(10, 1500, 2500)) {
		t.Errorf("changed sample %v", got)
	}
	after := s.tableRows("orders_copy")
	for id, row := range synced {
		if !reflect.DeepEqual(after[id], row) {
			t.Errorf("row %d after repair:\n got %v\nwant %v", id, after[id], row)
		}
	}
	if len(after) != len(synced)+2 {
		t.Errorf("%d rows after repair, want the %d synced and the 2 extras kept", len(after), len(synced))
	}
	again := s.mustReconcile(reconcile.Input{Integration: "pg-orders"})
	if again.Missing+again.Changed+again.Repaired != 0 || again.Extra != 2 {
		t.Fatalf("second run %+v, want only the 2 reported extras", again)
	}
}

// TestReconcile_TriggeredBySchedule: a reconcile schedule, triggered as an
// operator would from the CLI or Web UI, repairs seeded drift, and the
// progress query of the finished run answers with its report.
func TestReconcile_TriggeredBySchedule(t *testing.T) {
	name := uniqueName("sched-reconcile")
	id := schedules.ID(name, integration.ScheduleReconcile)
	deleteSchedulesAtEnd(t, id)
	s := newStack(t, stackOptions{
		sandbox: sandbox.Options{Seed: 61, Contacts: 400},
		defs: func(crm config.Connection) []integration.Definition {
			d := scheduledContacts(crm, name, integration.Schedule{Kind: integration.ScheduleReconcile, Cron: []string{"0 3 * * *"}, Paused: true})
			d.Reconcile = integration.Reconcile{Extras: integration.ExtrasDelete}
			return []integration.Definition{d}
		},
	})
	s.mustSync(datasync.Input{Integration: name})
	synced := s.tableRows("crm_contacts")
	ids := slices.Sorted(maps.Keys(synced))
	s.exec(`DELETE FROM crm_contacts WHERE id IN ($1, $2)`, ids[1], ids[200])
	s.exec(`UPDATE crm_contacts SET email = 'hand@edit.example' WHERE id = $1`, ids[50])
	s.exec(`INSERT INTO crm_contacts (id, email, created_at, updated_at) VALUES (7000001, 'x@example.com', now(), now())`)

	mustApply(t, schedules.Options{TaskQueue: s.taskQueue, Owner: uniqueName("owner")}, s.defs...)
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	if err := s.client.ScheduleClient().GetHandle(ctx, id).Trigger(ctx, client.ScheduleTriggerOptions{}); err != nil {
		t.Fatal(err)
	}
	var started *client.ScheduleWorkflowExecution
	for started == nil {
		if recent := describeSchedule(t, id).Info.RecentActions; len(recent) > 0 {
			started = recent[len(recent)-1].StartWorkflowResult
		}
		if started == nil && ctx.Err() != nil {
			t.Fatal("the triggered schedule started nothing")
		}
		time.Sleep(100 * time.Millisecond)
	}
	var rep syncstep.ReconcileReport
	if err := s.client.GetWorkflow(ctx, started.WorkflowID, "").Get(ctx, &rep); err != nil {
		t.Fatalf("the scheduled reconciliation failed: %v", err)
	}
	if rep.Missing != 2 || rep.Changed != 1 || rep.Extra != 1 || rep.Repaired != 3 || rep.ExtrasHandled != 1 {
		t.Fatalf("scheduled reconciliation report %+v, want 2 missing, 1 changed, 1 extra, all handled", rep)
	}
	if got := s.tableRows("crm_contacts"); !reflect.DeepEqual(got, synced) {
		t.Error("the destination is not back to the source's state")
	}
	v, err := s.client.QueryWorkflow(ctx, started.WorkflowID, "", reconcile.QueryProgress)
	if err != nil {
		t.Fatal(err)
	}
	var p syncstep.ReconcileReport
	if err := v.Get(&p); err != nil {
		t.Fatal(err)
	}
	if p.Status != progress.StatusCompleted || p.Missing != 2 || p.Phase != reconcile.PhaseFinish || p.Integration != name {
		t.Errorf("progress query answered %+v", p)
	}
}
