package kds_test

import (
	"context"
	"encoding/json"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/meshtrace/meshtrace/kds"
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

// An idle zone's upload cursor follows its store: global's copies and the
// sync cursors move the zone store's revision while nothing goes up, and
// the zone's heartbeats tell global the revision it has nothing pending
// for. So once the zone's history is compacted past its last upload, a
// reconnect still resumes (nothing sent up) instead of a full snapshot.
func TestIdleZoneUploadCursorFollowsItsStore(t *testing.T) {
	t.Cleanup(kds.SetIdleUploadCursorEvery(0))
	ctx := context.Background()
	e := newEnv(t)
	gs := newMemory(t)
	put(t, gs, mesh("default"))
	g := e.startGlobal(gs, "")
	zs := newMemory(t)
	put(t, zs, dataplane("default", "dp-1", "web"))
	tok := token(t, gs, "east")
	z := e.startZone("east", zs, tok, []string{g.addr})
	waitFor(t, "the dataplane on global", 10*time.Second, func() bool { return len(list(t, gs, resource.TypeDataplane)) == 1 })
	var last int64
	for i := range 20 {
		last = put(t, gs, meshTrace("default", fmt.Sprintf("p-%d", i), i))
	}
	waitApplied(t, last, 10*time.Second, z)
	zrev, err := zs.Revision(ctx)
	if err != nil {
		t.Fatal(err)
	}
	waitFor(t, fmt.Sprintf("global to keep the idle zone's upload cursor at %d or later", zrev), 10*time.Second, func() bool {
		b, err := gs.GetValue(ctx, "kds/upload-cursor/east")
		if err != nil {
			return false
		}
		var c struct{ Revision int64 }
		return json.Unmarshal(b, &c) == nil && c.Revision >= zrev
	})
	z.stop()
	if err := zs.Compact(ctx, zrev); err != nil {
		t.Fatal(err)
	}
	z = e.startZone("east", zs, tok, []string{g.addr})
	rev := put(t, gs, meshTrace("default", "after", 1))
	waitApplied(t, rev, 10*time.Second, z)
	if s := z.client.Stats(); s.Uploaded != 0 {
		t.Fatalf("the reconnect uploaded %d resources (a snapshot), want 0 (a resume): %+v", s.Uploaded, s)
	}
	if n := len(list(t, gs, resource.TypeDataplane)); n != 1 {
		t.Fatalf("global has %d dataplanes of east, want 1", n)
	}
}
