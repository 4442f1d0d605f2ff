package cli

import (
	"context"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/meshtrace/meshtrace/resource"
	"github.com/meshtrace/meshtrace/store"
)

func TestResidencyCommands(t *testing.T) {
	r := newRunner(t)
	// residency set creates the Zone when global does not know it yet.
	code, out, errOut := r.run("", "residency", "set", "west", "--allow", "*.west.svc", "--allow", "10.1.0.0/16:9411", "--mode", "Enforce")
	if code != 0 || out != "zone/west residency set: mode Enforce, allowed collectors: *.west.svc, 10.1.0.0/16:9411\n" {
		t.Fatalf("set: %d %q %s", code, out, errOut)
	}
	if code, _, errOut = r.run("", "residency", "set", "west", "--allow", "http://x", "--mode", "enforce"); code != 1 ||
		!strings.Contains(errOut, "* residency.allowedCollectors[0]: must be a host") || !strings.Contains(errOut, "* residency.mode: must be one of Enforce, Audit or Off") {
		t.Fatalf("bad set: %d %s", code, errOut)
	}
	// A Zone manifest applies too.
	manifest := "apiVersion: kuma.io/v1alpha1\nkind: Zone\nmetadata:\n  name: east\nspec:\n  residency:\n    mode: Audit\n    allowedCollectors: ['*.east.svc']\n"
	if code, out, errOut = r.run(manifest, "apply", "-f", "-"); code != 0 || !strings.Contains(out, "zone/east created") {
		t.Fatalf("apply zone: %d %s %s", code, out, errOut)
	}
	var rev int64
	for _, z := range []string{"west", "east"} {
		dp, err := resource.Decode([]byte(fmt.Sprintf(`{"type":"Dataplane","mesh":"default","name":"%[1]s.web-1","labels":{"kuma.io/zone":"%[1]s","kuma.io/origin":"zone","kuma.io/display-name":"web-1"},
"networking":{"address":"10.0.0.1","inbound":[{"port":8080,"tags":{"kuma.io/service":"web","kuma.io/zone":"%[1]s"}}]}}`, z)))
		if err != nil {
			t.Fatal(err)
		}
		if rev, err = r.g.Store().Put(context.Background(), dp, store.AnyVersion); err != nil {
			t.Fatal(err)
		}
	}
	if err := r.g.Residency().WaitFor(context.Background(), rev); err != nil {
		t.Fatal(err)
	}
	central := "type: MeshTrace\nmesh: default\nname: central\nspec:\n  default:\n    backends:\n    - zipkin: {url: 'http://jaeger.central:9411/api/v2/spans'}\n"
	code, out, errOut = r.run(central, "apply", "--dry-run", "-f", "-")
	if code != 1 || !strings.Contains(errOut, "Conflict (409)") ||
		!strings.Contains(errOut, `* line 6: spec.default.backends: zone "west": proxy "web-1" (mesh "default") would export Zipkin spans to http://jaeger.central:9411/api/v2/spans, brought in by MeshTrace "central"`) {
		t.Fatalf("apply violating: %d %s %s", code, out, errOut)
	}
	// West to Audit: admitted with warnings for both zones.
	if code, _, errOut = r.run("", "residency", "set", "west", "--mode", "Audit"); code != 0 {
		t.Fatalf("west to Audit: %s", errOut)
	}
	code, out, errOut = r.run(central, "apply", "-f", "-")
	if code != 0 || !strings.Contains(out, "meshtrace/central created") || strings.Count(errOut, "Warning: residency (Audit, admitted and recorded)") != 2 {
		t.Fatalf("apply in Audit: %d %s %s", code, out, errOut)
	}
	code, out, errOut = r.run("", "delete", "meshtrace", "central", "--dry-run")
	if code != 0 || out != "meshtrace/central can be deleted (dry run)\n" {
		t.Fatalf("delete dry run: %d %q %s", code, out, errOut)
	}
	// The table shows both zones' collector and the violations.
	deadline := time.Now().Add(10 * time.Second)
	for len(r.g.Residency().Violations()) != 2 && time.Now().Before(deadline) {
		time.Sleep(10 * time.Millisecond)
	}
	if code, out, errOut = r.run("", "residency"); code != 0 {
		t.Fatalf("residency: %s", errOut)
	}
	squeezed := strings.Join(strings.Fields(out), " ")
	for _, want := range []string{
		"ZONE MODE ALLOWED PROXIES COLLECTOR PROXIES THERE STATUS",
		"east Audit *.east.svc 1 http://jaeger.central:9411/api/v2/spans 1 VIOLATION",
		"west Audit *.west.svc,10.1.0.0/16:9411 1 http://jaeger.central:9411/api/v2/spans 1 VIOLATION",
		"2 violations:",
		"ZONE MODE MESH PROXY COLLECTOR POLICY SINCE ON THE ZONE",
		"west Audit default web-1 http://jaeger.central:9411/api/v2/spans central",
	} {
		if !strings.Contains(squeezed, want) {
			t.Errorf("residency table lacks %q:\n%s", want, out)
		}
	}
	if code, out, _ = r.run("", "residency", "west", "-o", "json"); code != 0 || !strings.Contains(out, `"zone": "west"`) || strings.Contains(out, `"zone": "east"`) {
		t.Fatalf("residency west -o json: %s", out)
	}
	if code, _, errOut = r.run("", "residency", "nowhere"); code != 1 || !strings.Contains(errOut, `no zone "nowhere" (known: east, west)`) {
		t.Fatalf("unknown zone: %s", errOut)
	}
}
