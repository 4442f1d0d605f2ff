package parallel

import (
	"sync/atomic"
	"testing"
)

// Every index is called exactly once, below and above the threshold.
func TestForCallsEachIndexOnce(t *testing.T) {
	for _, n := range []int{0, 1, 31, 32, 1000} {
		calls := make([]atomic.Int32, n)
		For(n, 32, func(i int) { calls[i].Add(1) })
		for i := range calls {
			if got := calls[i].Load(); got != 1 {
				t.Fatalf("n=%d: index %d called %d times", n, i, got)
			}
		}
	}
}
