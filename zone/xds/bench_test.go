package xds

import (
	"context"
	"fmt"
	"runtime"
	"syscall"
	"testing"
	"time"

	"github.com/envoyproxy/go-control-plane/pkg/cache/v3"

	"github.com/meshtrace/meshtrace/policy/meshtrace"
	"github.com/meshtrace/meshtrace/resource"
)

// benchProxies returns n distinct sidecars (own address, one http inbound
// of one of 100 services, three outbounds to other services of the 100) so
// that no two share a build and every outbound has endpoints (n/100 each).
func benchProxies(n int) []*resource.Resource {
	out := make([]*resource.Resource, n)
	for i := range out {
		svc := func(d int) string { return fmt.Sprintf("svc-%d", (i+d)%100) }
		dp := sidecar(fmt.Sprintf("backend-%d", i), svc(0), map[string]string{resource.TagZone: "east"}, svc(1), svc(2), svc(3))
		dp.Spec.(*resource.DataplaneSpec).Networking.Address = fmt.Sprintf("10.%d.%d.%d", i>>16&255, i>>8&255, i&255)
		out[i] = dp
	}
	return out
}

func benchPolicy(url string) *resource.Resource {
	return meshTrace("default", meshRef(), fullConf(zipkinBackend(url)))
}

// cpuTime is the CPU time (user + system) the process has used, all threads
// and the GC included: on a shared machine it is steadier than wall time.
func cpuTime() time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return 0
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

func heapInUse() uint64 {
	runtime.GC()
	runtime.GC()
	var m runtime.MemStats
	runtime.ReadMemStats(&m)
	return m.HeapAlloc
}

// BenchmarkBuild measures Build alone: time per proxy, and heap retained per
// proxy by the built snapshots.
// With parts=shared, proxy-independent pieces are shared through parts as
// the Reconciler does; with parts=none every proxy is built from scratch.
func BenchmarkBuild(b *testing.B) {
	for _, shared := range []bool{false, true} {
		for _, n := range []int{1000, 10000} {
			benchmarkBuild(b, n, shared)
		}
	}
}

func benchmarkBuild(b *testing.B, n int, shared bool) {
	name := fmt.Sprintf("parts=none/proxies=%d", n)
	if shared {
		name = fmt.Sprintf("parts=shared/proxies=%d", n)
	}
	{
		b.Run(name, func(b *testing.B) {
			dps := benchProxies(n)
			policies := []*resource.Resource{benchPolicy("http://zipkin:9411/api/v2/spans")}
			rules := make([]meshtrace.Rules, n)
			for i, dp := range dps {
				rules[i] = meshtrace.Compute(dp, policies)
			}
			in := &inputs{services: newServices()}
			for _, dp := range dps {
				in.services.set(dp.Key(), nil, contributions(dp))
			}
			in.services.flush()
			snaps := make([]*cache.Snapshot, n)
			var retained uint64
			var cpu time.Duration
			b.ReportAllocs()
			b.ResetTimer()
			for it := 0; it < b.N; it++ {
				b.StopTimer()
				clear(snaps)
				before := heapInUse()
				c0 := cpuTime()
				b.StartTimer()
				var ps *parts
				if shared {
					ps = newParts()
				}
				for i, dp := range dps {
					s, _, err := build(dp, rules[i].Conf, ps, digest{}, nil, in)
					if err != nil {
						b.Fatal(err)
					}
					snaps[i] = s
				}
				b.StopTimer()
				cpu += cpuTime() - c0
				retained = heapInUse() - before
				b.StartTimer()
			}
			b.ReportMetric(float64(b.Elapsed().Microseconds())/float64(b.N*n), "µs/proxy")
			b.ReportMetric(float64(retained)/float64(n), "bytes/proxy")
			b.ReportMetric(float64(cpu.Microseconds())/float64(b.N*n), "cpu-µs/proxy")
			runtime.KeepAlive(snaps)
		})
	}
}

// BenchmarkReconcile measures the Reconciler taking n new proxies: matching,
// merging, building and setting snapshots, and the heap it then holds per
// proxy (its state plus the snapshot cache's).
func BenchmarkReconcile(b *testing.B) {
	for _, n := range []int{1000, 10000} {
		b.Run(fmt.Sprintf("proxies=%d", n), func(b *testing.B) {
			dps := benchProxies(n)
			policies := []*resource.Resource{benchPolicy("http://zipkin:9411/api/v2/spans")}
			var retained uint64
			var cpu time.Duration
			var r *Reconciler
			b.ResetTimer()
			for it := 0; it < b.N; it++ {
				b.StopTimer()
				r = nil
				before := heapInUse()
				var err error
				r, err = NewReconciler(nil, cache.NewSnapshotCache(true, cache.IDHash{}, nil), nil)
				if err != nil {
					b.Fatal(err)
				}
				c0 := cpuTime()
				b.StartTimer()
				if err := r.Update(context.Background(), dps, policies); err != nil {
					b.Fatal(err)
				}
				b.StopTimer()
				cpu += cpuTime() - c0
				retained = heapInUse() - before
				b.StartTimer()
			}
			b.ReportMetric(float64(b.Elapsed().Microseconds())/float64(b.N*n), "µs/proxy")
			b.ReportMetric(float64(retained)/float64(n), "bytes/proxy")
			b.ReportMetric(float64(cpu.Microseconds())/float64(b.N*n), "cpu-µs/proxy")
			runtime.KeepAlive(r)
		})
	}
}

// BenchmarkPolicyChange measures a Mesh policy change that affects every one
// of 10k proxies, until every new snapshot is in the snapshot cache.
func BenchmarkPolicyChange(b *testing.B) {
	const n = 10000
	ctx := context.Background()
	out := newCountingCache()
	r, err := NewReconciler(nil, out, nil)
	if err != nil {
		b.Fatal(err)
	}
	if err := r.Update(ctx, benchProxies(n), []*resource.Resource{benchPolicy("http://zipkin-0:9411/api/v2/spans")}); err != nil {
		b.Fatal(err)
	}
	out.reset()
	b.ResetTimer()
	var worst, cpu time.Duration
	for it := 0; it < b.N; it++ {
		start, c0 := time.Now(), cpuTime()
		if err := r.Upsert(ctx, benchPolicy(fmt.Sprintf("http://zipkin-%d:9411/api/v2/spans", it+1))); err != nil {
			b.Fatal(err)
		}
		worst = max(worst, time.Since(start))
		cpu += cpuTime() - c0
		b.StopTimer()
		if got := out.reset(); len(got) != n {
			b.Fatalf("pushed %d proxies, want %d", len(got), n)
		}
		b.StartTimer()
	}
	b.ReportMetric(float64(b.Elapsed().Milliseconds())/float64(b.N), "ms/change")
	b.ReportMetric(float64(worst.Milliseconds()), "worst-ms")
	b.ReportMetric(float64(cpu.Milliseconds())/float64(b.N), "cpu-ms/change")
}

func BenchmarkBuildOne(b *testing.B) {
	dp := benchProxies(1)[0]
	rules := meshtrace.Compute(dp, []*resource.Resource{benchPolicy("http://zipkin:9411/api/v2/spans")})
	b.ReportAllocs()
	c0 := cpuTime()
	for b.Loop() {
		if _, err := Build(dp, rules, Env{}); err != nil {
			b.Fatal(err)
		}
	}
	b.ReportMetric(float64((cpuTime()-c0).Nanoseconds())/1e3/float64(b.N), "cpu-µs/op")
}

// BenchmarkDataplaneChurn measures Dataplane churn at 10k proxies: 100
// Dataplanes change address (so their services' endpoints change) one Upsert
// each, as a zone sees 100 changes a second. Every change is pushed (new
// snapshots set in the cache) when Upsert returns: worst-ms is the slowest
// change, ms/100-changes the time for all 100 (it must stay under a second
// to keep up), pushes/change the proxies each change reconfigured.
func BenchmarkDataplaneChurn(b *testing.B) {
	const n, changes = 10000, 100
	ctx := context.Background()
	out := newCountingCache()
	r, err := NewReconciler(nil, out, nil)
	if err != nil {
		b.Fatal(err)
	}
	dps := benchProxies(n)
	if err := r.Update(ctx, dps, []*resource.Resource{benchPolicy("http://zipkin:9411/api/v2/spans")}); err != nil {
		b.Fatal(err)
	}
	out.reset()
	var worst, cpu time.Duration
	pushes := 0
	b.ResetTimer()
	for it := 0; it < b.N; it++ {
		c0 := cpuTime()
		for j := range changes {
			i := (it*changes + j) * 97 % n
			dp := *dps[i]
			spec := *dp.Spec.(*resource.DataplaneSpec)
			spec.Networking.Address = fmt.Sprintf("10.200.%d.%d", (it*changes+j)>>8&255, (it*changes+j)&255)
			dp.Spec = &spec
			start := time.Now()
			if err := r.Upsert(ctx, &dp); err != nil {
				b.Fatal(err)
			}
			worst = max(worst, time.Since(start))
			dps[i] = &dp
		}
		cpu += cpuTime() - c0
		b.StopTimer()
		for _, c := range out.reset() {
			pushes += c
		}
		b.StartTimer()
	}
	b.ReportMetric(float64(b.Elapsed().Milliseconds())/float64(b.N), "ms/100-changes")
	b.ReportMetric(float64(worst.Microseconds())/1e3, "worst-ms")
	b.ReportMetric(float64(cpu.Milliseconds())/float64(b.N), "cpu-ms/100-changes")
	b.ReportMetric(float64(pushes)/float64(b.N*changes), "pushes/change")
}

// BenchmarkPolicyStream measures what a zone's reconciler does for 1000
// MeshTraces arriving from KDS (new, then changed, then deleted) in watch
// responses of batch policies each, on top of 10k policies already there
// and no proxies: the bookkeeping of the mesh's policy list alone.
func BenchmarkPolicyStream(b *testing.B) {
	for _, batch := range []int{1, 8, 40, 128} {
		b.Run(fmt.Sprintf("batch=%d", batch), func(b *testing.B) {
			ctx := context.Background()
			r, err := NewReconciler(nil, newCountingCache(), nil)
			if err != nil {
				b.Fatal(err)
			}
			var base []*resource.Resource
			for i := range 10000 {
				base = append(base, meshTrace(fmt.Sprintf("base-%05d", i), serviceRef(fmt.Sprintf("svc-%d", i%100)), withZipkin("http://zipkin:9411/api/v2/spans")))
			}
			if err := r.Update(ctx, nil, base); err != nil {
				b.Fatal(err)
			}
			stream := func(f func(i int) error) {
				for i := 0; i < 1000; i += batch {
					if err := f(i); err != nil {
						b.Fatal(err)
					}
				}
			}
			pols := func(i, v int) []*resource.Resource {
				var out []*resource.Resource
				for j := i; j < min(i+batch, 1000); j++ {
					out = append(out, meshTrace(fmt.Sprintf("new-%04d", (j*7919)%1000), serviceRef(fmt.Sprintf("svc-%d", j%100)), withZipkin(fmt.Sprintf("http://zipkin-%d:9411/api/v2/spans", v))))
				}
				return out
			}
			var cpu time.Duration
			b.ReportAllocs()
			for it := 0; b.Loop(); it++ {
				c0 := cpuTime()
				stream(func(i int) error { return r.Upsert(ctx, pols(i, 2*it)...) })
				stream(func(i int) error { return r.Upsert(ctx, pols(i, 2*it+1)...) })
				stream(func(i int) error {
					var keys []resource.Key
					for _, p := range pols(i, 0) {
						keys = append(keys, p.Key())
					}
					return r.Delete(ctx, keys...)
				})
				cpu += cpuTime() - c0
			}
			b.ReportMetric(float64(cpu.Milliseconds())/float64(b.N), "cpu-ms")
		})
	}
}
