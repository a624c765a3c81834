package apply

import (
	"encoding/json"
	"slices"
	"testing"

	"github.com/tetherflow/tether/activities/pages"
)

// TestAppliedEntries: a replay marks only the entries whose records reached
// the destination.
func TestAppliedEntries(t *testing.T) {
	p := &pages.Page{
		Raw:      make([]json.RawMessage, 5),
		RowIndex: []int{0, 2, 3}, // records 1 and 4 were invalid again
	}
	ids := []int64{11, 12, 13, 14, 15}
	got := appliedEntries(ids, p, map[int]bool{1: true}) // row 1 (record 2) refused
	if !slices.Equal(got, []int64{11, 14}) {
		t.Errorf("appliedEntries = %v, want [11 14]", got)
	}
	if got := appliedEntries(ids[:4], p, nil); got != nil {
		t.Errorf("appliedEntries with mismatched ids = %v, want none", got)
	}
}
