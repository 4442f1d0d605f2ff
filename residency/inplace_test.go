package residency

import (
	"encoding/json"
	"fmt"
	"maps"
	"math/rand/v2"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/meshtrace/meshtrace/policy/meshtrace"
	"github.com/meshtrace/meshtrace/resource"
	"github.com/meshtrace/meshtrace/store"
)

// TestPolicyUpdatesInPlace: after random creates, updates (in place or
// moving in the order, changing kind or service) and deletes, a mesh's
// sorted policy list and its index equal the ones built from scratch. The
// seed is printed; -seed N replays one.
func TestPolicyUpdatesInPlace(t *testing.T) {
	seed := *seedFlag
	if seed == 0 {
		seed = time.Now().UnixNano()
	}
	t.Logf("seed %d (replay with -seed %d)", seed, seed)
	rng := rand.New(rand.NewPCG(uint64(seed), 1))
	pick := func(xs ...string) string { return xs[rng.IntN(len(xs))] }
	ix := newIndex(t)
	proxies := []*resource.Resource{
		dp(t, "west", "a", "web", "version", "v1"), dp(t, "west", "b", "db", "version", "v2"), dp(t, "east", "c", "api"),
	}
	inPlace := 0
	for step := range 2000 {
		name := fmt.Sprintf("p%d", rng.IntN(40))
		k := resource.Key{Type: resource.TypeMeshTrace, Mesh: "default", Name: name}
		if rng.IntN(8) == 0 {
			ix.remove(k)
		} else {
			var labels []string
			if rng.IntN(4) == 0 {
				labels = []string{"kuma.io/origin", "zone", "kuma.io/zone", pick("west", "east"), "kuma.io/display-name", fmt.Sprintf("d%d", rng.IntN(40))}
			}
			target := pick("", "{kind: Mesh}", subset("west"), "{kind: MeshService, name: web}", "{kind: MeshService, name: db}",
				"{kind: MeshServiceSubset, name: web, tags: {version: v1}}", "{kind: MeshSubset, tags: {version: v2}}")
			ms := ix.mesh("default")
			if old := ms.policies[k]; old != nil && ms.list != nil && samePlace(ms.list, old, old) >= 0 && rng.IntN(2) == 0 {
				target = ""
				if old.Spec.(*resource.MeshTraceSpec).TargetRef != nil {
					ref := old.Spec.(*resource.MeshTraceSpec).TargetRef
					target = fmt.Sprintf("{kind: %s", ref.Kind)
					if ref.Name != "" {
						target += ", name: " + ref.Name
					}
					for tk, tv := range ref.Tags {
						target += fmt.Sprintf(", tags: {%q: %q}", tk, tv)
					}
					target += "}"
				}
				labels = nil
				for lk, lv := range old.Labels {
					labels = append(labels, lk, lv)
				}
			}
			p := policy(t, name, target, zipkin(fmt.Sprintf("http://c%d:9411", step)), labels...)
			if old := ms.policies[k]; old != nil && ms.list != nil && samePlace(ms.list, old, p) >= 0 {
				inPlace++
			}
			ix.put(p)
		}
		ms := ix.mesh("default")
		if rng.IntN(3) == 0 {
			ms.policyIndex() // sometimes built between changes, sometimes stale
		}
		got := ms.policyIndex()
		want := slices.Collect(func(yield func(*resource.Resource) bool) {
			for _, p := range ms.policies {
				if !yield(p) {
					return
				}
			}
		})
		sortMostSpecificFirst(want)
		if !slices.Equal(ms.list, want) || !slices.Equal(got.All(), want) {
			t.Fatalf("seed %d step %d: list %v, want %v", seed, step, names(ms.list), names(want))
		}
		built := meshtrace.NewIndex(want)
		for _, proxy := range proxies {
			if g, w := got.Candidates(proxy), built.Candidates(proxy); !slices.Equal(g, w) {
				t.Fatalf("seed %d step %d: candidates of %s %v, want %v", seed, step, proxy.Name, names(g), names(w))
			}
		}
	}
	if inPlace == 0 {
		t.Fatalf("seed %d: no update kept its place", seed)
	}
	t.Logf("%d updates kept their place", inPlace)
}

// TestMarkPolicyByService: a policy change marks the same proxies whether
// the mesh's proxies are all looked at or, for MeshService policies, only
// those of its service (byService), through random proxy creates, updates
// that change their services, deletes, and policy changes of every kind.
func TestMarkPolicyByService(t *testing.T) {
	seed := *seedFlag
	if seed == 0 {
		seed = time.Now().UnixNano()
	}
	t.Logf("seed %d (replay with -seed %d)", seed, seed)
	rng := rand.New(rand.NewPCG(uint64(seed), 2))
	pick := func(xs ...string) string { return xs[rng.IntN(len(xs))] }
	ix := newIndex(t)
	services := []string{"web", "db", "api", "cache"}
	dpOf := func(name string) *resource.Resource {
		if rng.IntN(3) == 0 { // two inbounds, maybe of the same service
			return decode(t, fmt.Sprintf(`{"type":"Dataplane","mesh":"default","name":"west.%s","labels":{"kuma.io/zone":"west"},
"networking":{"address":"10.0.0.1","inbound":[{"port":8080,"tags":{"kuma.io/service":%q,"version":"v1"}},{"port":8081,"tags":{"kuma.io/service":%q}}]}}`,
				name, pick(services...), pick(services...)))
		}
		return dp(t, "west", name, pick(services...), "version", pick("v1", "v2"))
	}
	targets := []string{"", "{kind: Mesh}", subset("west"), "{kind: MeshSubset, tags: {version: v2}}",
		"{kind: MeshService, name: web}", "{kind: MeshService, name: db}", "{kind: MeshService, name: nobody}",
		"{kind: MeshServiceSubset, name: web, tags: {version: v1}}", "{kind: MeshServiceSubset, name: api, tags: {version: v2}}"}
	narrowed := 0
	for step := range 3000 {
		switch name := fmt.Sprintf("p%d", rng.IntN(30)); rng.IntN(3) {
		case 0:
			ix.put(dpOf(name))
		case 1:
			ix.remove(resource.Key{Type: resource.TypeDataplane, Mesh: "default", Name: "west." + name})
		default:
			k := resource.Key{Type: resource.TypeMeshTrace, Mesh: "default", Name: fmt.Sprintf("t%d", rng.IntN(5))}
			old, cur := ix.policy(k), policy(t, k.Name, pick(targets...), zipkin("http://c:9411"))
			got, want := map[resource.Key]bool{}, map[resource.Key]bool{}
			ix.markPolicy(got, old, cur)
			ms := ix.mesh("default")
			for _, e := range ms.entries() {
				gw := ms.gateway(e)
				if (old != nil && meshtrace.Affects(old, e.r, gw...)) || meshtrace.Affects(cur, e.r, gw...) {
					want[e.key] = true
				}
			}
			if !maps.Equal(got, want) {
				t.Fatalf("seed %d step %d: %v -> %v marks %v, want %v", seed, step, old, cur, got, want)
			}
			if _, ok := targetService(cur); ok {
				narrowed++
			}
			ix.put(cur)
		}
		ms := ix.mesh("default")
		indexed := 0
		for s, set := range ms.byService {
			for k, e := range set {
				if ms.dps[k] != e || !slices.Contains(e.services, s) {
					t.Fatalf("seed %d step %d: byService[%s] holds %s wrongly", seed, step, s, k)
				}
			}
			indexed += len(set)
		}
		want := 0
		for _, e := range ms.dps {
			want += len(e.services)
		}
		if indexed != want {
			t.Fatalf("seed %d step %d: byService holds %d entries, want %d", seed, step, indexed, want)
		}
	}
	if narrowed == 0 {
		t.Fatalf("seed %d: no MeshService policy", seed)
	}
}

// TestAdmitByService: admission finds the same violations whether it looks
// at every proxy of the mesh or, when every version of every write is a
// MeshService policy, only at the proxies of those services.
func TestAdmitByService(t *testing.T) {
	seed := *seedFlag
	if seed == 0 {
		seed = time.Now().UnixNano()
	}
	t.Logf("seed %d (replay with -seed %d)", seed, seed)
	rng := rand.New(rand.NewPCG(uint64(seed), 3))
	pick := func(xs ...string) string { return xs[rng.IntN(len(xs))] }
	services := []string{"web", "db", "api"}
	items := []*resource.Resource{zoneRes(t, "west", "Enforce", "*.west.svc"), zoneRes(t, "east", "Audit", "*.east.svc")}
	for i := range 60 {
		z := pick("west", "east")
		items = append(items, dp(t, z, fmt.Sprintf("p%d", i), pick(services...), "version", pick("v1", "v2")))
	}
	for i := range 20 { // two services each
		z := pick("west", "east")
		items = append(items, decode(t, fmt.Sprintf(`{"type":"Dataplane","mesh":"default","name":"%s.q%d","labels":{"kuma.io/zone":%q},
"networking":{"address":"10.0.0.1","inbound":[{"port":8080,"tags":{"kuma.io/service":"web","version":"v1"}},{"port":8081,"tags":{"kuma.io/service":%q}}]}}`,
			z, i, z, pick("db", "api"))))
	}
	ix := newIndex(t, items...)
	targets := []string{"", subset("west"), "{kind: MeshService, name: web}", "{kind: MeshService, name: db}",
		"{kind: MeshService, name: nobody}", "{kind: MeshServiceSubset, name: api, tags: {version: v1}}"}
	backends := []string{"http://c.west.svc:9411", "http://c.east.svc:9411", "http://elsewhere:9411"}
	narrowed, found := 0, 0
	for step := range 400 {
		var changes []change
		for range 1 + rng.IntN(3) {
			k := resource.Key{Type: resource.TypeMeshTrace, Mesh: "default", Name: fmt.Sprintf("t%d", rng.IntN(6))}
			c := change{old: ix.policy(k), cur: policy(t, k.Name, pick(targets...), zipkin(pick(backends...)))}
			if rng.IntN(6) == 0 {
				c.cur = nil
			}
			if c.old == nil && c.cur == nil {
				continue
			}
			changes = append(changes, c)
		}
		ix.mu.Lock()
		narrowByService = false
		want := ix.admitChanges(changes)
		narrowByService = true
		got := ix.admitChanges(changes)
		ix.mu.Unlock()
		if g, w := attributedText(got), attributedText(want); g != w {
			t.Fatalf("seed %d step %d: admission by service:\n%s\nover the mesh:\n%s", seed, step, g, w)
		}
		var sel [][]*resource.Resource
		for _, c := range changes {
			sel = append(sel, []*resource.Resource{c.old, c.cur})
		}
		if _, ok := selectorServices(sel); ok {
			narrowed++
		}
		found += len(want)
		// Store some of them, so later writes update them.
		var evs []store.Event
		for _, c := range changes {
			if c.cur != nil && rng.IntN(2) == 0 {
				evs = append(evs, store.Event{Type: store.EventPut, Resource: c.cur})
			}
		}
		ix.Apply(int64(step+10), evs)
	}
	if narrowed == 0 || found == 0 {
		t.Fatalf("seed %d: %d narrowed writes, %d violations: the test tells nothing", seed, narrowed, found)
	}
}

// attributedText writes attributions in a stable order, policies by value.
func attributedText(as []attributed) string {
	var lines []string
	for _, a := range as {
		v, _ := json.Marshal(a.v)
		lines = append(lines, fmt.Sprintf("%s item=%d enforce=%v", v, a.item, a.enforce))
	}
	slices.Sort(lines)
	return strings.Join(lines, "\n")
}
