package main

import (
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

// BenchmarkStartup measures cold starts of the built binary (fresh data
// dirs, embedded etcd with fsync): exec -> global API answers, exec -> global
// has bootstrapped (default mesh readable), exec -> zone API answers, exec ->
// zone synced (global's default mesh readable on the zone API). It builds
// bin/meshtrace-cp into a temp dir, or uses $MESHTRACE_CP_BIN.
//
//	go test ./cmd/meshtrace-cp -run '^$' -bench Startup -benchtime 10x
func BenchmarkStartup(b *testing.B) {
	bin := cpBinary(b)
	var gAPI, gReady, zAPI, zSynced []time.Duration
	for i := 0; i < b.N; i++ {
		dir := b.TempDir()
		gapi, gkds := freePort(b), freePort(b)
		gcfg := writeFile(b, dir, "global.yaml", globalConfig(dir, gapi, gkds))
		start := time.Now()
		g := startBin(b, bin, "global", "--config", gcfg)
		gAPI = append(gAPI, waitHTTP(b, g, "http://"+gapi+"/", start))
		gReady = append(gReady, waitHTTP(b, g, "http://"+gapi+"/meshes/default", start))

		token := zoneToken(b, "http://"+gapi, "west")
		zapi := freePort(b)
		tokenFile := writeFile(b, dir, "west.token", token)
		zcfg := writeFile(b, dir, "zone.yaml", zoneConfig(dir, "west", zapi, gkds, tokenFile))
		start = time.Now()
		z := startBin(b, bin, "zone", "--config", zcfg)
		zAPI = append(zAPI, waitHTTP(b, z, "http://"+zapi+"/", start))
		zSynced = append(zSynced, waitHTTP(b, z, "http://"+zapi+"/meshes/default", start))
		stopBin(z)
		stopBin(g)
	}
	reportStartup(b, gAPI, gReady, zAPI, zSynced)
}

// reportStartup reports the medians of a start-up benchmark's times.
func reportStartup(b *testing.B, gAPI, gReady, zAPI, zSynced []time.Duration) {
	median := func(ds []time.Duration) float64 {
		slices.Sort(ds)
		return float64(ds[len(ds)/2].Microseconds()) / 1000
	}
	b.ReportMetric(median(gAPI), "global-api-ms")
	b.ReportMetric(median(gReady), "global-bootstrapped-ms")
	b.ReportMetric(median(zAPI), "zone-api-ms")
	b.ReportMetric(median(zSynced), "zone-synced-ms")
}

// cpBinary is $MESHTRACE_CP_BIN, or meshtrace-cp built (static) into a temp dir.
func cpBinary(b *testing.B) string {
	b.Helper()
	if bin := os.Getenv("MESHTRACE_CP_BIN"); bin != "" {
		return bin
	}
	bin := filepath.Join(b.TempDir(), "meshtrace-cp")
	build := exec.Command("go", "build", "-trimpath", "-o", bin, ".")
	build.Env = append(os.Environ(), "CGO_ENABLED=0")
	if out, err := build.CombinedOutput(); err != nil {
		b.Fatalf("build: %v\n%s", err, out)
	}
	return bin
}

// globalConfig is a global's config file with its data under dir/global.
func globalConfig(dir, api, kds string) string {
	return fmt.Sprintf("dataDir: %s/global\nstore:\n  embedded:\n    dir: %s/global/etcd\napi:\n  address: %s\n  adminToken: %s\nkds:\n  address: %s\ndiagnostics:\n  address: 127.0.0.1:0\n",
		dir, dir, api, durabilityToken, kds)
}

// zoneConfig is zone's config file with its data under dir/zone, connected
// to the global of globalConfig(dir, ...).
func zoneConfig(dir, zone, api, kds, tokenFile string) string {
	return fmt.Sprintf("name: %s\ndataDir: %s/%s\nstore:\n  embedded:\n    dir: %s/%s/etcd\napi:\n  address: %s\nxds:\n  address: 127.0.0.1:0\ndiagnostics:\n  address: 127.0.0.1:0\nglobal:\n  addresses: [%s]\n  tokenFile: %s\n  caFile: %s/global/kds-tls/ca.crt\n",
		zone, dir, zone, dir, zone, api, kds, tokenFile, dir)
}

func writeFile(tb testing.TB, dir, name, content string) string {
	tb.Helper()
	p := filepath.Join(dir, name)
	if err := os.WriteFile(p, []byte(content), 0o600); err != nil {
		tb.Fatal(err)
	}
	return p
}

type binProcess struct {
	cmd      *exec.Cmd
	log      *syncBuffer
	done     chan struct{}
	profiled bool // MESHTRACE_CPUPROFILE set: stopped with SIGTERM
}

// syncBuffer is a strings.Builder safe for the process's writes and our reads.
type syncBuffer struct {
	mu sync.Mutex
	b  strings.Builder
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

func (p *binProcess) exited() bool {
	select {
	case <-p.done:
		return true
	default:
		return false
	}
}

// profiles numbers the profiled processes (MESHTRACE_BENCH_CPUPROFILE_DIR).
var profiles int

func startBin(tb testing.TB, bin string, args ...string) *binProcess {
	tb.Helper()
	p := &binProcess{cmd: exec.Command(bin, args...), log: &syncBuffer{}, done: make(chan struct{})}
	p.cmd.Stderr = p.log
	// MESHTRACE_BENCH_CPUPROFILE_DIR=dir profiles every process started:
	// dir/<subcommand>-<n>.prof (go tool pprof bin/meshtrace-cp FILE).
	if dir := os.Getenv("MESHTRACE_BENCH_CPUPROFILE_DIR"); dir != "" && len(args) > 0 {
		profiles++
		p.profiled = true
		p.cmd.Env = append(os.Environ(), "MESHTRACE_CPUPROFILE="+filepath.Join(dir, fmt.Sprintf("%s-%d.prof", args[0], profiles)))
	}
	if err := p.cmd.Start(); err != nil {
		tb.Fatal(err)
	}
	go func() { _ = p.cmd.Wait(); close(p.done) }()
	tb.Cleanup(func() { stopBin(p) })
	return p
}

func stopBin(p *binProcess) {
	if p.profiled {
		// A profiled process writes its profile when it stops on a signal.
		_ = p.cmd.Process.Signal(syscall.SIGTERM)
		select {
		case <-p.done:
			return
		case <-time.After(10 * time.Second):
		}
	}
	_ = p.cmd.Process.Kill()
	<-p.done
}

// waitHTTP polls url every millisecond until it answers 200 and returns the
// time since start; it fails with p's log when p exits or 60 s pass.
func waitHTTP(tb testing.TB, p *binProcess, url string, start time.Time) time.Duration {
	tb.Helper()
	c := &http.Client{Timeout: time.Second}
	deadline := start.Add(60 * time.Second)
	for {
		resp, err := c.Get(url)
		if err == nil {
			_, _ = io.Copy(io.Discard, resp.Body)
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return time.Since(start)
			}
		}
		if time.Now().After(deadline) || p.exited() {
			tb.Fatalf("%s did not answer 200 (%v):\n%s", url, err, p.log.String())
		}
		time.Sleep(time.Millisecond)
	}
}

func zoneToken(tb testing.TB, api, zone string) string {
	tb.Helper()
	req, _ := http.NewRequest(http.MethodPost, api+"/tokens/zone", strings.NewReader(fmt.Sprintf(`{"zone":%q}`, zone)))
	req.Header.Set("Authorization", "Bearer "+durabilityToken)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		tb.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != http.StatusOK {
		tb.Fatalf("zone token: %d %s", resp.StatusCode, b)
	}
	return strings.TrimSpace(string(b))
}
