// Package parallel runs independent calls on every core.
package parallel

import (
	"runtime"
	"sync"
	"sync/atomic"
)

// For calls f(0..n-1), on GOMAXPROCS goroutines when n is at least from
// (below that, or on one core, in order on the caller's goroutine). Each
// call must touch only its own index.
func For(n, from int, f func(i int)) {
	workers := min(runtime.GOMAXPROCS(0), n)
	if n < from || workers < 2 {
		for i := range n {
			f(i)
		}
		return
	}
	var next atomic.Int64
	var wg sync.WaitGroup
	for range workers {
		wg.Go(func() {
			for i := int(next.Add(1)) - 1; i < n; i = int(next.Add(1)) - 1 {
				f(i)
			}
		})
	}
	wg.Wait()
}
