package global

import (
	"os/exec"
	"strings"
	"testing"
)

// TestNoZoneDependency: the global control plane shares policy logic with the
// zones through policy/ and inspect/, never by importing the zone's
// binary-level packages (zone, its xDS server) or the policy's Envoy part.
func TestNoZoneDependency(t *testing.T) {
	goBin, err := exec.LookPath("go")
	if err != nil {
		t.Skip("go command not on PATH")
	}
	for _, pkg := range []string{".", "../policy/meshtrace", "../inspect"} {
		out, err := exec.Command(goBin, "list", "-deps", pkg).CombinedOutput()
		if err != nil {
			t.Fatalf("go list -deps %s: %v\n%s", pkg, err, out)
		}
		for _, dep := range strings.Fields(string(out)) {
			if dep == "github.com/meshtrace/meshtrace/zone" ||
				strings.HasPrefix(dep, "github.com/meshtrace/meshtrace/zone/") ||
				dep == "github.com/meshtrace/meshtrace/policy/meshtrace/envoy" ||
				strings.HasPrefix(dep, "github.com/envoyproxy/") {
				t.Errorf("%s depends on %s", pkg, dep)
			}
		}
	}
}
