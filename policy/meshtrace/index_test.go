package meshtrace

import (
	"flag"
	"fmt"
	"maps"
	"math/rand/v2"
	"slices"
	"testing"
	"time"

	"github.com/meshtrace/meshtrace/resource"
)

var indexSeed = flag.Uint64("index-seed", 0, "seed of TestIndexAgreesWithMatch (0: from the clock)")

// TestIndexAgreesWithMatch: matching over an Index's candidates selects
// exactly what matching over every policy does, in the same order, for
// random policies of every kind and random sidecars and gateways.
func TestIndexAgreesWithMatch(t *testing.T) {
	seed := *indexSeed
	if seed == 0 {
		seed = uint64(time.Now().UnixNano())
	}
	t.Logf("seed %d (-index-seed to replay)", seed)
	rng := rand.New(rand.NewPCG(seed, 0))
	svc := func() string { return fmt.Sprintf("svc-%d", rng.IntN(8)) }
	tags := func() map[string]string {
		m := map[string]string{resource.TagService: svc()}
		if rng.IntN(2) == 0 {
			m["version"] = fmt.Sprintf("v%d", rng.IntN(2))
		}
		return m
	}
	kinds := []string{resource.KindMesh, resource.KindMeshSubset, resource.KindMeshGateway, resource.KindMeshService, resource.KindMeshServiceSubset, ""}
	var pols []*resource.Resource
	for i := range 300 {
		var ref *resource.TargetRef
		switch k := kinds[rng.IntN(len(kinds))]; k {
		case "":
		case resource.KindMeshService:
			ref = &resource.TargetRef{Kind: k, Name: svc()}
		case resource.KindMeshServiceSubset:
			ref = &resource.TargetRef{Kind: k, Name: svc(), Tags: map[string]string{"version": "v1"}}
		case resource.KindMeshSubset:
			ref = &resource.TargetRef{Kind: k, Tags: map[string]string{"version": "v0"}}
		case resource.KindMeshGateway:
			ref = &resource.TargetRef{Kind: k, Name: "gw"}
		default:
			ref = &resource.TargetRef{Kind: k}
		}
		pols = append(pols, policy(fmt.Sprintf("p-%03d", rng.IntN(1000)*1000+i), ref, zipkin("http://c:9411")))
	}
	ix := NewIndex(pols)
	gw := meshGateway("gw", map[string]string{resource.TagService: "svc-1"})
	for i := range 200 {
		var dp *resource.Resource
		var g []*resource.Resource
		switch rng.IntN(3) {
		case 0:
			dp = gateway(fmt.Sprintf("gw-%d", i), resource.GatewayBuiltin, tags())
			g = []*resource.Resource{SelectGateway(dp, []*resource.Resource{gw})}
		default:
			var ts []map[string]string
			for range 1 + rng.IntN(3) {
				ts = append(ts, tags())
			}
			dp = sidecar(fmt.Sprintf("dp-%d", i), ts...)
		}
		want, got := Match(dp, pols, g...), MatchIndexed(dp, ix, g...)
		if !slices.Equal(names(want), names(got)) {
			t.Fatalf("seed %d, %s: indexed %v, want %v", seed, dp.Name, names(got), names(want))
		}
		if !slices.IsSortedFunc(got, func(a, b *resource.Resource) int {
			switch {
			case Less(a, b):
				return -1
			case Less(b, a):
				return 1
			}
			return 0
		}) {
			t.Fatalf("seed %d, %s: matched out of merge order: %v", seed, dp.Name, names(got))
		}
		if c := ix.Candidates(dp); !slices.IsSortedFunc(c, func(a, b *resource.Resource) int {
			return slices.Index(pols, a) - slices.Index(pols, b)
		}) {
			t.Fatalf("seed %d, %s: candidates out of the indexed order", seed, dp.Name)
		}
	}
}

// TestIndexCandidatesAreAboutTheProxy: the candidates of a proxy are the
// policies not tied to a service plus those of its own services, whatever
// the number of other services' policies.
func TestIndexCandidatesAreAboutTheProxy(t *testing.T) {
	var pols []*resource.Resource
	for i := range 5000 {
		pols = append(pols, policy(fmt.Sprintf("svc-%d", i), &resource.TargetRef{Kind: resource.KindMeshService, Name: fmt.Sprintf("svc-%d", i%1000)}, zipkin("http://c:9411")))
	}
	pols = append(pols, policy("mesh", nil, zipkin("http://c:9411")))
	ix := NewIndex(pols)
	dp := sidecar("dp", map[string]string{resource.TagService: "svc-7"}, map[string]string{resource.TagService: "svc-8"})
	if c := ix.Candidates(dp); len(c) != 11 {
		t.Fatalf("%d candidates, want 11 (5 policies of each of its 2 services and the Mesh one)", len(c))
	}
	if got := names(MatchIndexed(dp, ix)); len(got) != 11 || got[0] != "mesh" {
		t.Fatalf("matched %v", got)
	}
}

// BenchmarkNewIndex indexes 30k policies of one mesh (one per service, 20
// Mesh-wide), as the zone reconciler and the residency indexes do once per
// policy change.
func BenchmarkNewIndex(b *testing.B) {
	pols := make([]*resource.Resource, 30000)
	for i := range pols {
		var ref *resource.TargetRef
		if i >= 20 {
			ref = &resource.TargetRef{Kind: resource.KindMeshService, Name: fmt.Sprintf("svc-%d", i)}
		}
		pols[i] = policy(fmt.Sprintf("p-%d", i), ref, zipkin("http://c:9411"))
	}
	for b.Loop() {
		NewIndex(pols)
	}
}

// TestReplacedEqualsNewIndex: an index updated in place (Replaced, one
// policy after the other, each on the previous result) equals the index
// built again from the same list, for random policies of every kind
// replaced by random ones (same service, another service, another kind).
func TestReplacedEqualsNewIndex(t *testing.T) {
	seed := *indexSeed
	if seed == 0 {
		seed = uint64(time.Now().UnixNano())
	}
	t.Logf("seed %d (-index-seed to replay)", seed)
	rng := rand.New(rand.NewPCG(seed, 0))
	kinds := []string{resource.KindMesh, resource.KindMeshSubset, resource.KindMeshGateway, resource.KindMeshService, resource.KindMeshServiceSubset, ""}
	random := func(i int) *resource.Resource {
		svc := fmt.Sprintf("svc-%d", rng.IntN(5))
		var ref *resource.TargetRef
		switch k := kinds[rng.IntN(len(kinds))]; k {
		case "":
		case resource.KindMeshService:
			ref = &resource.TargetRef{Kind: k, Name: svc}
		case resource.KindMeshServiceSubset:
			ref = &resource.TargetRef{Kind: k, Name: svc, Tags: map[string]string{"version": "v1"}}
		case resource.KindMeshSubset:
			ref = &resource.TargetRef{Kind: k, Tags: map[string]string{"version": "v0"}}
		case resource.KindMeshGateway:
			ref = &resource.TargetRef{Kind: k, Name: "gw"}
		default:
			ref = &resource.TargetRef{Kind: k}
		}
		return policy(fmt.Sprintf("p-%d", i), ref, zipkin("http://c:9411"))
	}
	for round := range 50 {
		var list []*resource.Resource
		for i := range 1 + rng.IntN(60) {
			list = append(list, random(i))
		}
		ix := NewIndex(list)
		for step := range 40 {
			next := slices.Clone(list)
			i := rng.IntN(len(next))
			next[i] = random(1000 + step)
			ix = ix.Replaced(next, i)
			list = next
			want := NewIndex(list)
			if !slices.Equal(ix.all, want.all) || !maps.Equal(ix.head, want.head) || !slices.Equal(ix.next, want.next) || !slices.Equal(ix.rest, want.rest) {
				t.Fatalf("seed %d round %d step %d: in place %+v, built %+v", seed, round, step, ix, want)
			}
		}
	}
	if got := (*Index)(nil).Replaced([]*resource.Resource{random(0)}, 0); got.Len() != 1 {
		t.Fatalf("nil index replaced: %d policies, want 1", got.Len())
	}
}
