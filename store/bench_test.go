package store_test

import (
	"context"
	"fmt"
	"slices"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/meshtrace/meshtrace/resource"
	"github.com/meshtrace/meshtrace/store"
)

// Benchmarks against embedded etcd. Names say whether fsync is on ("Fsync",
// the production default) or off ("NoFsync", UnsafeNoFsync).

func benchStore(b *testing.B, fsync bool) *store.EtcdStore {
	b.Helper()
	return openEmbedded(b, b.TempDir(), !fsync)
}

func benchTrace(i int) *resource.Resource {
	r, _ := resource.New(resource.TypeMeshTrace, "default", fmt.Sprintf("trace-%06d", i))
	r.Labels = map[string]string{"team": "bench", "kuma.io/origin": "global"}
	return r
}

func reportOps(b *testing.B, n int, start time.Time) {
	b.ReportMetric(float64(n)/time.Since(start).Seconds(), "ops/s")
}

// latencies collects per-operation latencies and reports p50 and p99.
type latencies struct {
	mu sync.Mutex
	d  []time.Duration
}

func (l *latencies) add(d []time.Duration) {
	l.mu.Lock()
	l.d = append(l.d, d...)
	l.mu.Unlock()
}

func (l *latencies) report(b *testing.B) {
	if len(l.d) == 0 {
		return
	}
	slices.Sort(l.d)
	q := func(p float64) float64 { return float64(l.d[int(p*float64(len(l.d)-1))].Microseconds()) }
	b.ReportMetric(q(0.50), "p50-us")
	b.ReportMetric(q(0.99), "p99-us")
}

func benchPut(b *testing.B, fsync bool) {
	s := benchStore(b, fsync)
	ctx := context.Background()
	var lat latencies
	var mine []time.Duration
	b.ResetTimer()
	start := time.Now()
	for i := 0; b.Loop(); i++ {
		t0 := time.Now()
		if _, err := s.Put(ctx, benchTrace(i%1000), store.AnyVersion); err != nil {
			b.Fatal(err)
		}
		mine = append(mine, time.Since(t0))
	}
	reportOps(b, b.N, start)
	lat.add(mine)
	lat.report(b)
}

func benchPutParallel(b *testing.B, fsync bool) {
	s := benchStore(b, fsync)
	ctx := context.Background()
	var next atomic.Int64
	b.SetParallelism(8) // 8 writers per GOMAXPROCS: etcd batches concurrent writes
	b.ResetTimer()
	start := time.Now()
	var lat latencies
	b.RunParallel(func(pb *testing.PB) {
		var mine []time.Duration
		defer func() { lat.add(mine) }()
		for pb.Next() {
			i := int(next.Add(1))
			t0 := time.Now()
			if _, err := s.Put(ctx, benchTrace(i%1000), store.AnyVersion); err != nil {
				b.Error(err)
				return
			}
			mine = append(mine, time.Since(t0))
		}
	})
	reportOps(b, b.N, start)
	lat.report(b)
}

func BenchmarkEtcdPutFsync(b *testing.B)           { benchPut(b, true) }
func BenchmarkEtcdPutNoFsync(b *testing.B)         { benchPut(b, false) }
func BenchmarkEtcdPutParallelFsync(b *testing.B)   { benchPutParallel(b, true) }
func BenchmarkEtcdPutParallelNoFsync(b *testing.B) { benchPutParallel(b, false) }

func BenchmarkEtcdUpdateCASNoFsync(b *testing.B) {
	s := benchStore(b, false)
	ctx := context.Background()
	r := benchTrace(0)
	if _, err := s.Put(ctx, r, store.MustNotExist); err != nil {
		b.Fatal(err)
	}
	b.ResetTimer()
	start := time.Now()
	for b.Loop() {
		if _, err := s.Put(ctx, r, r.Version); err != nil {
			b.Fatal(err)
		}
	}
	reportOps(b, b.N, start)
}

func BenchmarkEtcdGetNoFsync(b *testing.B) {
	s := benchStore(b, false)
	ctx := context.Background()
	r := benchTrace(0)
	if _, err := s.Put(ctx, r, store.AnyVersion); err != nil {
		b.Fatal(err)
	}
	b.ResetTimer()
	start := time.Now()
	for b.Loop() {
		if _, _, err := s.Get(ctx, r.Key()); err != nil {
			b.Fatal(err)
		}
	}
	reportOps(b, b.N, start)
}

func BenchmarkEtcdList1000NoFsync(b *testing.B) {
	s := benchStore(b, false)
	ctx := context.Background()
	ops := make([]store.Op, 1000)
	for i := range ops {
		ops[i] = store.Op{Resource: benchTrace(i)}
	}
	if _, err := s.Txn(ctx, ops); err != nil {
		b.Fatal(err)
	}
	b.ResetTimer()
	start := time.Now()
	for b.Loop() {
		res, err := s.List(ctx, resource.TypeMeshTrace, store.ListOptions{Limit: 100})
		if err != nil || res.Total != 1000 {
			b.Fatalf("List: total %d, %v", res.Total, err)
		}
	}
	reportOps(b, b.N, start)
}

func BenchmarkMemoryPut(b *testing.B) {
	s := store.NewMemory()
	ctx := context.Background()
	start := time.Now()
	for i := 0; b.Loop(); i++ {
		if _, err := s.Put(ctx, benchTrace(i%1000), store.AnyVersion); err != nil {
			b.Fatal(err)
		}
	}
	reportOps(b, b.N, start)
}

// BenchmarkEtcdWatchEvents: 1000 MeshTraces written in transactions of 100
// (as a zone applies what KDS sends) while four watchers follow the store
// from a revision, as a zone's reconciler and upload watch and global's KDS
// feed and residency index do, each with its own type filter. cpu-ms is the
// process CPU (etcd included) per 1000 writes delivered to every watcher.
func BenchmarkEtcdWatchEvents(b *testing.B) {
	s := benchStore(b, false)
	ctx := context.Background()
	filters := [][]resource.Type{nil,
		{resource.TypeMeshTrace, resource.TypeMeshGateway, resource.TypeDataplane, resource.TypeZone},
		{resource.TypeDataplane, resource.TypeZoneInsight},
		{resource.TypeMeshTrace}}
	b.ReportAllocs()
	var cpu time.Duration
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		b.StopTimer()
		rev, err := s.Revision(ctx)
		if err != nil {
			b.Fatal(err)
		}
		wctx, cancel := context.WithCancel(ctx)
		var wg sync.WaitGroup
		end := fmt.Sprintf("end-%d", i)
		for _, f := range filters {
			ch, err := s.Watch(wctx, store.WatchOptions{Types: f, FromRevision: rev + 1})
			if err != nil {
				b.Fatal(err)
			}
			wg.Go(func() {
				for resp := range ch {
					if resp.Err != nil {
						b.Error(resp.Err)
						return
					}
					for _, ev := range resp.Events {
						if ev.Resource.Name == end {
							return
						}
					}
				}
			})
		}
		ops := make([]store.Op, 1000)
		for j := range ops {
			ops[j] = store.Op{Resource: benchTrace(i*1000 + j)}
		}
		// The last writes are ones every watcher takes one of: they stop
		// at it.
		endTrace, _ := resource.New(resource.TypeMeshTrace, "default", end)
		endDP, _ := resource.New(resource.TypeDataplane, "default", end)
		b.StartTimer()
		c0 := cpuTime()
		for j := 0; j < len(ops); j += 100 {
			if _, err := s.Txn(ctx, ops[j:j+100]); err != nil {
				b.Fatal(err)
			}
		}
		if _, err := s.Txn(ctx, []store.Op{{Resource: endTrace}, {Resource: endDP}}); err != nil {
			b.Fatal(err)
		}
		wg.Wait()
		cpu += cpuTime() - c0
		b.StopTimer()
		cancel()
	}
	b.ReportMetric(float64(cpu.Milliseconds())/float64(b.N), "cpu-ms")
}

// cpuTime is the CPU time (user and system) this process has used.
func cpuTime() time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return 0
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// BenchmarkEtcdPutBatchNoFsync: eight writers each creating MeshTraces one
// PutBatch at a time with RequireMesh, as global's API writes a PUT (group
// commit shares their transactions). cpu-us/op is the whole process's CPU
// (store and embedded etcd) per write.
func BenchmarkEtcdPutBatchNoFsync(b *testing.B) {
	s := benchStore(b, false)
	ctx := context.Background()
	mesh, _ := resource.New(resource.TypeMesh, "", "default")
	if _, err := s.Put(ctx, mesh, store.AnyVersion); err != nil {
		b.Fatal(err)
	}
	var next atomic.Int64
	opts := store.BatchOptions{RequireMesh: true}
	b.SetParallelism(4) // 8 writers on 2 CPUs
	b.ReportAllocs()
	var ru0, ru1 syscall.Rusage
	_ = syscall.Getrusage(syscall.RUSAGE_SELF, &ru0)
	b.ResetTimer()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			r := benchTrace(int(next.Add(1)))
			if _, err := s.PutBatch(ctx, []*resource.Resource{r}, opts); err != nil {
				b.Error(err)
				return
			}
		}
	})
	b.StopTimer()
	_ = syscall.Getrusage(syscall.RUSAGE_SELF, &ru1)
	cpu := ru1.Utime.Nano() + ru1.Stime.Nano() - ru0.Utime.Nano() - ru0.Stime.Nano()
	b.ReportMetric(float64(cpu)/1000/float64(b.N), "cpu-us/op")
}
