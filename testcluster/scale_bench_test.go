package testcluster

import (
	"context"
	"fmt"
	"os"
	"runtime"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/meshtrace/meshtrace/demo"
	"github.com/meshtrace/meshtrace/resource"
	"github.com/meshtrace/meshtrace/store"
)

// BenchmarkScale is issue 10's scale case on real parts: a global and one
// zone CP, each on embedded etcd, 30k MeshTraces in one mesh (one per
// service, 20 Mesh-wide) and 1k registered Dataplanes in the zone whose
// xDS the zone builds, 10 of them (those no MeshService policy overrides)
// with an Envoy stand-in on ADS. It reports
// one Mesh-wide policy change PUT on global -> answered (put-p50/p99-ms),
// -> in the zone's store
// (store-p50/p99-ms) and -> ACKed by every stand-in (xds-p50/p99-ms), the
// inspect GETs of one proxy through global (forwarded to the zone) and on
// the zone, and how long the zone and then global take to stop.
func BenchmarkScale(b *testing.B) {
	if testing.Short() {
		b.Skip("30k policies and 1k proxies")
	}
	const policies, proxies, meshWide, envoys = 30000, 1000, 20, 10
	c := Start(b, Options{Zones: []string{"east"}})
	z := c.Zones["east"]
	ctx := context.Background()

	// Proxies through the zone's API (8 clients), as kuma-dp registers them.
	var wg sync.WaitGroup
	errs := make(chan error, 8)
	for w := range 8 {
		wg.Go(func() {
			for i := w; i < proxies; i += 8 {
				if err := demo.RegisterProxy(ctx, z.API, fmt.Sprintf("dp-%d", i), fmt.Sprintf("svc-%d", i), "10.1.0.1"); err != nil {
					errs <- err
					return
				}
			}
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		b.Fatal(err)
	}

	// Policies straight into global's store (the API's write path has its
	// own benchmarks); KDS carries them to the zone.
	rs := make([]*resource.Resource, 0, policies)
	for j := range policies {
		doc := burstPolicy(fmt.Sprintf("scale-%d", j), j)
		if j < meshWide {
			doc = scaleMeshWide(j, "seed")
		}
		items, err := resource.DecodeAll([]byte(doc))
		if err != nil {
			b.Fatal(err)
		}
		rs = append(rs, items[0])
	}
	w := watchZones(b, c)
	seeded := time.Now()
	if _, err := c.gst.PutBatch(ctx, rs, store.BatchOptions{}); err != nil {
		b.Fatal(err)
	}
	w.wait(b, c, policies)
	seed := time.Since(seeded) // reported at the end: ResetTimer drops metrics

	var stand []*Envoy
	for i := range envoys {
		stand = append(stand, ConnectEnvoy(b, z.XDSAddr(), fmt.Sprintf("default.dp-%d", i)))
	}
	doc := scaleMeshWide(0, "warm")
	if err := c.Apply(doc); err != nil {
		b.Fatal(err)
	}
	for _, e := range stand {
		e.WaitCollectors(b, 120*time.Second, "meshtrace:zipkin:warm-0_9411")
	}

	var putLat, storeLat, xdsLat []time.Duration
	b.ResetTimer()
	for i := 0; b.Loop(); i++ {
		host := fmt.Sprintf("change%d", i)
		want := "meshtrace:zipkin:" + host + "-0_9411"
		start := time.Now()
		if err := c.Apply(scaleMeshWide(0, host)); err != nil {
			b.Fatal(err)
		}
		putLat = append(putLat, time.Since(start))
		key := resource.Key{Type: resource.TypeMeshTrace, Mesh: "default", Name: "scale-0"}
		Eventually(b, 60*time.Second, func() error {
			r, _, err := z.Store().Get(ctx, key)
			if err != nil {
				return err
			}
			if got := (*r.Spec.(*resource.MeshTraceSpec).Default.Backends)[0].Zipkin.URL; got != "http://"+host+"-0:9411/api/v2/spans" {
				return fmt.Errorf("zone has %s", got)
			}
			return nil
		})
		storeLat = append(storeLat, time.Since(start))
		var ew sync.WaitGroup
		for _, e := range stand {
			ew.Go(func() { waitFor(e, want, 60*time.Second) })
		}
		ew.Wait()
		xdsLat = append(xdsLat, time.Since(start))
	}
	b.StopTimer()
	b.ReportMetric(seed.Seconds(), "s-seed-to-zone")
	reportAs(b, putLat, "put")
	reportAs(b, storeLat, "store")
	reportAs(b, xdsLat, "xds")

	name := fmt.Sprintf("dp-%d", proxies/2)
	for _, t := range []struct {
		metric string
		api    func() error
	}{
		{"xds-global-ms", func() error {
			_, err := c.API.Do(ctx, "GET", "/meshes/default/dataplanes/east."+name+"/xds", nil, nil, nil)
			return err
		}},
		{"rules-global-ms", func() error {
			_, err := c.API.Do(ctx, "GET", "/meshes/default/dataplanes/east."+name+"/_rules", nil, nil, nil)
			return err
		}},
		{"xds-zone-ms", func() error {
			_, err := z.API.Do(ctx, "GET", "/meshes/default/dataplanes/"+name+"/xds", nil, nil, nil)
			return err
		}},
		{"rules-zone-ms", func() error {
			_, err := z.API.Do(ctx, "GET", "/meshes/default/dataplanes/"+name+"/_rules", nil, nil, nil)
			return err
		}},
		{"policy-dps-global-ms", func() error {
			_, err := c.API.Do(ctx, "GET", "/meshes/default/meshtraces/scale-0/_resources/dataplanes", nil, nil, nil)
			return err
		}},
	} {
		start := time.Now()
		if err := t.api(); err != nil {
			b.Fatalf("%s: %v", t.metric, err)
		}
		b.ReportMetric(float64(time.Since(start).Microseconds())/1000, t.metric)
	}

	start := time.Now()
	c.StopZone("east")
	b.ReportMetric(time.Since(start).Seconds(), "s-stop-zone")
	start = time.Now()
	c.StopGlobal()
	b.ReportMetric(time.Since(start).Seconds(), "s-stop-global")
	b.Logf("load average %s, GOMAXPROCS %d", loadAvg(), runtime.GOMAXPROCS(0))
}

// scaleMeshWide is Mesh-wide policy scale-<i> sending spans to host-<i>.
func scaleMeshWide(i int, host string) string {
	return fmt.Sprintf("type: MeshTrace\nname: scale-%d\nmesh: default\nspec:\n  targetRef:\n    kind: Mesh\n  default:\n    backends:\n    - zipkin:\n        url: http://%s-%d:9411/api/v2/spans\n", i, host, i)
}

func loadAvg() string {
	b, err := os.ReadFile("/proc/loadavg")
	if err != nil {
		return "unknown"
	}
	f := strings.Fields(string(b))
	if len(f) < 3 {
		return "unknown"
	}
	return strings.Join(f[:3], " ")
}

func reportAs(b *testing.B, lat []time.Duration, prefix string) {
	if len(lat) == 0 {
		return
	}
	s := append([]time.Duration(nil), lat...)
	slices.Sort(s)
	pct := func(p float64) float64 { return float64(s[int(float64(len(s)-1)*p)].Microseconds()) / 1000 }
	b.ReportMetric(pct(0.5), prefix+"-p50-ms")
	b.ReportMetric(pct(0.99), prefix+"-p99-ms")
}
