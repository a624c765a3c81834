package validate

import (
	"sync/atomic"
	"testing"
)

// TestParallel_EachIndexOnce: every index of a page is checked exactly
// once, whatever the page's size against the chunking.
func TestParallel_EachIndexOnce(t *testing.T) {
	for _, n := range []int{0, 1, 63, 64, 127, 128, 1000, 1001} {
		seen := make([]atomic.Int32, n)
		parallel(n, func(i int) { seen[i].Add(1) })
		for i := range seen {
			if got := seen[i].Load(); got != 1 {
				t.Fatalf("n=%d: index %d checked %d times", n, i, got)
			}
		}
	}
}
