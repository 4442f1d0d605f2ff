package main

import (
	"encoding/json"
	"net"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"testing"
	"time"
)

// The Kuma benchmarks run issue 14's burst and cold start against Kuma 2.7
// itself, so that both products are measured by the same code on the same
// host in the same minutes: Kuma's global and zones east and west as
// separate kuma-cp processes, universal mode, memory store (not durable),
// every other setting at its default. They are skipped unless
// MESHTRACE_BENCH_KUMA_CP names a kuma-cp binary (BENCHMARKS.md, "Kuma 2.7
// side by side", says how to build one from Kuma's source).
//
//	MESHTRACE_BENCH_KUMA_CP=/path/kuma-cp go test ./cmd/meshtrace-cp -run '^$' -bench 'Kuma' -benchtime 5x

// BenchmarkKumaBurstProcesses is BenchmarkBurstProcesses/burst against Kuma:
// the same 1000 bodies, clients and marker, with the same figures. A zone
// of Kuma stores a policy from global under a name with a hash suffix, so
// the marker is looked for by its display name (GET ...?name=), every 10 ms.
func BenchmarkKumaBurstProcesses(b *testing.B) {
	bin := kumaBinary(b)
	dir := b.TempDir()
	g := startKuma(b, bin, dir, "global", "", "")
	waitHTTP(b, g.proc, g.api+"/meshes/default", time.Now())
	procs := []*binProcess{g.proc}
	var zoneAPIs []string
	for _, zone := range []string{"east", "west"} {
		z := startKuma(b, bin, dir, "zone", zone, g.kds)
		waitHTTP(b, z.proc, z.api+"/meshes/default", time.Now())
		procs = append(procs, z.proc)
		zoneAPIs = append(zoneAPIs, z.api)
	}
	target := burstTarget{
		api: g.api, clients: burstClients(), procs: procs,
		// A list on a zone holding the burst costs Kuma milliseconds:
		// polled every 0.5 ms, as meshtrace's GET of one policy is, it
		// would slow the zones it measures.
		poll: 10 * time.Millisecond,
		served: func(c *http.Client, marker string) bool {
			for _, api := range zoneAPIs {
				if !kumaServes(c, api, marker) {
					return false
				}
			}
			return true
		},
	}
	b.Run("burst", func(b *testing.B) { runBurst(b, target) })
}

// BenchmarkKumaStartup is BenchmarkStartup against Kuma: exec -> global API
// answers, -> default mesh readable on global, exec -> zone API answers,
// -> the default mesh readable on the zone.
func BenchmarkKumaStartup(b *testing.B) {
	bin := kumaBinary(b)
	var gAPI, gReady, zAPI, zSynced []time.Duration
	for i := 0; i < b.N; i++ {
		dir := b.TempDir()
		start := time.Now()
		g := startKuma(b, bin, dir, "global", "", "")
		gAPI = append(gAPI, waitHTTP(b, g.proc, g.api+"/", start))
		gReady = append(gReady, waitHTTP(b, g.proc, g.api+"/meshes/default", start))
		start = time.Now()
		z := startKuma(b, bin, dir, "zone", "west", g.kds)
		zAPI = append(zAPI, waitHTTP(b, z.proc, z.api+"/", start))
		zSynced = append(zSynced, waitHTTP(b, z.proc, z.api+"/meshes/default", start))
		stopBin(z.proc)
		stopBin(g.proc)
	}
	reportStartup(b, gAPI, gReady, zAPI, zSynced)
}

func kumaBinary(b *testing.B) string {
	b.Helper()
	bin := os.Getenv("MESHTRACE_BENCH_KUMA_CP")
	if bin == "" {
		b.Skip("MESHTRACE_BENCH_KUMA_CP (a kuma-cp binary) not set")
	}
	return bin
}

// kumaCP is a running kuma-cp: its process, API base URL and (global) KDS
// address.
type kumaCP struct {
	proc     *binProcess
	api, kds string
}

// startKuma starts kuma-cp in mode "global" or "zone" (named zone,
// connecting to global's KDS at kds) with its own work dir under dir and
// free ports for every listener (their defaults would collide).
func startKuma(b *testing.B, bin, dir, mode, zone, kds string) kumaCP {
	b.Helper()
	name := mode
	if zone != "" {
		name = zone
	}
	port := func() string {
		_, p, err := net.SplitHostPort(freePort(b))
		if err != nil {
			b.Fatal(err)
		}
		return p
	}
	apiPort := port()
	env := []string{
		"KUMA_MODE=" + mode,
		"KUMA_ENVIRONMENT=universal",
		"KUMA_STORE_TYPE=memory",
		"KUMA_GENERAL_WORK_DIR=" + filepath.Join(dir, "kuma-"+name),
		"KUMA_API_SERVER_HTTP_INTERFACE=127.0.0.1",
		"KUMA_API_SERVER_HTTP_PORT=" + apiPort,
		"KUMA_API_SERVER_HTTPS_INTERFACE=127.0.0.1",
		"KUMA_API_SERVER_HTTPS_PORT=" + port(),
		"KUMA_DIAGNOSTICS_SERVER_PORT=" + port(),
		"KUMA_DP_SERVER_PORT=" + port(),
		"KUMA_INTER_CP_SERVER_PORT=" + port(),
		"KUMA_MONITORING_ASSIGNMENT_SERVER_PORT=" + port(),
	}
	cp := kumaCP{api: "http://127.0.0.1:" + apiPort}
	if mode == "global" {
		kdsPort := port()
		cp.kds = "127.0.0.1:" + kdsPort
		env = append(env, "KUMA_MULTIZONE_GLOBAL_KDS_GRPC_PORT="+kdsPort)
	} else {
		env = append(env,
			"KUMA_MULTIZONE_ZONE_NAME="+zone,
			"KUMA_MULTIZONE_ZONE_GLOBAL_ADDRESS=grpcs://"+kds,
			// global's KDS certificate is self-signed, made at its start.
			"KUMA_MULTIZONE_ZONE_KDS_TLS_SKIP_VERIFY=true",
		)
	}
	p := &binProcess{cmd: exec.Command(bin, "run"), log: &syncBuffer{}, done: make(chan struct{})}
	p.cmd.Env = append(os.Environ(), env...)
	p.cmd.Stdout = p.log
	p.cmd.Stderr = p.log
	if err := p.cmd.Start(); err != nil {
		b.Fatal(err)
	}
	go func() { _ = p.cmd.Wait(); close(p.done) }()
	b.Cleanup(func() { stopBin(p) })
	cp.proc = p
	return cp
}

// kumaServes reports whether the Kuma zone API at api serves the MeshTrace
// global created as name (stored there as name-<hash>).
func kumaServes(c *http.Client, api, name string) bool {
	resp, err := c.Get(api + "/meshes/default/meshtraces?name=" + url.QueryEscape(name))
	if err != nil {
		return false
	}
	defer resp.Body.Close()
	var list struct {
		Items []struct {
			Labels map[string]string `json:"labels"`
		} `json:"items"`
	}
	if resp.StatusCode != http.StatusOK || json.NewDecoder(resp.Body).Decode(&list) != nil {
		return false
	}
	for _, it := range list.Items {
		if it.Labels["kuma.io/display-name"] == name {
			return true
		}
	}
	return false
}
