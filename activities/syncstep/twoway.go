package syncstep

import (
	"fmt"
	"maps"
	"slices"
	"strings"
	"time"
)

// TwoWayInput names a two-way integration.
type TwoWayInput struct {
	Integration string `json:"integration"`
	// Totals carries the counts over a continue-as-new.
	Totals TwoWayCounts `json:"totals,omitzero"`
	// Cycles carries the number of cycles over a continue-as-new.
	Cycles int `json:"cycles,omitempty"`
}

// TwoWayCounts count what a two-way sync did.
type TwoWayCounts struct {
	// ReadA and ReadB count the changes read from each side's feed.
	ReadA int `json:"readA"`
	ReadB int `json:"readB"`
	// Unchanged counts changes read that were no change: our own writes
	// coming back, re-reads.
	Unchanged int `json:"unchanged"`
	// UnchangedA is side a's share of Unchanged.
	UnchangedA int `json:"unchangedA"`
	// WritesA and WritesB count the records written (created, updated or
	// deleted) on each side.
	WritesA int `json:"writesA"`
	WritesB int `json:"writesB"`
	// Created counts records created on the other side; Linked records
	// found on both sides and linked.
	Created int `json:"created"`
	Linked  int `json:"linked"`
	// Deleted counts deletes carried to the other side.
	Deleted int `json:"deleted"`
	// Conflicts counts records both sides changed differently;
	// Resolved those the policy resolved; Parked those waiting for a
	// person; ManuallyResolved those a person resolved.
	Conflicts        int `json:"conflicts"`
	Resolved         int `json:"resolved"`
	Parked           int `json:"parked"`
	ManuallyResolved int `json:"manuallyResolved"`
	// Deferred counts records a side changed while they were being
	// written: resolved again from the side's feed.
	Deferred int `json:"deferred"`
}

// Add adds o to c.
func (c *TwoWayCounts) Add(o TwoWayCounts) {
	c.ReadA += o.ReadA
	c.ReadB += o.ReadB
	c.Unchanged += o.Unchanged
	c.UnchangedA += o.UnchangedA
	c.WritesA += o.WritesA
	c.WritesB += o.WritesB
	c.Created += o.Created
	c.Linked += o.Linked
	c.Deleted += o.Deleted
	c.Conflicts += o.Conflicts
	c.Resolved += o.Resolved
	c.Parked += o.Parked
	c.ManuallyResolved += o.ManuallyResolved
	c.Deferred += o.Deferred
}

// ParkedConflict is a conflict waiting for a person, as the workflow
// shows it.
type ParkedConflict struct {
	ID         int64     `json:"id"`
	AKey       string    `json:"aKey,omitempty"`
	BKey       string    `json:"bKey,omitempty"`
	Fields     []string  `json:"fields"`
	DetectedAt time.Time `json:"detectedAt"`
}

// TwoWayCycle is what one cycle of a two-way sync did, and what waits.
type TwoWayCycle struct {
	Counts TwoWayCounts `json:"counts"`
	// Parked are the integration's conflicts waiting for a person, the
	// newest MaxParkedShown of them; ParkedTotal counts them all.
	Parked      []ParkedConflict `json:"parked"`
	ParkedTotal int              `json:"parkedTotal"`
	// Fields are the shared fields (what edited values may set).
	Fields []string `json:"fields"`
	// Sides names the sides: a's name, then b's.
	Sides [2]string `json:"sides"`
	// Every is how long to wait before the next cycle.
	Every time.Duration `json:"every"`
}

// MaxParkedShown bounds the parked conflicts a cycle hands the workflow
// (its result, and the conflicts query, stay small); tether conflicts
// lists them all.
const MaxParkedShown = 100

// Choices of a manual resolution (ResolveInput.Choose).
const (
	ChooseA      = "a"
	ChooseB      = "b"
	ChooseMerge  = "merge"
	ChooseValues = "values"
)

// ResolveInput is a person's resolution of a parked conflict: keep side
// a's or b's record (or its delete), merge them (Prefer deciding the
// fields both changed), or set the record to Values.
type ResolveInput struct {
	Integration string         `json:"integration,omitempty"`
	Conflict    int64          `json:"conflict"`
	Choose      string         `json:"choose"`
	Prefer      string         `json:"prefer,omitempty"`
	Values      map[string]any `json:"values,omitempty"`
	// By names the person resolving it, for a client that sends no
	// Temporal identity with its Update (the Web UI): recorded as given,
	// marked so. A sender's identity, when there is one, is recorded
	// instead.
	By string `json:"by,omitempty"`
	// UpdateID names the Update that asked for it (set by the workflow):
	// the step reads who sent it from the history.
	UpdateID string `json:"updateId,omitempty"`
}

// NamedBy is how a resolver named in an Update's input (By) is recorded:
// a name the client gave, not an identity Temporal carried.
func NamedBy(by string) string { return by + " (named in the Update)" }

// ResolveResult is what a manual resolution did.
type ResolveResult struct {
	Conflict   int64          `json:"conflict"`
	Resolution string         `json:"resolution"`
	Result     map[string]any `json:"result"`
	ResolvedBy string         `json:"resolvedBy"`
	Writes     int            `json:"writes"`
}

// The two-way steps.
var (
	TwoWaySync      = NewActivity[TwoWayInput, TwoWayCycle]("TwoWaySync")
	ResolveConflict = NewActivity[ResolveInput, ResolveResult]("ResolveConflict")
)

// Failure types of a manual resolution.
const (
	TypeNoConflict    = "NoSuchConflict"
	TypeBadResolution = "BadResolution"
)

// CheckChoice says what is wrong with a resolution's choice, before it is
// applied (the workflow's Update validator calls it too).
func CheckChoice(in ResolveInput, fields []string) error {
	switch in.Choose {
	case ChooseA, ChooseB:
		if in.Prefer != "" || len(in.Values) > 0 {
			return fmt.Errorf(`choose %q takes neither "prefer" nor "values"`, in.Choose)
		}
	case ChooseMerge:
		if in.Prefer != ChooseA && in.Prefer != ChooseB {
			return fmt.Errorf(`choose "merge" needs "prefer": "a" or "b", the side whose value wins a field both sides changed`)
		}
	case ChooseValues:
		if len(in.Values) == 0 {
			return fmt.Errorf(`choose "values" needs "values": the record's shared fields and their values`)
		}
		for _, k := range slices.Sorted(maps.Keys(in.Values)) {
			if !slices.Contains(fields, k) {
				return fmt.Errorf("values.%s: not a shared field (the shared fields: %s)", k, strings.Join(fields, ", "))
			}
		}
	default:
		return fmt.Errorf(`choose: %q is not one of "a", "b", "merge", "values"`, in.Choose)
	}
	return nil
}
