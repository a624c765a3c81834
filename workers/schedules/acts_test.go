package schedules

import (
	"testing"

	schedulepb "go.temporal.io/api/schedule/v1"
)

func TestPatchActs_OneActPerPartOfAPatch(t *testing.T) {
	base := Act{Schedule: "crm/sync", Actor: "frank", Ref: "run#9"}
	got := patchActs(base, &schedulepb.SchedulePatch{Pause: "maintenance", TriggerImmediately: &schedulepb.TriggerImmediatelyRequest{}})
	if len(got) != 2 || got[0].Action != ActPause || got[0].Reason != "maintenance" || got[0].Ref != "run#9" ||
		got[1].Action != ActTrigger || got[1].Ref != "run#9/1" || got[1].Actor != "frank" {
		t.Errorf("patchActs = %+v", got)
	}
	if got := patchActs(base, &schedulepb.SchedulePatch{}); len(got) != 0 {
		t.Errorf("an empty patch gave %+v", got)
	}
	got = patchActs(base, &schedulepb.SchedulePatch{Unpause: "done", BackfillRequest: []*schedulepb.BackfillRequest{{}}})
	if len(got) != 2 || got[0].Action != ActUnpause || got[1].Action != ActBackfill {
		t.Errorf("patchActs = %+v", got)
	}
}
