package kds

import (
	"fmt"
	"testing"

	"github.com/hashicorp/go-hclog"

	"github.com/meshtrace/meshtrace/resource"
	"github.com/meshtrace/meshtrace/store"
)

// BenchmarkTakeTwoZones is the send path of a burst on global: the
// broadcaster delivers 1000 new policies, in watch responses of 8, to the
// queues of two zones sharing the server's wire cache, and each zone's
// pusher takes them in batches. Every burst names new policies, as the
// three-process burst does, so the cache grows by 1000 resources a burst.
func BenchmarkTakeTwoZones(b *testing.B) {
	const changes, perResponse = 1000, 8
	cache := newWireCache()
	bc := newBroadcaster(nil, []resource.Type{resource.TypeMeshTrace}, cache, hclog.NewNullLogger())
	qs := []*queue{newQueue(cache), newQueue(cache)}
	for _, q := range qs {
		bc.subs[&subscription{b: bc, q: q}] = struct{}{}
	}
	b.ReportAllocs()
	rev := int64(0)
	for i := 0; b.Loop(); i++ {
		b.StopTimer()
		var resps []store.WatchResponse
		for j := 0; j < changes; j += perResponse {
			rev++
			resp := store.WatchResponse{Revision: rev}
			for k := j; k < j+perResponse; k++ {
				r := policy(fmt.Sprintf("burst-%d-%d", i, k), k)
				r.Version = rev
				resp.Events = append(resp.Events, store.Event{Type: store.EventPut, Resource: r, Revision: rev})
			}
			resps = append(resps, resp)
		}
		b.StartTimer()
		for _, resp := range resps {
			bc.deliver(resp)
		}
		for _, q := range qs {
			for n := 0; n < changes; {
				out, _ := q.take(64<<10, func(*entry, int, error) {})
				n += len(out)
			}
		}
	}
}
