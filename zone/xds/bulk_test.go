package xds

import (
	"context"
	"fmt"
	"math/rand/v2"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/meshtrace/meshtrace/policy/meshtrace"
	"github.com/meshtrace/meshtrace/resource"
)

// TestReconcilerBulkPolicies: many policies in one Upsert (a snapshot,
// handled per mesh at once) leave every proxy with the rules the same
// policies give one Upsert at a time, and later single changes and deletes
// apply on top of the bulk state.
func TestReconcilerBulkPolicies(t *testing.T) {
	ctx := context.Background()
	one, err := NewReconciler(nil, newCountingCache(), nil)
	if err != nil {
		t.Fatal(err)
	}
	bulk, err := NewReconciler(nil, newCountingCache(), nil)
	if err != nil {
		t.Fatal(err)
	}
	var dps, pols []*resource.Resource
	for i := range 10 {
		dps = append(dps, sidecar(fmt.Sprintf("dp-%d", i), fmt.Sprintf("svc-%d", i%5), nil))
	}
	for i := range 3 * bulkPolicies {
		ref := serviceRef(fmt.Sprintf("svc-%d", i%7))
		if i%10 == 0 {
			ref = meshRef()
		}
		pols = append(pols, meshTrace(fmt.Sprintf("p-%02d", (i*7)%(3*bulkPolicies)), ref, withZipkin(fmt.Sprintf("http://c%d:9411/api/v2/spans", i))))
	}
	for _, r := range []*Reconciler{one, bulk} {
		if err := r.Upsert(ctx, dps...); err != nil {
			t.Fatal(err)
		}
	}
	for _, p := range pols {
		if err := one.Upsert(ctx, p); err != nil {
			t.Fatal(err)
		}
	}
	if err := bulk.Upsert(ctx, pols...); err != nil {
		t.Fatal(err)
	}
	same := func(step string) {
		t.Helper()
		for _, dp := range dps {
			a, okA := one.Rules(dp.Mesh, dp.Name)
			b, okB := bulk.Rules(dp.Mesh, dp.Name)
			if !okA || !okB || !slices.Equal(a.Policies, b.Policies) {
				t.Fatalf("%s: %s has %v (bulk) and %v (one by one)", step, dp.Name, b.Policies, a.Policies)
			}
			_, ca, _ := one.Collector(dp.Mesh, dp.Name)
			if _, cb, _ := bulk.Collector(dp.Mesh, dp.Name); ca != cb {
				t.Fatalf("%s: %s sends to %s (bulk) and %s (one by one)", step, dp.Name, cb, ca)
			}
			if len(a.Policies) == 0 {
				t.Fatalf("%s: %s matched nothing", step, dp.Name)
			}
		}
	}
	same("bulk")
	changed := meshTrace("p-00", meshRef(), withZipkin("http://changed:9411/api/v2/spans"))
	for _, r := range []*Reconciler{one, bulk} {
		if err := r.Upsert(ctx, changed); err != nil {
			t.Fatal(err)
		}
		if err := r.Delete(ctx, key(resource.TypeMeshTrace, "p-01"), key(resource.TypeMeshTrace, "p-02")); err != nil {
			t.Fatal(err)
		}
	}
	same("after a change and deletes")
}

// TestMeshPolicyListFollowsChanges: after any mix of single and bulk
// upserts, deletes and full updates, each mesh's policy list is its
// policies sorted by name, and an index kept across changes (updates in
// place) selects what an index built from the list would.
func TestMeshPolicyListFollowsChanges(t *testing.T) {
	ctx := context.Background()
	seed := time.Now().UnixNano()
	rng := rand.New(rand.NewPCG(uint64(seed), 1))
	t.Logf("seed %d", seed)
	r, err := NewReconciler(nil, newCountingCache(), nil)
	if err != nil {
		t.Fatal(err)
	}
	meshes := []string{"default", "other"}
	var dps []*resource.Resource
	for i := range 6 {
		dps = append(dps, at(sidecar(fmt.Sprintf("dp-%d", i), fmt.Sprintf("svc-%d", i%3), nil), "10.0.0.1", meshes[i%2]))
	}
	if err := r.Upsert(ctx, dps...); err != nil {
		t.Fatal(err)
	}
	policy := func() *resource.Resource {
		ref := serviceRef(fmt.Sprintf("svc-%d", rng.IntN(4)))
		if rng.IntN(5) == 0 {
			ref = meshRef()
		}
		p := meshTrace(fmt.Sprintf("p-%03d", rng.IntN(120)), ref, withZipkin(fmt.Sprintf("http://c%d:9411/api/v2/spans", rng.IntN(1000))))
		p.Mesh = meshes[rng.IntN(2)]
		return p
	}
	keys := func() []resource.Key {
		var out []resource.Key
		for k := range r.policies {
			out = append(out, k)
		}
		slices.SortFunc(out, compareKeys)
		return out
	}
	for step := range 400 {
		switch op := rng.IntN(10); {
		case op < 4:
			if err := r.Upsert(ctx, policy()); err != nil {
				t.Fatal(err)
			}
		case op < 6:
			var ps []*resource.Resource
			for range 1 + rng.IntN(3*bulkPolicies) {
				ps = append(ps, policy())
			}
			if err := r.Upsert(ctx, ps...); err != nil {
				t.Fatal(err)
			}
		case op < 9:
			var ks []resource.Key
			all := keys()
			for range 1 + rng.IntN(2*bulkPolicies) {
				if len(all) > 0 {
					ks = append(ks, all[rng.IntN(len(all))])
				}
			}
			if err := r.Delete(ctx, ks...); err != nil {
				t.Fatal(err)
			}
		default:
			var ps []*resource.Resource
			for _, k := range keys() {
				if rng.IntN(3) > 0 {
					ps = append(ps, r.policies[k].r)
				}
			}
			for range rng.IntN(30) {
				ps = append(ps, policy())
			}
			if err := r.Update(ctx, dps, ps); err != nil {
				t.Fatal(err)
			}
		}
		for _, mesh := range meshes {
			var want []*resource.Resource
			for _, p := range r.policies {
				if p.r.Mesh == mesh {
					want = append(want, p.r)
				}
			}
			slices.SortFunc(want, func(a, b *resource.Resource) int { return strings.Compare(a.Name, b.Name) })
			if got := r.meshPols[mesh]; !slices.Equal(got, want) {
				t.Fatalf("step %d: mesh %s lists %d policies, has %d", step, mesh, len(got), len(want))
			}
			if ix := r.meshIdx[mesh]; ix != nil {
				if !slices.Equal(ix.All(), want) {
					t.Fatalf("step %d: mesh %s: the index holds another list", step, mesh)
				}
				fresh := meshtrace.NewIndex(want)
				for _, dp := range dps {
					if !slices.Equal(ix.Candidates(dp), fresh.Candidates(dp)) {
						t.Fatalf("step %d: %s: the kept index selects other candidates than a new one", step, dp.Name)
					}
				}
			}
		}
	}
}

// TestMergeNames: merging sorted changed names into a sorted policy list in
// place gives the list a sort of the union would, for random lists and
// changes (replaced, removed, added, absent), including empty ones and
// arrays with spare room.
func TestMergeNames(t *testing.T) {
	seed := time.Now().UnixNano()
	rng := rand.New(rand.NewPCG(uint64(seed), 2))
	t.Logf("seed %d", seed)
	name := func() string { return fmt.Sprintf("p-%03d", rng.IntN(60)) }
	for range 3000 {
		state := map[string]*resource.Resource{}
		for range rng.IntN(40) {
			n := name()
			state[n] = meshTrace(n, meshRef(), nil)
		}
		list := make([]*resource.Resource, 0, len(state)+rng.IntN(8))
		for _, p := range state {
			list = append(list, p)
		}
		slices.SortFunc(list, func(a, b *resource.Resource) int { return strings.Compare(a.Name, b.Name) })
		var names []string
		for range rng.IntN(30) {
			n := name()
			names = append(names, n)
			switch rng.IntN(3) {
			case 0:
				delete(state, n)
			default:
				state[n] = meshTrace(n, meshRef(), nil)
			}
		}
		slices.Sort(names)
		names = slices.Compact(names)
		var want []*resource.Resource
		for _, p := range state {
			want = append(want, p)
		}
		slices.SortFunc(want, func(a, b *resource.Resource) int { return strings.Compare(a.Name, b.Name) })
		old := len(list)
		got := mergeNames(list, names, func(n string) *resource.Resource { return state[n] })
		if !slices.Equal(got, want) {
			t.Fatalf("names %v: got %d policies, want %d", names, len(got), len(want))
		}
		for _, p := range got[len(got):max(len(got), min(old, cap(got)))] {
			if p != nil {
				t.Fatalf("names %v: a policy is still referenced past the list's end", names)
			}
		}
	}
}
