package integration

import (
	"errors"
	"fmt"
	"strings"
	"time"
)

// Schedule kinds: what a schedule starts.
const (
	// ScheduleSync starts an incremental sync (SyncWorkflow).
	ScheduleSync = "sync"
	// ScheduleReconcile starts a reconciliation (ReconcileWorkflow).
	ScheduleReconcile = "reconcile"
	// ScheduleRefresh starts a batch refresh (SyncWorkflow with refresh).
	ScheduleRefresh = "refresh"
)

// Schedule is one periodic run of an integration. Set Cron or Every (or
// both: the schedule fires at the union of their times).
type Schedule struct {
	// Kind is ScheduleSync, ScheduleReconcile or ScheduleRefresh.
	Kind string `mapstructure:"kind" yaml:"kind" json:"kind"`
	// Cron lists cron expressions ("0 2 * * *", "@daily"), read in TimeZone.
	Cron []string `mapstructure:"cron" yaml:"cron" json:"cron,omitempty"`
	// Every is a fixed interval ("15m"), Offset shifts its phase.
	Every  time.Duration `mapstructure:"every" yaml:"every" json:"every,omitempty"`
	Offset time.Duration `mapstructure:"offset" yaml:"offset" json:"offset,omitempty"`
	// TimeZone is an IANA name ("Europe/Paris"); default UTC.
	TimeZone string `mapstructure:"time_zone" yaml:"time_zone" json:"time_zone,omitempty"`
	// Jitter delays each run by a random time up to this much.
	Jitter time.Duration `mapstructure:"jitter" yaml:"jitter" json:"jitter,omitempty"`
	// CatchupWindow is how late a missed run (server down) may still
	// start; default one minute (Temporal's own default is a year).
	CatchupWindow time.Duration `mapstructure:"catchup_window" yaml:"catchup_window" json:"catchup_window,omitempty"`
	// PauseOnFailure pauses the schedule after a run fails (default true:
	// a failing integration stops being retried every period until a
	// person looks); set it false to keep going.
	PauseOnFailure *bool `mapstructure:"pause_on_failure" yaml:"pause_on_failure" json:"pause_on_failure,omitempty"`
	// Paused creates the schedule paused.
	Paused bool `mapstructure:"paused" yaml:"paused" json:"paused,omitempty"`
	// DryRun (reconcile only) reports drift without repairing anything.
	DryRun bool `mapstructure:"dry_run" yaml:"dry_run" json:"dry_run,omitempty"`
}

// Schedule defaults and limits (Temporal's own, where they are the
// server's).
const (
	// DefaultCatchupWindow is how late a run missed while the Temporal
	// server was down may still start, when a schedule does not say.
	DefaultCatchupWindow = time.Minute
	// MinCatchupWindow is the shortest catch-up window Temporal honours.
	MinCatchupWindow = 10 * time.Second
	// MinEvery is the shortest interval Temporal schedules.
	MinEvery = time.Second
	// MinReconcileChunks and MaxReconcileChunks bound Reconcile.Chunks.
	MinReconcileChunks = 16
	MaxReconcileChunks = 65536
)

// PausesOnFailure reports whether the schedule pauses after a failed run:
// PauseOnFailure, default true.
func (s Schedule) PausesOnFailure() bool { return s.PauseOnFailure == nil || *s.PauseOnFailure }

// Catchup is the schedule's catch-up window: CatchupWindow, default
// DefaultCatchupWindow.
func (s Schedule) Catchup() time.Duration {
	if s.CatchupWindow == 0 {
		return DefaultCatchupWindow
	}
	return s.CatchupWindow
}

// ValidateSchedules reports every problem of the schedules and the
// reconciliation policy (a part of Validate), each naming the field. It
// reads only Name, Schedules, Reconcile and the destinations' kinds and
// PostgreSQL tables, so an integration file can be checked before its
// secrets are read.
func (d Definition) ValidateSchedules() error { return errors.Join(d.scheduleProblems()...) }

// scheduleProblems checks the schedules and the reconciliation policy.
func (d Definition) scheduleProblems() []error {
	var errs []error
	add := func(field, format string, args ...any) {
		errs = append(errs, fmt.Errorf("integration %q: %s: %s", d.Name, field, fmt.Sprintf(format, args...)))
	}
	kinds := fmt.Sprintf("%q, %q or %q", ScheduleSync, ScheduleRefresh, ScheduleReconcile)
	seen := map[string]int{}
	for i, s := range d.Schedules {
		f := fmt.Sprintf("schedules[%d]", i)
		switch s.Kind {
		case ScheduleSync, ScheduleRefresh, ScheduleReconcile:
			if j, dup := seen[s.Kind]; dup {
				add(f+".kind", "a second %q schedule (schedules[%d] is one): an integration has at most one schedule per kind: give that one all the times (cron, every)", s.Kind, j)
			} else {
				seen[s.Kind] = i
			}
		case "":
			add(f+".kind", "required: %s", kinds)
		default:
			add(f+".kind", "%q is not %s", s.Kind, kinds)
		}
		if len(s.Cron) == 0 && s.Every == 0 {
			add(f, "no cron and no every: say when it runs, e.g. cron: [\"0 2 * * *\"] or every: 15m")
		}
		for j, c := range s.Cron {
			if err := checkCron(c); err != nil {
				add(fmt.Sprintf("%s.cron[%d]", f, j), "%q: %v", c, err)
			}
		}
		switch {
		case s.Every < 0:
			add(f+".every", "%v is negative", s.Every)
		case s.Every > 0 && s.Every < MinEvery:
			add(f+".every", "%v is shorter than %v, the shortest interval Temporal schedules", s.Every, MinEvery)
		}
		switch {
		case s.Offset < 0:
			add(f+".offset", "%v is negative", s.Offset)
		case s.Offset > 0 && s.Every == 0:
			add(f+".offset", "shifts the times of every, which is not set")
		case s.Offset > 0 && s.Offset >= s.Every:
			add(f+".offset", "%v is not shorter than every (%v)", s.Offset, s.Every)
		}
		switch tz := s.TimeZone; {
		case tz == "":
		case strings.EqualFold(tz, "Local"):
			add(f+".time_zone", "%q is whatever the Temporal server's machine uses: name the zone, e.g. Europe/Paris or UTC", tz)
		default:
			if _, err := time.LoadLocation(tz); err != nil {
				add(f+".time_zone", "%q is not an IANA time zone (e.g. Europe/Paris, America/New_York, UTC): %v", tz, err)
			}
		}
		if s.Jitter < 0 {
			add(f+".jitter", "%v is negative", s.Jitter)
		}
		switch {
		case s.CatchupWindow < 0:
			add(f+".catchup_window", "%v is negative", s.CatchupWindow)
		case s.CatchupWindow > 0 && s.CatchupWindow < MinCatchupWindow:
			add(f+".catchup_window", "%v is shorter than %v, the shortest catch-up window Temporal honours", s.CatchupWindow, MinCatchupWindow)
		}
		if s.DryRun && s.Kind != ScheduleReconcile {
			add(f+".dry_run", "only a reconcile schedule has a dry run; a %s writes what it reads", s.Kind)
		}
	}
	errs = append(errs, d.reconcileProblems()...)
	return append(errs, d.eventsProblems()...)
}
