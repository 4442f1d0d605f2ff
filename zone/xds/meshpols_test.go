package xds

import (
	"math/rand/v2"
	"slices"
	"testing"

	"github.com/meshtrace/meshtrace/resource"
)

// The per-mesh policy lists stay sorted by name through any order of puts,
// updates and removals, and a list handed out earlier is never changed.
func TestMeshPolicyListsStaySortedAndCopied(t *testing.T) {
	seed := rand.Uint64()
	t.Logf("seed %d", seed)
	rng := rand.New(rand.NewPCG(seed, 0))
	r := &Reconciler{meshPols: map[string][]*resource.Resource{}}
	want := map[string]map[string]bool{}
	for range 2000 {
		mesh := []string{"a", "b"}[rng.IntN(2)]
		name := string(rune('a'+rng.IntN(26))) + string(rune('a'+rng.IntN(26)))
		before := r.meshPols[mesh]
		snapshot := slices.Clone(before)
		if want[mesh] == nil {
			want[mesh] = map[string]bool{}
		}
		if rng.IntN(3) == 0 {
			r.removeMeshPolicy(resource.Key{Type: resource.TypeMeshTrace, Mesh: mesh, Name: name})
			delete(want[mesh], name)
		} else {
			r.putMeshPolicy(&resource.Resource{Meta: resource.Meta{Type: resource.TypeMeshTrace, Mesh: mesh, Name: name}})
			want[mesh][name] = true
		}
		if !slices.Equal(before, snapshot) {
			t.Fatal("a list handed out before was changed")
		}
		var got []string
		for _, p := range r.meshPols[mesh] {
			got = append(got, p.Name)
		}
		var exp []string
		for n := range want[mesh] {
			exp = append(exp, n)
		}
		slices.Sort(exp)
		if !slices.Equal(got, exp) {
			t.Fatalf("mesh %s: %v, want %v", mesh, got, exp)
		}
		if len(exp) == 0 && r.meshPols[mesh] != nil {
			t.Fatalf("empty mesh %s kept a list", mesh)
		}
	}
}
