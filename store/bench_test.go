package store_test

import (
	"context"
	"fmt"
	"sync/atomic"
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

func benchPut(b *testing.B, fsync bool) {
	s := benchStore(b, fsync)
	ctx := context.Background()
	b.ResetTimer()
	start := time.Now()
	for i := 0; b.Loop(); i++ {
		if _, err := s.Put(ctx, benchTrace(i%1000), store.AnyVersion); err != nil {
			b.Fatal(err)
		}
	}
	reportOps(b, b.N, start)
}

func benchPutParallel(b *testing.B, fsync bool) {
	s := benchStore(b, fsync)
	ctx := context.Background()
	var next atomic.Int64
	b.SetParallelism(8) // 8 writers per GOMAXPROCS: etcd batches concurrent writes
	b.ResetTimer()
	start := time.Now()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			i := int(next.Add(1))
			if _, err := s.Put(ctx, benchTrace(i%1000), store.AnyVersion); err != nil {
				b.Error(err)
				return
			}
		}
	})
	reportOps(b, b.N, start)
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
