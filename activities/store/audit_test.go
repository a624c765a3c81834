package store

import (
	"testing"
	"time"
)

func TestStore_AuditKeepsEachActOnce(t *testing.T) {
	t.Parallel()
	s := newStore(t)
	ctx := t.Context()
	e := AuditEntry{Actor: "alice", Via: "cli", Action: AuditStart, Integration: "crm", Target: "wf-1", TargetRun: "r-1",
		Details: map[string]any{"runId": "wf-1/r-1"}}
	for range 2 { // a retried step records the act once
		if err := s.RecordAudit(ctx, e); err != nil {
			t.Fatal(err)
		}
	}
	if err := s.RecordAudit(ctx, AuditEntry{Actor: "bob", Action: AuditCancel, Integration: "crm", Target: "wf-1", TargetRun: "r-1"}); err != nil {
		t.Fatal(err)
	}
	if err := s.RecordScheduleChanges(ctx, "worker-1", "worker", []string{"crm/sync"}, []string{"billing/refresh"}, nil); err != nil {
		t.Fatal(err)
	}
	if err := s.RecordScheduleChanges(ctx, "worker-1", "worker", nil, []string{"billing/refresh"}, []string{"crm/sync"}); err != nil {
		t.Fatal(err)
	}
	all, err := s.ListAudit(ctx, AuditFilter{})
	if err != nil || len(all) != 6 {
		t.Fatalf("ListAudit = %d entries, %v; want 6: %+v", len(all), err, all)
	}
	crm, _ := s.ListAudit(ctx, AuditFilter{Integration: "crm"})
	var actions []string
	for _, x := range crm {
		actions = append(actions, x.Action)
	}
	if len(crm) != 4 || crm[0].Action != AuditScheduleDelete || crm[len(crm)-1].Actor != "alice" || crm[len(crm)-1].Details["runId"] != "wf-1/r-1" {
		t.Errorf("crm's audit, newest first: %v (%+v)", actions, crm)
	}
	if bob, _ := s.ListAudit(ctx, AuditFilter{Actor: "bob", Since: time.Now().Add(-time.Minute), Limit: 5}); len(bob) != 1 || bob[0].Action != AuditCancel {
		t.Errorf("bob's: %+v", bob)
	}
}

// An act first recorded without its actor (a reset, by the run's own
// step) takes the actor of a later record of it (tether reset's), and
// never loses a known one; an act's own time is kept.
func TestStore_AuditLearnsAnUnknownActor(t *testing.T) {
	t.Parallel()
	s := newStore(t)
	ctx := t.Context()
	reset := AuditEntry{Action: AuditReset, Integration: "crm", Target: "wf-1", TargetRun: "r-2"}
	record := func(actor, via string) {
		t.Helper()
		e := reset
		e.Actor, e.Via = actor, via
		if err := s.RecordAudit(ctx, e); err != nil {
			t.Fatal(err)
		}
	}
	record("", "")
	record("erin", "tether reset")
	record("", "")
	record("mallory", "tether reset")
	paused := time.Date(2026, 12, 1, 9, 30, 0, 0, time.UTC)
	if err := s.RecordAudit(ctx, AuditEntry{At: paused, Actor: "frank", Action: "schedule.pause", Target: "crm/sync", TargetRun: "run#9"}); err != nil {
		t.Fatal(err)
	}
	all, err := s.ListAudit(ctx, AuditFilter{})
	if err != nil || len(all) != 2 {
		t.Fatalf("ListAudit = %+v, %v; want 2 entries", all, err)
	}
	if all[0].Actor != "erin" || all[0].Via != "tether reset" || !all[1].At.Equal(paused) {
		t.Errorf("entries %+v: want the reset by erin, and the pause at %s", all, paused)
	}
}
