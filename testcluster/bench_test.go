package testcluster

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/meshtrace/meshtrace/cli"
	"github.com/meshtrace/meshtrace/resource"
	"github.com/meshtrace/meshtrace/store"
)

var storeListAll = store.ListOptions{}

// BenchmarkPropagation measures global PUT -> new collector cluster accepted
// by a proxy's ADS stream in every zone: the whole path (REST API, etcd,
// KDS, zone etcd, reconciler, snapshot cache, ADS).
func BenchmarkPropagation(b *testing.B) {
	for _, zones := range []int{2, 10} {
		b.Run(fmt.Sprintf("zones=%d", zones), func(b *testing.B) {
			names := make([]string, zones)
			for i := range names {
				names[i] = fmt.Sprintf("zone-%d", i)
			}
			c := Start(b, Options{Zones: names})
			var envoys []*Envoy
			for _, n := range names {
				z := c.Zones[n]
				z.RegisterProxy(b, "backend-1", "backend")
				envoys = append(envoys, ConnectEnvoy(b, z.XDSAddr(), "default.backend-1"))
			}
			policy := func(i int) (string, string) {
				host := fmt.Sprintf("collector-%d", i)
				return fmt.Sprintf("type: MeshTrace\nname: bench\nmesh: default\nspec:\n  targetRef:\n    kind: Mesh\n  default:\n    backends:\n    - zipkin:\n        url: http://%s:9411/api/v2/spans\n", host),
					"meshtrace:zipkin:" + host + "_9411"
			}
			doc, want := policy(-1)
			if err := c.Apply(doc); err != nil {
				b.Fatal(err)
			}
			for _, e := range envoys {
				e.WaitCollectors(b, 30*time.Second, want)
			}
			lat := make([]time.Duration, 0, b.N)
			b.ResetTimer()
			for i := 0; i < b.N; i++ {
				doc, want := policy(i)
				start := time.Now()
				if err := c.Apply(doc); err != nil {
					b.Fatal(err)
				}
				var wg sync.WaitGroup
				for _, e := range envoys {
					wg.Add(1)
					go func() {
						defer wg.Done()
						waitFor(e, want, 30*time.Second)
					}()
				}
				wg.Wait()
				lat = append(lat, time.Since(start))
			}
			b.StopTimer()
			report(b, lat)
		})
	}
}

func waitFor(e *Envoy, cluster string, timeout time.Duration) {
	deadline := time.After(timeout)
	for {
		ch := e.Changed()
		if slices.Contains(e.Collectors(), cluster) {
			return
		}
		select {
		case <-ch:
		case <-deadline:
			return
		}
	}
}

func report(b *testing.B, lat []time.Duration) {
	if len(lat) == 0 {
		return
	}
	slices.Sort(lat)
	pct := func(p float64) float64 {
		return float64(lat[int(float64(len(lat)-1)*p)].Microseconds()) / 1000
	}
	b.ReportMetric(pct(0.5), "p50-ms")
	b.ReportMetric(pct(0.99), "p99-ms")
}

// BenchmarkBurst1000 measures 1000 policies PUT on global in a burst (8
// concurrent clients) until every zone's store holds all of them, on etcds
// without fsync (durable=false, as before) and with it (durable=true, as in
// production). Figures are medians over the iterations; wal-fsyncs counts
// the fsyncs of all three etcds.
func BenchmarkBurst1000(b *testing.B) {
	for _, durable := range []bool{false, true} {
		b.Run(fmt.Sprintf("durable=%v", durable), func(b *testing.B) {
			c := Start(b, Options{Zones: []string{"east", "west"}, Durable: durable})
			// Eight clients, each with its own connection as eight
			// meshtracectl processes would have, and their request bodies
			// encoded before the clock starts: the figure is the server's.
			clients := make([]*cli.Client, 8)
			for w := range clients {
				clients[w] = &cli.Client{Address: c.API.Address, Token: c.API.Token,
					HTTP: &http.Client{Timeout: 30 * time.Second, Transport: &http.Transport{MaxIdleConnsPerHost: 1}}}
			}
			d, _ := resource.Lookup(resource.TypeMeshTrace)
			var med Medians
			defer med.Report(b)
			for i := 0; i < b.N; i++ {
				paths, bodies := make([]string, 1000), make([]json.RawMessage, 1000)
				for j := range 1000 {
					rs, err := resource.DecodeAll([]byte(burstPolicy(fmt.Sprintf("burst-%d-%d", i, j), j)))
					if err != nil {
						b.Fatal(err)
					}
					if bodies[j], err = json.Marshal(rs[0]); err != nil {
						b.Fatal(err)
					}
					paths[j] = cli.ResourcePath(d, rs[0].Mesh, rs[0].Name)
				}
				zw := watchZones(b, c)
				fsyncs0 := WALFsyncs()
				cpu0 := cpuTime()
				start := time.Now()
				var wg sync.WaitGroup
				errs := make(chan error, 8)
				for w := 0; w < 8; w++ {
					wg.Add(1)
					go func() {
						defer wg.Done()
						for j := w; j < 1000; j += 8 {
							if _, err := clients[w].Do(context.Background(), "PUT", paths[j], nil, bodies[j], nil); err != nil {
								errs <- fmt.Errorf("PUT %s: %w", paths[j], err)
								return
							}
						}
					}()
				}
				wg.Wait()
				close(errs)
				for err := range errs {
					b.Fatal(err)
				}
				put := time.Since(start)
				zw.wait(b, c, 1000)
				med.Add("put-ms", float64(put.Milliseconds()))
				med.Add("all-zones-ms", float64(time.Since(start).Milliseconds()))
				med.Add("cpu-ms", float64((cpuTime() - cpu0).Milliseconds()))
				med.Add("wal-fsyncs", float64(WALFsyncs()-fsyncs0))
			}
		})
	}
}

// cpuTime is the CPU time (user and system) this process has used: global,
// the zones and their etcds all run in it. On a shared machine it varies far
// less between runs than wall-clock time does.
func cpuTime() time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return 0
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

func burstPolicy(name string, j int) string {
	return fmt.Sprintf("type: MeshTrace\nname: %s\nmesh: default\nspec:\n  targetRef:\n    kind: MeshService\n    name: svc-%d\n  default:\n    sampling:\n      overall: 10\n    backends:\n    - zipkin:\n        url: http://zipkin-burst:9411/api/v2/spans\n", name, j)
}

// zoneWatch counts the MeshTraces created in every zone's store from now
// on, from store watches (polling List would decode every policy each time
// and slow the measured cluster).
type zoneWatch struct {
	cancel context.CancelFunc
	mu     sync.Mutex
	counts map[string]int
	change chan struct{}
}

func watchZones(b *testing.B, c *Cluster) *zoneWatch {
	b.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	w := &zoneWatch{cancel: cancel, counts: map[string]int{}, change: make(chan struct{}, 1)}
	for name, z := range c.Zones {
		rev, err := z.Store().Revision(ctx)
		if err != nil {
			b.Fatal(err)
		}
		ch, err := z.Store().Watch(ctx, store.WatchOptions{Types: []resource.Type{resource.TypeMeshTrace}, FromRevision: rev + 1})
		if err != nil {
			b.Fatal(err)
		}
		go func() {
			seen := map[string]bool{}
			for resp := range ch {
				for _, ev := range resp.Events {
					if ev.Type == store.EventPut && !seen[ev.Resource.Name] {
						seen[ev.Resource.Name] = true
					}
				}
				w.mu.Lock()
				w.counts[name] = len(seen)
				w.mu.Unlock()
				select {
				case w.change <- struct{}{}:
				default:
				}
			}
		}()
	}
	return w
}

// wait blocks until every zone saw want new MeshTraces.
func (w *zoneWatch) wait(b *testing.B, c *Cluster, want int) {
	b.Helper()
	defer w.cancel()
	deadline := time.After(60 * time.Second)
	for {
		w.mu.Lock()
		done := true
		for name := range c.Zones {
			done = done && w.counts[name] >= want
		}
		w.mu.Unlock()
		if done {
			return
		}
		select {
		case <-w.change:
		case <-deadline:
			b.Fatalf("zones saw %v of %d new policies after 60s", w.counts, want)
		}
	}
}

// BenchmarkBulkApply1000 measures `meshtracectl apply -f` of one file of
// 1000 MeshTraces (POST /_apply: validated, then written in transactions of
// up to 128): apply-ms when the CLI returns, all-zones-ms when both zones'
// stores hold every policy; durable=true keeps fsync on everywhere. Figures
// are medians over the iterations.
func BenchmarkBulkApply1000(b *testing.B) {
	for _, durable := range []bool{false, true} {
		b.Run(fmt.Sprintf("durable=%v", durable), func(b *testing.B) {
			c := Start(b, Options{Zones: []string{"east", "west"}, Durable: durable})
			dir := b.TempDir()
			conf := filepath.Join(dir, "meshtracectl.yaml")
			var med Medians
			defer med.Report(b)
			for i := 0; i < b.N; i++ {
				var doc strings.Builder
				for j := range 1000 {
					if j > 0 {
						doc.WriteString("---\n")
					}
					doc.WriteString(burstPolicy(fmt.Sprintf("bulk-%d-%d", i, j), j))
				}
				file := filepath.Join(dir, fmt.Sprintf("policies-%d.yaml", i))
				if err := os.WriteFile(file, []byte(doc.String()), 0o600); err != nil {
					b.Fatal(err)
				}
				var out, errOut bytes.Buffer
				app := &cli.App{Stdout: &out, Stderr: &errOut, ConfigPath: conf}
				zw := watchZones(b, c)
				fsyncs0 := WALFsyncs()
				cpu0 := cpuTime()
				start := time.Now()
				if code := app.Run(context.Background(), []string{"--address", c.API.Address, "--token", c.API.Token, "apply", "-f", file}); code != 0 {
					b.Fatalf("apply: %d\n%s", code, errOut.String())
				}
				applied := time.Since(start)
				zw.wait(b, c, 1000)
				med.Add("apply-ms", float64(applied.Milliseconds()))
				med.Add("all-zones-ms", float64(time.Since(start).Milliseconds()))
				med.Add("cpu-ms", float64((cpuTime() - cpu0).Milliseconds()))
				med.Add("wal-fsyncs", float64(WALFsyncs()-fsyncs0))
			}
		})
	}
}

func policySetB(b *testing.B, z *Zone) map[string]bool {
	res, err := z.Store().List(context.Background(), "MeshTrace", storeListAll)
	if err != nil {
		b.Fatal(err)
	}
	out := map[string]bool{}
	for _, r := range res.Items {
		out[r.Name] = true
	}
	return out
}
