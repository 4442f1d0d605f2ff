package global

import (
	"bytes"
	"fmt"
	"io"
	"net/http"
	"slices"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

// BenchmarkPut measures MeshTrace PUTs through the HTTP API into embedded
// etcd (with fsync, as in production) with 1, 8 and 64 concurrent clients,
// reporting throughput and latency percentiles. Profile with:
//
//	go test ./global -run '^$' -bench 'Put/create/clients=8' -benchtime 2000x -cpuprofile cpu.out
func BenchmarkPut(b *testing.B) {
	for _, mode := range []string{"create", "update"} {
		for _, clients := range []int{1, 8, 64} {
			b.Run(fmt.Sprintf("%s/clients=%d", mode, clients), func(b *testing.B) {
				benchPut(b, mode == "update", clients)
			})
		}
	}
}

func benchPut(b *testing.B, update bool, clients int) {
	g, err := New(testConfig(b.TempDir()), nil)
	if err != nil {
		b.Fatal(err)
	}
	start(b, g)
	api, tok := "http://"+g.APIAddr(), g.AdminToken()
	client := &http.Client{Transport: &http.Transport{MaxIdleConnsPerHost: clients}}
	put := func(name string) (time.Duration, error) {
		// JSON, as meshtracectl sends it (it decodes the YAML file itself).
		body := fmt.Appendf(nil, `{"type":"MeshTrace","mesh":"default","name":%q,"spec":{"default":{"backends":[{"zipkin":{"url":"http://zipkin:9411/api/v2/spans"}}]}}}`, name)
		req, _ := http.NewRequest("PUT", api+"/meshes/default/meshtraces/"+name, bytes.NewReader(body))
		req.Header.Set("Authorization", "Bearer "+tok)
		req.Header.Set("Content-Type", "application/json")
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
	if update {
		for w := range clients {
			if _, err := put(fmt.Sprintf("bench-w%d", w)); err != nil {
				b.Fatal(err)
			}
		}
	}

	var (
		mu  sync.Mutex
		lat = make([]time.Duration, 0, b.N)
		seq atomic.Int64
		wg  sync.WaitGroup
	)
	fsync0, commit0 := etcdDiskCounts(b)
	b.ResetTimer()
	cpu0 := cpuTime()
	began := time.Now()
	for w := range clients {
		wg.Go(func() {
			mine := make([]time.Duration, 0, b.N/clients+1)
			for {
				i := seq.Add(1)
				if i > int64(b.N) {
					break
				}
				name := fmt.Sprintf("bench-%d", i)
				if update {
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
	}
	wg.Wait()
	elapsed := time.Since(began)
	cpu := cpuTime() - cpu0
	b.StopTimer()
	if len(lat) == 0 {
		return
	}
	slices.Sort(lat)
	pct := func(p float64) float64 { return float64(lat[int(p*float64(len(lat)-1))].Microseconds()) / 1000 }
	b.ReportMetric(float64(len(lat))/elapsed.Seconds(), "ops/s")
	// CPU of the whole process (server, etcd and the clients) per PUT: on a
	// shared machine it varies far less than wall time.
	b.ReportMetric(float64(cpu.Microseconds())/float64(len(lat)), "cpu-us/op")
	b.ReportMetric(pct(0.50), "p50-ms")
	b.ReportMetric(pct(0.99), "p99-ms")
	fsync1, commit1 := etcdDiskCounts(b)
	b.ReportMetric(float64(fsync1-fsync0)*1000/float64(len(lat)), "wal-fsyncs/1000")
	b.ReportMetric(float64(commit1-commit0)*1000/float64(len(lat)), "backend-commits/1000")
}

// cpuTime is the CPU time (user and system) this process has used.
func cpuTime() time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return 0
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// etcdDiskCounts reads embedded etcd's own metrics (registered with the
// default Prometheus registry): how many WAL fsyncs and backend commits it
// has done. Durability costs one WAL fsync per raft batch; counting them per
// write shows how well concurrent writes share one.
func etcdDiskCounts(b *testing.B) (walFsyncs, backendCommits uint64) {
	mfs, err := prometheus.DefaultGatherer.Gather()
	if err != nil {
		b.Fatal(err)
	}
	for _, mf := range mfs {
		for _, m := range mf.GetMetric() {
			switch mf.GetName() {
			case "etcd_disk_wal_fsync_duration_seconds":
				walFsyncs += m.GetHistogram().GetSampleCount()
			case "etcd_disk_backend_commit_duration_seconds":
				backendCommits += m.GetHistogram().GetSampleCount()
			}
		}
	}
	return walFsyncs, backendCommits
}
