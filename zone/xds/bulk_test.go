package xds

import (
	"context"
	"fmt"
	"slices"
	"testing"

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
