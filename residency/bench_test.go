package residency

import (
	"context"
	"fmt"
	"slices"
	"syscall"
	"testing"
	"time"

	"github.com/meshtrace/meshtrace/resource"
	"github.com/meshtrace/meshtrace/store"
)

const (
	benchZones    = 10
	benchPerZone  = 1000
	benchServices = 50
)

func benchZoneName(i int) string { return fmt.Sprintf("zone-%d", i) }

// benchState is 10 zones in Enforce, 1k proxies each over 50 services, one
// MeshSubset policy per zone to its own collector and a Mesh-wide fallback
// to a collector every zone allows.
func benchState(b *testing.B) []*resource.Resource {
	var items []*resource.Resource
	for z := range benchZones {
		name := benchZoneName(z)
		items = append(items, zoneRes(b, name, "Enforce", "*."+name+".svc", "*.shared.svc"))
		items = append(items, policy(b, "trace-"+name, subset(name), zipkin("http://jaeger."+name+".svc:9411/api/v2/spans")))
		for i := range benchPerZone {
			items = append(items, dp(b, name, fmt.Sprintf("proxy-%d", i), fmt.Sprintf("svc-%d", i%benchServices), "version", fmt.Sprintf("v%d", i%3)))
		}
	}
	items = append(items, policy(b, "fallback", "", zipkin("http://jaeger.shared.svc:9411/api/v2/spans")))
	return items
}

func percentile(d []time.Duration, p float64) time.Duration {
	if len(d) == 0 {
		return 0
	}
	slices.Sort(d)
	return d[min(len(d)-1, int(float64(len(d))*p))]
}

// BenchmarkAdmission is the admission of one MeshTrace write against 10
// zones × 1k Dataplanes, for the writes an operator makes: a Mesh-wide
// policy (checks every proxy), a zone's MeshSubset policy (its 1k proxies),
// a MeshService policy (one service in every zone: 200 proxies), and the
// delete of a zone policy (the fallback takes over). Reports p50 and p99.
func BenchmarkAdmission(b *testing.B) {
	ix := newIndex(b, benchState(b)...)
	writes := map[string][2]*resource.Resource{
		"mesh-wide-update": {ix.policy(resource.Key{Type: resource.TypeMeshTrace, Mesh: "default", Name: "fallback"}),
			policy(b, "fallback", "", zipkin("http://jaeger2.shared.svc:9411/api/v2/spans"))},
		"zone-policy-update": {ix.policy(resource.Key{Type: resource.TypeMeshTrace, Mesh: "default", Name: "trace-zone-3"}),
			policy(b, "trace-zone-3", subset("zone-3"), zipkin("http://otel.zone-3.svc:9411/api/v2/spans"))},
		"service-policy-create": {nil, policy(b, "svc-7", "{kind: MeshService, name: svc-7}", zipkin("http://jaeger.central:9411"))},
		"zone-policy-delete":    {ix.policy(resource.Key{Type: resource.TypeMeshTrace, Mesh: "default", Name: "trace-zone-5"}), nil},
	}
	for _, name := range []string{"mesh-wide-update", "zone-policy-update", "service-policy-create", "zone-policy-delete"} {
		w := writes[name]
		b.Run(name, func(b *testing.B) {
			lat := make([]time.Duration, 0, b.N)
			refused := 0
			cpu0 := cpuTime()
			for b.Loop() {
				start := time.Now()
				d, err := ix.Admit(context.Background(), w[0], w[1])
				if err != nil {
					b.Fatal(err)
				}
				d.Done(0)
				lat = append(lat, time.Since(start))
				refused = len(d.Refused)
			}
			b.ReportMetric(float64((cpuTime()-cpu0).Microseconds())/1000/float64(len(lat)), "cpu-ms/op")
			b.ReportMetric(float64(percentile(lat, 0.50).Microseconds())/1000, "p50-ms")
			b.ReportMetric(float64(percentile(lat, 0.99).Microseconds())/1000, "p99-ms")
			b.ReportMetric(float64(refused), "refused-proxies")
		})
	}
}

// BenchmarkUploadReevaluation is the continuous audit after one zone
// uploads 1k Dataplanes (a new zone-10 joining 10 zones × 1k): one watch
// batch of 1k puts applied and every new proxy evaluated; and the full
// re-evaluation of all 11k proxies (a relist).
func BenchmarkUploadReevaluation(b *testing.B) {
	state := benchState(b)
	var upload []store.Event
	name := benchZoneName(benchZones)
	state = append(state, zoneRes(b, name, "Enforce", "*."+name+".svc"))
	for i := range benchPerZone {
		upload = append(upload, store.Event{Type: store.EventPut, Resource: dp(b, name, fmt.Sprintf("proxy-%d", i), fmt.Sprintf("svc-%d", i%benchServices)), Revision: 2})
	}
	b.Run("upload-1k", func(b *testing.B) {
		var cpu time.Duration
		for b.Loop() {
			b.StopTimer()
			ix := newIndex(b, state...)
			b.StartTimer()
			c := cpuTime()
			ix.Apply(2, upload)
			cpu += cpuTime() - c
			if n := len(ix.Violations()); n != benchPerZone {
				b.Fatalf("violations %d", n) // zone-10's proxies get the fallback, outside *.zone-10.svc
			}
		}
		b.ReportMetric(float64(cpu.Microseconds())/1000/float64(b.N), "cpu-ms/op")
	})
	b.Run("full-11k", func(b *testing.B) {
		ix := newIndex(b, state...)
		all := append(slices.Clone(state), eventsResources(upload)...)
		cpu0 := cpuTime()
		for b.Loop() {
			ix.Load(3, all)
		}
		b.ReportMetric(float64((cpuTime()-cpu0).Microseconds())/1000/float64(b.N), "cpu-ms/op")
	})
}

// cpuTime is the CPU time (user + system) the process used so far: under a
// loaded machine it is the figure to compare, wall time swings with the load.
func cpuTime() time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return 0
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

func eventsResources(evs []store.Event) []*resource.Resource {
	out := make([]*resource.Resource, len(evs))
	for i, e := range evs {
		out[i] = e.Resource
	}
	return out
}

// BenchmarkApplyPolicy is what global's index does for each policy of a
// burst of PUTs: one watch event of a MeshTrace that selects no proxy (a
// service no zone runs), against 10 zones × 1k Dataplanes.
func BenchmarkApplyPolicy(b *testing.B) {
	ix := newIndex(b, benchState(b)...)
	ps := [2]*resource.Resource{
		policy(b, "svc-none", "{kind: MeshService, name: svc-none}", zipkin("http://jaeger.central:9411")),
		policy(b, "svc-none", "{kind: MeshService, name: svc-none}", zipkin("http://jaeger2.central:9411")),
	}
	rev := int64(10)
	b.ReportAllocs()
	for b.Loop() {
		rev++
		ix.Apply(rev, []store.Event{{Type: store.EventPut, Resource: ps[rev%2], Revision: rev}})
	}
}
