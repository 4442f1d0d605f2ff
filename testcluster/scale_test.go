package testcluster

import (
	"context"
	"errors"
	"fmt"
	"testing"
	"time"

	"github.com/meshtrace/meshtrace/demo"
	"github.com/meshtrace/meshtrace/policy/meshtrace"
	"github.com/meshtrace/meshtrace/resource"
	"github.com/meshtrace/meshtrace/store"
)

// TestMatchingWorkIsAboutTheProxy catches, at a small scale, the pathology
// that made a zone's xDS inspect take minutes with 28k policies: matching
// every proxy against every policy of the mesh. With P proxies (one service
// each), S services with K MeshService policies each and M Mesh-wide
// policies, the inspect GETs (on global and on the zone) and a Mesh-wide
// change rebuilt on every proxy must each examine at most P x (K + M)
// policies (meshtrace.Examined), not P x (S x K + M).
func TestMatchingWorkIsAboutTheProxy(t *testing.T) {
	// Proxies dp-0..dp-9 (of svc-0..svc-9) have no MeshService policy, so
	// their collector is the Mesh-wide policy's; the others have perService.
	const proxies, services, perService, meshWide, plain = 20, 40, 10, 2, 10
	c := Start(t, Options{Zones: []string{"east"}})
	z := c.Zones["east"]
	ctx := context.Background()
	for i := range proxies {
		if err := demo.RegisterProxy(ctx, z.API, fmt.Sprintf("dp-%d", i), fmt.Sprintf("svc-%d", i), "10.1.0.1"); err != nil {
			t.Fatal(err)
		}
	}
	var rs []*resource.Resource
	for j := range services * perService {
		items, err := resource.DecodeAll([]byte(burstPolicy(fmt.Sprintf("svc-pol-%d", j), plain+j%services)))
		if err != nil {
			t.Fatal(err)
		}
		rs = append(rs, items[0])
	}
	for i := range meshWide {
		items, err := resource.DecodeAll([]byte(scaleMeshWide(i, "seed")))
		if err != nil {
			t.Fatal(err)
		}
		rs = append(rs, items[0])
	}
	if _, err := c.gst.PutBatch(ctx, rs, store.BatchOptions{}); err != nil {
		t.Fatal(err)
	}
	all := services*perService + meshWide
	bound := int64(proxies * (perService + meshWide))
	// Every proxy's configuration includes every policy: the zone settled.
	settled := func(host string) {
		Eventually(t, 30*time.Second, func() error {
			for i := range proxies {
				rules, ok := z.Reconciler().Rules("default", fmt.Sprintf("dp-%d", i))
				if !ok {
					return fmt.Errorf("dp-%d not built", i)
				}
				want := meshWide
				if i >= plain {
					want += perService
				}
				if len(rules.Policies) != want {
					return fmt.Errorf("dp-%d has %d policies, want %d", i, len(rules.Policies), want)
				}
				if _, col := meshtrace.EffectiveCollector(rules.Conf); i < plain && col != "http://"+host+"-0:9411/api/v2/spans" {
					return fmt.Errorf("dp-%d sends to %s", i, col)
				}
			}
			return nil
		})
	}
	settled("seed")
	// The global gets below need the zone's proxies uploaded to global,
	// which the zone does on its own schedule: wait until global serves all.
	Eventually(t, 30*time.Second, func() error {
		for i := range proxies {
			if _, err := c.API.Do(ctx, "GET", fmt.Sprintf("/meshes/default/dataplanes/east.dp-%d", i), nil, nil, nil); err != nil {
				return err
			}
		}
		return nil
	})

	for _, get := range []struct {
		name string
		do   func() error
	}{
		{"global _resources/dataplanes of a Mesh-wide policy", func() error {
			_, err := c.API.Do(ctx, "GET", "/meshes/default/meshtraces/scale-0/_resources/dataplanes", nil, nil, nil)
			return err
		}},
		{"global _rules", func() error {
			_, err := c.API.Do(ctx, "GET", "/meshes/default/dataplanes/east.dp-3/_rules", nil, nil, nil)
			return err
		}},
		{"global xds", func() error {
			_, err := c.API.Do(ctx, "GET", "/meshes/default/dataplanes/east.dp-3/xds", nil, nil, nil)
			return err
		}},
		{"zone _rules and xds", func() error {
			if _, err := z.API.Do(ctx, "GET", "/meshes/default/dataplanes/dp-3/_rules", nil, nil, nil); err != nil {
				return err
			}
			_, err := z.API.Do(ctx, "GET", "/meshes/default/dataplanes/dp-3/xds", nil, nil, nil)
			return err
		}},
	} {
		before := meshtrace.Examined.Load()
		if err := get.do(); err != nil {
			t.Fatalf("%s: %v", get.name, err)
		}
		if n := meshtrace.Examined.Load() - before; n > bound {
			t.Errorf("%s examined %d policies, want at most %d (%d proxies x %d policies about each; all policies: %d)", get.name, n, bound, proxies, perService+meshWide, all)
		}
	}

	// A Mesh-wide change reaches every proxy (the zone rebuilds all of them)
	// examining the policies about each, not all of them per proxy.
	before := meshtrace.Examined.Load()
	if err := c.Apply(scaleMeshWide(0, "changed")); err != nil {
		t.Fatal(err)
	}
	settled("changed")
	if n := meshtrace.Examined.Load() - before; n > bound {
		t.Errorf("a Mesh-wide change examined %d policies, want at most %d (all policies: %d)", n, bound, all)
	}
}

// TestZoneStopsWhileApplyingALargeSnapshot: a zone asked to stop while it
// applies global's snapshot of 10k policies (its store holds some, not all)
// returns from Run promptly. The marker is Run returning; the 20 s bound is
// only a guard against a hang (the target, under 5 s, is in BenchmarkScale
// and BENCHMARKS.md).
func TestZoneStopsWhileApplyingALargeSnapshot(t *testing.T) {
	if testing.Short() {
		t.Skip("10k policies")
	}
	const policies = 10000
	c := Start(t, Options{})
	ctx := context.Background()
	rs := make([]*resource.Resource, 0, policies)
	for j := range policies {
		items, err := resource.DecodeAll([]byte(burstPolicy(fmt.Sprintf("big-%d", j), j)))
		if err != nil {
			t.Fatal(err)
		}
		rs = append(rs, items[0])
	}
	if _, err := c.gst.PutBatch(ctx, rs, store.BatchOptions{}); err != nil {
		t.Fatal(err)
	}
	z := c.StartZoneOffline("east")
	count := func() int {
		res, err := z.Store().List(ctx, resource.TypeMeshTrace, store.ListOptions{Limit: 1})
		if err != nil {
			t.Fatal(err)
		}
		return res.Total
	}
	Eventually(t, 30*time.Second, func() error {
		if count() == 0 {
			return errors.New("the snapshot has not started")
		}
		return nil
	})
	held := count()
	if held >= policies {
		t.Fatalf("the zone held all %d policies before it was stopped: not mid-snapshot", held)
	}
	start := time.Now()
	stopped := make(chan struct{})
	go func() { c.StopZone("east"); close(stopped) }()
	select {
	case <-stopped:
	case <-time.After(20 * time.Second):
		t.Fatal("the zone did not stop within 20 s while applying the snapshot")
	}
	t.Logf("stopped in %s holding %d of %d policies", time.Since(start), held, policies)
}
