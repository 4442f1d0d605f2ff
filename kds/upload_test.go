package kds_test

import (
	"strings"
	"testing"
	"time"

	"github.com/meshtrace/meshtrace/resource"
)

// Global checks uploads again as it would store them: a Dataplane of a mesh
// global does not have, or whose name is too long once prefixed with the
// zone, is refused on its own (counted, never stored); the rest of the batch
// is applied.
func TestUploadRevalidatedOnGlobal(t *testing.T) {
	e := newEnv(t)
	gs := newMemory(t)
	put(t, gs, mesh("default"))
	g := e.startGlobal(gs, "")
	zs := newMemory(t)
	long := strings.Repeat("a", resource.MaxNameLength-2) // valid on the zone, too long as east.<name>
	put(t, zs, dataplane("default", "ok-1", "web"))
	put(t, zs, dataplane("ghost", "dp-1", "web"))
	put(t, zs, dataplane("default", long, "web"))
	e.startZone("east", zs, token(t, gs, "east"), []string{g.addr})
	waitFor(t, "the valid dataplane on global", 5*time.Second, func() bool {
		return list(t, gs, resource.TypeDataplane)["Dataplane/default/east.ok-1"] != nil
	})
	waitFor(t, "two rejections", 5*time.Second, func() bool {
		return metricValue(t, g.reg, "meshtrace_kds_upload_rejections_total", "east") == 2
	})
	if dps := list(t, gs, resource.TypeDataplane); len(dps) != 1 {
		t.Fatalf("global stored %d dataplanes, want only east.ok-1: %v", len(dps), dps)
	}
}
