package global

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"net/http"
	"slices"
	"testing"
	"time"

	"github.com/meshtrace/meshtrace/resource"
	"github.com/meshtrace/meshtrace/store"
)

// BenchmarkResidencyPut is one MeshTrace PUT through the HTTP API of a global
// holding 10 zones × 1k Dataplanes (every zone in Enforce, a MeshSubset
// policy per zone), admitted by the residency check against all 10k proxies
// (a Mesh-wide policy, the bench of residency.BenchmarkAdmission): dry runs
// (decode, validation, admission, the store's read-only check) and real
// writes (plus the etcd write with fsync). Reports p50 and p99.
func BenchmarkResidencyPut(b *testing.B) {
	g, err := New(testConfig(b.TempDir()), nil)
	if err != nil {
		b.Fatal(err)
	}
	start(b, g)
	api, tok := "http://"+g.APIAddr(), g.AdminToken()
	ctx := context.Background()
	var ops []store.Op
	for z := range 10 {
		zone := fmt.Sprintf("zone-%d", z)
		zr, err := resource.Decode([]byte("type: Zone\nname: " + zone + "\nresidency:\n  mode: Enforce\n  allowedCollectors: ['*." + zone + ".svc', '*.shared.svc']\n"))
		if err != nil {
			b.Fatal(err)
		}
		ops = append(ops, store.Op{Key: zr.Key(), Resource: zr})
		zp, err := resource.Decode([]byte("type: MeshTrace\nmesh: default\nname: trace-" + zone + "\nspec:\n  targetRef: {kind: MeshSubset, tags: {kuma.io/zone: " + zone + "}}\n  default:\n    backends:\n    - zipkin: {url: 'http://jaeger." + zone + ".svc:9411/api/v2/spans'}\n"))
		if err != nil {
			b.Fatal(err)
		}
		ops = append(ops, store.Op{Key: zp.Key(), Resource: zp})
		for i := range 1000 {
			dp, err := resource.Decode(fmt.Appendf(nil, `{"type":"Dataplane","mesh":"default","name":"%[1]s.proxy-%[2]d","labels":{"kuma.io/zone":%[1]q,"kuma.io/origin":"zone","kuma.io/display-name":"proxy-%[2]d"},
"networking":{"address":"10.0.0.1","inbound":[{"port":8080,"tags":{"kuma.io/service":"svc-%[3]d","kuma.io/zone":%[1]q,"kuma.io/protocol":"http"}}]}}`, zone, i, i%50))
			if err != nil {
				b.Fatal(err)
			}
			ops = append(ops, store.Op{Key: dp.Key(), Resource: dp})
		}
	}
	rev, err := g.Store().Txn(ctx, ops)
	if err != nil {
		b.Fatal(err)
	}
	if err := g.Residency().WaitFor(ctx, rev); err != nil {
		b.Fatal(err)
	}
	client := &http.Client{}
	put := func(query string, i int) time.Duration {
		body := fmt.Appendf(nil, "type: MeshTrace\nmesh: default\nname: fallback\nspec:\n  default:\n    backends:\n    - zipkin:\n        url: http://jaeger%d.shared.svc:9411/api/v2/spans\n", i%2)
		req, _ := http.NewRequest("PUT", api+"/meshes/default/meshtraces/fallback"+query, bytes.NewReader(body))
		req.Header.Set("Authorization", "Bearer "+tok)
		t0 := time.Now()
		resp, err := client.Do(req)
		if err != nil {
			b.Fatal(err)
		}
		_, _ = io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		if resp.StatusCode != 200 && resp.StatusCode != 201 {
			b.Fatalf("PUT: %d", resp.StatusCode)
		}
		return time.Since(t0)
	}
	put("", 0)
	for _, mode := range []struct{ name, query string }{{"dry-run", "?dry-run=true"}, {"write", ""}} {
		b.Run(mode.name, func(b *testing.B) {
			var lat []time.Duration
			i := 0
			for b.Loop() {
				i++
				lat = append(lat, put(mode.query, i))
			}
			slices.Sort(lat)
			b.ReportMetric(float64(lat[len(lat)/2].Microseconds())/1000, "p50-ms")
			b.ReportMetric(float64(lat[min(len(lat)-1, len(lat)*99/100)].Microseconds())/1000, "p99-ms")
		})
	}
}
