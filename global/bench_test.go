package global

import (
	"fmt"
	"io"
	"net/http"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// BenchmarkPut measures MeshTrace PUTs through the HTTP API into embedded
// etcd (with fsync, as in production), reporting throughput and latency
// percentiles. Run with: go test ./global -run '^$' -bench Put -benchtime 2s
func BenchmarkPut(b *testing.B) {
	for _, tc := range []struct {
		name   string
		update bool // update one existing policy per worker instead of creating
	}{{"create", false}, {"update", true}} {
		b.Run(tc.name, func(b *testing.B) {
			g, err := New(testConfig(b.TempDir()), nil)
			if err != nil {
				b.Fatal(err)
			}
			start(b, g)
			api, tok := "http://"+g.APIAddr(), g.AdminToken()
			client := &http.Client{Transport: &http.Transport{MaxIdleConnsPerHost: 64}}
			put := func(name string) (time.Duration, error) {
				body := strings.NewReader(fmt.Sprintf("type: MeshTrace\nmesh: default\nname: %s\nspec:\n  default:\n    backends:\n    - zipkin:\n        url: http://zipkin:9411/api/v2/spans\n", name))
				req, _ := http.NewRequest("PUT", api+"/meshes/default/meshtraces/"+name, body)
				req.Header.Set("Authorization", "Bearer "+tok)
				t0 := time.Now()
				resp, err := client.Do(req)
				if err != nil {
					return 0, err
				}
				_, _ = io.Copy(io.Discard, resp.Body)
				resp.Body.Close()
				if resp.StatusCode != 200 && resp.StatusCode != 201 {
					return 0, fmt.Errorf("PUT %s: %d", name, resp.StatusCode)
				}
				return time.Since(t0), nil
			}

			var (
				mu      sync.Mutex
				lat     []time.Duration
				seq     atomic.Int64
				workers atomic.Int64
			)
			b.SetParallelism(4) // 4 x GOMAXPROCS concurrent clients
			b.ResetTimer()
			began := time.Now()
			b.RunParallel(func(pb *testing.PB) {
				w := workers.Add(1)
				var mine []time.Duration
				for pb.Next() {
					name := fmt.Sprintf("bench-%d", seq.Add(1))
					if tc.update {
						name = fmt.Sprintf("bench-w%d", w)
					}
					d, err := put(name)
					if err != nil {
						b.Error(err)
						return
					}
					mine = append(mine, d)
				}
				mu.Lock()
				lat = append(lat, mine...)
				mu.Unlock()
			})
			elapsed := time.Since(began)
			b.StopTimer()
			if len(lat) == 0 {
				return
			}
			slices.Sort(lat)
			pct := func(p float64) float64 { return float64(lat[int(p*float64(len(lat)-1))].Microseconds()) / 1000 }
			b.ReportMetric(float64(len(lat))/elapsed.Seconds(), "ops/s")
			b.ReportMetric(pct(0.50), "p50-ms")
			b.ReportMetric(pct(0.99), "p99-ms")
		})
	}
}
