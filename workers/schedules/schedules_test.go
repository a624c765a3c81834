package schedules

import (
	"encoding/json"
	"strings"
	"testing"
	"time"

	commonpb "go.temporal.io/api/common/v1"
	enumspb "go.temporal.io/api/enums/v1"
	"go.temporal.io/sdk/client"
	"go.temporal.io/sdk/converter"

	"github.com/tetherflow/tether/activities/integration"
	"github.com/tetherflow/tether/activities/lib/progress"
	"github.com/tetherflow/tether/workers/config"
	"github.com/tetherflow/tether/workers/integrations"
	"github.com/tetherflow/tether/workflows/datasync"
	"github.com/tetherflow/tether/workflows/reconcile"
)

// contacts is the shipped crm-contacts with the given schedules.
func contacts(t *testing.T, s ...integration.Schedule) integration.Definition {
	t.Helper()
	d := integrations.CRMContacts(config.Connection{BaseURL: "http://127.0.0.1:8081", Auth: "none"})
	d.Schedules = s
	return d
}

var opts = Options{TaskQueue: "tether-sync"}

// build builds the one schedule of d.
func build(t *testing.T, o Options, d integration.Definition) Desired {
	t.Helper()
	ws, err := Build(o, []integration.Definition{d})
	if err != nil {
		t.Fatal(err)
	}
	if len(ws) != 1 {
		t.Fatalf("built %d schedules, want 1", len(ws))
	}
	return ws[0]
}

func TestBuild_OneScheduleOfEachKind(t *testing.T) {
	noPause := false
	d := contacts(t,
		integration.Schedule{Kind: integration.ScheduleSync, Every: 15 * time.Minute, Offset: time.Minute, Jitter: 30 * time.Second},
		integration.Schedule{Kind: integration.ScheduleRefresh, Cron: []string{"0 3 * * SUN"}, TimeZone: "Europe/Paris", PauseOnFailure: &noPause, Paused: true},
		integration.Schedule{Kind: integration.ScheduleReconcile, Cron: []string{"@daily"}, DryRun: true, CatchupWindow: time.Hour},
	)
	ws, err := Build(opts, []integration.Definition{d})
	if err != nil {
		t.Fatal(err)
	}
	type want struct {
		id, workflow, workflowID string
		input                    any
		overlap                  enumspb.ScheduleOverlapPolicy
		catchup                  time.Duration
		pauseOnFailure, paused   bool
		tz                       string
	}
	wants := []want{
		{id: "crm-contacts/reconcile", workflow: reconcile.WorkflowType, workflowID: "crm-contacts/reconcile/schedule",
			input:   reconcile.Input{Integration: "crm-contacts", DryRun: true, Trigger: "schedule", Wait: true},
			overlap: enumspb.SCHEDULE_OVERLAP_POLICY_BUFFER_ONE, catchup: time.Hour, pauseOnFailure: true, tz: "UTC"},
		{id: "crm-contacts/refresh", workflow: datasync.WorkflowType, workflowID: "crm-contacts/refresh/schedule",
			input:   datasync.Input{Integration: "crm-contacts", Refresh: true, Trigger: "schedule", Wait: true},
			overlap: enumspb.SCHEDULE_OVERLAP_POLICY_SKIP, catchup: time.Minute, paused: true, tz: "Europe/Paris"},
		{id: "crm-contacts/sync", workflow: datasync.WorkflowType, workflowID: "crm-contacts/sync/schedule",
			input:   datasync.Input{Integration: "crm-contacts", Trigger: "schedule", Wait: true},
			overlap: enumspb.SCHEDULE_OVERLAP_POLICY_SKIP, catchup: time.Minute, pauseOnFailure: true, tz: "UTC"},
	}
	if len(ws) != len(wants) {
		t.Fatalf("built %d schedules, want %d", len(ws), len(wants))
	}
	for i, w := range wants {
		got := ws[i]
		o := got.Options
		a := o.Action.(*client.ScheduleWorkflowAction)
		if got.ID != w.id || o.ID != w.id {
			t.Errorf("schedule %d: id %q / %q, want %q", i, got.ID, o.ID, w.id)
			continue
		}
		if a.Workflow != w.workflow || a.ID != w.workflowID || a.TaskQueue != "tether-sync" {
			t.Errorf("%s: action %v %q on %q", w.id, a.Workflow, a.ID, a.TaskQueue)
		}
		if len(a.Args) != 1 || a.Args[0] != w.input {
			t.Errorf("%s: input %#v, want %#v", w.id, a.Args, w.input)
		}
		if o.Overlap != w.overlap || o.CatchupWindow != w.catchup || o.PauseOnFailure != w.pauseOnFailure || o.Paused != w.paused {
			t.Errorf("%s: overlap %v catch-up %v pause on failure %v paused %v", w.id, o.Overlap, o.CatchupWindow, o.PauseOnFailure, o.Paused)
		}
		if o.Spec.TimeZoneName != w.tz {
			t.Errorf("%s: time zone %q, want %q", w.id, o.Spec.TimeZoneName, w.tz)
		}
		if name, _ := a.TypedSearchAttributes.GetKeyword(datasync.IntegrationAttr); name != "crm-contacts" {
			t.Errorf("%s: the runs get %s=%q", w.id, datasync.IntegrationAttr.GetName(), name)
		}
		if status, _ := a.TypedSearchAttributes.GetKeyword(datasync.StatusAttr); status != progress.StatusRunning {
			t.Errorf("%s: the runs get %s=%q", w.id, datasync.StatusAttr.GetName(), status)
		}
		if name, _ := o.TypedSearchAttributes.GetKeyword(datasync.IntegrationAttr); name != "crm-contacts" {
			t.Errorf("%s: the schedule is not listed under its integration (%q)", w.id, name)
		}
		if !strings.Contains(o.Note, "managed by tether (owner tether-sync)") {
			t.Errorf("%s: note %q", w.id, o.Note)
		}
		if s := o.Memo[MemoKey].(Stamp); s != (Stamp{Owner: "tether-sync", Integration: "crm-contacts", Kind: strings.TrimPrefix(w.id, "crm-contacts/")}) {
			t.Errorf("%s: schedule memo %+v", w.id, s)
		}
		if s := a.Memo[MemoKey].(Stamp); s != got.Stamp || s.Hash == "" || s.Paused != w.paused {
			t.Errorf("%s: action memo %+v, stamp %+v", w.id, s, got.Stamp)
		}
	}
	sync := ws[2].Options.Spec
	if len(sync.Intervals) != 1 || sync.Intervals[0] != (client.ScheduleIntervalSpec{Every: 15 * time.Minute, Offset: time.Minute}) || sync.Jitter != 30*time.Second || len(sync.CronExpressions) != 0 {
		t.Errorf("sync spec %+v", sync)
	}
	if refresh := ws[1].Options.Spec; len(refresh.CronExpressions) != 1 || refresh.CronExpressions[0] != "0 3 * * SUN" || len(refresh.Intervals) != 0 {
		t.Errorf("refresh spec %+v", refresh)
	}
	if got, want := ws[2].Stamp.Spec, "every 15m0s offset 1m0s (UTC) jitter 30s"; got != want {
		t.Errorf("sync described as %q, want %q", got, want)
	}
}

func TestBuild_OwnerDefaultsToTheTaskQueue(t *testing.T) {
	d := contacts(t, integration.Schedule{Kind: integration.ScheduleSync, Every: time.Hour})
	if got := build(t, opts, d).Stamp.Owner; got != "tether-sync" {
		t.Errorf("owner %q, want the task queue", got)
	}
	if got := build(t, Options{TaskQueue: "tether-sync", Owner: "team-a"}, d).Stamp.Owner; got != "team-a" {
		t.Errorf("owner %q, want team-a", got)
	}
}

func TestBuild_RefusesBadInputAndBuildsNothing(t *testing.T) {
	good := contacts(t, integration.Schedule{Kind: integration.ScheduleSync, Every: time.Hour})
	bad := contacts(t, integration.Schedule{Kind: integration.ScheduleSync, Cron: []string{"0 2 * *"}})
	bad.Name = "crm-contacts-bad"
	tests := []struct {
		name string
		opts Options
		defs []integration.Definition
		want string
	}{
		{name: "an invalid schedule", opts: opts, defs: []integration.Definition{good, bad},
			want: `integration "crm-contacts-bad": schedules[0].cron[0]: "0 2 * *": 4 fields`},
		{name: "a name twice", opts: opts, defs: []integration.Definition{good, good},
			want: `integration "crm-contacts" is given twice`},
		{name: "no task queue", defs: []integration.Definition{good},
			want: "no task queue"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			ws, err := Build(tt.opts, tt.defs)
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Fatalf("Build() error = %v, want %q", err, tt.want)
			}
			if ws != nil {
				t.Errorf("Build() built %d schedules anyway", len(ws))
			}
		})
	}
}

func TestHash_ChangesWithWhatTheScheduleIsMadeOf(t *testing.T) {
	base := integration.Schedule{Kind: integration.ScheduleReconcile, Cron: []string{"0 2 * * *", "30 14 * * *"}, Every: time.Hour,
		Offset: time.Minute, TimeZone: "Europe/Paris", Jitter: time.Minute, CatchupWindow: time.Hour}
	hashOf := func(o Options, s integration.Schedule) string {
		t.Helper()
		return build(t, o, contacts(t, s)).Stamp.Hash
	}
	first := hashOf(opts, base)
	if again := hashOf(opts, base); again != first {
		t.Fatalf("the same declaration hashes to %s, then %s", first, again)
	}
	reordered := base
	reordered.Cron = []string{"30 14 * * *", "0 2 * * *"}
	if got := hashOf(opts, reordered); got != first {
		t.Error("the order of the cron expressions changed the hash (the schedule fires at their union)")
	}
	explicit := base
	explicit.PauseOnFailure = new(bool)
	*explicit.PauseOnFailure = true
	if got := hashOf(opts, explicit); got != first {
		t.Error("pause_on_failure: true, the default, changed the hash")
	}
	if got := hashOf(Options{TaskQueue: "tether-sync", Owner: "someone"}, base); got != first {
		t.Error("the owner changed the hash (it is in the memo, not made of the declaration)")
	}
	noPause := false
	changes := map[string]func(*integration.Schedule){
		"cron":             func(s *integration.Schedule) { s.Cron = []string{"0 3 * * *", "30 14 * * *"} },
		"every":            func(s *integration.Schedule) { s.Every = 2 * time.Hour },
		"offset":           func(s *integration.Schedule) { s.Offset = 2 * time.Minute },
		"time zone":        func(s *integration.Schedule) { s.TimeZone = "UTC" },
		"jitter":           func(s *integration.Schedule) { s.Jitter = 0 },
		"catch-up window":  func(s *integration.Schedule) { s.CatchupWindow = 0 },
		"pause on failure": func(s *integration.Schedule) { s.PauseOnFailure = &noPause },
		"paused":           func(s *integration.Schedule) { s.Paused = true },
		"dry run":          func(s *integration.Schedule) { s.DryRun = true },
		"kind":             func(s *integration.Schedule) { s.Kind = integration.ScheduleRefresh },
	}
	seen := map[string]string{first: "the base"}
	for name, change := range changes {
		s := base
		change(&s)
		h := hashOf(opts, s)
		if other, dup := seen[h]; dup {
			t.Errorf("changing the %s gives the hash of %s", name, other)
		}
		seen[h] = name
	}
	if got := hashOf(Options{TaskQueue: "elsewhere"}, base); got == first {
		t.Error("the task queue of the runs did not change the hash")
	}
}

// described is a schedule as the server describes it after w was applied
// by owner, with its state.
func described(t *testing.T, w Desired, owner string, state client.ScheduleState) client.ScheduleDescription {
	t.Helper()
	payload := func(v any) *commonpb.Payload {
		p, err := converter.GetDefaultDataConverter().ToPayload(v)
		if err != nil {
			t.Fatal(err)
		}
		return p
	}
	stamp := w.Stamp
	stamp.Owner = owner
	a := *w.Options.Action.(*client.ScheduleWorkflowAction)
	a.Memo = map[string]any{MemoKey: payload(stamp)}
	return client.ScheduleDescription{
		Schedule: client.Schedule{Action: &a, State: &state},
		Memo:     &commonpb.Memo{Fields: map[string]*commonpb.Payload{MemoKey: payload(Stamp{Owner: owner, Integration: stamp.Integration, Kind: stamp.Kind})}},
	}
}

func TestDecide(t *testing.T) {
	old := build(t, opts, contacts(t, integration.Schedule{Kind: integration.ScheduleSync, Every: time.Hour}))
	now := build(t, opts, contacts(t, integration.Schedule{Kind: integration.ScheduleSync, Every: 2 * time.Hour}))
	handMade := client.ScheduleDescription{Schedule: client.Schedule{Action: &client.ScheduleWorkflowAction{}}}
	replacedAction := described(t, old, "tether-sync", client.ScheduleState{})
	replacedAction.Schedule.Action = &client.ScheduleWorkflowAction{}
	tests := []struct {
		name string
		have client.ScheduleDescription
		want Verdict
	}{
		{name: "made from this declaration", have: described(t, now, "tether-sync", client.ScheduleState{}), want: Unchanged},
		{name: "made from an older declaration", have: described(t, old, "tether-sync", client.ScheduleState{}), want: Update},
		{name: "its action replaced by hand", have: replacedAction, want: Update},
		{name: "another owner's", have: described(t, now, "team-b", client.ScheduleState{}), want: Foreign},
		{name: "not tether's", have: handMade, want: Foreign},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := Decide("tether-sync", now, CurrentOf(&tt.have)); got != tt.want {
				t.Errorf("Decide() = %v, want %v", got, tt.want)
			}
		})
	}
}

func TestCurrentOf_ReadsTheStampsBackFromTheirPayloads(t *testing.T) {
	w := build(t, opts, contacts(t, integration.Schedule{Kind: integration.ScheduleSync, Every: time.Hour, Paused: true}))
	d := described(t, w, "tether-sync", client.ScheduleState{})
	got := CurrentOf(&d)
	if got.Owner != "tether-sync" || got.Action != w.Stamp {
		t.Errorf("CurrentOf() = %+v, want owner tether-sync and action stamp %+v", got, w.Stamp)
	}
	// A list entry carries the schedule's memo.
	if s, ok := StampOf(d.Memo); !ok || s.Integration != "crm-contacts" || s.Kind != "sync" || s.Hash != "" {
		t.Errorf("StampOf() = %+v, %v", s, ok)
	}
	if _, ok := StampOf(nil); ok {
		t.Error("StampOf(nil) found a stamp")
	}
}

func TestUpdated_KeepsAPauseUnlessTheDeclaredPausedChanged(t *testing.T) {
	running := integration.Schedule{Kind: integration.ScheduleSync, Every: time.Hour}
	pausedByPerson := client.ScheduleState{Paused: true, Note: "paused by ops: source migration"}
	tests := []struct {
		name       string
		was, now   integration.Schedule
		state      client.ScheduleState
		noStamp    bool
		wantPaused bool
		wantNote   string
	}{
		{name: "a person's pause stays when the cron changes", was: running,
			now: integration.Schedule{Kind: integration.ScheduleSync, Cron: []string{"@hourly"}}, state: pausedByPerson,
			wantPaused: true, wantNote: pausedByPerson.Note},
		{name: "declared paused pauses", was: running,
			now: integration.Schedule{Kind: integration.ScheduleSync, Every: time.Hour, Paused: true}, state: client.ScheduleState{Note: "x"},
			wantPaused: true, wantNote: "managed by tether"},
		{name: "declared unpaused unpauses", was: integration.Schedule{Kind: integration.ScheduleSync, Every: time.Hour, Paused: true},
			now: running, state: pausedByPerson,
			wantPaused: false, wantNote: "managed by tether"},
		{name: "an action replaced by hand takes the declared state", was: running,
			now: integration.Schedule{Kind: integration.ScheduleSync, Every: 2 * time.Hour}, state: pausedByPerson, noStamp: true,
			wantPaused: false, wantNote: "managed by tether"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			was, now := build(t, opts, contacts(t, tt.was)), build(t, opts, contacts(t, tt.now))
			have := described(t, was, "tether-sync", tt.state)
			if tt.noStamp {
				have.Schedule.Action = &client.ScheduleWorkflowAction{}
			}
			u := Updated(now, have)
			st := u.Schedule.State
			if st.Paused != tt.wantPaused || !strings.Contains(st.Note, tt.wantNote) {
				t.Errorf("state paused %v note %q; want paused %v, a note with %q", st.Paused, st.Note, tt.wantPaused, tt.wantNote)
			}
			if have.Schedule.State.Note != tt.state.Note {
				t.Error("Updated changed the description it was given")
			}
			if u.Schedule.Action != now.Options.Action || u.TypedSearchAttributes != nil {
				t.Error("the update does not carry the declared action, or touches the schedule's search attributes")
			}
			p := u.Schedule.Policy
			if p.Overlap != now.Options.Overlap || p.CatchupWindow != now.Options.CatchupWindow || p.PauseOnFailure != now.Options.PauseOnFailure {
				t.Errorf("policies %+v, want those of %+v", p, now.Options)
			}
			b, _ := json.Marshal(u.Schedule.Spec)
			want, _ := json.Marshal(now.Options.Spec)
			if string(b) != string(want) {
				t.Errorf("spec %s, want %s", b, want)
			}
		})
	}
}
