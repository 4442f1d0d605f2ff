package xds

import (
	"context"
	"encoding/json"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"

	endpointv3 "github.com/envoyproxy/go-control-plane/envoy/config/endpoint/v3"
	listenerv3 "github.com/envoyproxy/go-control-plane/envoy/config/listener/v3"
	"github.com/envoyproxy/go-control-plane/pkg/cache/v3"
	resourcev3 "github.com/envoyproxy/go-control-plane/pkg/resource/v3"
	"github.com/hashicorp/go-hclog"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/meshtrace/meshtrace/policy/meshtrace"
	"github.com/meshtrace/meshtrace/resource"
)

// countingCache is a real snapshot cache that also counts what it is given.
type countingCache struct {
	cache.SnapshotCache
	mu      sync.Mutex
	sets    map[string]int
	cleared map[string]int
}

func newCountingCache() *countingCache {
	return &countingCache{
		SnapshotCache: cache.NewSnapshotCache(true, cache.IDHash{}, nil),
		sets:          map[string]int{}, cleared: map[string]int{},
	}
}

func (c *countingCache) SetSnapshot(ctx context.Context, node string, s cache.ResourceSnapshot) error {
	c.mu.Lock()
	c.sets[node]++
	c.mu.Unlock()
	return c.SnapshotCache.SetSnapshot(ctx, node, s)
}

func (c *countingCache) ClearSnapshot(node string) {
	c.mu.Lock()
	c.cleared[node]++
	c.mu.Unlock()
	c.SnapshotCache.ClearSnapshot(node)
}

func (c *countingCache) reset() map[string]int {
	c.mu.Lock()
	defer c.mu.Unlock()
	s := c.sets
	c.sets = map[string]int{}
	return s
}

func TestReconciler(t *testing.T) {
	ctx := context.Background()
	out := newCountingCache()
	reg := prometheus.NewRegistry()
	r, err := NewReconciler(hclog.NewNullLogger(), out, reg)
	if err != nil {
		t.Fatal(err)
	}
	east1 := sidecar("east-1", "backend", map[string]string{resource.TagZone: "east"}, "web")
	east2 := sidecar("east-2", "backend", map[string]string{resource.TagZone: "east"}, "web") // same spec as east-1
	west1 := sidecar("west-1", "backend", map[string]string{resource.TagZone: "west"}, "web")
	other := sidecar("other-1", "backend", map[string]string{resource.TagZone: "east"})
	other.Mesh = "other"
	westPolicy := meshTrace("trace-west", subsetRef(map[string]string{resource.TagZone: "west"}), withZipkin("http://west.zipkincollector:9411/api/v2/spans"))
	eastPolicy := meshTrace("trace-east", subsetRef(map[string]string{resource.TagZone: "east"}), withZipkin("http://east.zipkincollector:9411/api/v2/spans"))
	dps := []*resource.Resource{east1, east2, west1, other}

	if err := r.Update(ctx, dps, []*resource.Resource{westPolicy, eastPolicy}); err != nil {
		t.Fatal(err)
	}
	if got := out.reset(); len(got) != 4 {
		t.Fatalf("pushes %v, want one per proxy", got)
	}
	for _, tc := range []struct{ mesh, name, collector string }{
		{"default", "east-1", "http://east.zipkincollector:9411/api/v2/spans"},
		{"default", "east-2", "http://east.zipkincollector:9411/api/v2/spans"},
		{"default", "west-1", "http://west.zipkincollector:9411/api/v2/spans"},
		{"other", "other-1", ""},
	} {
		typ, c, ok := r.Collector(tc.mesh, tc.name)
		if !ok || c != tc.collector || (c != "" && typ != resource.BackendZipkin) {
			t.Errorf("%s/%s: collector %q %q %v, want %q", tc.mesh, tc.name, typ, c, ok, tc.collector)
		}
		snap, ok := r.Snapshot(tc.mesh, tc.name)
		if !ok {
			t.Fatalf("%s/%s: no snapshot", tc.mesh, tc.name)
		}
		checkSnapshot(t, snap)
		served, err := out.GetSnapshot(NodeID(tc.mesh, tc.name))
		if err != nil || served != cache.ResourceSnapshot(snap) {
			t.Errorf("%s/%s: cache holds %v (%v)", tc.mesh, tc.name, served, err)
		}
	}
	s1, _ := r.Snapshot("default", "east-1")
	s2, _ := r.Snapshot("default", "east-2")
	if s1 != s2 {
		t.Error("proxies with identical inputs should share one snapshot")
	}
	if got := r.AffectedBy(westPolicy.Key()); len(got) != 1 || got[0].Name != "west-1" {
		t.Errorf("AffectedBy(west) = %v", got)
	}
	if got := r.AffectedBy(eastPolicy.Key()); len(got) != 2 || got[0].Name != "east-1" || got[1].Name != "east-2" {
		t.Errorf("AffectedBy(east) = %v", got)
	}

	// Same state again: nothing pushed.
	if err := r.Update(ctx, dps, []*resource.Resource{westPolicy, eastPolicy}); err != nil {
		t.Fatal(err)
	}
	if got := out.reset(); len(got) != 0 {
		t.Fatalf("unchanged inputs pushed %v", got)
	}

	// Changing the west policy pushes west proxies only.
	westPolicy2 := meshTrace("trace-west", subsetRef(map[string]string{resource.TagZone: "west"}), withZipkin("http://west2.zipkincollector:9411/api/v2/spans"))
	if err := r.Upsert(ctx, westPolicy2); err != nil {
		t.Fatal(err)
	}
	if got := out.reset(); len(got) != 1 || got["default.west-1"] != 1 {
		t.Fatalf("pushes %v, want default.west-1 only", got)
	}
	if _, c, _ := r.Collector("default", "west-1"); !strings.Contains(c, "west2") {
		t.Fatalf("west collector %s", c)
	}

	// A new Mesh policy reaches every proxy of the mesh, not the other mesh.
	meshWide := meshTrace("sampling", meshRef(), &resource.MeshTraceConf{Sampling: &resource.Sampling{Overall: resource.Int(10)}})
	if err := r.Upsert(ctx, meshWide); err != nil {
		t.Fatal(err)
	}
	if got := out.reset(); len(got) != 3 || got["other.other-1"] != 0 {
		t.Fatalf("pushes %v", got)
	}
	rules, _ := r.Rules("default", "east-1")
	if len(rules.Policies) != 2 || rules.Policies[0].Name != "sampling" || rules.Policies[1].Name != "trace-east" {
		t.Fatalf("rules policies %v", rules.Policies)
	}

	// A bad policy: the proxy keeps its last good snapshot and the error is reported.
	before, _ := r.Snapshot("default", "west-1")
	bad := meshTrace("trace-west", subsetRef(map[string]string{resource.TagZone: "west"}), withZipkin("gopher://nope"))
	if err := r.Upsert(ctx, bad); err == nil {
		t.Fatal("expected a build error")
	}
	if after, _ := r.Snapshot("default", "west-1"); after != before {
		t.Fatal("a failed build must keep the last good snapshot")
	}
	if r.Err("default", "west-1") == nil {
		t.Fatal("Err should report the failed build")
	}
	if err := r.Upsert(ctx, westPolicy2); err != nil {
		t.Fatal(err)
	}
	if r.Err("default", "west-1") != nil {
		t.Fatal("Err should clear after a good build")
	}
	out.reset()

	// Deleting a policy rebuilds the proxies it affected.
	if err := r.Delete(ctx, eastPolicy.Key()); err != nil {
		t.Fatal(err)
	}
	if got := out.reset(); len(got) != 2 || got["default.east-1"] != 1 || got["default.east-2"] != 1 {
		t.Fatalf("pushes %v", got)
	}
	if _, c, _ := r.Collector("default", "east-1"); c != "" {
		t.Fatalf("east-1 still traces to %s", c)
	}

	// Changing a dataplane rebuilds it alone.
	east2b := sidecar("east-2", "backend", map[string]string{resource.TagZone: "east"}, "web", "db")
	if err := r.Upsert(ctx, east2b); err != nil {
		t.Fatal(err)
	}
	if got := out.reset(); len(got) != 1 || got["default.east-2"] != 1 {
		t.Fatalf("pushes %v", got)
	}

	// Deleting a dataplane clears its snapshot.
	if err := r.Delete(ctx, east1.Key()); err != nil {
		t.Fatal(err)
	}
	if _, err := out.GetSnapshot("default.east-1"); err == nil {
		t.Fatal("snapshot of a deleted proxy still served")
	}
	if _, ok := r.Snapshot("default", "east-1"); ok {
		t.Fatal("deleted proxy still known")
	}

	// Inspect views.
	dump, err := r.DumpJSON("default", "west-1")
	if err != nil {
		t.Fatal(err)
	}
	var parsed map[string]any
	if err := json.Unmarshal(dump, &parsed); err != nil || parsed["version"] == "" {
		t.Fatalf("dump: %v %s", err, dump)
	}
	if _, err := r.DumpJSON("default", "nope"); err == nil {
		t.Fatal("dump of an unknown proxy")
	}
	proxies := r.Proxies()
	if len(proxies) != 3 || proxies[0].Name != "east-2" || proxies[1].Name != "west-1" || proxies[1].Backend != "Zipkin" {
		t.Fatalf("proxies %+v", proxies)
	}

	// Full Update drops what is missing.
	if err := r.Update(ctx, []*resource.Resource{west1}, nil); err != nil {
		t.Fatal(err)
	}
	if got := r.Proxies(); len(got) != 1 || got[0].Backend != "" {
		t.Fatalf("proxies after update %+v", got)
	}
	if got := r.AffectedBy(westPolicy.Key()); len(got) != 0 {
		t.Fatalf("deleted policy still affects %v", got)
	}

	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	var pushes float64
	for _, mf := range mfs {
		if mf.GetName() == "meshtrace_xds_snapshot_pushes_total" {
			pushes = mf.GetMetric()[0].GetCounter().GetValue()
		}
	}
	if pushes < 10 {
		t.Fatalf("pushes counter = %v", pushes)
	}
}

// Large batches are built on all cores; the result must equal a plain Build.
func TestReconcilerParallel(t *testing.T) {
	ctx := context.Background()
	out := newCountingCache()
	r, err := NewReconciler(nil, out, nil)
	if err != nil {
		t.Fatal(err)
	}
	var dps []*resource.Resource
	for i := range 3 * parallelThreshold {
		dp := sidecar("dp-"+strconv.Itoa(i), "svc-"+strconv.Itoa(i%7), nil, "web", "db")
		dp.Spec.(*resource.DataplaneSpec).Networking.Address = "10.0.1." + strconv.Itoa(i)
		dps = append(dps, dp)
	}
	policies := []*resource.Resource{
		meshTrace("default", meshRef(), withZipkin("http://zipkin:9411/api/v2/spans")),
		meshTrace("svc-3", serviceRef("svc-3"), &resource.MeshTraceConf{Backends: backends(resource.Backend{
			Type: resource.BackendDatadog, Datadog: &resource.DatadogBackend{URL: "http://dd:8126", SplitService: true},
		})}),
	}
	for round := range 2 {
		if round == 1 {
			policies[0] = meshTrace("default", meshRef(), withZipkin("http://zipkin-2:9411/api/v2/spans"))
		}
		if err := r.Update(ctx, dps, policies); err != nil {
			t.Fatal(err)
		}
		// Round 1 changes the Mesh policy, which svc-3's own policy overrides
		// entirely: those proxies' content is unchanged and nothing is pushed.
		want := len(dps)
		if round == 1 {
			want -= len(r.AffectedBy(key(resource.TypeMeshTrace, "svc-3")))
		}
		if got := out.reset(); len(got) != want {
			t.Fatalf("round %d: pushed %d, want %d", round, len(got), want)
		}
		for _, dp := range dps {
			snap, ok := r.Snapshot(dp.Mesh, dp.Name)
			if !ok {
				t.Fatalf("%s: no snapshot", dp.Name)
			}
			want, err := Build(dp, meshtrace.Compute(dp, policies), Env{Dataplanes: dps})
			if err != nil {
				t.Fatal(err)
			}
			if Version(snap) != Version(want) {
				t.Fatalf("%s: version %s, plain Build gives %s", dp.Name, Version(snap), Version(want))
			}
		}
	}
}

// Endpoints follow the zone's Dataplanes: a Dataplane that comes, changes or
// goes pushes only the proxies with an outbound to its service, and a second
// endpoint of a known service changes only their load assignments.
func TestReconcilerEndpoints(t *testing.T) {
	ctx := context.Background()
	out := newCountingCache()
	r, err := NewReconciler(nil, out, nil)
	if err != nil {
		t.Fatal(err)
	}
	front := sidecar("front-1", "front", nil, "db")
	other := sidecar("other-1", "other", nil, "web")
	pol := meshTrace("default", meshRef(), withZipkin("http://zipkin:9411/api/v2/spans"))
	if err := r.Update(ctx, []*resource.Resource{front, other}, []*resource.Resource{pol}); err != nil {
		t.Fatal(err)
	}
	out.reset()
	snapOf := func(name string) *cache.Snapshot {
		s, ok := r.Snapshot("default", name)
		if !ok {
			t.Fatalf("%s: no snapshot", name)
		}
		checkSnapshot(t, s)
		return s
	}
	outboundFilter := func() string {
		l := snapOf("front-1").GetResources(resourcev3.ListenerType)["outbound:127.0.0.1:10001"].(*listenerv3.Listener)
		return l.GetFilterChains()[0].GetFilters()[0].GetName()
	}
	endpoints := func() []string {
		var addrs []string
		cla := snapOf("front-1").GetResources(resourcev3.EndpointType)["db"].(*endpointv3.ClusterLoadAssignment)
		for _, le := range cla.GetEndpoints() {
			for _, lb := range le.GetLbEndpoints() {
				addrs = append(addrs, lb.GetEndpoint().GetAddress().GetSocketAddress().GetAddress())
			}
		}
		return addrs
	}
	if f := outboundFilter(); f != tcpProxyFilter || len(endpoints()) != 0 {
		t.Fatalf("db has no endpoint: %s, %v", f, endpoints())
	}
	before := snapOf("front-1")

	db1 := at(sidecar("db-1", "db", nil), "10.0.0.1")
	if err := r.Upsert(ctx, db1); err != nil {
		t.Fatal(err)
	}
	if got := out.reset(); len(got) != 2 || got["default.front-1"] != 1 || got["default.db-1"] != 1 {
		t.Fatalf("db-1 joining pushed %v, want front-1 and db-1", got)
	}
	if f, eps := outboundFilter(), endpoints(); f != hcmFilter || !slices.Equal(eps, []string{"10.0.0.1"}) {
		t.Fatalf("after db-1: %s %v", f, eps)
	}
	mid := snapOf("front-1")
	if sameVersions(before, mid) || mid.GetVersion(resourcev3.ListenerType) == before.GetVersion(resourcev3.ListenerType) {
		t.Fatal("db became http: the outbound listener must change")
	}

	db2 := at(sidecar("db-2", "db", nil), "10.0.0.2")
	if err := r.Upsert(ctx, db2); err != nil {
		t.Fatal(err)
	}
	if got := out.reset(); len(got) != 2 || got["default.front-1"] != 1 {
		t.Fatalf("db-2 joining pushed %v", got)
	}
	after := snapOf("front-1")
	if !slices.Equal(endpoints(), []string{"10.0.0.1", "10.0.0.2"}) {
		t.Fatalf("endpoints %v", endpoints())
	}
	for _, typ := range []string{resourcev3.ListenerType, resourcev3.ClusterType} {
		if after.GetVersion(typ) != mid.GetVersion(typ) {
			t.Errorf("%s version changed for a new endpoint only", typ)
		}
	}
	if after.GetVersion(resourcev3.EndpointType) == mid.GetVersion(resourcev3.EndpointType) {
		t.Error("endpoint version unchanged")
	}
	// The endpoints-only update equals a full build.
	full, err := Build(front, meshtrace.Compute(front, []*resource.Resource{pol}), Env{Dataplanes: []*resource.Resource{front, other, db1, db2}})
	if err != nil {
		t.Fatal(err)
	}
	if Version(full) != Version(after) || dumpYAMLString(t, full) != dumpYAMLString(t, after) {
		t.Fatalf("endpoints-only update %s, full build %s", Version(after), Version(full))
	}

	// A change of db-2 that does not touch its inbounds pushes db-2 only.
	db2b := at(sidecar("db-2", "db", nil, "web"), "10.0.0.2")
	if err := r.Upsert(ctx, db2b); err != nil {
		t.Fatal(err)
	}
	if got := out.reset(); len(got) != 1 || got["default.db-2"] != 1 {
		t.Fatalf("db-2's outbound change pushed %v", got)
	}

	if err := r.Delete(ctx, db1.Key(), db2.Key()); err != nil {
		t.Fatal(err)
	}
	if got := out.reset(); len(got) != 1 || got["default.front-1"] != 1 {
		t.Fatalf("db leaving pushed %v", got)
	}
	if f := outboundFilter(); f != tcpProxyFilter || len(endpoints()) != 0 {
		t.Fatalf("db left: %s, %v", f, endpoints())
	}
	if v := snapOf("front-1"); !sameVersions(v, before) {
		t.Fatal("back to no endpoint: the snapshot should equal the first one")
	}
}

func dumpYAMLString(t testing.TB, snap *cache.Snapshot) string { return string(dumpYAML(t, snap)) }

// A builtin gateway follows its MeshGateway and the MeshGateway targets that
// name it.
func TestReconcilerMeshGateway(t *testing.T) {
	ctx := context.Background()
	out := newCountingCache()
	r, err := NewReconciler(nil, out, nil)
	if err != nil {
		t.Fatal(err)
	}
	gw := builtinGateway("edge-1", "edge", 0)
	side := sidecar("backend-1", "backend", nil)
	pol := meshTrace("gw", &resource.TargetRef{Kind: resource.KindMeshGateway, Name: "edge-gateway"}, withZipkin("http://zipkin:9411/api/v2/spans"))
	if err := r.Update(ctx, []*resource.Resource{gw, side}, []*resource.Resource{pol}); err != nil {
		t.Fatal(err)
	}
	out.reset()
	if s, _ := r.Snapshot("default", "edge-1"); len(s.GetResources(resourcev3.ListenerType)) != 0 {
		t.Fatal("no MeshGateway, no listener")
	}
	if err := r.Upsert(ctx, edgeGateway()); err != nil {
		t.Fatal(err)
	}
	if got := out.reset(); len(got) != 1 || got["default.edge-1"] != 1 {
		t.Fatalf("MeshGateway created: pushed %v", got)
	}
	if got := r.AffectedBy(pol.Key()); len(got) != 1 || got[0].Name != "edge-1" {
		t.Fatalf("the MeshGateway target selects %v", got)
	}
	if _, c, _ := r.Collector("default", "edge-1"); c == "" {
		t.Fatal("the gateway has no tracing")
	}
	if err := r.Delete(ctx, resource.Key{Type: resource.TypeMeshGateway, Mesh: "default", Name: "edge-gateway"}); err != nil {
		t.Fatal(err)
	}
	if got := out.reset(); len(got) != 1 || got["default.edge-1"] != 1 {
		t.Fatalf("MeshGateway deleted: pushed %v", got)
	}
	if s, _ := r.Snapshot("default", "edge-1"); len(s.GetResources(resourcev3.ListenerType)) != 0 {
		t.Fatal("MeshGateway gone, listeners stay")
	}
}
