//go:build e2e

package e2e

import (
	"context"
	"encoding/json"
	"fmt"
	"net"
	"net/http"
	"strconv"
	"strings"
	"testing"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"
)

// How long a change may take to reach every proxy.
const converge = 60 * time.Second

// meshTrace is a Universal MeshTrace: spec given as YAML-free Go values.
func meshTrace(name string, spec map[string]any) map[string]any {
	return map[string]any{"type": "MeshTrace", "mesh": mesh, "name": name, "spec": spec}
}

func zipkinBackend(url string) map[string]any {
	return map[string]any{"zipkin": map[string]any{"url": url, "apiVersion": "httpJson"}}
}

// zonePolicy is the seed's "traces never leave a zone" policy: MeshSubset on
// kuma.io/zone, a Zipkin backend on the zone's own collector. The east one,
// as in the seed, leaves the backend's type to be inferred.
func zonePolicy(zone, hostPort string) map[string]any {
	backend := zipkinBackend("http://" + hostPort + "/api/v2/spans")
	if zone == "west" {
		backend["type"] = "Zipkin"
	}
	return meshTrace("trace-"+zone, map[string]any{
		"targetRef": map[string]any{"kind": "MeshSubset", "tags": map[string]any{"kuma.io/zone": zone}},
		"default":   map[string]any{"backends": []any{backend}},
	})
}

func collectorOf(zone string) string { return zone + ".zipkincollector:9411" }

func policyPath(name string) string { return "/meshes/" + mesh + "/meshtraces/" + name }

// put applies a policy through global replica 0.
func put(t testing.TB, tp *Topology, p map[string]any) {
	t.Helper()
	tp.GlobalAPI(0).Must(t, http.MethodPut, policyPath(p["name"].(string)), p, http.StatusOK, http.StatusCreated)
}

func del(t testing.TB, tp *Topology, name string) {
	t.Helper()
	tp.GlobalAPI(0).Must(t, http.MethodDelete, policyPath(name), nil, http.StatusOK, http.StatusNoContent)
}

// seedState makes global hold exactly the seed's two zone policies and waits
// until every proxy traces to its own zone's collector.
func seedState(t testing.TB, tp *Topology) {
	t.Helper()
	keep := map[string]bool{"trace-east": true, "trace-west": true}
	got, err := tp.GlobalAPI(0).Policies(t)
	if err != nil {
		t.Fatal(err)
	}
	for key := range got {
		if name := strings.TrimPrefix(key, mesh+"/"); !keep[name] {
			del(t, tp, name)
		}
	}
	for _, z := range zoneNames {
		put(t, tp, zonePolicy(z, collectorOf(z)))
	}
	expectTracing(t, tp, map[string]string{
		"east": zipkinTo(collectorOf("east")),
		"west": zipkinTo(collectorOf("west")),
	}, converge)
}

// expectConsistent waits until every zone's policy set equals global's, by
// name and content.
func expectConsistent(t testing.TB, tp *Topology) {
	t.Helper()
	waitFor(t, converge, "every zone holds global's policies", func() error {
		want, err := tp.GlobalAPI(0).Policies(t)
		if err != nil {
			return err
		}
		for _, z := range tp.Zones {
			got, err := z.API().Policies(t)
			if err != nil {
				return err
			}
			if d := diffPolicies(want, got); d != "" {
				return fmt.Errorf("zone %s differs from global:%s", z.Name, d)
			}
		}
		return nil
	})
}

// rules is GET /meshes/{mesh}/dataplanes/{name}/_rules on a zone.
type rules struct {
	Mesh      string `json:"mesh"`
	Name      string `json:"name"`
	Zone      string `json:"zone"`
	Backend   string `json:"backend"`
	Collector string `json:"collector"`
	Policies  []struct {
		Name string `json:"name"`
	} `json:"policies"`
}

func dataplaneRules(t testing.TB, z *Zone, dp string) (rules, error) {
	var r rules
	resp, err := z.API().Do(t, http.MethodGet, "/meshes/"+mesh+"/dataplanes/"+dp+"/_rules", nil)
	if err != nil {
		return r, err
	}
	if resp.Status != http.StatusOK {
		return r, fmt.Errorf("_rules of %s: %d %s", dp, resp.Status, resp.Body)
	}
	return r, json.Unmarshal(resp.Body, &r)
}

// zoneInsight is the part of GET /zone-insights/{zone} on global the suite
// checks.
type zoneInsight struct {
	Held *struct {
		Reason  string `json:"reason"`
		Deletes int    `json:"deletes"`
	} `json:"held"`
	Online         bool   `json:"online"`
	GlobalInstance string `json:"globalInstance"`
	Proxies        []struct {
		Mesh      string `json:"mesh"`
		Name      string `json:"name"`
		Backend   string `json:"backend"`
		Collector string `json:"collector"`
	} `json:"proxies"`
}

func getZoneInsight(t testing.TB, api API, zone string) (zoneInsight, error) {
	var zi zoneInsight
	resp, err := api.Do(t, http.MethodGet, "/zone-insights/"+zone, nil)
	if err != nil {
		return zi, err
	}
	if resp.Status != http.StatusOK {
		return zi, fmt.Errorf("zone-insights/%s: %d %s", zone, resp.Status, resp.Body)
	}
	return zi, json.Unmarshal(resp.Body, &zi)
}

// TestMultiZone runs the scenarios in order on one shared topology: the
// set-up is the expensive part. Each scenario starts from the seed state and
// ends by checking that every zone holds exactly global's policies.
func TestMultiZone(t *testing.T) {
	tp := fullTopology(t)
	t.Cleanup(func() {
		if t.Failed() {
			tp.dumpLogs()
		}
	})
	scenarios := []struct {
		name string
		run  func(t *testing.T, tp *Topology)
	}{
		{"SeedZonePolicies", testSeedZonePolicies},
		{"MeshDefaultWithZoneOverride", testMeshDefaultWithZoneOverride},
		{"UpdateAndDelete", testUpdateAndDelete},
		{"OtherBackends", testOtherBackends},
		{"ProtocolsAndEndpoints", testProtocolsAndEndpoints},
		{"BadPolicyRejected", testBadPolicyRejected},
		{"Residency", testResidency},
		{"GlobalReplicaKilled", testGlobalReplicaKilled},
		{"ZonePartitioned", testZonePartitioned},
		{"SnapshotAfterCompaction", testSnapshotAfterCompaction},
		{"ZoneRestartWhileGlobalDown", testZoneRestartWhileGlobalDown},
		{"FloodedGlobal", testFloodedGlobal},
		{"EtcdMemberKilled", testEtcdMemberKilled},
	}
	for _, sc := range scenarios {
		t.Run(sc.name, func(t *testing.T) {
			start := time.Now()
			seedState(t, tp)
			sc.run(t, tp)
			expectConsistent(t, tp)
			logf("scenario %s passed in %s", sc.name, time.Since(start).Round(time.Second))
		})
	}
}

// The seed's example: each zone's proxies send traces only to their own
// zone's collector, and inspect says so.
func testSeedZonePolicies(t *testing.T, tp *Topology) {
	cfgs := expectTracing(t, tp, map[string]string{
		"east": zipkinTo(collectorOf("east")),
		"west": zipkinTo(collectorOf("west")),
	}, converge)
	for _, z := range tp.Zones {
		for i, dp := range z.Dataplanes {
			c := cfgs[z.Proxies[i].Name]
			for _, cl := range c.Clusters {
				for _, ep := range cl.Endpoints {
					for _, other := range zoneNames {
						if other != z.Name && strings.Contains(ep, other+".") {
							t.Errorf("%s has a cluster %s to another zone's collector %s", dp, cl.Name, ep)
						}
					}
				}
			}
			r, err := dataplaneRules(t, z, dp)
			if err != nil {
				t.Fatal(err)
			}
			wantURL := "http://" + collectorOf(z.Name) + "/api/v2/spans"
			if r.Zone != z.Name || r.Backend != "Zipkin" || r.Collector != wantURL {
				t.Errorf("_rules of %s: zone %q backend %q collector %q, want %s Zipkin %s",
					dp, r.Zone, r.Backend, r.Collector, z.Name, wantURL)
			}
			if len(r.Policies) != 1 || r.Policies[0].Name != "trace-"+z.Name {
				t.Errorf("_rules of %s: policies %+v, want only trace-%s", dp, r.Policies, z.Name)
			}
		}
		// Spans the proxies send land in their own zone's collector only.
		resetCollector(t, z.Collector)
	}
	for _, z := range tp.Zones {
		for _, p := range z.Proxies {
			emitSpans(t, p)
		}
	}
	for _, z := range tp.Zones {
		var want []string
		for _, dp := range z.Dataplanes {
			want = append(want, mesh+"."+dp)
		}
		if got := received(t, z.Collector).Services(); strings.Join(got, ",") != strings.Join(want, ",") {
			t.Errorf("%s's collector got spans from %v, want exactly %v", z.Name, got, want)
		}
		// Global learns each proxy's effective backend from the zone.
		waitFor(t, converge, "global's insight into "+z.Name+"'s proxies", func() error {
			zi, err := getZoneInsight(t, tp.GlobalAPI(0), z.Name)
			if err != nil {
				return err
			}
			if !zi.Online {
				return fmt.Errorf("zone %s not online", z.Name)
			}
			got := map[string]string{}
			for _, p := range zi.Proxies {
				got[p.Name] = p.Backend + " " + p.Collector
			}
			for _, dp := range z.Dataplanes {
				if want := "Zipkin http://" + collectorOf(z.Name) + "/api/v2/spans"; got[dp] != want {
					return fmt.Errorf("insight of %s: %q, want %q (all: %v)", dp, got[dp], want, got)
				}
			}
			return nil
		})
	}
}

// A Mesh-wide default reaches every zone without its own policy; a zone's
// MeshSubset policy overrides it there.
func testMeshDefaultWithZoneOverride(t *testing.T, tp *Topology) {
	const central = "central.zipkincollector:9411"
	del(t, tp, "trace-east")
	put(t, tp, meshTrace("mesh-default", map[string]any{
		"targetRef": map[string]any{"kind": "Mesh"},
		"default": map[string]any{
			"sampling": map[string]any{"overall": 50},
			"backends": []any{zipkinBackend("http://" + central + "/api/v2/spans")},
		},
	}))
	expectTracing(t, tp, map[string]string{"east": zipkinTo(central), "west": zipkinTo(collectorOf("west"))}, converge)

	put(t, tp, zonePolicy("east", collectorOf("east")))
	expectTracing(t, tp, map[string]string{"east": zipkinTo(collectorOf("east")), "west": zipkinTo(collectorOf("west"))}, converge)
	r, err := dataplaneRules(t, tp.Zone("east"), tp.Zone("east").Dataplanes[0])
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, p := range r.Policies {
		names = append(names, p.Name)
	}
	if strings.Join(names, ",") != "mesh-default,trace-east" {
		t.Errorf("east proxy merged %v, want mesh-default then trace-east", names)
	}
	del(t, tp, "mesh-default")
}

// An update reaches only the zone it targets; a delete turns tracing off.
func testUpdateAndDelete(t *testing.T, tp *Topology) {
	before := expectTracing(t, tp, map[string]string{"west": zipkinTo(collectorOf("west"))}, converge)

	put(t, tp, zonePolicy("east", "east.zipkincollector:9412"))
	expectTracing(t, tp, map[string]string{"east": zipkinTo("east.zipkincollector:9412")}, converge)
	expectConsistent(t, tp)
	// West's proxies depend on nothing that changed: their config must not
	// have been pushed again.
	after := expectTracing(t, tp, map[string]string{"west": zipkinTo(collectorOf("west"))}, converge)
	for name, b := range before {
		a := after[name]
		if fmt.Sprint(a.Versions) != fmt.Sprint(b.Versions) {
			t.Errorf("%s got new config versions %v (was %v) for a change in east", name, a.Versions, b.Versions)
		}
	}

	del(t, tp, "trace-east")
	expectTracing(t, tp, map[string]string{"east": "", "west": zipkinTo(collectorOf("west"))}, converge)
	expectConsistent(t, tp)
}

// Datadog and OpenTelemetry backends reach the proxies as their Envoy
// tracers, each with a cluster to the configured collector.
func testOtherBackends(t *testing.T, tp *Topology) {
	for _, c := range []struct {
		backend  map[string]any
		provider string
		hostPort string
	}{
		{map[string]any{"type": "Datadog", "datadog": map[string]any{"url": "http://west.datadog:8126", "splitService": true}},
			"envoy.tracers.datadog", "west.datadog:8126"},
		{map[string]any{"type": "OpenTelemetry", "openTelemetry": map[string]any{"endpoint": "west.otel:4317"}},
			"envoy.tracers.opentelemetry", "west.otel:4317"},
	} {
		put(t, tp, meshTrace("trace-west", map[string]any{
			"targetRef": map[string]any{"kind": "MeshSubset", "tags": map[string]any{"kuma.io/zone": "west"}},
			"default":   map[string]any{"backends": []any{c.backend}},
		}))
		expectTracing(t, tp, map[string]string{
			"east": zipkinTo(collectorOf("east")),
			"west": c.provider + " -> " + c.hostPort,
		}, converge)
	}
}

// An invalid policy is refused with per-field causes and changes nothing.
func testBadPolicyRejected(t *testing.T, tp *Topology) {
	before, err := tp.GlobalAPI(0).Policies(t)
	if err != nil {
		t.Fatal(err)
	}
	bad := meshTrace("trace-east", map[string]any{
		"targetRef": map[string]any{"kind": "MeshSubset", "tags": map[string]any{"kuma.io/zone": "east"}},
		"default": map[string]any{
			"sampling": map[string]any{"overall": 150},
			"backends": []any{map[string]any{"type": "Zipkin", "zipkin": map[string]any{"url": ""}}},
		},
	})
	for _, name := range []string{"trace-east", "brand-new"} {
		bad["name"] = name
		resp := tp.GlobalAPI(0).Must(t, http.MethodPut, policyPath(name), bad, http.StatusBadRequest)
		var e struct {
			Title  string `json:"title"`
			Causes []struct {
				Field   string `json:"field"`
				Message string `json:"message"`
			} `json:"causes"`
		}
		if err := json.Unmarshal(resp.Body, &e); err != nil {
			t.Fatalf("error body %s: %v", resp.Body, err)
		}
		fields := map[string]bool{}
		for _, c := range e.Causes {
			fields[c.Field] = true
		}
		for _, f := range []string{"spec.default.sampling.overall", "spec.default.backends[0].zipkin.url"} {
			if !fields[f] {
				t.Errorf("PUT %s: no cause for %s in %s", name, f, resp.Body)
			}
		}
	}
	tp.GlobalAPI(0).Must(t, http.MethodGet, policyPath("brand-new"), nil, http.StatusNotFound)
	after, err := tp.GlobalAPI(0).Policies(t)
	if err != nil {
		t.Fatal(err)
	}
	if d := diffPolicies(before, after); d != "" {
		t.Errorf("rejected writes changed global's policies:%s", d)
	}
	expectTracing(t, tp, map[string]string{"east": zipkinTo(collectorOf("east")), "west": zipkinTo(collectorOf("west"))}, 5*time.Second)
}

// Killing either global replica: zones reconnect to the other and go on
// receiving changes.
func testGlobalReplicaKilled(t *testing.T, tp *Topology) {
	// Every zone is on one replica or the other: across both kills each must
	// have moved to another global instance at least once.
	instances := map[string]map[string]bool{}
	observe := func(api API) {
		t.Helper()
		for _, z := range tp.Zones {
			waitFor(t, converge, "zone "+z.Name+" online", func() error {
				zi, err := getZoneInsight(t, api, z.Name)
				if err != nil {
					return err
				}
				if !zi.Online || zi.GlobalInstance == "" {
					return fmt.Errorf("zone %s: online %v instance %q", z.Name, zi.Online, zi.GlobalInstance)
				}
				if instances[z.Name] == nil {
					instances[z.Name] = map[string]bool{}
				}
				instances[z.Name][zi.GlobalInstance] = true
				return nil
			})
		}
	}
	observe(tp.GlobalAPI(0))
	defer ensureRunning(t, tp.Globals...)
	for i, victim := range tp.Globals {
		other := tp.GlobalAPI(1 - i)
		victim.Kill(t)
		port := 9420 + i
		other.Must(t, http.MethodPut, policyPath("trace-west"),
			zonePolicy("west", fmt.Sprintf("west.zipkincollector:%d", port)), http.StatusOK, http.StatusCreated)
		expectTracing(t, tp, map[string]string{
			"east": zipkinTo(collectorOf("east")),
			"west": zipkinTo(fmt.Sprintf("west.zipkincollector:%d", port)),
		}, converge)
		observe(other)
		victim.Start(t)
	}
	for zone, seen := range instances {
		if len(seen) < 2 {
			t.Errorf("zone %s stayed on global instance %v while each replica was killed in turn", zone, seen)
		}
	}
}

// A zone cut off from global keeps serving its last config; once the
// partition heals it converges on what changed meanwhile.
func testZonePartitioned(t *testing.T, tp *Topology) {
	east := tp.Zone("east")
	east.CP.Disconnect(t, tp.GlobalNet)
	healed := false
	defer func() {
		if !healed {
			east.CP.Connect(t, tp.GlobalNet)
		}
	}()
	put(t, tp, zonePolicy("east", "east.zipkincollector:9430"))
	put(t, tp, zonePolicy("west", "west.zipkincollector:9430"))
	expectTracing(t, tp, map[string]string{"west": zipkinTo("west.zipkincollector:9430")}, converge)
	// East is unreachable: its proxies keep tracing to the old collector and
	// its API keeps serving the policy it had. Positive marker: global has
	// seen east's stream go (its ZoneInsight is offline) after west got the
	// change.
	waitFor(t, converge, "global to see east offline", func() error {
		in, err := getZoneInsight(t, tp.GlobalAPI(0), "east")
		if err != nil {
			return err
		}
		if in.Online {
			return fmt.Errorf("east still online")
		}
		return nil
	})
	expectTracing(t, tp, map[string]string{"east": zipkinTo(collectorOf("east"))}, time.Second)
	got, err := east.API().Policies(t)
	if err != nil {
		t.Fatal(err)
	}
	if p := got[mesh+"/trace-east"]; !strings.Contains(p, collectorOf("east")) {
		t.Errorf("partitioned zone serves trace-east %s, want the one before the partition", p)
	}

	east.CP.Connect(t, tp.GlobalNet)
	healed = true
	expectTracing(t, tp, map[string]string{"east": zipkinTo("east.zipkincollector:9430")}, 2*converge)
}

// With both global replicas down, a restarted zone CP serves its proxies the
// same config from its local store; when global returns, the zone resyncs.
func testZoneRestartWhileGlobalDown(t *testing.T, tp *Topology) {
	want := map[string]string{"east": zipkinTo(collectorOf("east")), "west": zipkinTo(collectorOf("west"))}
	before := expectTracing(t, tp, want, converge)
	for _, g := range tp.Globals {
		g.Stop(t)
	}
	defer ensureRunning(t, tp.Globals...)
	east := tp.Zone("east")
	east.CP.Stop(t)
	east.CP.Start(t)
	// The proxies reconnect to the restarted CP and get the same config.
	waitFor(t, converge, "east proxies reconnected to the restarted zone CP", func() error {
		for _, p := range east.Proxies {
			c, err := proxyConfig(t, p)
			if err != nil {
				return err
			}
			if !c.Connected || c.Streams < before[p.Name].Streams+1 {
				return fmt.Errorf("%s: connected %v after %d streams", p.Name, c.Connected, c.Streams)
			}
		}
		return nil
	})
	after := expectTracing(t, tp, want, converge)
	for _, p := range east.Proxies {
		b, a := before[p.Name], after[p.Name]
		if fmt.Sprint(b.Clusters, b.Listeners) != fmt.Sprint(a.Clusters, a.Listeners) {
			t.Errorf("%s: config changed across the zone CP restart:\n before %+v %+v\n after  %+v %+v",
				p.Name, b.Clusters, b.Listeners, a.Clusters, a.Listeners)
		}
	}
	// A proxy that connects fresh gets the full config from the restarted
	// CP (the reconnected ones already hold it and may get no push).
	fresh, err := startADSClient(t.Context(), t, east.Name, mesh, east.Dataplanes[0], "fresh", zoneXDSAddr(), east.Net)
	if err != nil {
		t.Fatal(err)
	}
	defer fresh.terminate()
	waitFor(t, converge, "a fresh proxy got config from the restarted zone CP", func() error {
		c, err := proxyConfig(t, fresh)
		if err != nil {
			return err
		}
		b := before[east.Proxies[0].Name]
		if fmt.Sprint(b.Clusters, b.Listeners) != fmt.Sprint(c.Clusters, c.Listeners) {
			return fmt.Errorf("fresh proxy config differs from before the restart:\n before %+v %+v\n now    %+v %+v",
				b.Clusters, b.Listeners, c.Clusters, c.Listeners)
		}
		return nil
	})
	got, err := east.API().Policies(t)
	if err != nil {
		t.Fatal(err)
	}
	if len(got) != 2 {
		t.Errorf("restarted zone serves %d policies without global, want 2: %v", len(got), got)
	}
	for _, g := range tp.Globals {
		g.Start(t)
	}
	put(t, tp, zonePolicy("east", "east.zipkincollector:9440"))
	expectTracing(t, tp, map[string]string{"east": zipkinTo("east.zipkincollector:9440")}, 2*converge)
}

// A TCP service's proxy gets tcp_proxy and no tracing, so it emits no span;
// an HTTP proxy with an outbound to that service gets an EDS cluster that
// resolves to the TCP proxy's address, and its HTTP inbound's spans reach its
// zone's collector.
func testProtocolsAndEndpoints(t *testing.T, tp *Topology) {
	east := tp.Zone("east")
	const dbAddr, dbPort = "10.0.0.20", 5432
	dbJSON := fmt.Sprintf(`{"type":"Dataplane","mesh":%q,"name":"east-db","networking":{"address":%q,`+
		`"inbound":[{"port":%d,"tags":{"kuma.io/service":"db-east","kuma.io/protocol":"tcp"}}]}}`, mesh, dbAddr, dbPort)
	if resp, err := east.API().Do(t, http.MethodPut, "/meshes/"+mesh+"/dataplanes/east-db", dbJSON); err != nil || resp.Status >= 300 {
		t.Fatalf("register east-db: %v %d %s", err, resp.Status, resp.Body)
	}
	web := east.Dataplanes[0]
	withOutbound := strings.TrimSuffix(dataplaneJSON(mesh, web, "web-"+east.Name), "}}") +
		`,"outbound":[{"port":10001,"tags":{"kuma.io/service":"db-east"}}]}}`
	if resp, err := east.API().Do(t, http.MethodPut, "/meshes/"+mesh+"/dataplanes/"+web, withOutbound); err != nil || resp.Status >= 300 {
		t.Fatalf("add an outbound to %s: %v %d %s", web, err, resp.Status, resp.Body)
	}
	defer func() {
		if resp, err := east.API().Do(t, http.MethodPut, "/meshes/"+mesh+"/dataplanes/"+web, dataplaneJSON(mesh, web, "web-"+east.Name)); err != nil || resp.Status >= 300 {
			t.Errorf("restore %s: %v %d %s", web, err, resp.Status, resp.Body)
		}
		if resp, err := east.API().Do(t, http.MethodDelete, "/meshes/"+mesh+"/dataplanes/east-db", nil); err != nil || resp.Status >= 300 {
			t.Errorf("delete east-db: %v %d %s", err, resp.Status, resp.Body)
		}
	}()
	db, err := startADSClient(t.Context(), t, east.Name, mesh, "east-db", "", zoneXDSAddr(), east.Net)
	if err != nil {
		t.Fatal(err)
	}
	defer db.terminate()

	waitFor(t, converge, "east-db has one tcp_proxy listener and no tracing", func() error {
		c, err := proxyConfig(t, db)
		if err != nil {
			return err
		}
		if len(c.Listeners) != 1 || !c.Listeners[0].TCPProxy || c.Listeners[0].HTTP || len(c.Listeners[0].Tracers) != 0 {
			return fmt.Errorf("listeners %+v", c.Listeners)
		}
		for _, cl := range c.ClusterNames {
			if strings.HasPrefix(cl, "meshtrace:") {
				return fmt.Errorf("collector cluster %s on a proxy with no HTTP listener", cl)
			}
		}
		return nil
	})
	want := net.JoinHostPort(dbAddr, strconv.Itoa(dbPort))
	waitFor(t, converge, web+"'s outbound to db-east resolves to east-db's address", func() error {
		c, err := proxyConfig(t, east.Proxies[0])
		if err != nil {
			return err
		}
		var out []string
		for _, l := range c.Listeners {
			if l.Name == "outbound:127.0.0.1:10001" && l.TCPProxy && !l.HTTP {
				out = l.Clusters
			}
		}
		if len(out) != 1 || out[0] != "db-east" {
			return fmt.Errorf("outbound listener to db-east (tcp_proxy) missing: %+v", c.Listeners)
		}
		for _, cl := range c.Clusters {
			if cl.Name == "db-east" {
				if !cl.EDS || strings.Join(cl.Endpoints, ",") != want {
					return fmt.Errorf("cluster db-east: eds %v endpoints %v, want %s", cl.EDS, cl.Endpoints, want)
				}
				if tr, err := c.Tracing(); err != nil || tr != zipkinTo(collectorOf(east.Name)) {
					return fmt.Errorf("tracing %q %v", tr, err)
				}
				return nil
			}
		}
		return fmt.Errorf("no cluster db-east in %v", c.ClusterNames)
	})
	resetCollector(t, east.Collector)
	if n := emit(t, db); n != 0 {
		t.Fatalf("east-db (tcp only) sent %d spans", n)
	}
	emitSpans(t, east.Proxies[0])
	if got := received(t, east.Collector).Services(); strings.Join(got, ",") != mesh+"."+web {
		t.Fatalf("east's collector got spans from %v, want only %s.%s", got, mesh, web)
	}
}

// ensureRunning starts those of nodes that are not running, so a failed
// scenario does not leave the shared topology broken for the next one.
func ensureRunning(t testing.TB, nodes ...*Node) {
	t.Helper()
	for _, n := range nodes {
		if st, err := n.c.State(context.Background()); err == nil && !st.Running {
			n.Start(t)
		}
	}
}

// With one etcd member down, global still accepts writes and zones get them.
func testEtcdMemberKilled(t *testing.T, tp *Topology) {
	victim := tp.Etcd.Nodes[1]
	victim.Kill(t)
	defer ensureRunning(t, victim)
	waitFor(t, converge, "a write through global with one etcd member down", func() error {
		resp, err := tp.GlobalAPI(0).Do(t, http.MethodPut, policyPath("trace-east"), zonePolicy("east", "east.zipkincollector:9450"))
		if err != nil {
			return err
		}
		if resp.Status != http.StatusOK && resp.Status != http.StatusCreated {
			return fmt.Errorf("PUT: %d %s", resp.Status, resp.Body)
		}
		return nil
	})
	expectTracing(t, tp, map[string]string{"east": zipkinTo("east.zipkincollector:9450")}, converge)
	expectConsistent(t, tp)
}

// East is away while most policies are deleted and etcd's history is
// compacted, a corrupt value lands in etcd, and the policies left include
// large ones (the snapshot takes several messages at the zone's 4 MiB cap).
// On reconnect east converges from a snapshot: the deletes apply (a newer
// revision of the same store: nothing is held), the corrupt value is
// skipped and listed by global, nothing blocks.
func testSnapshotAfterCompaction(t *testing.T, tp *Topology) {
	nowhere := map[string]any{"kind": "MeshSubset", "tags": map[string]any{"kuma.io/zone": "nowhere"}}
	spec := func(tags int) map[string]any {
		def := map[string]any{"backends": []any{zipkinBackend("http://nowhere.collector:9411/api/v2/spans")}}
		if tags > 0 {
			var ts []any
			for i := range tags {
				ts = append(ts, map[string]any{"name": fmt.Sprintf("t%d", i), "literal": strings.Repeat("x", 8000)})
			}
			def["tags"] = ts
		}
		return map[string]any{"targetRef": nowhere, "default": def}
	}
	for i := range 30 {
		put(t, tp, meshTrace(fmt.Sprintf("mass-%d", i), spec(0)))
	}
	for i := range 12 {
		put(t, tp, meshTrace(fmt.Sprintf("big-%d", i), spec(50))) // ~400 KB each
	}
	expectConsistent(t, tp)

	east := tp.Zone("east")
	east.CP.Disconnect(t, tp.GlobalNet)
	healed := false
	defer func() {
		if !healed {
			east.CP.Connect(t, tp.GlobalNet)
		}
	}()
	for i := range 30 {
		if i%10 != 0 {
			del(t, tp, fmt.Sprintf("mass-%d", i))
		}
	}
	cli, err := clientv3.New(clientv3.Config{Endpoints: tp.Etcd.HostEndpoints(t), DialTimeout: 5 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	defer cli.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	const corruptKey = "/meshtrace/resources/MeshTrace/default/corrupt-e2e"
	resp, err := cli.Put(ctx, corruptKey, "{not json")
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _, _ = cli.Delete(context.Background(), corruptKey) }()
	if _, err := cli.Compact(ctx, resp.Header.Revision, clientv3.WithCompactPhysical()); err != nil {
		t.Fatal(err)
	}
	// Global keeps answering lists with the corrupt value present.
	tp.GlobalAPI(0).Must(t, http.MethodGet, "/meshes/"+mesh+"/meshtraces", nil, http.StatusOK)

	east.CP.Connect(t, tp.GlobalNet)
	healed = true
	expectConsistent(t, tp)
	in, err := getZoneInsight(t, tp.GlobalAPI(0), "east")
	if err != nil {
		t.Fatal(err)
	}
	if in.Held != nil {
		t.Fatalf("east holds deletes after a legitimate mass delete: %+v", in.Held)
	}
	r := tp.GlobalAPI(0).Must(t, http.MethodGet, "/admin/corrupt-values", nil, http.StatusOK)
	if !strings.Contains(string(r.Body), "corrupt-e2e") {
		t.Fatalf("global does not list the corrupt value: %s", r.Body)
	}
	for i := range 30 {
		if i%10 == 0 {
			del(t, tp, fmt.Sprintf("mass-%d", i))
		}
	}
	for i := range 12 {
		del(t, tp, fmt.Sprintf("big-%d", i))
	}
}
