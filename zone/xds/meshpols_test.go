package xds

import (
	"math/rand/v2"
	"slices"
	"testing"

	"github.com/meshtrace/meshtrace/policy/meshtrace"
	"github.com/meshtrace/meshtrace/resource"
)

// The per-mesh policy lists stay sorted by name through any order of puts,
// updates and removals. A list is changed in place only when no index holds
// it: the mesh's index (the list's one holder, built as syncLocked does) is
// dropped by such a change; an index in use always holds the mesh's
// current list, unchanged.
func TestMeshPolicyListsStaySortedAndCopied(t *testing.T) {
	seed := rand.Uint64()
	t.Logf("seed %d", seed)
	rng := rand.New(rand.NewPCG(seed, 0))
	r := &Reconciler{meshPols: map[string][]*resource.Resource{}, meshIdx: map[string]*meshtrace.Index{}}
	want := map[string]map[string]bool{}
	for range 2000 {
		mesh := []string{"a", "b"}[rng.IntN(2)]
		name := string(rune('a'+rng.IntN(26))) + string(rune('a'+rng.IntN(26)))
		if _, ok := r.meshIdx[mesh]; !ok && rng.IntN(2) == 0 {
			r.meshIdx[mesh] = meshtrace.NewIndex(r.meshPols[mesh])
		}
		ix := r.meshIdx[mesh]
		var before, snapshot []*resource.Resource
		if ix != nil {
			before = ix.All()
			snapshot = slices.Clone(before)
		}
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
		if r.meshIdx[mesh] == ix && !slices.Equal(before, snapshot) {
			t.Fatal("the list of an index still in use was changed")
		}
		if cur := r.meshIdx[mesh]; cur != nil && !slices.Equal(cur.All(), r.meshPols[mesh]) {
			t.Fatal("the mesh's index holds another list than the mesh's")
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
