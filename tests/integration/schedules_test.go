package integration

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	commonpb "go.temporal.io/api/common/v1"
	enumspb "go.temporal.io/api/enums/v1"
	"go.temporal.io/api/serviceerror"
	"go.temporal.io/api/workflowservice/v1"
	"go.temporal.io/sdk/client"
	"go.temporal.io/sdk/converter"

	"github.com/tetherflow/tether/activities/integration"
	"github.com/tetherflow/tether/activities/lib/progress"
	"github.com/tetherflow/tether/starters/cli"
	"github.com/tetherflow/tether/starters/devstack"
	"github.com/tetherflow/tether/starters/sandbox"
	"github.com/tetherflow/tether/workers/config"
	"github.com/tetherflow/tether/workers/integrations"
	"github.com/tetherflow/tether/workers/schedules"
	"github.com/tetherflow/tether/workflows/datasync"
	"github.com/tetherflow/tether/workflows/reconcile"
)

// uniqueName is an integration name (or owner) no other test uses:
// schedule ids are unique in the whole namespace.
func uniqueName(prefix string) string {
	var b [4]byte
	_, _ = rand.Read(b[:])
	return prefix + "-" + hex.EncodeToString(b[:])
}

// scheduledContacts is crm-contacts named name, with schedules s.
func scheduledContacts(crm config.Connection, name string, s ...integration.Schedule) integration.Definition {
	d := integrations.CRMContacts(crm)
	d.Name = name
	d.Schedules = s
	return d
}

// nowhere is a CRM no run reaches: these schedules are never run.
var nowhere = config.Connection{BaseURL: "http://127.0.0.1:1", Auth: "none"}

func mustApply(t *testing.T, opts schedules.Options, defs ...integration.Definition) schedules.Result {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	res, err := schedules.Apply(ctx, devServer.Client(), opts, defs)
	if err != nil {
		t.Fatalf("Apply: %v", err)
	}
	return res
}

func describeSchedule(t *testing.T, id string) *client.ScheduleDescription {
	t.Helper()
	d, err := devServer.Client().ScheduleClient().GetHandle(context.Background(), id).Describe(context.Background())
	if err != nil {
		t.Fatalf("describe schedule %s: %v", id, err)
	}
	return d
}

// conflictToken changes with every update of the schedule.
func conflictToken(t *testing.T, id string) []byte {
	t.Helper()
	resp, err := devServer.Client().WorkflowService().DescribeSchedule(context.Background(),
		&workflowservice.DescribeScheduleRequest{Namespace: "default", ScheduleId: id})
	if err != nil {
		t.Fatalf("describe schedule %s: %v", id, err)
	}
	return resp.GetConflictToken()
}

func scheduleGone(t *testing.T, id string) bool {
	t.Helper()
	_, err := devServer.Client().ScheduleClient().GetHandle(context.Background(), id).Describe(context.Background())
	var nf *serviceerror.NotFound
	if err != nil && !errors.As(err, &nf) {
		t.Fatalf("describe schedule %s: %v", id, err)
	}
	return err != nil
}

// deleteSchedulesAtEnd deletes the schedules ids when the test ends,
// whatever happened.
func deleteSchedulesAtEnd(t *testing.T, ids ...string) {
	t.Cleanup(func() {
		for _, id := range ids {
			_ = devServer.Client().ScheduleClient().GetHandle(context.Background(), id).Delete(context.Background())
		}
	})
}

// waitListed waits until the (eventually consistent) list of schedules
// shows id, as Apply needs it to delete it.
func waitListed(t *testing.T, id string) {
	t.Helper()
	for deadline := time.Now().Add(20 * time.Second); ; time.Sleep(100 * time.Millisecond) {
		listed, err := schedules.List(context.Background(), devServer.Client())
		if err != nil {
			t.Fatal(err)
		}
		if slices.ContainsFunc(listed, func(l schedules.Listed) bool { return l.ID == id }) {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("schedule %s is not listed after 20s", id)
		}
	}
}

// actionInput decodes the input of a described schedule's action.
func actionInput(t *testing.T, d *client.ScheduleDescription, into any) *client.ScheduleWorkflowAction {
	t.Helper()
	a, ok := d.Schedule.Action.(*client.ScheduleWorkflowAction)
	if !ok || len(a.Args) != 1 {
		t.Fatalf("action %#v", d.Schedule.Action)
	}
	if err := converter.GetDefaultDataConverter().FromPayload(a.Args[0].(*commonpb.Payload), into); err != nil {
		t.Fatal(err)
	}
	return a
}

func equalResult(got, want schedules.Result) bool {
	return slices.Equal(got.Created, want.Created) && slices.Equal(got.Updated, want.Updated) &&
		slices.Equal(got.Unchanged, want.Unchanged) && slices.Equal(got.Deleted, want.Deleted)
}

// TestSchedules_ApplyCreatesLeavesUpdatesAndDeletes: the declared
// schedules are created as declared; applying the same declarations again
// does not touch them (no update: the server's conflict token and update
// time stay); a changed declaration updates them (spec, jitter, paused,
// policies), keeping a pause made by a person; a schedule no longer
// declared is deleted.
func TestSchedules_ApplyCreatesLeavesUpdatesAndDeletes(t *testing.T) {
	name := uniqueName("sched")
	syncID, recID := schedules.ID(name, "sync"), schedules.ID(name, "reconcile")
	deleteSchedulesAtEnd(t, syncID, recID)
	opts := schedules.Options{TaskQueue: taskQueueName(t), Owner: uniqueName("owner")}
	noPause := false
	declared := func(sync, rec integration.Schedule) integration.Definition {
		return scheduledContacts(nowhere, name, sync, rec)
	}
	sync := integration.Schedule{Kind: integration.ScheduleSync, Cron: []string{"0 2 * * *"}, TimeZone: "Europe/Paris"}
	rec := integration.Schedule{Kind: integration.ScheduleReconcile, Every: time.Hour, Offset: 5 * time.Minute, DryRun: true,
		PauseOnFailure: &noPause, CatchupWindow: 10 * time.Minute}

	// Created as declared.
	res := mustApply(t, opts, declared(sync, rec))
	if want := (schedules.Result{Created: []string{recID, syncID}}); !equalResult(res, want) {
		t.Fatalf("first Apply = %+v, want %+v", res, want)
	}
	d := describeSchedule(t, syncID)
	var in datasync.Input
	a := actionInput(t, d, &in)
	if a.Workflow != datasync.WorkflowType || a.TaskQueue != opts.TaskQueue || a.ID != name+"/sync/schedule" {
		t.Errorf("sync action: %v on %q as %q", a.Workflow, a.TaskQueue, a.ID)
	}
	if in != (datasync.Input{Integration: name, Trigger: "schedule", Wait: true}) {
		t.Errorf("sync input %+v", in)
	}
	if got, _ := a.TypedSearchAttributes.GetKeyword(datasync.IntegrationAttr); got != name {
		t.Errorf("the runs get IntegrationName=%q", got)
	}
	if p := d.Schedule.Policy; p.Overlap != enumspb.SCHEDULE_OVERLAP_POLICY_SKIP || p.CatchupWindow != time.Minute || !p.PauseOnFailure {
		t.Errorf("sync policies %+v: want skip, a 1m catch-up window, pause on failure", p)
	}
	if st := d.Schedule.State; st.Paused || !strings.Contains(st.Note, "managed by tether (owner "+opts.Owner+")") {
		t.Errorf("sync state %+v", st)
	}
	paris, _ := time.LoadLocation("Europe/Paris")
	if next := d.Info.NextActionTimes; len(next) == 0 || next[0].In(paris).Hour() != 2 || next[0].In(paris).Minute() != 0 {
		t.Errorf("next sync times %v, want 02:00 in Paris", next)
	}
	if d.Schedule.Spec.TimeZoneName != "Europe/Paris" {
		t.Errorf("time zone %q", d.Schedule.Spec.TimeZoneName)
	}
	r := describeSchedule(t, recID)
	var rin reconcile.Input
	ra := actionInput(t, r, &rin)
	if ra.Workflow != reconcile.WorkflowType || rin != (reconcile.Input{Integration: name, DryRun: true, Trigger: "schedule", Wait: true}) {
		t.Errorf("reconcile action %v %+v", ra.Workflow, rin)
	}
	if p := r.Schedule.Policy; p.Overlap != enumspb.SCHEDULE_OVERLAP_POLICY_BUFFER_ONE || p.CatchupWindow != 10*time.Minute || p.PauseOnFailure {
		t.Errorf("reconcile policies %+v: want buffer one, 10m, no pause on failure", p)
	}
	if iv := r.Schedule.Spec.Intervals; len(iv) != 1 || iv[0] != (client.ScheduleIntervalSpec{Every: time.Hour, Offset: 5 * time.Minute}) {
		t.Errorf("reconcile intervals %+v", iv)
	}

	// The same declarations again: nothing is updated.
	tokens := map[string][]byte{syncID: conflictToken(t, syncID), recID: conflictToken(t, recID)}
	updatedAt := map[string]time.Time{syncID: d.Info.LastUpdateAt, recID: r.Info.LastUpdateAt}
	for range 2 {
		res = mustApply(t, opts, declared(sync, rec))
		if want := (schedules.Result{Unchanged: []string{recID, syncID}}); !equalResult(res, want) {
			t.Fatalf("Apply of the same declarations = %+v, want %+v", res, want)
		}
	}
	for id, tok := range tokens {
		if !bytes.Equal(conflictToken(t, id), tok) || !describeSchedule(t, id).Info.LastUpdateAt.Equal(updatedAt[id]) {
			t.Errorf("schedule %s was updated by an Apply of the same declaration", id)
		}
	}

	// A person pauses the reconciliation; then both declarations change.
	if err := devServer.Client().ScheduleClient().GetHandle(context.Background(), recID).Pause(context.Background(),
		client.SchedulePauseOptions{Note: "paused by ops: source migration"}); err != nil {
		t.Fatal(err)
	}
	sync2 := integration.Schedule{Kind: integration.ScheduleSync, Cron: []string{"30 3 * * *"}, Jitter: 2 * time.Minute,
		Paused: true, PauseOnFailure: &noPause, CatchupWindow: 5 * time.Minute}
	rec2 := rec
	rec2.Every = 2 * time.Hour
	res = mustApply(t, opts, declared(sync2, rec2))
	if want := (schedules.Result{Updated: []string{recID, syncID}}); !equalResult(res, want) {
		t.Fatalf("Apply of the changed declarations = %+v, want %+v", res, want)
	}
	d = describeSchedule(t, syncID)
	cal := d.Schedule.Spec.Calendars
	if len(cal) != 1 || cal[0].Hour[0].Start != 3 || cal[0].Minute[0].Start != 30 {
		t.Errorf("the sync's calendar is %+v, want 03:30", cal)
	}
	if d.Schedule.Spec.Jitter != 2*time.Minute || d.Schedule.Spec.TimeZoneName != "UTC" {
		t.Errorf("the sync's jitter %v, time zone %q", d.Schedule.Spec.Jitter, d.Schedule.Spec.TimeZoneName)
	}
	if p := d.Schedule.Policy; p.PauseOnFailure || p.CatchupWindow != 5*time.Minute || p.Overlap != enumspb.SCHEDULE_OVERLAP_POLICY_SKIP {
		t.Errorf("the sync's policies %+v", p)
	}
	if !d.Schedule.State.Paused {
		t.Error("the sync declared paused is not paused")
	}
	if bytes.Equal(conflictToken(t, syncID), tokens[syncID]) || !d.Info.LastUpdateAt.After(updatedAt[syncID]) {
		t.Error("the sync's update time or conflict token did not change")
	}
	r = describeSchedule(t, recID)
	if iv := r.Schedule.Spec.Intervals; len(iv) != 1 || iv[0].Every != 2*time.Hour {
		t.Errorf("the reconciliation's intervals are %+v, want every 2h", iv)
	}
	if st := r.Schedule.State; !st.Paused || st.Note != "paused by ops: source migration" {
		t.Errorf("the person's pause did not survive the update: %+v", st)
	}

	// The sync is no longer declared: it is deleted, the other stays.
	waitListed(t, syncID)
	res = mustApply(t, opts, scheduledContacts(nowhere, name, rec2))
	if want := (schedules.Result{Unchanged: []string{recID}, Deleted: []string{syncID}}); !equalResult(res, want) {
		t.Fatalf("Apply without the sync = %+v, want %+v", res, want)
	}
	if !scheduleGone(t, syncID) || scheduleGone(t, recID) {
		t.Error("the undeclared sync is still there, or the reconciliation is gone")
	}
}

// TestSchedules_OthersSchedulesAreNeverTouched: a schedule of another
// owner, or one tether did not create, is neither deleted when this owner
// does not declare it nor updated when this owner declares its id (an
// error names the owner).
func TestSchedules_OthersSchedulesAreNeverTouched(t *testing.T) {
	theirs, handMade := uniqueName("theirs"), uniqueName("handmade")
	theirsID, handMadeID := schedules.ID(theirs, "sync"), schedules.ID(handMade, "sync")
	deleteSchedulesAtEnd(t, theirsID, handMadeID)
	tq := taskQueueName(t)
	a := schedules.Options{TaskQueue: tq, Owner: uniqueName("owner-a")}
	b := schedules.Options{TaskQueue: tq, Owner: uniqueName("owner-b")}
	hourly := integration.Schedule{Kind: integration.ScheduleSync, Every: time.Hour}

	mustApply(t, a, scheduledContacts(nowhere, theirs, hourly))
	if _, err := devServer.Client().ScheduleClient().Create(context.Background(), client.ScheduleOptions{
		ID:     handMadeID,
		Spec:   client.ScheduleSpec{Intervals: []client.ScheduleIntervalSpec{{Every: time.Hour}}},
		Action: &client.ScheduleWorkflowAction{ID: handMade, Workflow: datasync.WorkflowType, TaskQueue: tq, Args: []any{datasync.Input{Integration: handMade}}},
	}); err != nil {
		t.Fatal(err)
	}
	waitListed(t, theirsID)
	before := map[string][]byte{theirsID: conflictToken(t, theirsID), handMadeID: conflictToken(t, handMadeID)}
	untouched := func(when string) {
		t.Helper()
		for id, tok := range before {
			if scheduleGone(t, id) {
				t.Fatalf("%s: schedule %s was deleted", when, id)
			}
			if !bytes.Equal(conflictToken(t, id), tok) {
				t.Errorf("%s: schedule %s was updated", when, id)
			}
		}
	}

	// B declares nothing: it deletes neither.
	if res := mustApply(t, b); !equalResult(res, schedules.Result{}) {
		t.Errorf("B's Apply of nothing = %+v", res)
	}
	untouched("B declares nothing")

	// B declares their ids: refused, with who holds them.
	ctx := context.Background()
	_, err := schedules.Apply(ctx, devServer.Client(), b, []integration.Definition{
		scheduledContacts(nowhere, theirs, integration.Schedule{Kind: integration.ScheduleSync, Cron: []string{"@daily"}}),
		scheduledContacts(nowhere, handMade, hourly),
	})
	for _, want := range []string{
		"schedule " + theirsID + ` belongs to tether owner "` + a.Owner + `", not to this one ("` + b.Owner + `")`,
		"schedule " + handMadeID + " exists but was not created by tether",
	} {
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("B's Apply of their ids: error %v, want it to say %q", err, want)
		}
	}
	untouched("B declares their ids")

	// A declares nothing any more: its own schedule goes, not the other.
	if res := mustApply(t, a); !equalResult(res, schedules.Result{Deleted: []string{theirsID}}) {
		t.Errorf("A's Apply of nothing = %+v, want %s deleted", res, theirsID)
	}
	if !scheduleGone(t, theirsID) || scheduleGone(t, handMadeID) {
		t.Error("A's schedule is still there, or the hand-made one is gone")
	}
}

// TestSchedules_TwoWorkersApplyingAtOnce: workers starting together
// apply the same declarations concurrently: the schedule is created once,
// and none of them fails.
func TestSchedules_TwoWorkersApplyingAtOnce(t *testing.T) {
	name := uniqueName("race")
	id := schedules.ID(name, "sync")
	deleteSchedulesAtEnd(t, id)
	opts := schedules.Options{TaskQueue: taskQueueName(t), Owner: uniqueName("owner")}
	for round, s := range []integration.Schedule{
		{Kind: integration.ScheduleSync, Every: time.Hour},                      // all create
		{Kind: integration.ScheduleSync, Every: time.Hour, Jitter: time.Minute}, // all update
	} {
		const workers = 4
		results := make(chan schedules.Result, workers)
		errs := make(chan error, workers)
		for range workers {
			go func() {
				res, err := schedules.Apply(context.Background(), devServer.Client(), opts, []integration.Definition{scheduledContacts(nowhere, name, s)})
				results <- res
				errs <- err
			}()
		}
		created, updated := 0, 0
		for range workers {
			if err := <-errs; err != nil {
				t.Errorf("round %d: a worker failed: %v", round, err)
			}
			res := <-results
			created += len(res.Created)
			updated += len(res.Updated)
			if len(res.Created)+len(res.Updated)+len(res.Unchanged) != 1 {
				t.Errorf("round %d: a worker's result %+v does not account for the schedule once", round, res)
			}
		}
		if round == 0 && created != 1 {
			t.Errorf("the schedule was created %d times", created)
		}
		if round == 1 && updated < 1 {
			t.Error("no worker updated the schedule")
		}
	}
	if got := describeSchedule(t, id).Schedule.Spec.Jitter; got != time.Minute {
		t.Errorf("jitter %v after the concurrent update, want 1m", got)
	}
}

// TestSchedules_TriggeredSyncCompletes: a sync schedule triggered (as
// `temporal schedule trigger` does) starts a SyncWorkflow of its
// integration on the workers' task queue, which completes and is listed
// by `tether schedules` as the schedule's last run.
func TestSchedules_TriggeredSyncCompletes(t *testing.T) {
	name := uniqueName("sched-run")
	id := schedules.ID(name, "sync")
	deleteSchedulesAtEnd(t, id)
	hourlyPaused := integration.Schedule{Kind: integration.ScheduleSync, Every: 24 * time.Hour, Paused: true}
	s := newStack(t, stackOptions{
		sandbox: sandbox.Options{Seed: 53, Contacts: 120},
		defs: func(crm config.Connection) []integration.Definition {
			return []integration.Definition{scheduledContacts(crm, name, hourlyPaused)}
		},
	})
	opts := schedules.Options{TaskQueue: s.taskQueue, Owner: uniqueName("owner")}
	if res := mustApply(t, opts, s.defs...); !slices.Equal(res.Created, []string{id}) {
		t.Fatalf("Apply = %+v", res)
	}

	h := s.client.ScheduleClient().GetHandle(context.Background(), id)
	if err := h.Trigger(context.Background(), client.ScheduleTriggerOptions{}); err != nil {
		t.Fatal(err)
	}
	var started *client.ScheduleWorkflowExecution
	for deadline := time.Now().Add(30 * time.Second); started == nil; time.Sleep(100 * time.Millisecond) {
		if recent := describeSchedule(t, id).Info.RecentActions; len(recent) > 0 {
			started = recent[len(recent)-1].StartWorkflowResult
		}
		if started == nil && time.Now().After(deadline) {
			t.Fatal("the triggered schedule started nothing within 30s")
		}
	}
	if !strings.HasPrefix(started.WorkflowID, name+"/sync/schedule") {
		t.Errorf("the run's workflow id is %q", started.WorkflowID)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	var res datasync.Result
	if err := s.client.GetWorkflow(ctx, started.WorkflowID, "").Get(ctx, &res); err != nil {
		t.Fatalf("the scheduled run failed: %v", err)
	}
	if res.Status != progress.StatusCompleted || res.Integration != name || res.Counts.Inserted == 0 {
		t.Errorf("the scheduled run: %+v", res)
	}
	if n := s.count(`SELECT count(*) FROM crm_contacts`); n == 0 {
		t.Error("the scheduled run wrote no row")
	}
	desc, err := s.client.DescribeWorkflowExecution(ctx, started.WorkflowID, "")
	if err != nil {
		t.Fatal(err)
	}
	var attr string
	if p := desc.GetWorkflowExecutionInfo().GetSearchAttributes().GetIndexedFields()[datasync.IntegrationAttr.GetName()]; p != nil {
		_ = converter.GetDefaultDataConverter().FromPayload(p, &attr)
	}
	if attr != name {
		t.Errorf("the scheduled run is listed under IntegrationName=%q, want %q", attr, name)
	}

	// tether schedules lists it with its last run.
	waitListed(t, id)
	var out, errOut bytes.Buffer
	if code := cli.Run(context.Background(), []string{"schedules", "--address", devServer.FrontendHostPort(), "--owner", opts.Owner}, &out, &errOut); code != 0 {
		t.Fatalf("tether schedules: exit %d: %s", code, errOut.String())
	}
	lines := strings.Split(out.String(), "\n")
	if len(lines) < 2 || !strings.HasPrefix(lines[0], "SCHEDULE") {
		t.Fatalf("tether schedules printed:\n%s", out.String())
	}
	for _, want := range []string{id, name, "sync", opts.Owner, "every 24h0m0s (UTC)", "yes", "Completed"} {
		if !strings.Contains(lines[1], want) {
			t.Errorf("the schedule's line lacks %q:\n%s", want, out.String())
		}
	}
	if !strings.Contains(out.String(), id+" is paused: managed by tether") {
		t.Errorf("the paused schedule's note is not shown:\n%s", out.String())
	}
}

// TestSchedules_AFailedRunPausesTheSchedule: with pause on failure (the
// default), a run that fails for good (the source refuses the
// credentials) pauses its schedule, with a note saying why; without it,
// the schedule keeps going.
func TestSchedules_AFailedRunPausesTheSchedule(t *testing.T) {
	name := uniqueName("sched-fail")
	keepsGoing := name + "-on"
	noPause := false
	s := newStack(t, stackOptions{
		sandbox: sandbox.Options{Seed: 61, Contacts: 20, Auth: sandbox.Auth{Mode: "bearer", Token: "right"}},
		crm:     config.Connection{Auth: "bearer", Token: "wrong"},
		defs: func(crm config.Connection) []integration.Definition {
			return []integration.Definition{
				scheduledContacts(crm, name, integration.Schedule{Kind: integration.ScheduleSync, Every: 24 * time.Hour}),
				scheduledContacts(crm, keepsGoing, integration.Schedule{Kind: integration.ScheduleSync, Every: 24 * time.Hour, PauseOnFailure: &noPause}),
			}
		},
	})
	ids := []string{schedules.ID(name, "sync"), schedules.ID(keepsGoing, "sync")}
	deleteSchedulesAtEnd(t, ids...)
	mustApply(t, schedules.Options{TaskQueue: s.taskQueue, Owner: uniqueName("owner")}, s.defs...)
	for _, id := range ids {
		if err := s.client.ScheduleClient().GetHandle(context.Background(), id).Trigger(context.Background(), client.ScheduleTriggerOptions{}); err != nil {
			t.Fatal(err)
		}
	}
	// Both runs fail; then one schedule is paused, the other is not.
	for _, id := range ids {
		for deadline := time.Now().Add(60 * time.Second); ; time.Sleep(200 * time.Millisecond) {
			d := describeSchedule(t, id)
			if len(d.Info.RecentActions) > 0 && len(d.Info.RunningWorkflows) == 0 {
				wid := d.Info.RecentActions[len(d.Info.RecentActions)-1].StartWorkflowResult.WorkflowID
				if err := s.client.GetWorkflow(context.Background(), wid, "").Get(context.Background(), nil); err == nil {
					t.Fatalf("%s: the run with wrong credentials completed", id)
				}
				break
			}
			if time.Now().After(deadline) {
				t.Fatalf("%s: the triggered run did not end within 60s", id)
			}
		}
	}
	var st *client.ScheduleState
	for deadline := time.Now().Add(20 * time.Second); ; time.Sleep(200 * time.Millisecond) {
		if st = describeSchedule(t, ids[0]).Schedule.State; st.Paused || time.Now().After(deadline) {
			break
		}
	}
	if !st.Paused || st.Note == "" || strings.Contains(st.Note, "managed by tether") {
		t.Errorf("after a failed run the schedule is %+v, want paused with a note saying why", st)
	}
	if st := describeSchedule(t, ids[1]).Schedule.State; st.Paused {
		t.Errorf("the schedule with pause_on_failure false was paused: %+v", st)
	}
	t.Logf("the paused schedule's note: %q", st.Note)
}

// TestSchedules_CLIApplyUsesTheWorkersConfiguration: `tether schedules
// apply` applies the schedules of the integrations the shipped worker
// runs with the same configuration (here an integration file).
func TestSchedules_CLIApplyUsesTheWorkersConfiguration(t *testing.T) {
	name := uniqueName("cli")
	id := schedules.ID(name, "refresh")
	deleteSchedulesAtEnd(t, id)
	dir := t.TempDir()
	writeIntegrationFile(t, dir, name, "schedules:\n  - {kind: refresh, cron: [\"0 4 * * MON\"], jitter: 10m}\n")
	owner := uniqueName("owner")
	tq := taskQueueName(t)
	t.Setenv("TETHER_INTEGRATIONS_DIR", dir)
	t.Setenv("TETHER_SCHEDULES_OWNER", owner)
	t.Setenv("TETHER_TEMPORAL_TASK_QUEUE", tq)
	t.Setenv("TEMPORAL_ADDRESS", devServer.FrontendHostPort())

	run := func() string {
		t.Helper()
		var out, errOut bytes.Buffer
		if code := cli.Run(context.Background(), []string{"schedules", "apply"}, &out, &errOut); code != 0 {
			t.Fatalf("tether schedules apply: exit %d: %s%s", code, out.String(), errOut.String())
		}
		return out.String()
	}
	out := run()
	if want := "created  " + id; !strings.Contains(out, want) || !strings.Contains(out, "1 created, 0 updated, 0 deleted, 0 unchanged") {
		t.Errorf("first apply printed:\n%s", out)
	}
	d := describeSchedule(t, id)
	var in datasync.Input
	if a := actionInput(t, d, &in); a.TaskQueue != tq || in != (datasync.Input{Integration: name, Refresh: true, Trigger: "schedule", Wait: true}) {
		t.Errorf("refresh action on %q with %+v", a.TaskQueue, in)
	}
	if d.Schedule.Spec.Jitter != 10*time.Minute || d.Schedule.Policy.Overlap != enumspb.SCHEDULE_OVERLAP_POLICY_SKIP {
		t.Errorf("refresh schedule %+v %+v", d.Schedule.Spec, d.Schedule.Policy)
	}
	if out := run(); !strings.Contains(out, "unchanged  "+id) {
		t.Errorf("second apply printed:\n%s", out)
	}
}

// writeIntegrationFile writes the shipped crm-contacts YAML twin, named
// name, with extra appended, into dir.
func writeIntegrationFile(t *testing.T, dir, name, extra string) string {
	t.Helper()
	b, err := os.ReadFile("../../workers/integrations/yaml/crm-contacts-yaml.yaml")
	if err != nil {
		t.Fatal(err)
	}
	body := strings.Replace(string(b), "name: crm-contacts-yaml", "name: "+name, 1)
	p := filepath.Join(dir, name+".yaml")
	if err := os.WriteFile(p, []byte(body+extra), 0o644); err != nil {
		t.Fatal(err)
	}
	return p
}

// TestSchedules_WorkerProcessAppliesAtStartAndOnReload: a worker keeps
// the schedules of its integration files: created at start, updated when
// a file changes, deleted when the file no longer declares them. A worker
// whose schedule id another owner holds does not start, and says why;
// with schedules.manage false it starts and leaves the schedule alone.
func TestSchedules_WorkerProcessAppliesAtStartAndOnReload(t *testing.T) {
	s := newStack(t, stackOptions{sandbox: sandbox.Options{Seed: 59, Contacts: 10}, noWorker: true})
	bin := workerBinary(t)
	name := uniqueName("proc")
	id := schedules.ID(name, "sync")
	deleteSchedulesAtEnd(t, id)
	dir, logDir := t.TempDir(), t.TempDir()
	owner := uniqueName("owner")
	env := s.workerEnv("TETHER_INTEGRATIONS_DIR="+dir, "TETHER_SCHEDULES_OWNER="+owner, "TETHER_METRICS_LISTEN=")
	writeIntegrationFile(t, dir, name, "schedules:\n  - {kind: sync, cron: [\"0 2 * * *\"]}\n")

	logFile := filepath.Join(logDir, "worker.log")
	w, err := devstack.StartProcess("worker", logFile, env, bin)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = w.Stop(10 * time.Second) })
	waitFor := func(what string, ok func() bool) {
		t.Helper()
		for deadline := time.Now().Add(60 * time.Second); !ok(); time.Sleep(200 * time.Millisecond) {
			if exited, err := w.Exited(); exited || time.Now().After(deadline) {
				b, _ := os.ReadFile(logFile)
				t.Fatalf("%s: not within 60s (worker exited %v: %v); log:\n%s", what, exited, err, b)
			}
		}
	}
	hourOf := func() int {
		cal := describeSchedule(t, id).Schedule.Spec.Calendars
		if len(cal) != 1 {
			return -1
		}
		return cal[0].Hour[0].Start
	}
	waitFor("the schedule created at start", func() bool { return !scheduleGone(t, id) })
	if h := hourOf(); h != 2 {
		t.Errorf("the schedule runs at hour %d, want 2", h)
	}
	waitFor("the worker polling", func() bool {
		b, _ := os.ReadFile(logFile)
		return bytes.Contains(b, []byte("worker polling"))
	})

	writeIntegrationFile(t, dir, name, "schedules:\n  - {kind: sync, cron: [\"0 4 * * *\"]}\n")
	waitFor("the schedule updated after the file changed", func() bool { return hourOf() == 4 })

	waitListed(t, id)
	writeIntegrationFile(t, dir, name, "")
	waitFor("the schedule deleted after the file stopped declaring it", func() bool { return scheduleGone(t, id) })
	b, _ := os.ReadFile(logFile)
	for _, want := range []string{"schedule created", "schedule updated", "schedule deleted", "schedules applied after the integration files changed"} {
		if !bytes.Contains(b, []byte(want)) {
			t.Errorf("the worker's log lacks %q", want)
		}
	}
	_ = w.Stop(10 * time.Second)

	// Another owner holds the id: the worker stops before it polls.
	writeIntegrationFile(t, dir, name, "schedules:\n  - {kind: sync, every: 1h}\n")
	other := uniqueName("other")
	mustApply(t, schedules.Options{TaskQueue: s.taskQueue, Owner: other}, scheduledContacts(nowhere, name, integration.Schedule{Kind: integration.ScheduleSync, Cron: []string{"@daily"}}))
	token := conflictToken(t, id)
	refusedLog := filepath.Join(logDir, "refused.log")
	refused, err := devstack.StartProcess("worker", refusedLog, env, bin)
	if err != nil {
		t.Fatal(err)
	}
	select {
	case <-refused.Done():
	case <-time.After(90 * time.Second):
		_ = refused.Stop(5 * time.Second)
		t.Fatal("the worker kept running though its schedule id belongs to another owner")
	}
	b, _ = os.ReadFile(refusedLog)
	if _, exitErr := refused.Exited(); exitErr == nil {
		t.Errorf("the worker exited with status 0; log:\n%s", b)
	}
	if want := "schedule " + id + ` belongs to tether owner "` + other + `"`; !bytes.Contains(b, []byte(want)) || bytes.Contains(b, []byte("worker polling")) {
		t.Errorf("the worker's log does not say %q before polling:\n%s", want, b)
	}

	unmanagedLog := filepath.Join(logDir, "unmanaged.log")
	unmanaged, err := devstack.StartProcess("worker", unmanagedLog, append(env, "TETHER_SCHEDULES_MANAGE=false"), bin)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = unmanaged.Stop(10 * time.Second) })
	for deadline := time.Now().Add(60 * time.Second); ; time.Sleep(200 * time.Millisecond) {
		b, _ = os.ReadFile(unmanagedLog)
		if bytes.Contains(b, []byte("worker polling")) {
			break
		}
		if exited, err := unmanaged.Exited(); exited || time.Now().After(deadline) {
			t.Fatalf("the worker with schedules.manage false did not start (exited %v: %v):\n%s", exited, err, b)
		}
	}
	if !bytes.Contains(b, []byte("schedules.manage is false")) || !bytes.Equal(conflictToken(t, id), token) {
		t.Errorf("schedules.manage false: the log does not say so, or the schedule was changed:\n%s", b)
	}
}
