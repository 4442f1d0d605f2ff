package kds

import (
	"fmt"
	"runtime"
	"sync/atomic"
	"testing"

	"github.com/hashicorp/go-hclog"

	"github.com/meshtrace/meshtrace/resource"
	"github.com/meshtrace/meshtrace/store"
)

// A stream's sender taking changes while the feed delivers them never gets a
// change with a cursor below the change's own revision: each response (here
// one change at its own revision) lands in the queue with its cursor in one
// step. When the two were separate, a take between them sent the change with
// the revision before it, nothing queued was left to carry the later cursor,
// and the zone's applied revision stayed one behind (kds
// BenchmarkPropagation/zones=10 failing "revision N not applied by 10 zones").
func TestFeedDeliversChangeAndCursorTogether(t *testing.T) {
	b := newBroadcaster(nil, []resource.Type{resource.TypeMeshTrace}, nil, hclog.NewNullLogger())
	q := newQueue(nil)
	b.subs[&subscription{b: b, q: q}] = struct{}{}
	const changes = 100000
	oversize := func(*entry, int, error) { t.Error("oversize") }
	var done atomic.Bool
	errc := make(chan error, 1)
	go func() {
		defer close(errc)
		for {
			finished := done.Load()
			res, cursor := q.take(1<<20, oversize)
			for _, r := range res {
				if r.Revision > cursor {
					errc <- fmt.Errorf("%s@%d taken with cursor %d", r.Name, r.Revision, cursor)
					return
				}
			}
			if finished && len(res) == 0 {
				return
			}
			runtime.Gosched()
		}
	}()
	for rev := int64(1); rev <= changes; rev++ {
		p := policy(fmt.Sprint("p-", rev%10), int(rev))
		b.deliver(store.WatchResponse{Revision: rev, Events: []store.Event{{Type: store.EventPut, Resource: p, Revision: rev}}})
	}
	done.Store(true)
	if err := <-errc; err != nil {
		t.Fatal(err)
	}
	if _, ok := q.idleCursor(); !ok {
		t.Fatal("changes left in the queue")
	}
}
