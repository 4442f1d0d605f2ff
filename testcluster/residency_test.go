package testcluster

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"net/http"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/meshtrace/meshtrace/cli"
	"github.com/meshtrace/meshtrace/residency"
	"github.com/meshtrace/meshtrace/resource"
	"github.com/meshtrace/meshtrace/store"
)

const toEast = `type: MeshTrace
mesh: default
name: frontend-to-east
spec:
  targetRef: {kind: MeshService, name: frontend}
  default:
    backends:
    - zipkin: {url: 'http://east.zipkincollector:9411/api/v2/spans'}
`

// TestResidencyEndToEnd: west enforces its residency at both ends. Global
// refuses a policy sending west's frontend to east's collector; in Audit mode
// it lands and is reported; back in Enforce, and for a policy written around
// global's API, west's own check serves the proxy tracing off and says so in
// its ZoneInsight.
func TestResidencyEndToEnd(t *testing.T) {
	c := Start(t, Options{Zones: []string{"east", "west"}})
	west, east := c.Zones["west"], c.Zones["east"]
	west.RegisterProxy(t, "frontend-west", "frontend")
	west.RegisterProxy(t, "backend-west", "backend")
	east.RegisterProxy(t, "frontend-east", "frontend")
	fw := ConnectEnvoy(t, west.XDSAddr(), "default.frontend-west")
	bw := ConnectEnvoy(t, west.XDSAddr(), "default.backend-west")
	fe := ConnectEnvoy(t, east.XDSAddr(), "default.frontend-east")
	if err := c.Apply(seed(t, "trace-west.universal.yaml") + "---\n" + seed(t, "trace-east.k8s.yaml")); err != nil {
		t.Fatal(err)
	}
	fw.WaitCollectors(t, 10*time.Second, westCollector)
	fe.WaitCollectors(t, 10*time.Second, eastCollector)
	setWest := func(mode string) {
		t.Helper()
		if err := c.Apply("type: Zone\nname: west\nresidency:\n  mode: " + mode + "\n  allowedCollectors: ['west.zipkincollector:9411']\n"); err != nil {
			t.Fatal(err)
		}
	}
	setWest("Enforce")
	// Global knows west's proxies once they are uploaded.
	Eventually(t, 15*time.Second, func() error {
		for _, z := range residencyReport(t, c).Zones {
			if z.Zone == "west" && z.Mode == "Enforce" && z.Proxies == 2 {
				return nil
			}
		}
		return errors.New("west's proxies not yet on global")
	})

	err := c.Apply(toEast)
	var ae *cli.APIError
	if !errors.As(err, &ae) || ae.Status != http.StatusConflict || len(ae.Causes) != 1 ||
		!strings.Contains(ae.Causes[0].Message, `zone "west": proxy "frontend-west" (mesh "default") would export Zipkin spans to http://east.zipkincollector:9411/api/v2/spans, brought in by MeshTrace "frontend-to-east"`) {
		t.Fatalf("apply in Enforce: %v", err)
	}

	// Audit: it lands, west's frontend goes to east, and the violation is listed.
	setWest("Audit")
	if err := c.Apply(toEast); err != nil {
		t.Fatal(err)
	}
	fw.WaitCollectors(t, 10*time.Second, eastCollector)
	Eventually(t, 10*time.Second, func() error { return westViolation(residencyReport(t, c), false) })

	// Enforce again: west's own check turns tracing off for that proxy only.
	setWest("Enforce")
	fw.WaitCollectors(t, 10*time.Second)
	bw.WaitCollectors(t, time.Second, westCollector)
	fe.WaitCollectors(t, time.Second, eastCollector)
	Eventually(t, 15*time.Second, func() error { return westViolation(residencyReport(t, c), true) })
	// meshtracectl residency shows it, and what the zone does about it.
	var out, errb bytes.Buffer
	app := &cli.App{Stdout: &out, Stderr: &errb, ConfigPath: filepath.Join(t.TempDir(), "ctl.yaml")}
	if code := app.Run(context.Background(), []string{"--address", c.API.Address, "residency", "west"}); code != 0 {
		t.Fatal(errb.String())
	}
	if got := strings.Join(strings.Fields(out.String()), " "); !strings.Contains(got,
		"1 violation: ZONE MODE MESH PROXY COLLECTOR POLICY SINCE ON THE ZONE west Enforce default frontend-west http://east.zipkincollector:9411/api/v2/spans frontend-to-east") ||
		!strings.HasSuffix(got, "tracing off") {
		t.Fatalf("meshtracectl residency west:\n%s", out.String())
	}
	var rules struct {
		Warnings []string `json:"warnings"`
	}
	if _, err := west.API.Do(context.Background(), "GET", "/meshes/default/dataplanes/frontend-west/_rules", nil, nil, &rules); err != nil ||
		len(rules.Warnings) != 1 || !strings.HasPrefix(rules.Warnings[0], "residency (Enforce): tracing is off: the policies send spans to http://east.zipkincollector:9411/api/v2/spans") {
		t.Fatalf("_rules of frontend-west: %v %+v", err, rules)
	}

	// A policy written straight into global's store (around the API) meets the same check on the zone.
	r, err := resource.Decode([]byte(strings.ReplaceAll(strings.ReplaceAll(toEast, "frontend-to-east", "backend-out"), "name: frontend}", "name: backend}")))
	if err != nil {
		t.Fatal(err)
	}
	resource.Prepare(r)
	r.Labels = map[string]string{resource.LabelOrigin: resource.OriginGlobal}
	if _, err := c.Global.Store().Put(context.Background(), r, store.MustNotExist); err != nil {
		t.Fatal(err)
	}
	bw.WaitCollectors(t, 10*time.Second)
	fe.WaitCollectors(t, time.Second, eastCollector)

	// A policy created on west itself (zone-originated) is refused by west's API.
	local, err := resource.Decode([]byte(strings.NewReplacer("frontend-to-east", "local-out", "east.zipkincollector", "central").Replace(toEast)))
	if err != nil {
		t.Fatal(err)
	}
	_, err = west.API.Do(context.Background(), "PUT", "/meshes/default/meshtraces/local-out", nil, local, nil)
	if !errors.As(err, &ae) || ae.Status != http.StatusConflict || !strings.Contains(ae.Causes[0].Message, `brought in by MeshTrace "local-out" in mesh "default" (created on zone "west")`) {
		t.Fatalf("zone-local violating policy: %v", err)
	}
}

func residencyReport(t *testing.T, c *Cluster) residency.Report {
	t.Helper()
	var rep residency.Report
	if _, err := c.API.Do(context.Background(), "GET", "/residency", nil, nil, &rep); err != nil {
		t.Fatal(err)
	}
	return rep
}

// westViolation checks that global lists frontend-west's violation and,
// when blocked, that west reported serving it tracing off.
func westViolation(rep residency.Report, blocked bool) error {
	for _, z := range rep.Zones {
		if z.Zone != "west" {
			continue
		}
		if len(z.Violations) != 1 || z.Violations[0].Proxy != "frontend-west" || z.Violations[0].Policy.Name != "frontend-to-east" {
			return fmt.Errorf("west violations %+v", z.Violations)
		}
		if !blocked {
			return nil
		}
		if len(z.ZoneReported) != 1 || !z.ZoneReported[0].Blocked || z.ZoneReported[0].Proxy != "frontend-west" ||
			z.ZoneReported[0].Collector != "http://east.zipkincollector:9411/api/v2/spans" {
			return fmt.Errorf("west reported %+v", z.ZoneReported)
		}
		return nil
	}
	return errors.New("no west in the report")
}

// TestZoneOriginatedPolicyAudited: a policy created on a zone reaches global
// over KDS and is evaluated there like any other, but only against its own
// zone's proxies (it is never sent to other zones).
func TestZoneOriginatedPolicyAudited(t *testing.T) {
	c := Start(t, Options{Zones: []string{"east", "west"}})
	west, east := c.Zones["west"], c.Zones["east"]
	west.RegisterProxy(t, "frontend-west", "frontend")
	east.RegisterProxy(t, "frontend-east", "frontend")
	fw := ConnectEnvoy(t, west.XDSAddr(), "default.frontend-west")
	fe := ConnectEnvoy(t, east.XDSAddr(), "default.frontend-east")
	if err := c.Apply(seed(t, "trace-west.universal.yaml") + "---\n" + seed(t, "trace-east.k8s.yaml") +
		"---\ntype: Zone\nname: west\nresidency:\n  mode: Audit\n  allowedCollectors: ['west.zipkincollector:9411']\n" +
		"---\ntype: Zone\nname: east\nresidency:\n  mode: Audit\n  allowedCollectors: ['east.zipkincollector:9411']\n"); err != nil {
		t.Fatal(err)
	}
	fw.WaitCollectors(t, 10*time.Second, westCollector)
	fe.WaitCollectors(t, 10*time.Second, eastCollector)
	// West's Audit mode lets its API take a local policy sending its frontend to east.
	local, err := resource.Decode([]byte(strings.ReplaceAll(toEast, "frontend-to-east", "local-out")))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := west.API.Do(context.Background(), "PUT", "/meshes/default/meshtraces/local-out", nil, local, nil); err != nil {
		t.Fatal(err)
	}
	fw.WaitCollectors(t, 10*time.Second, eastCollector)
	Eventually(t, 20*time.Second, func() error {
		for _, z := range residencyReport(t, c).Zones {
			if z.Zone == "east" && len(z.Violations) != 0 {
				return fmt.Errorf("east charged with west's local policy: %+v", z.Violations)
			}
			if z.Zone != "west" {
				continue
			}
			if len(z.Violations) != 1 || z.Violations[0].Proxy != "frontend-west" {
				return fmt.Errorf("west violations %+v", z.Violations)
			}
			p := z.Violations[0].Policy
			if p.Origin != resource.OriginZone || p.Zone != "west" || p.DisplayName != "local-out" || p.Name == "local-out" {
				return fmt.Errorf("policy %+v", p)
			}
			return nil
		}
		return errors.New("no west in the report")
	})
	fe.WaitCollectors(t, time.Second, eastCollector)
}
