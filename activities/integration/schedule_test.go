package integration

import (
	"strings"
	"testing"
	"time"

	"github.com/tetherflow/tether/activities/connector/httpsink"
	"github.com/tetherflow/tether/activities/connector/httpsource"
	"github.com/tetherflow/tether/activities/connector/pgsink"
	"github.com/tetherflow/tether/activities/lib/mapping"
)

// scheduled is a valid integration with one PostgreSQL destination; the
// tests give it schedules and a reconciliation policy.
func scheduled() Definition {
	return Definition{
		Name: "crm-contacts",
		Source: Source{HTTP: &httpsource.Config{
			BaseURL: "https://api.example.com", Path: "/v1/contacts", RecordsPath: "data",
			Pagination: httpsource.Pagination{Style: httpsource.StylePage},
		}},
		Schema:   "contacts.schema.json",
		KeyField: "id",
		Mapping:  mapping.Mapping{Fields: []mapping.Field{{To: "id", From: "id", Cast: "int"}}},
		Destination: Destination{Postgres: &pgsink.Table{
			Name: "crm_contacts",
			Columns: []pgsink.Column{
				{Name: "id", Type: pgsink.TypeBigint, NotNull: true},
				{Name: "email", Type: pgsink.TypeText},
				{Name: "updated_at", Type: pgsink.TypeTimestamptz},
				{Name: "deleted_at", Type: pgsink.TypeTimestamptz},
			},
			Key:           []string{"id"},
			VersionColumn: "updated_at",
		}},
	}
}

func boolPtr(b bool) *bool { return &b }

func TestDefinition_Validate_AcceptsSchedules(t *testing.T) {
	tests := []struct {
		name string
		give func(*Definition)
	}{
		{name: "none", give: func(*Definition) {}},
		{name: "every kind, every setting", give: func(d *Definition) {
			d.Schedules = []Schedule{
				{Kind: ScheduleSync, Every: 15 * time.Minute, Offset: 5 * time.Minute, Jitter: time.Minute, CatchupWindow: 10 * time.Second},
				{Kind: ScheduleRefresh, Cron: []string{"0 3 * * SUN"}, TimeZone: "Europe/Paris", PauseOnFailure: boolPtr(false)},
				{Kind: ScheduleReconcile, Cron: []string{"30 2 * * *", "@weekly"}, Every: 24 * time.Hour, DryRun: true, Paused: true},
			}
			d.Reconcile = Reconcile{Extras: ExtrasMark, MarkColumn: "deleted_at", Chunks: 4096}
		}},
		{name: "delete extras", give: func(d *Definition) { d.Reconcile = Reconcile{Extras: ExtrasDelete, Chunks: MinReconcileChunks} }},
		{name: "report extras from a saga", give: func(d *Definition) {
			d.Destinations = []Destination{d.Destination, {Name: "hook", Mode: ModeNotify, HTTP: &httpsink.Config{
				BaseURL: "https://hooks.example.com", Create: httpsink.Endpoint{Path: "/v1/events"}}}}
			d.Destination = Destination{}
			d.Reconcile = Reconcile{Extras: ExtrasReport, Chunks: MaxReconcileChunks}
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			d := scheduled()
			tt.give(&d)
			if err := d.Normalize().Validate(); err != nil {
				t.Fatalf("Validate() = %v", err)
			}
		})
	}
}

func TestDefinition_Validate_RefusesBadSchedules(t *testing.T) {
	tests := []struct {
		name string
		give []Schedule
		want string // the whole message after `integration "crm-contacts": `, or its start
	}{
		{name: "no kind", give: []Schedule{{Every: time.Hour}},
			want: `schedules[0].kind: required: "sync", "refresh" or "reconcile"`},
		{name: "unknown kind", give: []Schedule{{Kind: "backup", Every: time.Hour}},
			want: `schedules[0].kind: "backup" is not "sync", "refresh" or "reconcile"`},
		{name: "two of a kind", give: []Schedule{{Kind: ScheduleSync, Every: time.Hour}, {Kind: ScheduleSync, Cron: []string{"@daily"}}},
			want: `schedules[1].kind: a second "sync" schedule (schedules[0] is one)`},
		{name: "no time", give: []Schedule{{Kind: ScheduleSync}},
			want: `schedules[0]: no cron and no every`},
		{name: "every under a second", give: []Schedule{{Kind: ScheduleSync, Every: 500 * time.Millisecond}},
			want: `schedules[0].every: 500ms is shorter than 1s, the shortest interval Temporal schedules`},
		{name: "negative every", give: []Schedule{{Kind: ScheduleSync, Every: -time.Minute}},
			want: `schedules[0].every: -1m0s is negative`},
		{name: "offset without every", give: []Schedule{{Kind: ScheduleSync, Cron: []string{"@hourly"}, Offset: time.Minute}},
			want: `schedules[0].offset: shifts the times of every, which is not set`},
		{name: "offset past every", give: []Schedule{{Kind: ScheduleSync, Every: time.Hour, Offset: time.Hour}},
			want: `schedules[0].offset: 1h0m0s is not shorter than every (1h0m0s)`},
		{name: "negative offset", give: []Schedule{{Kind: ScheduleSync, Every: time.Hour, Offset: -time.Second}},
			want: `schedules[0].offset: -1s is negative`},
		{name: "unknown time zone", give: []Schedule{{Kind: ScheduleSync, Every: time.Hour, TimeZone: "Mars/Olympus"}},
			want: `schedules[0].time_zone: "Mars/Olympus" is not an IANA time zone`},
		{name: "local time zone", give: []Schedule{{Kind: ScheduleSync, Every: time.Hour, TimeZone: "Local"}},
			want: `schedules[0].time_zone: "Local" is whatever the Temporal server's machine uses`},
		{name: "negative jitter", give: []Schedule{{Kind: ScheduleSync, Every: time.Hour, Jitter: -time.Second}},
			want: `schedules[0].jitter: -1s is negative`},
		{name: "negative catch-up", give: []Schedule{{Kind: ScheduleSync, Every: time.Hour, CatchupWindow: -time.Second}},
			want: `schedules[0].catchup_window: -1s is negative`},
		{name: "catch-up under Temporal's minimum", give: []Schedule{{Kind: ScheduleSync, Every: time.Hour, CatchupWindow: 5 * time.Second}},
			want: `schedules[0].catchup_window: 5s is shorter than 10s, the shortest catch-up window Temporal honours`},
		{name: "dry run of a sync", give: []Schedule{{Kind: ScheduleSync, Every: time.Hour, DryRun: true}},
			want: `schedules[0].dry_run: only a reconcile schedule has a dry run; a sync writes what it reads`},
		{name: "a bad cron names its index", give: []Schedule{{Kind: ScheduleRefresh, Cron: []string{"@daily", "0 25 * * *"}}},
			want: `schedules[0].cron[1]: "0 25 * * *": hour "25": 25 is out of range 0-23`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			d := scheduled()
			d.Schedules = tt.give
			refusedOnce(t, d, tt.want)
		})
	}
}

func TestDefinition_Validate_RefusesBadReconcile(t *testing.T) {
	saga := func(d *Definition) {
		d.Destinations = []Destination{d.Destination, {Name: "hook", Mode: ModeNotify, HTTP: &httpsink.Config{
			BaseURL: "https://hooks.example.com", Create: httpsink.Endpoint{Path: "/v1/events"}}}}
		d.Destination = Destination{}
	}
	toAPI := func(d *Definition) {
		d.Destination = Destination{HTTP: &httpsink.Config{BaseURL: "https://billing.example.com",
			Create: httpsink.Endpoint{Path: "/v1/customers"}, Update: httpsink.Endpoint{Path: "/v1/customers/{{.external_id}}"}}}
	}
	tests := []struct {
		name  string
		shape func(*Definition)
		give  Reconcile
		want  string
	}{
		{name: "unknown extras", give: Reconcile{Extras: "purge"},
			want: `reconcile.extras: "purge" is not "report", "delete" or "mark"`},
		{name: "delete from a saga", shape: saga, give: Reconcile{Extras: ExtrasDelete},
			want: `reconcile.extras: "delete" needs the integration to have exactly one destination, a PostgreSQL table; it has 2`},
		{name: "mark in an API", shape: toAPI, give: Reconcile{Extras: ExtrasMark, MarkColumn: "deleted_at"},
			want: `reconcile.extras: "mark" needs the destination to be a PostgreSQL table; it is http`},
		{name: "mark without a column", give: Reconcile{Extras: ExtrasMark},
			want: `reconcile.mark_column: required with extras: mark`},
		{name: "a mark column without mark", give: Reconcile{Extras: ExtrasDelete, MarkColumn: "deleted_at"},
			want: `reconcile.mark_column: is only used with extras: mark (extras is "delete")`},
		{name: "a mark column that is not there", give: Reconcile{Extras: ExtrasMark, MarkColumn: "removed_at"},
			want: `reconcile.mark_column: "removed_at" is not a column of table "crm_contacts" (its columns: id, email, updated_at, deleted_at); add {name: removed_at, type: timestamptz}`},
		{name: "a text mark column", give: Reconcile{Extras: ExtrasMark, MarkColumn: "email"},
			want: `reconcile.mark_column: "email" is a text column; the mark column is timestamptz`},
		{name: "the version column", give: Reconcile{Extras: ExtrasMark, MarkColumn: "updated_at"},
			want: `reconcile.mark_column: "updated_at" is the version column of table "crm_contacts"`},
		{name: "too few chunks", give: Reconcile{Chunks: 8},
			want: `reconcile.chunks: 8 is out of range 16..65536 (0 = the default)`},
		{name: "too many chunks", give: Reconcile{Chunks: 1 << 20},
			want: `reconcile.chunks: 1048576 is out of range 16..65536`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			d := scheduled()
			if tt.shape != nil {
				tt.shape(&d)
			}
			d.Reconcile = tt.give
			refusedOnce(t, d, tt.want)
		})
	}
}

func TestCheckCron(t *testing.T) {
	good := []string{
		"0 2 * * *", "*/15 * * * *", "0 9-17 * * MON-FRI", "0 0 1,15 * *", "5 4 * * sun", "0 0 * JAN,jul *",
		"0 12 * * 1-5/2", "3/5 * * * *", "0 0 * * 7", "0 0 1 1 * 2030", "30 0 2 * * * 2026-2030",
		"@yearly", "@annually", "@monthly", "@weekly", "@daily", "@midnight", "@hourly", "  0 2 * * *  ",
		"0 0 * * tu", "0 0 * sept *",
	}
	for _, c := range good {
		if err := checkCron(c); err != nil {
			t.Errorf("checkCron(%q) = %v", c, err)
		}
	}
	bad := []struct{ give, want string }{
		{"", "empty"},
		{"* * * *", "4 fields: want 5"},
		{"0 1 2 3 4 5 6 7", "8 fields"},
		{"60 * * * *", `minute "60": 60 is out of range 0-59`},
		{"0 24 * * *", `hour "24": 24 is out of range 0-23`},
		{"0 0 0 * *", `day-of-month "0": 0 is out of range 1-31`},
		{"0 0 * 13 *", `month "13": 13 is out of range 1-12`},
		{"0 0 * * 8", `day-of-week "8": 8 is out of range 0-7`},
		{"0 0 * * MONDAYS", `day-of-week "MONDAYS": "MONDAYS" is not a number 0-7 or a name such as sun`},
		{"0 0 * ja *", `month "ja": "ja" is not a number 1-12 or a name such as jan`},
		{"0 0 1 1 * 1999", `year "1999": 1999 is out of range 2000-2100`},
		{"*/0 * * * *", `step "0" is not a whole number of at least 1`},
		{"5-1 * * * *", "range 5-1 ends before it starts"},
		{"0 0 ? * *", `day-of-month "?": "?" is not a number 1-31`},
		{"0 0 L * *", `"L" is not a number`},
		{"@reboot", "unknown shorthand"},
		{"@every 15m", "set the schedule's every"},
		{"CRON_TZ=Europe/Paris 0 2 * * *", "set the schedule's time_zone"},
		{"TZ=UTC 0 2 * * *", "set the schedule's time_zone"},
		{"0 2 * * * # nightly", "a comment (#)"},
	}
	for _, tt := range bad {
		err := checkCron(tt.give)
		if err == nil || !strings.Contains(err.Error(), tt.want) {
			t.Errorf("checkCron(%q) = %v, want it to say %q", tt.give, err, tt.want)
		}
	}
}

func TestSchedule_Defaults(t *testing.T) {
	if s := (Schedule{}); !s.PausesOnFailure() || s.Catchup() != DefaultCatchupWindow {
		t.Errorf("zero schedule: pauses on failure %v, catch-up %v; want true, %v", s.PausesOnFailure(), s.Catchup(), DefaultCatchupWindow)
	}
	if s := (Schedule{PauseOnFailure: boolPtr(false), CatchupWindow: time.Hour}); s.PausesOnFailure() || s.Catchup() != time.Hour {
		t.Errorf("set schedule: pauses on failure %v, catch-up %v; want false, 1h", s.PausesOnFailure(), s.Catchup())
	}
}

// refusedOnce checks d fails validation with exactly one problem, starting
// with want (after the integration's name).
func refusedOnce(t *testing.T, d Definition, want string) {
	t.Helper()
	err := d.Normalize().Validate()
	if err == nil {
		t.Fatal("Validate() accepted it")
	}
	lines := strings.Split(err.Error(), "\n")
	if len(lines) != 1 {
		t.Errorf("want one problem, got:\n%v", err)
	}
	if want := `integration "crm-contacts": ` + want; !strings.HasPrefix(lines[0], want) {
		t.Errorf("Validate() =\n  %s\nwant it to start with\n  %s", lines[0], want)
	}
}
