package residency

import (
	"fmt"
	"math/rand/v2"
	"slices"
	"testing"
	"time"

	"github.com/meshtrace/meshtrace/policy/meshtrace"
	"github.com/meshtrace/meshtrace/resource"
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
