package main

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/meshtrace/meshtrace/cli"
	"github.com/meshtrace/meshtrace/testcluster"
)

// BenchmarkBurstProcesses is issue 14's write benchmark with the control
// planes as the built binary in their own processes, as a user runs them
// (global and zones east and west, each with its embedded etcd, fsync on):
//
//   - burst: 1000 MeshTraces PUT by 8 concurrent clients (JSON bodies, one
//     connection each, as eight meshtracectl processes): put-ms when the last
//     PUT is answered, all-zones-ms when both zones serve every policy;
//   - bulk: `meshtracectl apply -f` of one file of 1000 MeshTraces: apply-ms
//     when the CLI returns, all-zones-ms when both zones serve every policy.
//
// "Every policy" is observed with a marker: one more policy PUT after the
// others are answered has a higher revision than all of them, and a zone
// applies global's changes in revision order, so the marker readable on a
// zone's API means the zone holds all of them. cpu-ms is the CPU the three
// control-plane processes used (their threads' run time from /proc), the
// clients' not included (clients-cpu-ms: this process's, the clients and
// the marker polling);
// global-cpu-ms and zones-cpu-ms split it. global-peak-rss-MiB and
// zone-peak-rss-MiB are the peak resident memory so far (VmHWM; the larger
// zone's).
// Figures are medians over the iterations (testcluster.Medians). It
// builds bin/meshtrace-cp into a temp dir, or uses $MESHTRACE_CP_BIN.
//
//	go test ./cmd/meshtrace-cp -run '^$' -bench BurstProcesses -benchtime 5x
func BenchmarkBurstProcesses(b *testing.B) {
	bin := cpBinary(b)
	dir := b.TempDir()
	gapi, gkds := freePort(b), freePort(b)
	gcfg := writeFile(b, dir, "global.yaml", globalConfig(dir, gapi, gkds))
	g := startBin(b, bin, "global", "--config", gcfg)
	waitHTTP(b, g, "http://"+gapi+"/meshes/default", time.Now())
	procs := []*binProcess{g}
	var zoneAPIs []string
	for _, zone := range []string{"east", "west"} {
		tokenFile := writeFile(b, dir, zone+".token", zoneToken(b, "http://"+gapi, zone))
		zapi := freePort(b)
		zcfg := writeFile(b, dir, zone+".yaml", zoneConfig(dir, zone, zapi, gkds, tokenFile))
		z := startBin(b, bin, "zone", "--config", zcfg)
		waitHTTP(b, z, "http://"+zapi+"/meshes/default", time.Now())
		procs = append(procs, z)
		zoneAPIs = append(zoneAPIs, "http://"+zapi)
	}
	clients := burstClients()
	target := burstTarget{
		api: "http://" + gapi, token: durabilityToken, clients: clients, procs: procs, poll: 500 * time.Microsecond,
		served: func(c *http.Client, marker string) bool {
			for _, api := range zoneAPIs {
				if !getOK(c, api+"/meshes/default/meshtraces/"+marker) {
					return false
				}
			}
			return true
		},
	}
	b.Run("burst", func(b *testing.B) { runBurst(b, target) })

	b.Run("bulk", func(b *testing.B) {
		conf := filepath.Join(dir, "meshtracectl.yaml")
		var med testcluster.Medians
		defer med.Report(b)
		for i := 0; i < b.N; i++ {
			var doc strings.Builder
			for j := range 1000 {
				fmt.Fprintf(&doc, "---\ntype: MeshTrace\nname: bulk-%d-%d\nmesh: default\nspec:\n  targetRef:\n    kind: MeshService\n    name: svc-%d\n  default:\n    sampling:\n      overall: 10\n    backends:\n    - zipkin:\n        url: http://zipkin-burst:9411/api/v2/spans\n", i, j, j)
			}
			file := writeFile(b, dir, fmt.Sprintf("bulk-%d.yaml", i), doc.String())
			var out, errOut bytes.Buffer
			app := &cli.App{Stdout: &out, Stderr: &errOut, ConfigPath: conf}
			g0, z0, c0 := target.cpu(b)
			start := time.Now()
			if code := app.Run(context.Background(), []string{"--address", "http://" + gapi, "--token", durabilityToken, "apply", "-f", file}); code != 0 {
				b.Fatalf("apply: %d\n%s", code, errOut.String())
			}
			applied := time.Since(start)
			marker := fmt.Sprintf("bulk-%d-marker", i)
			if err := putPolicy(clients[0], "http://"+gapi, durabilityToken, marker, []byte(policyJSON(marker, 0))); err != nil {
				b.Fatal(err)
			}
			waitZones(b, zoneAPIs, marker)
			med.Add("apply-ms", float64(applied.Milliseconds()))
			med.Add("all-zones-ms", float64(time.Since(start).Milliseconds()))
			target.addCPU(b, &med, g0, z0, c0)
		}
	})
}

// burstTarget is the control planes a burst writes to: global's API (and
// the token its writes need, "" for none), the check that every zone serves
// a policy, and the CPU and memory figures of their processes.
type burstTarget struct {
	api, token string
	clients    []*http.Client
	served     func(c *http.Client, name string) bool // in every zone
	poll       time.Duration                          // between two calls of served
	procs      []*binProcess                          // global first, then the zones
}

// cpu is the CPU global, the zones and this process (the clients) have
// used so far.
func (t burstTarget) cpu(b *testing.B) (global, zones, self time.Duration) {
	for i, p := range t.procs {
		if i == 0 {
			global = processCPU(b, p.cmd.Process.Pid)
		} else {
			zones += processCPU(b, p.cmd.Process.Pid)
		}
	}
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err == nil {
		self = time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
	}
	return global, zones, self
}

// addCPU adds to med the CPU used since g0, z0, c0 (from cpu) and the peak
// resident memory so far: global's, and the larger zone's.
func (t burstTarget) addCPU(b *testing.B, med *testcluster.Medians, g0, z0, c0 time.Duration) {
	g, z, c := t.cpu(b)
	med.Add("cpu-ms", float64((g + z - g0 - z0).Milliseconds()))
	med.Add("global-cpu-ms", float64((g - g0).Milliseconds()))
	med.Add("zones-cpu-ms", float64((z - z0).Milliseconds()))
	med.Add("clients-cpu-ms", float64((c - c0).Milliseconds()))
	var zoneRSS float64
	for _, p := range t.procs[1:] {
		zoneRSS = max(zoneRSS, peakRSSMiB(b, p.cmd.Process.Pid))
	}
	med.Add("global-peak-rss-MiB", peakRSSMiB(b, t.procs[0].cmd.Process.Pid))
	med.Add("zone-peak-rss-MiB", zoneRSS)
}

// burstClients are the burst's eight clients, one connection each.
func burstClients() []*http.Client {
	clients := make([]*http.Client, 8)
	for i := range clients {
		clients[i] = &http.Client{Timeout: 30 * time.Second, Transport: &http.Transport{MaxIdleConnsPerHost: 1}}
	}
	return clients
}

// runBurst PUTs 1000 MeshTraces per iteration through t's eight clients,
// then a marker, and waits until every zone serves the marker: put-ms and
// all-zones-ms, medians over the iterations.
func runBurst(b *testing.B, t burstTarget) {
	var med testcluster.Medians
	defer med.Report(b)
	for i := 0; i < b.N; i++ {
		bodies := make([][]byte, 1000)
		for j := range bodies {
			bodies[j] = []byte(policyJSON(fmt.Sprintf("burst-%d-%d", i, j), j))
		}
		g0, z0, c0 := t.cpu(b)
		start := time.Now()
		var wg sync.WaitGroup
		errs := make(chan error, len(t.clients))
		for w := range t.clients {
			wg.Add(1)
			go func() {
				defer wg.Done()
				for j := w; j < len(bodies); j += len(t.clients) {
					if err := putPolicy(t.clients[w], t.api, t.token, fmt.Sprintf("burst-%d-%d", i, j), bodies[j]); err != nil {
						errs <- err
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
		marker := fmt.Sprintf("burst-%d-marker", i)
		if err := putPolicy(t.clients[0], t.api, t.token, marker, []byte(policyJSON(marker, 0))); err != nil {
			b.Fatal(err)
		}
		poll := &http.Client{Timeout: time.Second}
		for deadline := time.Now().Add(60 * time.Second); !t.served(poll, marker); time.Sleep(t.poll) {
			if time.Now().After(deadline) {
				b.Fatalf("the zones do not serve %s after 60s", marker)
			}
		}
		med.Add("put-ms", float64(put.Milliseconds()))
		med.Add("all-zones-ms", float64(time.Since(start).Milliseconds()))
		t.addCPU(b, &med, g0, z0, c0)
	}
}

// policyJSON is a MeshTrace as both meshtrace and Kuma 2.7 take it (Kuma
// requires the backend's type).
func policyJSON(name string, j int) string {
	return fmt.Sprintf(`{"type":"MeshTrace","mesh":"default","name":%q,"spec":{"targetRef":{"kind":"MeshService","name":"svc-%d"},"default":{"sampling":{"overall":10},"backends":[{"type":"Zipkin","zipkin":{"url":"http://zipkin-burst:9411/api/v2/spans"}}]}}}`, name, j)
}

// putPolicy PUTs a MeshTrace to the API at api, with token when not "".
func putPolicy(c *http.Client, api, token, name string, body []byte) error {
	req, err := http.NewRequest(http.MethodPut, api+"/meshes/default/meshtraces/"+name, bytes.NewReader(body))
	if err != nil {
		return err
	}
	req.Header.Set("Content-Type", "application/json")
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	resp, err := c.Do(req)
	if err != nil {
		return fmt.Errorf("PUT %s: %w", name, err)
	}
	defer resp.Body.Close()
	msg, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != http.StatusCreated && resp.StatusCode != http.StatusOK {
		return fmt.Errorf("PUT %s: %d %s", name, resp.StatusCode, msg)
	}
	return nil
}

// getOK reports whether a GET of url answers 200.
func getOK(c *http.Client, url string) bool {
	resp, err := c.Get(url)
	if err != nil {
		return false
	}
	_, _ = io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	return resp.StatusCode == http.StatusOK
}

// waitZones polls every zone's API until it serves the marker policy.
func waitZones(b *testing.B, zoneAPIs []string, marker string) {
	b.Helper()
	c := &http.Client{Timeout: time.Second}
	deadline := time.Now().Add(60 * time.Second)
	for _, api := range zoneAPIs {
		for !getOK(c, api+"/meshes/default/meshtraces/"+marker) {
			if time.Now().After(deadline) {
				b.Fatalf("%s does not serve %s after 60s", api, marker)
			}
			time.Sleep(500 * time.Microsecond)
		}
	}
}

// processCPU is the CPU time process pid has used: the time its threads
// ran, in nanoseconds, from /proc/<pid>/task/*/schedstat (a thread that
// exited is not counted; Go's rarely do), or else user and system time from
// /proc/<pid>/stat, in clock ticks of 10 ms: too coarse for a burst's
// 100-300 ms per process.
func processCPU(b *testing.B, pid int) time.Duration {
	b.Helper()
	if d, ok := threadsCPU(pid); ok {
		return d
	}
	raw, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		b.Fatal(err)
	}
	// Fields after the command name (in parentheses, which may hold spaces).
	rest := string(raw[bytes.LastIndexByte(raw, ')')+2:])
	f := strings.Fields(rest)
	// utime and stime are fields 14 and 15 of the line, 12 and 13 here.
	ut, err1 := strconv.ParseInt(f[11], 10, 64)
	st, err2 := strconv.ParseInt(f[12], 10, 64)
	if err1 != nil || err2 != nil {
		b.Fatalf("parse %s: %v %v", raw, err1, err2)
	}
	return time.Duration(ut+st) * 10 * time.Millisecond
}

// peakRSSMiB is process pid's peak resident set size (VmHWM).
func peakRSSMiB(b *testing.B, pid int) float64 {
	b.Helper()
	raw, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		b.Fatal(err)
	}
	for _, line := range strings.Split(string(raw), "\n") {
		if rest, ok := strings.CutPrefix(line, "VmHWM:"); ok {
			kb, err := strconv.ParseFloat(strings.TrimSpace(strings.TrimSuffix(strings.TrimSpace(rest), "kB")), 64)
			if err != nil {
				b.Fatalf("VmHWM %q: %v", rest, err)
			}
			return kb / 1024
		}
	}
	b.Fatalf("no VmHWM in /proc/%d/status", pid)
	return 0
}

// threadsCPU sums the first field of every thread's schedstat (time on a
// CPU, ns).
func threadsCPU(pid int) (time.Duration, bool) {
	files, err := filepath.Glob(fmt.Sprintf("/proc/%d/task/*/schedstat", pid))
	if err != nil || len(files) == 0 {
		return 0, false
	}
	var sum int64
	for _, f := range files {
		raw, err := os.ReadFile(f)
		if err != nil {
			continue // the thread exited
		}
		fields := strings.Fields(string(raw))
		if len(fields) == 0 {
			return 0, false
		}
		ns, err := strconv.ParseInt(fields[0], 10, 64)
		if err != nil {
			return 0, false
		}
		sum += ns
	}
	return time.Duration(sum), true
}
