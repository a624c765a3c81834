package schedules

import (
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"strings"
	"time"

	commonpb "go.temporal.io/api/common/v1"
	enumspb "go.temporal.io/api/enums/v1"
	"go.temporal.io/sdk/client"
	"go.temporal.io/sdk/converter"
	"go.temporal.io/sdk/temporal"

	"github.com/tetherflow/tether/activities/integration"
	"github.com/tetherflow/tether/activities/lib/progress"
	"github.com/tetherflow/tether/workflows/datasync"
	"github.com/tetherflow/tether/workflows/reconcile"
)

// MemoKey is the memo field of a schedule (and of its action) that holds
// its Stamp.
const MemoKey = "tether"

// Trigger is the trigger of the runs schedules start.
const Trigger = "schedule"

// hashFormat changes when what the hash covers changes.
const hashFormat = 1

// Options says whose schedules Apply keeps and where their runs go.
type Options struct {
	// TaskQueue is where the scheduled runs are started: the workers'
	// task queue. Required.
	TaskQueue string
	// Owner tags the schedules Apply creates; Apply updates and deletes
	// only schedules of its owner. Default TaskQueue.
	Owner string
	// Logger gets a line for every schedule created, updated or deleted
	// (default: none).
	Logger *slog.Logger
}

func (o Options) withDefaults() (Options, error) {
	if o.TaskQueue == "" {
		return o, errors.New("schedules: no task queue to start the scheduled runs on")
	}
	if o.Owner == "" {
		o.Owner = o.TaskQueue
	}
	if o.Logger == nil {
		o.Logger = slog.New(slog.DiscardHandler)
	}
	return o, nil
}

// Stamp is what tether writes in the memo of a schedule it manages. The
// schedule's own memo holds Owner, Integration and Kind, set when it is
// created; its action's memo holds all of it, replaced on every update.
type Stamp struct {
	// Owner is the Options.Owner that created the schedule.
	Owner string `json:"owner"`
	// Integration and Kind are what the schedule runs.
	Integration string `json:"integration"`
	Kind        string `json:"kind"`
	// Hash is the hash of the declaration and action the schedule was last
	// made from (action memo only).
	Hash string `json:"hash,omitempty"`
	// Paused is whether that declaration said paused (action memo only):
	// an update sets the schedule's paused state only when this changes.
	Paused bool `json:"paused,omitempty"`
	// Spec is the declared times, for people (action memo only).
	Spec string `json:"spec,omitempty"`
}

// Desired is one schedule as declared.
type Desired struct {
	// ID is the schedule id: <integration>/<kind>.
	ID string
	// Stamp is what the schedule's action memo must hold.
	Stamp Stamp
	// Options create the schedule.
	Options client.ScheduleOptions
}

// ID is the id of an integration's schedule of a kind.
func ID(integrationName, kind string) string { return integrationName + "/" + kind }

// WorkflowID is the workflow id of the runs a schedule starts; Temporal
// appends each run's time to it.
func WorkflowID(integrationName, kind string) string {
	return ID(integrationName, kind) + "/" + Trigger
}

// Overlap is what a schedule of a kind does when its time comes while its
// previous run still runs: a sync or refresh skips that time (two runs of
// one integration never write at once, and the next run reads whatever
// the skipped one would have); a reconciliation is buffered, once.
func Overlap(kind string) enumspb.ScheduleOverlapPolicy {
	if kind == integration.ScheduleReconcile {
		return enumspb.SCHEDULE_OVERLAP_POLICY_BUFFER_ONE
	}
	return enumspb.SCHEDULE_OVERLAP_POLICY_SKIP
}

// Build turns the definitions' schedules into the schedules Apply keeps,
// sorted by id. Every definition must be valid and named once; otherwise
// every problem is returned and nothing is built.
func Build(opts Options, defs []integration.Definition) ([]Desired, error) {
	opts, err := opts.withDefaults()
	if err != nil {
		return nil, err
	}
	var errs []error
	seen := map[string]bool{}
	var out []Desired
	for _, d := range defs {
		if seen[d.Name] {
			errs = append(errs, fmt.Errorf("integration %q is given twice", d.Name))
			continue
		}
		seen[d.Name] = true
		if err := d.Validate(); err != nil {
			errs = append(errs, err)
			continue
		}
		for _, s := range d.Schedules {
			w, err := desired(opts, d.Name, s)
			if err != nil {
				errs = append(errs, fmt.Errorf("integration %q: schedule %s: %w", d.Name, s.Kind, err))
				continue
			}
			out = append(out, w)
		}
	}
	if err := errors.Join(errs...); err != nil {
		return nil, err
	}
	slices.SortFunc(out, func(a, b Desired) int { return strings.Compare(a.ID, b.ID) })
	return out, nil
}

// desired is one declared schedule of the integration name.
func desired(opts Options, name string, s integration.Schedule) (Desired, error) {
	id := ID(name, s.Kind)
	var workflowType string
	var input any
	switch s.Kind {
	case integration.ScheduleSync:
		workflowType, input = datasync.WorkflowType, datasync.Input{Integration: name, Trigger: Trigger, Wait: true}
	case integration.ScheduleRefresh:
		workflowType, input = datasync.WorkflowType, datasync.Input{Integration: name, Refresh: true, Trigger: Trigger, Wait: true}
	case integration.ScheduleReconcile:
		workflowType, input = reconcile.WorkflowType, reconcile.Input{Integration: name, DryRun: s.DryRun, Trigger: Trigger, Wait: true}
	default:
		return Desired{}, fmt.Errorf("unknown kind %q", s.Kind)
	}
	tz := s.TimeZone
	if tz == "" {
		tz = "UTC"
	}
	spec := client.ScheduleSpec{
		CronExpressions: slices.Clone(s.Cron),
		Jitter:          s.Jitter,
		TimeZoneName:    tz,
	}
	if s.Every > 0 {
		spec.Intervals = []client.ScheduleIntervalSpec{{Every: s.Every, Offset: s.Offset}}
	}
	stamp := Stamp{Owner: opts.Owner, Integration: name, Kind: s.Kind, Paused: s.Paused, Spec: describeTimes(s, tz)}
	attrs := temporal.NewSearchAttributes(
		datasync.IntegrationAttr.ValueSet(name),
		datasync.StatusAttr.ValueSet(progress.StatusRunning),
	)
	action := &client.ScheduleWorkflowAction{
		ID:                    WorkflowID(name, s.Kind),
		Workflow:              workflowType,
		Args:                  []any{input},
		TaskQueue:             opts.TaskQueue,
		TypedSearchAttributes: attrs,
	}
	h, err := hash(s, tz, action, input)
	if err != nil {
		return Desired{}, err
	}
	stamp.Hash = h
	action.Memo = map[string]any{MemoKey: stamp}
	return Desired{
		ID:    id,
		Stamp: stamp,
		Options: client.ScheduleOptions{
			ID:             id,
			Spec:           spec,
			Action:         action,
			Overlap:        Overlap(s.Kind),
			CatchupWindow:  s.Catchup(),
			PauseOnFailure: s.PausesOnFailure(),
			Note:           note(opts.Owner, name),
			Paused:         s.Paused,
			Memo:           map[string]any{MemoKey: Stamp{Owner: opts.Owner, Integration: name, Kind: s.Kind}},
			// Lists schedules by integration:
			// temporal schedule list --query 'IntegrationName="crm-contacts"'
			TypedSearchAttributes: temporal.NewSearchAttributes(datasync.IntegrationAttr.ValueSet(name)),
		},
	}, nil
}

// note is the note of a schedule tether creates (or sets paused as
// declared); Temporal replaces it when a person pauses the schedule or a
// failed run does.
func note(owner, name string) string {
	return fmt.Sprintf("managed by tether (owner %s) from the schedules of integration %s: edit the declaration, not the schedule; pause and unpause freely", owner, name)
}

// describeTimes says when a schedule runs, for people.
func describeTimes(s integration.Schedule, tz string) string {
	var parts []string
	if len(s.Cron) > 0 {
		parts = append(parts, "cron "+strings.Join(s.Cron, " | "))
	}
	if s.Every > 0 {
		p := "every " + s.Every.String()
		if s.Offset > 0 {
			p += " offset " + s.Offset.String()
		}
		parts = append(parts, p)
	}
	out := strings.Join(parts, " + ") + " (" + tz + ")"
	if s.Jitter > 0 {
		out += " jitter " + s.Jitter.String()
	}
	return out
}

// hashed is everything a schedule is made from that an update changes.
type hashed struct {
	Format         int               `json:"format"`
	Cron           []string          `json:"cron"`
	Every          time.Duration     `json:"every"`
	Offset         time.Duration     `json:"offset"`
	TimeZone       string            `json:"timeZone"`
	Jitter         time.Duration     `json:"jitter"`
	Overlap        string            `json:"overlap"`
	CatchupWindow  time.Duration     `json:"catchupWindow"`
	PauseOnFailure bool              `json:"pauseOnFailure"`
	Paused         bool              `json:"paused"`
	Workflow       string            `json:"workflow"`
	WorkflowID     string            `json:"workflowId"`
	TaskQueue      string            `json:"taskQueue"`
	Input          json.RawMessage   `json:"input"`
	Attributes     map[string]string `json:"attributes"`
}

// hash is the hex SHA-256 of the schedule's declaration and action. The
// order of cron expressions does not count (the schedule fires at their
// union).
func hash(s integration.Schedule, tz string, a *client.ScheduleWorkflowAction, input any) (string, error) {
	in, err := json.Marshal(input)
	if err != nil {
		return "", fmt.Errorf("action input: %w", err)
	}
	attrs := map[string]string{}
	for k, v := range a.TypedSearchAttributes.GetUntypedValues() {
		attrs[k.GetName()] = fmt.Sprint(v)
	}
	cron := slices.Clone(s.Cron)
	slices.Sort(cron)
	h := hashed{
		Format: hashFormat, Cron: cron, Every: s.Every, Offset: s.Offset, TimeZone: tz, Jitter: s.Jitter,
		Overlap: Overlap(s.Kind).String(), CatchupWindow: s.Catchup(), PauseOnFailure: s.PausesOnFailure(), Paused: s.Paused,
		Workflow: fmt.Sprint(a.Workflow), WorkflowID: a.ID, TaskQueue: a.TaskQueue, Input: in, Attributes: attrs,
	}
	b, err := json.Marshal(h)
	if err != nil {
		return "", err
	}
	sum := sha256.Sum256(b)
	return hex.EncodeToString(sum[:]), nil
}

// Current is what Apply reads of a schedule on the server.
type Current struct {
	// Owner is the owner in the schedule's memo, or else in its action's;
	// "" for a schedule tether did not create.
	Owner string
	// Action is the Stamp of the action's memo (zero when there is none:
	// the action was replaced by hand).
	Action Stamp
}

// CurrentOf reads the stamps of a described schedule.
func CurrentOf(d *client.ScheduleDescription) Current {
	var cur Current
	if s, ok := StampOf(d.Memo); ok {
		cur.Owner = s.Owner
	}
	if a, ok := d.Schedule.Action.(*client.ScheduleWorkflowAction); ok {
		if p, ok := a.Memo[MemoKey].(*commonpb.Payload); ok {
			var s Stamp
			if converter.GetDefaultDataConverter().FromPayload(p, &s) == nil {
				cur.Action = s
			}
		}
	}
	if cur.Owner == "" {
		cur.Owner = cur.Action.Owner
	}
	return cur
}

// StampOf decodes the Stamp of a schedule's memo (a description's or a
// list entry's).
func StampOf(memo *commonpb.Memo) (Stamp, bool) {
	p, ok := memo.GetFields()[MemoKey]
	if !ok {
		return Stamp{}, false
	}
	var s Stamp
	if err := converter.GetDefaultDataConverter().FromPayload(p, &s); err != nil || s.Owner == "" {
		return Stamp{}, false
	}
	return s, true
}

// Verdict is what Apply does with a declared schedule the server has.
type Verdict int

// Verdicts.
const (
	// Unchanged: the schedule was made from this declaration.
	Unchanged Verdict = iota
	// Update: the declaration changed (or the action was replaced).
	Update
	// Foreign: another owner's schedule, or one tether did not create.
	Foreign
)

// Decide says what to do with a declared schedule the server has as cur.
func Decide(owner string, want Desired, cur Current) Verdict {
	switch {
	case cur.Owner != owner:
		return Foreign
	case cur.Action.Hash == want.Stamp.Hash:
		return Unchanged
	}
	return Update
}

// Updated is the update that makes the described schedule the declared
// one. Its state (paused, note) is kept as it is, so that a pause made by
// a person or by a failed run stays, unless the declaration's paused
// setting changed since the schedule was last made from it (or the
// schedule cannot say: its action was replaced by hand).
func Updated(want Desired, have client.ScheduleDescription) *client.ScheduleUpdate {
	o := want.Options
	spec := o.Spec
	state := have.Schedule.State
	if state == nil {
		state = &client.ScheduleState{}
	} else {
		cp := *state
		state = &cp
	}
	if prev := CurrentOf(&have).Action; prev.Hash == "" || prev.Paused != want.Stamp.Paused {
		state.Paused, state.Note = o.Paused, o.Note
	}
	return &client.ScheduleUpdate{
		Schedule: &client.Schedule{
			Action: o.Action,
			Spec:   &spec,
			Policy: &client.SchedulePolicies{
				Overlap:        o.Overlap,
				CatchupWindow:  o.CatchupWindow,
				PauseOnFailure: o.PauseOnFailure,
			},
			State: state,
		},
	}
}
