package residency

import (
	"context"
	"flag"
	"fmt"
	"math/rand/v2"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/hashicorp/go-hclog"

	"github.com/meshtrace/meshtrace/policy/meshtrace"
	"github.com/meshtrace/meshtrace/resource"
	"github.com/meshtrace/meshtrace/store"
)

func decode(t testing.TB, doc string) *resource.Resource {
	t.Helper()
	r, err := resource.Decode([]byte(doc))
	if err != nil {
		t.Fatalf("decode: %v\n%s", err, doc)
	}
	resource.Prepare(r)
	if err := resource.Validate(r); err != nil {
		t.Fatalf("validate: %v\n%s", err, doc)
	}
	return r
}

// unvalidated decodes doc without validating it.
func unvalidated(t testing.TB, doc string) *resource.Resource {
	t.Helper()
	r, err := resource.Decode([]byte(doc))
	if err != nil {
		t.Fatalf("decode: %v\n%s", err, doc)
	}
	resource.Prepare(r)
	return r
}

// dp is a Dataplane as global stores it: <zone>.<name>, labelled with its zone.
func dp(t testing.TB, zone, name, service string, tags ...string) *resource.Resource {
	t.Helper()
	extra := ""
	for i := 0; i+1 < len(tags); i += 2 {
		extra += fmt.Sprintf(", %q: %q", tags[i], tags[i+1])
	}
	r := decode(t, fmt.Sprintf(`{"type":"Dataplane","mesh":"default","name":"%s.%s","labels":{"kuma.io/zone":%q,"kuma.io/origin":"zone","kuma.io/display-name":%q},
"networking":{"address":"10.0.0.1","inbound":[{"port":8080,"tags":{"kuma.io/service":%q,"kuma.io/zone":%q,"kuma.io/protocol":"http"%s}}]}}`,
		zone, name, zone, name, service, zone, extra))
	return r
}

// policy is a MeshTrace; target is a YAML flow mapping for targetRef ("" for none),
// backends a YAML flow sequence.
func policy(t testing.TB, name, target, backends string, labels ...string) *resource.Resource {
	t.Helper()
	doc := "type: MeshTrace\nmesh: default\nname: " + name + "\n"
	if len(labels) > 0 {
		doc += "labels:\n"
		for i := 0; i+1 < len(labels); i += 2 {
			doc += fmt.Sprintf("  %q: %q\n", labels[i], labels[i+1])
		}
	}
	doc += "spec:\n"
	if target != "" {
		doc += "  targetRef: " + target + "\n"
	}
	doc += "  default:\n    backends: " + backends + "\n"
	return decode(t, doc)
}

func zipkin(url string) string { return fmt.Sprintf("[{zipkin: {url: %q}}]", url) }
func otel(ep string) string {
	return fmt.Sprintf("[{type: OpenTelemetry, openTelemetry: {endpoint: %q}}]", ep)
}

func zoneRes(t testing.TB, name, mode string, allowed ...string) *resource.Resource {
	t.Helper()
	doc := "type: Zone\nname: " + name + "\nresidency:\n  mode: " + mode + "\n"
	if len(allowed) > 0 {
		doc += "  allowedCollectors: ['" + strings.Join(allowed, "', '") + "']\n"
	}
	return decode(t, doc)
}

func subset(zone string) string {
	return fmt.Sprintf("{kind: MeshSubset, tags: {kuma.io/zone: %s}}", zone)
}

func TestEvaluate(t *testing.T) {
	west := CompileZone("west", zoneRes(t, "west", "Enforce", "*.west.svc", "10.1.0.0/16:9411", "[fd00::/8]:4317").Spec.(*resource.ZoneSpec))
	web := dp(t, "west", "web-1", "web", "version", "v1")
	tests := []struct {
		name      string
		policies  []*resource.Resource
		allowed   bool
		collector string
		policy    string
		reason    string
	}{
		{name: "no policy: tracing off is allowed", allowed: true},
		{name: "wildcard host", policies: []*resource.Resource{policy(t, "a", "", zipkin("http://jaeger.west.svc:9411/api/v2/spans"))},
			allowed: true, collector: "http://jaeger.west.svc:9411/api/v2/spans", policy: "a"},
		{name: "wildcard at depth", policies: []*resource.Resource{policy(t, "a", "", otel("otel.obs.west.svc:4317"))},
			allowed: true, collector: "otel.obs.west.svc:4317", policy: "a"},
		{name: "other zone's host", policies: []*resource.Resource{policy(t, "a", "", zipkin("http://jaeger.east.svc:9411/api/v2/spans"))},
			collector: "http://jaeger.east.svc:9411/api/v2/spans", policy: "a", reason: `jaeger.east.svc:9411 is not in zone "west"'s allowed collectors [*.west.svc, 10.1.0.0/16:9411, [fd00::/8]:4317]`},
		{name: "bare domain is not below it", policies: []*resource.Resource{policy(t, "a", "", zipkin("http://west.svc:9411"))},
			policy: "a", reason: "west.svc:9411 is not"},
		{name: "cidr with port", policies: []*resource.Resource{policy(t, "a", "", zipkin("http://10.1.3.4:9411/api/v2/spans"))},
			allowed: true, policy: "a"},
		{name: "cidr, wrong port", policies: []*resource.Resource{policy(t, "a", "", zipkin("http://10.1.3.4:9412/api/v2/spans"))},
			policy: "a", reason: "10.1.3.4:9412 is not"},
		{name: "cidr, default port 80 of a URL without one", policies: []*resource.Resource{policy(t, "a", "", zipkin("http://10.1.3.4/api/v2/spans"))},
			policy: "a", reason: "10.1.3.4:80 is not"},
		{name: "ip outside cidr", policies: []*resource.Resource{policy(t, "a", "", zipkin("http://10.2.3.4:9411"))},
			policy: "a", reason: "10.2.3.4:9411 is not"},
		{name: "ipv6 otel default port 4317", policies: []*resource.Resource{policy(t, "a", "", otel("[fd00::5]"))},
			allowed: true, policy: "a"},
		{name: "ipv6 otel other port", policies: []*resource.Resource{policy(t, "a", "", otel("[fd00::5]:4318"))},
			policy: "a", reason: "[fd00::5]:4318 is not"},
		{name: "more specific policy wins and is responsible", policies: []*resource.Resource{
			policy(t, "mesh-wide", "{kind: Mesh}", zipkin("http://jaeger.central:9411")),
			policy(t, "web", "{kind: MeshService, name: web}", zipkin("http://jaeger.west.svc:9411")),
		}, allowed: true, policy: "web"},
		{name: "fallback policy is responsible when the specific one does not set backends", policies: []*resource.Resource{
			policy(t, "mesh-wide", "{kind: Mesh}", zipkin("http://jaeger.central:9411")),
			// Refused by validation since backends must be defined (Kuma 2.7), but
			// one stored before that rule may still be there.
			unvalidated(t, "type: MeshTrace\nmesh: default\nname: web\nspec:\n  targetRef: {kind: MeshService, name: web}\n  default:\n    sampling: {overall: 10}\n"),
		}, policy: "mesh-wide", reason: "jaeger.central:9411 is not"},
		{name: "explicit empty backends turns tracing off", policies: []*resource.Resource{
			policy(t, "mesh-wide", "{kind: Mesh}", zipkin("http://jaeger.central:9411")),
			policy(t, "tracing-off", "{kind: MeshServiceSubset, name: web, tags: {version: v1}}", "[]"),
		}, allowed: true},
		{name: "typo in zone tag leaves the mesh-wide policy in charge", policies: []*resource.Resource{
			policy(t, "mesh-wide", "", zipkin("http://jaeger.central:9411")),
			policy(t, "trace-west", subset("wset"), zipkin("http://jaeger.west.svc:9411")),
		}, policy: "mesh-wide", reason: "jaeger.central:9411"},
		{name: "policy of another zone does not apply here", policies: []*resource.Resource{
			policy(t, "from-east", "", zipkin("http://jaeger.east.svc:9411"), "kuma.io/origin", "zone", "kuma.io/zone", "east"),
		}, allowed: true},
		{name: "zone-originated policy of this zone applies", policies: []*resource.Resource{
			policy(t, "from-west", "", zipkin("http://jaeger.east.svc:9411"), "kuma.io/origin", "zone", "kuma.io/zone", "west"),
		}, policy: "from-west", reason: "jaeger.east.svc:9411 is not"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			v := Evaluate(web, tt.policies, west)
			if v.Allowed != tt.allowed || v.Zone != "west" || v.Proxy != "web-1" || (!v.Allowed && v.Service != "web") {
				t.Fatalf("verdict %+v", v)
			}
			if tt.collector != "" && v.Collector != tt.collector {
				t.Fatalf("collector %q, want %q", v.Collector, tt.collector)
			}
			if got := ""; v.Policy != nil {
				got = v.Policy.Name
				if got != tt.policy {
					t.Fatalf("policy %q, want %q", got, tt.policy)
				}
			} else if tt.policy != "" {
				t.Fatalf("no policy, want %q", tt.policy)
			}
			if !strings.Contains(v.Reason, tt.reason) || (tt.reason == "") != v.Allowed {
				t.Fatalf("reason %q, want it to contain %q", v.Reason, tt.reason)
			}
			if !v.Allowed && (!strings.Contains(v.Message(), `proxy "web-1"`) || !strings.Contains(v.Message(), `zone "west"`)) {
				t.Fatalf("message %q", v.Message())
			}
		})
	}
}

// newIndex loads items into an index at revision 1.
func newIndex(t testing.TB, items ...*resource.Resource) *Index {
	t.Helper()
	ix, err := NewIndex(Config{})
	if err != nil {
		t.Fatal(err)
	}
	ix.Load(1, items)
	return ix
}

func admit(t testing.TB, ix *Index, old, cur *resource.Resource) *Decision {
	t.Helper()
	d, err := ix.Admit(context.Background(), old, cur)
	if err != nil {
		t.Fatal(err)
	}
	d.Done(0)
	return d
}

func proxies(vs []Verdict) string {
	var out []string
	for _, v := range vs {
		out = append(out, v.Zone+"/"+v.Proxy+"->"+v.Collector+" by "+v.Policy.Name)
	}
	return strings.Join(out, ", ")
}

// seed is the seed's east/west setup: one policy per zone by kuma.io/zone,
// west enforced, east audited.
func seed(t testing.TB) []*resource.Resource {
	return []*resource.Resource{
		zoneRes(t, "west", "Enforce", "*.west.svc"),
		zoneRes(t, "east", "Audit", "*.east.svc"),
		zoneRes(t, "north", "Off"),
		dp(t, "west", "web-1", "web"), dp(t, "west", "db-1", "db"),
		dp(t, "east", "web-1", "web"),
		dp(t, "north", "web-1", "web"),
		policy(t, "trace-west", subset("west"), zipkin("http://jaeger.west.svc:9411/api/v2/spans")),
		policy(t, "trace-east", subset("east"), zipkin("http://jaeger.east.svc:9411/api/v2/spans")),
	}
}

func TestAdmitPolicyWrites(t *testing.T) {
	ix := newIndex(t, seed(t)...)
	if vs := ix.Violations(); len(vs) != 0 {
		t.Fatalf("seed violates: %v", vs)
	}
	centralAll := policy(t, "central", "{kind: MeshService, name: web}", zipkin("http://jaeger.central:9411"))

	d := admit(t, ix, nil, centralAll)
	if got := proxies(d.Refused); got != "west/web-1->http://jaeger.central:9411 by central" {
		t.Fatalf("refused: %s", got)
	}
	if got := proxies(d.Audited); got != "east/web-1->http://jaeger.central:9411 by central" {
		t.Fatalf("audited: %s", got)
	}

	// An update of trace-west moving it to east's collector.
	oldWest := ix.policy(resource.Key{Type: resource.TypeMeshTrace, Mesh: "default", Name: "trace-west"})
	moved := policy(t, "trace-west", subset("west"), zipkin("http://jaeger.east.svc:9411/api/v2/spans"))
	if d = admit(t, ix, oldWest, moved); proxies(d.Refused) != "west/db-1->http://jaeger.east.svc:9411/api/v2/spans by trace-west, west/web-1->http://jaeger.east.svc:9411/api/v2/spans by trace-west" {
		t.Fatalf("refused: %s", proxies(d.Refused))
	}
	// A retarget by a typo in the zone tag: west loses tracing, nothing leaves.
	if d = admit(t, ix, oldWest, policy(t, "trace-west", subset("wset"), zipkin("http://jaeger.west.svc:9411"))); !d.Allowed() || len(d.Audited) != 0 {
		t.Fatalf("typo: %+v", d)
	}
	// A Mesh-wide policy to west's collector: east's proxy is the one leaving.
	d = admit(t, ix, nil, policy(t, "everything-west", "", zipkin("http://jaeger.west.svc:9411")))
	if !d.Allowed() || proxies(d.Audited) != "" {
		t.Fatalf("mesh-wide, shadowed everywhere by the zone policies: %s / %s", proxies(d.Refused), proxies(d.Audited))
	}
	// Off zones are never checked.
	d = admit(t, ix, nil, policy(t, "north-out", subset("north"), zipkin("http://anywhere:9411")))
	if !d.Allowed() || len(d.Audited) != 0 {
		t.Fatalf("north: %+v", d)
	}
}

func TestAdmitDeleteLetsFallbackTakeOver(t *testing.T) {
	items := append(seed(t), policy(t, "fallback", "", zipkin("http://jaeger.central:9411")))
	ix := newIndex(t, items...)
	if vs := ix.Violations(); len(vs) != 0 {
		t.Fatalf("violations before: %v", vs)
	}
	west := ix.policy(resource.Key{Type: resource.TypeMeshTrace, Mesh: "default", Name: "trace-west"})
	d := admit(t, ix, west, nil)
	if got := proxies(d.Refused); got != "west/db-1->http://jaeger.central:9411 by fallback, west/web-1->http://jaeger.central:9411 by fallback" {
		t.Fatalf("delete of trace-west: refused %q", got)
	}
	east := ix.policy(resource.Key{Type: resource.TypeMeshTrace, Mesh: "default", Name: "trace-east"})
	d = admit(t, ix, east, nil)
	if !d.Allowed() || proxies(d.Audited) != "east/web-1->http://jaeger.central:9411 by fallback" {
		t.Fatalf("delete of trace-east: %s / %s", proxies(d.Refused), proxies(d.Audited))
	}
	// Deleting the fallback itself is fine.
	if d = admit(t, ix, ix.policy(resource.Key{Type: resource.TypeMeshTrace, Mesh: "default", Name: "fallback"}), nil); !d.Allowed() || len(d.Audited) > 0 {
		t.Fatalf("delete of fallback: %+v", d)
	}
}

func TestAdmitZoneOriginatedPolicy(t *testing.T) {
	ix := newIndex(t, seed(t)...)
	// Created on east, naming a west collector: it applies only in east.
	fromEast := policy(t, "east.local", "", zipkin("http://jaeger.west.svc:9411"), "kuma.io/origin", "zone", "kuma.io/zone", "east")
	d := admit(t, ix, nil, fromEast)
	if !d.Allowed() || proxies(d.Audited) != "" {
		// trace-east is more specific in east, so east keeps its collector.
		t.Fatalf("zone-originated in east: %s / %s", proxies(d.Refused), proxies(d.Audited))
	}
	// Created on west as a MeshService policy sending web out.
	fromWest := policy(t, "west.web", "{kind: MeshService, name: web}", zipkin("http://jaeger.east.svc:9411"), "kuma.io/origin", "zone", "kuma.io/zone", "west", "kuma.io/display-name", "web")
	d = admit(t, ix, nil, fromWest)
	if got := proxies(d.Refused); got != "west/web-1->http://jaeger.east.svc:9411 by west.web" || d.Refused[0].Policy.Origin != "zone" || d.Refused[0].Policy.Zone != "west" {
		t.Fatalf("zone-originated in west: %s %+v", got, d.Refused)
	}
	if !strings.Contains(d.Refused[0].Message(), `MeshTrace "west.web" in mesh "default" (created on zone "west" as "web")`) {
		t.Fatalf("message: %s", d.Refused[0].Message())
	}
	// Stored anyway (it arrived over KDS): the audit lists it.
	ix.Apply(2, []store.Event{{Type: store.EventPut, Resource: fromWest, Revision: 2}})
	vs := ix.Violations()
	if len(vs) != 1 || vs[0].Proxy != "web-1" || vs[0].Zone != "west" || vs[0].Policy.Name != "west.web" || vs[0].Mode != "Enforce" {
		t.Fatalf("violations: %+v", vs)
	}
}

func TestContinuousAudit(t *testing.T) {
	clock := time.Date(2026, 11, 30, 3, 0, 0, 0, time.UTC)
	ix, err := NewIndex(Config{Now: func() time.Time { return clock }})
	if err != nil {
		t.Fatal(err)
	}
	ix.Load(1, seed(t))
	// A Dataplane with a surprising tag: registered in west but tagged east, so
	// trace-east selects it and sends its spans to east.
	odd := dp(t, "west", "odd-1", "odd")
	odd.Spec.(*resource.DataplaneSpec).Networking.Inbound[0].Tags["kuma.io/zone"] = "east"
	ix.Apply(2, []store.Event{{Type: store.EventPut, Resource: odd, Revision: 2}})
	vs := ix.Violations()
	if len(vs) != 1 || vs[0].Proxy != "odd-1" || vs[0].Policy.Name != "trace-east" || !vs[0].Since.Equal(clock) {
		t.Fatalf("after odd dataplane: %+v", vs)
	}
	// Widening west's allowed set resolves it.
	clock = clock.Add(time.Minute)
	ix.Apply(3, []store.Event{{Type: store.EventPut, Resource: zoneRes(t, "west", "Enforce", "*.west.svc", "*.east.svc"), Revision: 3}})
	if vs := ix.Violations(); len(vs) != 0 {
		t.Fatalf("after widening: %+v", vs)
	}
	// Narrowing it again brings it back with a new since.
	clock = clock.Add(time.Minute)
	ix.Apply(4, []store.Event{{Type: store.EventPut, Resource: zoneRes(t, "west", "Audit", "*.west.svc"), Revision: 4}})
	if vs := ix.Violations(); len(vs) != 1 || !vs[0].Since.Equal(clock) || vs[0].Mode != "Audit" {
		t.Fatalf("after narrowing: %+v", vs)
	}
	rep := ix.Report()
	if rep.Revision != 4 || len(rep.Zones) != 3 {
		t.Fatalf("report: %+v", rep)
	}
	w := rep.Zones[2]
	if w.Zone != "west" || w.Mode != "Audit" || w.Proxies != 3 || len(w.Violations) != 1 || len(w.Collectors) != 2 {
		t.Fatalf("west report: %+v", w)
	}
	if c := w.Collectors[0]; c.Collector != "http://jaeger.east.svc:9411/api/v2/spans" || c.Allowed || c.Count != 1 || c.Proxies[0] != "default/odd-1" {
		t.Fatalf("west collectors: %+v", w.Collectors)
	}
	if n := rep.Zones[1]; n.Zone != "north" || n.Mode != "Off" || n.Proxies != 1 || n.TracingOff != 1 {
		t.Fatalf("north report: %+v", n)
	}
	// The dataplane leaving resolves it.
	ix.Apply(5, []store.Event{{Type: store.EventDelete, Resource: odd, Revision: 5}})
	if vs := ix.Violations(); len(vs) != 0 {
		t.Fatalf("after delete: %+v", vs)
	}
	// Deleting a policy re-checks the proxies it selected.
	ix.Apply(6, []store.Event{{Type: store.EventPut, Resource: policy(t, "fallback", "", zipkin("http://jaeger.central:9411")), Revision: 6}})
	ix.Apply(7, []store.Event{{Type: store.EventDelete, Resource: &resource.Resource{Meta: resource.Meta{Type: resource.TypeMeshTrace, Mesh: "default", Name: "trace-west"}}, Revision: 7}})
	if got := len(ix.Violations()); got != 2 {
		t.Fatalf("after deleting trace-west: %d violations", got)
	}
}

func TestAdmitWaitsForItsPreviousWrite(t *testing.T) {
	ix := newIndex(t, seed(t)...)
	p := policy(t, "central", "{kind: MeshService, name: web}", zipkin("http://jaeger.central:9411"))
	d, err := ix.Admit(context.Background(), nil, p)
	if err != nil {
		t.Fatal(err)
	}
	d.Done(5) // stored at revision 5, the index is at 1
	ctx, cancel := context.WithTimeout(context.Background(), 50*time.Millisecond)
	defer cancel()
	if _, err := ix.Admit(ctx, nil, p); err == nil {
		t.Fatal("admitted before the index saw the previous write")
	}
	got := make(chan error, 1)
	go func() {
		d, err := ix.Admit(context.Background(), nil, p)
		if err == nil {
			d.Done(0)
		}
		got <- err
	}()
	ix.Apply(5, []store.Event{{Type: store.EventPut, Resource: p, Revision: 5}})
	if err := <-got; err != nil {
		t.Fatal(err)
	}
}

// While no zone checks residency, policy writes are not serialized: a second
// one is admitted while the first is still being written. A Zone write (it
// may turn checks on) waits for them, and once a zone checks, policy writes
// are serialized again.
func TestAdmitUncheckedWritesRunConcurrently(t *testing.T) {
	ix := newIndex(t, zoneRes(t, "west", "Off"), dp(t, "west", "web-1", "web"))
	p := policy(t, "central", "{kind: MeshService, name: web}", zipkin("http://jaeger.central:9411"))
	first, err := ix.Admit(context.Background(), nil, p)
	if err != nil {
		t.Fatal(err)
	}
	// Admit blocks on a lock, not on ctx: a serialized second admit would hang here.
	second, err := ix.Admit(context.Background(), nil, p)
	if err != nil {
		t.Fatal(err)
	}
	var released atomic.Bool
	zoneDone := make(chan bool, 1)
	go func() {
		d, err := ix.Admit(context.Background(), nil, zoneRes(t, "west", "Enforce", "*.west.svc"))
		if err != nil {
			t.Error(err)
		}
		zoneDone <- released.Load()
		d.Done(4)
	}()
	released.Store(true)
	first.Done(2)
	second.Done(3)
	ix.Apply(3, nil)
	if !<-zoneDone {
		t.Fatal("a Zone write was admitted while policy writes were in flight")
	}
	ix.Apply(4, []store.Event{{Type: store.EventPut, Resource: zoneRes(t, "west", "Enforce", "*.west.svc"), Revision: 4}})
	// west is enforced now: policy writes are serialized again.
	d, err := ix.Admit(context.Background(), nil, p)
	if err != nil {
		t.Fatal(err)
	}
	if d.Allowed() {
		t.Fatal("a collector outside west's allowed ones was admitted")
	}
	var done atomic.Bool
	next := make(chan bool, 1)
	go func() {
		d2, err := ix.Admit(context.Background(), nil, p)
		if err != nil {
			t.Error(err)
			next <- false
			return
		}
		next <- done.Load()
		d2.Done(0)
	}()
	done.Store(true)
	d.Done(0)
	if !<-next {
		t.Fatal("a checked policy write was admitted while another was in flight")
	}
}

// A MeshGateway-targeted policy reaches a builtin gateway proxy through the
// MeshGateway selecting it, as on the zone: admission and audit follow it.
func TestMeshGatewayTargets(t *testing.T) {
	gwDP := decode(t, `{"type":"Dataplane","mesh":"default","name":"west.edge-1","labels":{"kuma.io/zone":"west","kuma.io/display-name":"edge-1"},
"networking":{"address":"10.0.0.9","gateway":{"type":"BUILTIN","tags":{"kuma.io/service":"edge","kuma.io/zone":"west"}}}}`)
	gw := decode(t, "type: MeshGateway\nmesh: default\nname: edge-gateway\nselectors:\n- match: {kuma.io/service: edge}\nconf:\n  listeners:\n  - {port: 8080, protocol: HTTP}\n")
	ix := newIndex(t, append(seed(t), gwDP)...)
	p := policy(t, "edge-out", "{kind: MeshGateway, name: edge-gateway}", zipkin("http://jaeger.central:9411"))
	if d := admit(t, ix, nil, p); !d.Allowed() {
		t.Fatalf("without the MeshGateway nothing is selected: %s", proxies(d.Refused))
	}
	ix.Apply(2, []store.Event{{Type: store.EventPut, Resource: gw, Revision: 2}})
	if d := admit(t, ix, nil, p); proxies(d.Refused) != "west/edge-1->http://jaeger.central:9411 by edge-out" {
		t.Fatalf("refused: %q", proxies(d.Refused))
	}
	ix.Apply(3, []store.Event{{Type: store.EventPut, Resource: p, Revision: 3}})
	if vs := ix.Violations(); len(vs) != 1 || vs[0].Proxy != "edge-1" {
		t.Fatalf("violations: %+v", vs)
	}
	// The MeshGateway going away un-selects the gateway: back to trace-west.
	ix.Apply(4, []store.Event{{Type: store.EventDelete, Resource: gw, Revision: 4}})
	if vs := ix.Violations(); len(vs) != 0 {
		t.Fatalf("violations after the gateway left: %+v", vs)
	}
}

// evaluate's shortcut (the most specific policy setting backends decides)
// must give the collector the zones' full match-and-merge gives, for random
// policy sets and proxies. The seed is printed; -seed N replays one.
func TestEvaluateAgreesWithMerge(t *testing.T) {
	seed := *seedFlag
	if seed == 0 {
		seed = time.Now().UnixNano()
	}
	t.Logf("seed %d (replay with -seed %d)", seed, seed)
	rng := rand.New(rand.NewPCG(uint64(seed), 0))
	west := CompileZone("west", zoneRes(t, "west", "Enforce", "*.west.svc").Spec.(*resource.ZoneSpec))
	pick := func(xs ...string) string { return xs[rng.IntN(len(xs))] }
	for round := range 300 {
		var policies []*resource.Resource
		for i := range 1 + rng.IntN(6) {
			target := pick("", "{kind: Mesh}", subset("west"), subset("east"), "{kind: MeshService, name: web}",
				"{kind: MeshServiceSubset, name: web, tags: {version: v1}}", "{kind: MeshSubset, tags: {version: v2}}")
			name := fmt.Sprintf("p%d", rng.IntN(4)*10+i)
			var labels []string
			if rng.IntN(3) == 0 {
				labels = []string{"kuma.io/origin", "zone", "kuma.io/zone", pick("west", "east")}
			}
			var p *resource.Resource
			switch rng.IntN(4) {
			case 0: // no backends: sampling only
				doc := "type: MeshTrace\nmesh: default\nname: " + name + "\nspec:\n  default:\n    sampling: {overall: 5}\n"
				if target != "" {
					doc = strings.Replace(doc, "spec:\n", "spec:\n  targetRef: "+target+"\n", 1)
				}
				r, err := resource.Decode([]byte(doc)) // not validated: Kuma 2.7 required backends only later
				if err != nil {
					t.Fatal(err)
				}
				p = r
			case 1:
				p = policy(t, name, target, "[]", labels...)
			default:
				p = policy(t, name, target, zipkin("http://"+pick("a.west.svc", "b.east.svc", "10.0.0.1")+":9411"), labels...)
			}
			if len(labels) > 0 && p.Labels == nil {
				p.Labels = map[string]string{labels[0]: labels[1], labels[2]: labels[3]}
			}
			policies = append(policies, p)
		}
		proxy := dp(t, "west", "x", pick("web", "db"), "version", pick("v1", "v2"))
		got := Evaluate(proxy, policies, west)
		var applying []*resource.Resource
		for _, p := range policies {
			if AppliesIn(p, "west") {
				applying = append(applying, p)
			}
		}
		rules := meshtrace.Compute(proxy, applying)
		backend, collector := meshtrace.EffectiveCollector(rules.Conf)
		if got.Backend != backend || got.Collector != collector {
			t.Fatalf("seed %d round %d: evaluate says %q %q, merge says %q %q\npolicies: %v", seed, round, got.Backend, got.Collector, backend, collector, names(policies))
		}
	}
}

var seedFlag = flag.Int64("seed", 0, "seed of TestEvaluateAgreesWithMerge (0: from the clock)")

func names(ps []*resource.Resource) []string {
	var out []string
	for _, p := range ps {
		out = append(out, p.Name+"@"+p.Labels["kuma.io/zone"])
	}
	return out
}

// Large meshes are checked on several goroutines (run with -race): the
// outcome equals the one-by-one evaluation.
func TestAdmitLargeMeshInParallel(t *testing.T) {
	items := []*resource.Resource{zoneRes(t, "west", "Enforce", "*.west.svc"), zoneRes(t, "east", "Audit", "*.east.svc"),
		decode(t, "type: MeshGateway\nmesh: default\nname: edge-gateway\nselectors:\n- match: {kuma.io/service: edge}\nconf:\n  listeners:\n  - {port: 8080, protocol: HTTP}\n"),
		decode(t, `{"type":"Dataplane","mesh":"default","name":"west.edge-1","labels":{"kuma.io/zone":"west","kuma.io/display-name":"edge-1"},
"networking":{"address":"10.0.0.9","gateway":{"type":"BUILTIN","tags":{"kuma.io/service":"edge","kuma.io/zone":"west"}}}}`)}
	for i := range parallelThreshold {
		z := []string{"west", "east"}[i%2]
		items = append(items, dp(t, z, fmt.Sprintf("p-%d", i), fmt.Sprintf("svc-%d", i%7)))
	}
	ix := newIndex(t, items...)
	p := policy(t, "all-out", "", zipkin("http://central:9411"))
	d := admit(t, ix, nil, p)
	if len(d.Refused) != parallelThreshold/2+1 || len(d.Audited) != parallelThreshold/2 {
		t.Fatalf("refused %d, audited %d", len(d.Refused), len(d.Audited))
	}
	for i := 1; i < len(d.Refused); i++ {
		if cmpStrings(d.Refused[i-1].Proxy, d.Refused[i].Proxy) >= 0 {
			t.Fatal("refused verdicts not sorted")
		}
	}
}

// Two documents that each pass alone but violate together are refused
// together; the violation is charged to the document bringing the collector.
func TestAdmitBatchChecksDocumentsTogether(t *testing.T) {
	ix := newIndex(t, seed(t)...)
	fallback := policy(t, "fallback", "", zipkin("http://central:9411"))
	typo := policy(t, "trace-west", subset("wset"), zipkin("http://jaeger.west.svc:9411"))
	for _, alone := range []*resource.Resource{fallback, typo} {
		if d := admit(t, ix, nil, alone); !d.Allowed() {
			t.Fatalf("%s alone: %s", alone.Name, proxies(d.Refused))
		}
	}
	b, err := ix.AdmitBatch(context.Background(), []*resource.Resource{typo, fallback, zoneRes(t, "north", "Audit", "*.north.svc")})
	if err != nil {
		t.Fatal(err)
	}
	b.Done(0)
	if b.Allowed() || len(b.Items[0].Refused) != 0 || proxies(b.Items[1].Refused) != "west/db-1->http://central:9411 by fallback, west/web-1->http://central:9411 by fallback" {
		t.Fatalf("batch: %+v", b.Items)
	}
	if len(b.Items[2].Current) != 0 { // north has no policy now: nothing to report
		t.Fatalf("zone item: %+v", b.Items[2])
	}
	// The lock was released: a later write is admitted.
	if d := admit(t, ix, nil, typo); !d.Allowed() {
		t.Fatal("not released")
	}
}

// Each new violation is one log line naming zone, proxy, collector and
// policy; past 50 in one change, a summary line counts the rest.
func TestViolationLogLines(t *testing.T) {
	var buf strings.Builder
	var mu sync.Mutex
	log := hclog.New(&hclog.LoggerOptions{Output: writerFunc(func(p []byte) (int, error) {
		mu.Lock()
		defer mu.Unlock()
		return buf.Write(p)
	})})
	ix, err := NewIndex(Config{Logger: log})
	if err != nil {
		t.Fatal(err)
	}
	items := []*resource.Resource{zoneRes(t, "west", "Audit", "*.west.svc")}
	for i := range 60 {
		items = append(items, dp(t, "west", fmt.Sprintf("p-%02d", i), "web"))
	}
	ix.Load(1, items)
	one := policy(t, "one", "{kind: MeshServiceSubset, name: web, tags: {version: v9}}", zipkin("http://central:9411"))
	odd := dp(t, "west", "odd", "web", "version", "v9")
	ix.Apply(2, []store.Event{{Type: store.EventPut, Resource: one}, {Type: store.EventPut, Resource: odd}})
	mu.Lock()
	got := buf.String()
	buf.Reset()
	mu.Unlock()
	if strings.Count(got, "residency violation:") != 1 || !strings.Contains(got, "zone=west") || !strings.Contains(got, "name=odd") ||
		!strings.Contains(got, "collector=http://central:9411") || !strings.Contains(got, `policy="MeshTrace \"one\" in mesh \"default\""`) {
		t.Fatalf("one violation:\n%s", got)
	}
	ix.Apply(3, []store.Event{{Type: store.EventPut, Resource: policy(t, "all", "", zipkin("http://central:9411"))}})
	mu.Lock()
	got = buf.String()
	mu.Unlock()
	if n := strings.Count(got, "residency violation:"); n != 50 || !strings.Contains(got, "more=10") {
		t.Fatalf("%d lines:\n%s", n, got)
	}
}

type writerFunc func([]byte) (int, error)

func (f writerFunc) Write(p []byte) (int, error) { return f(p) }

// Two zone-originated policies of one kind tie on kind and origin; the zone
// breaks the tie by their names there (the smallest wins), so global must
// use those, not the hashed names it stores them under.
func TestZoneOriginatedTieBrokenByZoneNames(t *testing.T) {
	west := CompileZone("west", zoneRes(t, "west", "Enforce", "*.west.svc").Spec.(*resource.ZoneSpec))
	web := dp(t, "west", "web-1", "web")
	// On west: "a" (to east) and "a-b" (home): "a" wins. Hashed, "a-zzzz" sorts after "a-b-cccc".
	a := policy(t, "a-zzzz", "{kind: MeshService, name: web}", zipkin("http://jaeger.east.svc:9411"),
		"kuma.io/origin", "zone", "kuma.io/zone", "west", "kuma.io/display-name", "a")
	b := policy(t, "a-b-cccc", "{kind: MeshService, name: web}", zipkin("http://jaeger.west.svc:9411"),
		"kuma.io/origin", "zone", "kuma.io/zone", "west", "kuma.io/display-name", "a-b")
	v := Evaluate(web, []*resource.Resource{b, a}, west)
	if v.Allowed || v.Policy.Name != "a-zzzz" {
		t.Fatalf("verdict %+v", v)
	}
	// The zone's own view (names as created there) agrees.
	onZone := func(p *resource.Resource, name string) *resource.Resource { cp := *p; cp.Name = name; return &cp }
	rules := meshtrace.Compute(web, []*resource.Resource{onZone(a, "a"), onZone(b, "a-b")})
	if _, collector := meshtrace.EffectiveCollector(rules.Conf); collector != v.Collector {
		t.Fatalf("zone merges to %s, global says %s", collector, v.Collector)
	}
}

// On global, a policy zone east synced up (origin zone, kuma.io/zone: east)
// takes part only for east's proxies: in the continuous audit (Load and
// Apply), in the report, in admission of a later write, and when west's
// residency changes. Here it is the most specific policy for web everywhere
// and names a collector no zone allows, so counting it for west would flag
// west/web-1 (Enforce).
func TestZoneOriginatedPolicyOnlyInItsZone(t *testing.T) {
	fromEast := policy(t, "east.web", "{kind: MeshService, name: web}", zipkin("http://jaeger.central:9411"),
		"kuma.io/origin", "zone", "kuma.io/zone", "east", "kuma.io/display-name", "web")
	want := "east/web-1->http://jaeger.central:9411 by east.web"
	check := func(step string, ix *Index) {
		t.Helper()
		var got []Verdict
		for _, v := range ix.Violations() {
			got = append(got, v.Verdict)
		}
		if proxies(got) != want {
			t.Fatalf("%s: violations %s, want only %s", step, proxies(got), want)
		}
	}
	loaded := newIndex(t, append(seed(t), fromEast)...)
	check("load", loaded)
	applied := newIndex(t, seed(t)...)
	applied.Apply(2, []store.Event{{Type: store.EventPut, Resource: fromEast, Revision: 2}})
	check("apply", applied)
	// A new proxy of west, then west's residency rewritten: still only east.
	applied.Apply(3, []store.Event{{Type: store.EventPut, Resource: dp(t, "west", "web-2", "web"), Revision: 3}})
	check("west proxy added", applied)
	d := admit(t, applied, nil, zoneRes(t, "west", "Enforce", "*.west.svc", "*.north.svc"))
	if !d.Allowed() || len(d.Audited) != 0 {
		t.Fatalf("west's residency change: refused %s, audited %s", proxies(d.Refused), proxies(d.Audited))
	}
	// Rewriting east's policy (as its next upload) is charged to east only.
	d = admit(t, applied, fromEast, fromEast)
	if !d.Allowed() || len(d.Refused) != 0 {
		t.Fatalf("east's policy rewritten: refused %s", proxies(d.Refused))
	}
}
