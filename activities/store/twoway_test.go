package store

import (
	"encoding/json"
	"testing"
)

func TestStore_TwoWayPairsCursorsAndConflicts(t *testing.T) {
	t.Parallel()
	s := newStore(t)
	ctx := t.Context()
	p, err := s.SaveTwoWayPair(ctx, TwoWayPair{Integration: "crm", AKey: "7", Base: json.RawMessage(`{"name":"Ada"}`), AVersion: "v1"})
	if err != nil || p.ID == 0 {
		t.Fatalf("SaveTwoWayPair = %+v, %v", p, err)
	}
	p.BKey, p.BVersion = "cus_1", "3"
	if _, err := s.SaveTwoWayPair(ctx, p); err != nil {
		t.Fatal(err)
	}
	byB, err := s.TwoWayPairs(ctx, "crm", "b", []string{"cus_1", "cus_2"})
	if err != nil || len(byB) != 1 || byB["cus_1"].AKey != "7" || string(byB["cus_1"].Base) != `{"name": "Ada"}` || byB["cus_1"].BVersion != "3" {
		t.Fatalf("TwoWayPairs by b = %+v, %v", byB, err)
	}
	q, err := s.SaveTwoWayPair(ctx, TwoWayPair{Integration: "crm", AKey: "8", BKey: "cus_2"})
	if err != nil {
		t.Fatal(err)
	}
	p.Base, p.AVersion = json.RawMessage(`{"name":"Ada L"}`), "v2"
	q.Base, q.BVersion = nil, "9"
	if err := s.SaveTwoWayPairs(ctx, "crm", []TwoWayPair{p, q}); err != nil {
		t.Fatal(err)
	}
	byA, _ := s.TwoWayPairs(ctx, "crm", "a", []string{"7", "8"})
	if string(byA["7"].Base) != `{"name": "Ada L"}` || byA["7"].AVersion != "v2" || byA["8"].Base != nil || byA["8"].BVersion != "9" || byA["8"].BKey != "cus_2" {
		t.Errorf("after SaveTwoWayPairs: %+v", byA)
	}
	if other, _ := s.TwoWayPairs(ctx, "billing", "a", []string{"7"}); len(other) != 0 {
		t.Errorf("another integration's pairs: %+v", other)
	}
	if c, k, partial, err := s.TwoWayCursor(ctx, "crm", "a"); err != nil || c != "" || k != "" || partial {
		t.Errorf("cursor before any read: %q %q %v %v", c, k, partial, err)
	}
	for i, at := range []string{"2026-12-07T10:00:00Z", "2026-12-07T11:00:00Z"} {
		if err := s.SaveTwoWayCursor(ctx, "crm", "a", at, "7", i == 1); err != nil {
			t.Fatal(err)
		}
	}
	if c, k, partial, _ := s.TwoWayCursor(ctx, "crm", "a"); c != "2026-12-07T11:00:00Z" || k != "7" || !partial {
		t.Errorf("cursor %q %q %v", c, k, partial)
	}

	parked := Conflict{Integration: "crm", PairID: p.ID, AKey: "7", BKey: "cus_1", Base: json.RawMessage(`{"name":"Ada"}`),
		A: json.RawMessage(`{"name":"A"}`), B: json.RawMessage(`{"name":"B"}`), Fields: []string{"name"}, Policy: "manual", Status: ConflictParked}
	id1, err := s.RecordConflict(ctx, parked)
	if err != nil {
		t.Fatal(err)
	}
	parked.B = json.RawMessage(`{"name":"B2"}`) // B changed again before anyone looked
	id2, err := s.RecordConflict(ctx, parked)
	if err != nil || id2 != id1 {
		t.Fatalf("a second parked conflict of the pair: id %d (first %d), %v; want it to replace the first", id2, id1, err)
	}
	if _, err := s.RecordConflict(ctx, Conflict{Integration: "crm", PairID: p.ID + 1, Policy: "last_writer_wins", Status: ConflictResolved,
		Resolution: "last_writer_wins: b", Result: json.RawMessage(`{"name":"B"}`)}); err != nil {
		t.Fatal(err)
	}
	if byPair, err := s.ParkedConflicts(ctx, "crm"); err != nil || len(byPair) != 1 || len(byPair[p.ID]) != 1 || byPair[p.ID][0] != id1 {
		t.Errorf("ParkedConflicts = %v, %v; want conflict %d of pair %d", byPair, err, id1, p.ID)
	}
	list, err := s.ListConflicts(ctx, ConflictFilter{Integration: "crm", Status: ConflictParked})
	if err != nil || len(list) != 1 || string(list[0].B) != `{"name": "B2"}` || list[0].Fields[0] != "name" || !list[0].ResolvedAt.IsZero() {
		t.Fatalf("parked conflicts: %+v, %v", list, err)
	}
	ok, err := s.SettleConflict(ctx, "crm", id1, ConflictResolved, "manual: b", json.RawMessage(`{"name":"B2"}`), "erin@example.com")
	if err != nil || !ok {
		t.Fatalf("SettleConflict = %v, %v", ok, err)
	}
	if again, _ := s.SettleConflict(ctx, "crm", id1, ConflictResolved, "manual: a", nil, "mallory"); again {
		t.Error("a resolved conflict was resolved again")
	}
	all, _ := s.ListConflicts(ctx, ConflictFilter{Integration: "crm"})
	if len(all) != 2 {
		t.Fatalf("conflicts: %+v", all)
	}
	for _, c := range all {
		if c.ID == id1 && (c.Status != ConflictResolved || c.ResolvedBy != "erin@example.com" || c.Resolution != "manual: b" || c.ResolvedAt.IsZero()) {
			t.Errorf("the settled conflict: %+v", c)
		}
	}
}
