package testcluster

import (
	"bytes"
	"context"
	"fmt"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/meshtrace/meshtrace/cli"
	"github.com/meshtrace/meshtrace/resource"
	"github.com/meshtrace/meshtrace/store"
)

const (
	eastCollector = "meshtrace:zipkin:east.zipkincollector_9411"
	westCollector = "meshtrace:zipkin:west.zipkincollector_9411"
	otelCollector = "meshtrace:opentelemetry:otel-collector.com_4317"
)

func seed(t *testing.T, name string) string {
	t.Helper()
	b, err := readSeed(name)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// policySet returns name -> content hash of the MeshTraces in s.
func policySet(t *testing.T, s store.Store) map[string]string {
	t.Helper()
	res, err := s.List(context.Background(), resource.TypeMeshTrace, store.ListOptions{})
	if err != nil {
		t.Fatal(err)
	}
	out := map[string]string{}
	for _, r := range res.Items {
		out[r.Mesh+"/"+r.Name] = specHash(r)
	}
	return out
}

// specHash ignores labels, which differ by origin between global and zones.
func specHash(r *resource.Resource) string {
	cp := *r
	cp.Labels = nil
	return resource.Hash(&cp)
}

func sameSet(t *testing.T, c *Cluster) func() error {
	return func() error {
		want := policySet(t, c.Global.Store())
		for name, z := range c.Zones {
			got := policySet(t, z.Store())
			if fmt.Sprint(got) != fmt.Sprint(want) {
				return fmt.Errorf("zone %s has %v, global %v", name, got, want)
			}
		}
		return nil
	}
}

// TestPolicyReachesOnlyRegionalProxies follows a policy from global's API to
// the Envoy config of every proxy, through KDS, zone stores and ADS.
func TestPolicyReachesOnlyRegionalProxies(t *testing.T) {
	c := Start(t, Options{Zones: []string{"east", "west"}})
	envoys := map[string][]*Envoy{}
	for _, zn := range []string{"east", "west"} {
		z := c.Zones[zn]
		for _, svc := range []string{"frontend", "backend"} {
			name := svc + "-" + zn
			z.RegisterProxy(t, name, svc)
			envoys[zn] = append(envoys[zn], ConnectEnvoy(t, z.XDSAddr(), "default."+name))
		}
	}
	if err := c.Apply(seed(t, "trace-west.universal.yaml") + "---\n" + seed(t, "trace-east.k8s.yaml")); err != nil {
		t.Fatal(err)
	}
	for _, e := range envoys["east"] {
		e.WaitCollectors(t, 10*time.Second, eastCollector)
	}
	for _, e := range envoys["west"] {
		e.WaitCollectors(t, 10*time.Second, westCollector)
	}

	// A Mesh-wide default is less specific than the zone policies: nothing moves.
	if err := c.Apply(seed(t, "otel-full.universal.yaml")); err != nil {
		t.Fatal(err)
	}
	Eventually(t, 10*time.Second, sameSet(t, c))
	// Positive marker: both zones applied the revision of the apply.
	res, err := c.Global.Store().List(context.Background(), resource.TypeMeshTrace, store.ListOptions{})
	if err != nil {
		t.Fatal(err)
	}
	var applied int64
	for _, r := range res.Items {
		applied = max(applied, r.Version)
	}
	Eventually(t, 10*time.Second, func() error {
		for name, z := range c.Zones {
			if got := z.KDSClient().LastAppliedRevision(); got < applied {
				return fmt.Errorf("zone %s at revision %d, want %d", name, got, applied)
			}
		}
		return nil
	})
	envoys["east"][0].WaitCollectors(t, time.Second, eastCollector)
	envoys["west"][0].WaitCollectors(t, time.Second, westCollector)

	// Deleting east's policy leaves east on the Mesh-wide default.
	if _, err := c.API.Do(context.Background(), "DELETE", "/meshes/default/meshtraces/trace-east", nil, nil, nil); err != nil {
		t.Fatal(err)
	}
	for _, e := range envoys["east"] {
		e.WaitCollectors(t, 10*time.Second, otelCollector)
	}
	envoys["west"][1].WaitCollectors(t, time.Second, westCollector)

	// The zones report their proxies and effective collectors up to global.
	Eventually(t, 15*time.Second, func() error {
		ins, _, err := c.Global.Store().Get(context.Background(), resource.Key{Type: resource.TypeZoneInsight, Name: "west"})
		if err != nil {
			return err
		}
		s := ins.Spec.(*resource.ZoneInsightSpec)
		if !s.Online || len(s.Proxies) != 2 || s.Proxies[0].Collector != "http://west.zipkincollector:9411/api/v2/spans" {
			return fmt.Errorf("west insight %+v", s)
		}
		return nil
	})
	dps, err := c.Global.Store().List(context.Background(), resource.TypeDataplane, store.ListOptions{Labels: map[string]string{resource.LabelZone: "east"}})
	if err != nil || dps.Total != 2 {
		t.Fatalf("east dataplanes on global: %v %+v", err, dps)
	}

	// meshtracectl shows the zones with their sync state.
	var out, errb bytes.Buffer
	app := &cli.App{Stdout: &out, Stderr: &errb, ConfigPath: filepath.Join(t.TempDir(), "ctl.yaml")}
	if code := app.Run(context.Background(), []string{"--address", c.API.Address, "get", "zones"}); code != 0 {
		t.Fatal(errb.String())
	}
	lines := strings.Split(strings.TrimSpace(out.String()), "\n")
	if len(lines) != 3 || !strings.HasPrefix(lines[0], "NAME") || !strings.HasPrefix(lines[1], "east ") || !strings.Contains(lines[1], "Online") ||
		!strings.HasPrefix(lines[2], "west ") || !strings.Contains(lines[2], "Online") {
		t.Fatalf("get zones:\n%s", out.String())
	}
	// and so do the routes kumactl 2.7 inspects with
	checkKumactlRoutes(t, c)
}

// TestZonesKeepConfigWhileGlobalIsAway: global stops, a zone CP restarts
// meanwhile and serves the same config to a fresh proxy; global comes back
// and what changed while it was away converges.
func TestZonesKeepConfigWhileGlobalIsAway(t *testing.T) {
	c := Start(t, Options{Zones: []string{"east", "west"}})
	c.Zones["west"].RegisterProxy(t, "backend-west", "backend")
	if err := c.Apply(seed(t, "trace-west.universal.yaml")); err != nil {
		t.Fatal(err)
	}
	e := ConnectEnvoy(t, c.Zones["west"].XDSAddr(), "default.backend-west")
	e.WaitCollectors(t, 10*time.Second, westCollector)

	c.StopGlobal()
	c.StopZone("west")
	west := c.StartZoneOffline("west")
	fresh := ConnectEnvoy(t, west.XDSAddr(), "default.backend-west")
	fresh.WaitCollectors(t, 10*time.Second, westCollector)

	c.RestartGlobal()
	if err := c.Apply(seed(t, "zipkin-full.universal.yaml")); err != nil { // Mesh-wide "default"
		t.Fatal(err)
	}
	Eventually(t, 20*time.Second, sameSet(t, c))
	fresh.WaitCollectors(t, 5*time.Second, westCollector) // MeshSubset still wins
	if _, err := c.API.Do(context.Background(), "DELETE", "/meshes/default/meshtraces/trace-west", nil, nil, nil); err != nil {
		t.Fatal(err)
	}
	fresh.WaitCollectors(t, 10*time.Second, "meshtrace:zipkin:jaeger-collector_9411")
}
