package residency

import (
	"fmt"
	"math/rand/v2"
	"slices"
	"testing"
	"time"

	"github.com/meshtrace/meshtrace/resource"
)

// TestPolicyListEditedInOrder: the mesh's most-specific-first list, edited
// on every put and remove (instead of sorted again), stays in the order a
// fresh sortMostSpecificFirst gives, with zone-originated policies (ordered
// by their name on the zone) among them. Seeded; the seed is printed.
func TestPolicyListEditedInOrder(t *testing.T) {
	seed := uint64(time.Now().UnixNano())
	t.Logf("seed %d", seed)
	rng := rand.New(rand.NewPCG(seed, 0))
	ix, err := NewIndex(Config{})
	if err != nil {
		t.Fatal(err)
	}
	kinds := []string{resource.KindMesh, resource.KindMeshSubset, resource.KindMeshService, resource.KindMeshServiceSubset}
	mk := func(i int) *resource.Resource {
		r := &resource.Resource{
			Meta: resource.Meta{Type: resource.TypeMeshTrace, Mesh: "default", Name: fmt.Sprintf("p-%d", i)},
			Spec: &resource.MeshTraceSpec{TargetRef: &resource.TargetRef{Kind: kinds[rng.IntN(len(kinds))], Name: "svc", Tags: map[string]string{"v": "1"}}},
		}
		if rng.IntN(3) == 0 {
			r.Labels = map[string]string{resource.LabelOrigin: resource.OriginZone, resource.LabelZone: "east",
				resource.LabelDisplayName: fmt.Sprintf("z-%d", rng.IntN(50))}
		}
		return r
	}
	for i := range 100 {
		ix.put(mk(i))
	}
	ms := ix.mesh("default")
	ms.policyList()
	for step := range 2000 {
		i := rng.IntN(120)
		if rng.IntN(4) == 0 {
			ix.remove(resource.Key{Type: resource.TypeMeshTrace, Mesh: "default", Name: fmt.Sprintf("p-%d", i)})
		} else {
			ix.put(mk(i))
		}
		got := ms.policyList()
		want := make([]*resource.Resource, 0, len(ms.policies))
		for _, p := range ms.policies {
			want = append(want, p)
		}
		sortMostSpecificFirst(want)
		if len(got) != len(want) {
			t.Fatalf("seed %d step %d: %d policies listed, %d held", seed, step, len(got), len(want))
		}
		for j := range got {
			if got[j] != want[j] {
				t.Fatalf("seed %d step %d: position %d holds %s, want %s", seed, step, j, got[j].Name, want[j].Name)
			}
		}
		if !slices.IsSortedFunc(got, mostSpecificFirst) {
			t.Fatalf("seed %d step %d: list out of order", seed, step)
		}
		if ms.policyIndex().Len() != len(got) {
			t.Fatalf("seed %d step %d: index of %d, list of %d", seed, step, ms.policyIndex().Len(), len(got))
		}
	}
}
