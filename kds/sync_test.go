package kds_test

import (
	"context"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/meshtrace/meshtrace/kds"
	"github.com/meshtrace/meshtrace/resource"
	"github.com/meshtrace/meshtrace/store"
)

// Policies reach every zone; a zone that reconnects gets only what changed
// while it was away (no snapshot), and nothing at all when nothing changed.
func TestResumeByRevision(t *testing.T) {
	e := newEnv(t)
	gs := newMemory(t)
	put(t, gs, mesh("default"))
	rev := putBurst(t, gs, "default", 100, 0)
	g := e.startGlobal(gs, "")
	east, west := newMemory(t), newMemory(t)
	ze := e.startZone("east", east, token(t, gs, "east"), []string{g.addr})
	zw := e.startZone("west", west, token(t, gs, "west"), []string{g.addr})
	waitApplied(t, rev, 10*time.Second, ze, zw)
	for _, typ := range []resource.Type{resource.TypeMesh, resource.TypeMeshTrace} {
		sameContent(t, gs, east, typ)
		sameContent(t, gs, west, typ)
	}
	if s := ze.client.Stats(); s.Snapshots != 1 {
		t.Fatalf("first connect: want 1 snapshot, got %+v", s)
	}
	settle(t, gs, ze, zw) // the Zones global wrote on connect reached both

	// Cut east, change 10 policies, delete one, add one.
	ze.stop()
	for i := range 10 {
		put(t, gs, meshTrace("default", fmt.Sprintf("p-%d", i), 1000+i))
	}
	if _, err := gs.Delete(context.Background(), resource.Key{Type: resource.TypeMeshTrace, Mesh: "default", Name: "p-50"}, store.AnyVersion); err != nil {
		t.Fatal(err)
	}
	rev = put(t, gs, meshTrace("default", "new", 7))
	waitApplied(t, rev, 10*time.Second, zw)

	ze = e.startZone("east", east, token(t, gs, "east"), []string{g.addr})
	waitApplied(t, rev, 10*time.Second, ze)
	sameContent(t, gs, east, resource.TypeMeshTrace)
	s := ze.client.Stats()
	if s.Snapshots != 0 {
		t.Fatalf("resume sent a snapshot: %+v", s)
	}
	if s.Writes != 12 {
		t.Fatalf("resume: want 12 writes (10 updates, 1 delete, 1 create), got %+v", s)
	}

	// Reconnect with nothing synced changed: no batch, no write. Positive
	// marker: an unrelated write on global (a Dataplane) reaches the zone's
	// cursor through the heartbeats.
	ze.stop()
	ze = e.startZone("east", east, token(t, gs, "east"), []string{g.addr})
	waitFor(t, "east to connect", 5*time.Second, ze.client.Connected)
	marker := put(t, gs, dataplane("default", "elsewhere", "web"))
	waitApplied(t, marker, 5*time.Second, ze)
	if s := ze.client.Stats(); s.Snapshots != 0 || s.Writes != 0 || s.Batches != 0 {
		t.Fatalf("reconnect with nothing changed: %+v", s)
	}
	if got := ze.client.LastAppliedRevision(); got < rev {
		t.Fatalf("cursor went back to %d", got)
	}
}

// A compacted history forces a snapshot, applied by diff: a policy deleted
// while the zone was away is deleted on the zone, unchanged ones not written.
func TestCompactionForcesSnapshot(t *testing.T) {
	e := newEnv(t)
	gs := newMemory(t)
	put(t, gs, mesh("default"))
	rev := putBurst(t, gs, "default", 20, 0)
	g := e.startGlobal(gs, "")
	zs := newMemory(t)
	z := e.startZone("east", zs, token(t, gs, "east"), []string{g.addr})
	waitApplied(t, rev, 10*time.Second, z)
	settle(t, gs, z) // the zone also has what global wrote on connect (its Zone)
	z.stop()

	if _, err := gs.Delete(context.Background(), resource.Key{Type: resource.TypeMeshTrace, Mesh: "default", Name: "p-3"}, store.AnyVersion); err != nil {
		t.Fatal(err)
	}
	rev = put(t, gs, meshTrace("default", "p-4", 999))
	if err := gs.Compact(context.Background(), rev); err != nil {
		t.Fatal(err)
	}
	z = e.startZone("east", zs, token(t, gs, "east"), []string{g.addr})
	waitApplied(t, rev, 10*time.Second, z)
	sameContent(t, gs, zs, resource.TypeMeshTrace)
	s := z.client.Stats()
	if s.Snapshots < 1 || s.Writes != 2 || s.RefusedDeletes != 0 {
		t.Fatalf("want 1 snapshot and 2 writes (1 update, 1 delete), got %+v", s)
	}
}

// A quiet zone's cursor follows the store's revision (writes of types not
// synced down: Dataplanes, ZoneInsights), so after a compaction of that
// history it still resumes instead of taking a full snapshot.
func TestQuietZoneCursorFollowsTheStore(t *testing.T) {
	e := newEnv(t)
	gs := newMemory(t)
	put(t, gs, mesh("default"))
	rev := putBurst(t, gs, "default", 20, 0)
	g := e.startGlobal(gs, "")
	zs := newMemory(t)
	tok := token(t, gs, "east")
	z := e.startZone("east", zs, tok, []string{g.addr})
	waitApplied(t, rev, 10*time.Second, z)
	var last int64
	for i := range 20 {
		last = put(t, gs, dataplane("default", fmt.Sprintf("dp-%d", i), "web"))
	}
	waitApplied(t, last, 10*time.Second, z)
	z.stop()
	if err := gs.Compact(context.Background(), last); err != nil {
		t.Fatal(err)
	}
	rev = put(t, gs, meshTrace("default", "after", 1))
	z = e.startZone("east", zs, tok, []string{g.addr})
	waitApplied(t, rev, 10*time.Second, z)
	if s := z.client.Stats(); s.Snapshots != 0 || s.Writes != 1 {
		t.Fatalf("want a resume with one write, got %+v", s)
	}
	sameContent(t, gs, zs, resource.TypeMeshTrace)
}

// Deleting most policies while a zone is away past compaction is an
// operator's will, not data loss: the zone's snapshot deletes them all (the
// same store, a newer revision) and nothing is held.
func TestMassDeleteAfterCompactionApplies(t *testing.T) {
	e := newEnv(t)
	gs := newMemory(t)
	put(t, gs, mesh("default"))
	rev := putBurst(t, gs, "default", 100, 0)
	g := e.startGlobal(gs, "")
	zs := newMemory(t)
	tok := token(t, gs, "east")
	z := e.startZone("east", zs, tok, []string{g.addr})
	waitApplied(t, rev, 10*time.Second, z)
	z.stop()
	var ops []store.Op
	for i := range 81 {
		ops = append(ops, store.Op{Delete: true, Key: resource.Key{Type: resource.TypeMeshTrace, Mesh: "default", Name: fmt.Sprintf("p-%d", i)}})
	}
	rev, err := gs.Txn(context.Background(), ops)
	if err != nil {
		t.Fatal(err)
	}
	if err := gs.Compact(context.Background(), rev); err != nil {
		t.Fatal(err)
	}
	z = e.startZone("east", zs, tok, []string{g.addr})
	waitApplied(t, rev, 10*time.Second, z)
	sameContent(t, gs, zs, resource.TypeMeshTrace)
	if s := z.client.Stats(); s.Snapshots != 1 || s.RefusedDeletes != 0 {
		t.Fatalf("want one snapshot and nothing held: %+v", s)
	}
	// Across a restart too: the cursor is past the deletes.
	z.stop()
	z = e.startZone("east", zs, tok, []string{g.addr})
	waitFor(t, "east to connect", 5*time.Second, z.client.Connected)
	sameContent(t, gs, zs, resource.TypeMeshTrace)
}

// A global restarted on an empty store (a new store id) sends an empty
// snapshot: the zone holds the deletes, keeps serving its copies, says so
// (ZoneInsight held, metric, Ack), stays held across its own restart and
// every reconnect, and applies the deletes once an operator releases them.
func TestLostGlobalDataHoldsDeletesUntilReleased(t *testing.T) {
	e := newEnv(t)
	gs := newMemory(t)
	put(t, gs, mesh("default"))
	rev := putBurst(t, gs, "default", 10, 0)
	g := e.startGlobal(gs, "")
	zs := newMemory(t)
	tok := token(t, gs, "east")
	z := e.startZone("east", zs, tok, []string{g.addr})
	waitApplied(t, rev, 10*time.Second, z)
	addr := g.addr
	g.stop()

	// The new global has a fresh store but the same signing key (restored
	// from a backup of the values, say): the zone's token stays valid.
	fresh := newMemory(t)
	for _, k := range []string{"kds/token-signing-keys/1", "kds/token-signing-key-current"} {
		v, err := gs.GetValue(context.Background(), k)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := fresh.PutValue(context.Background(), k, v); err != nil {
			t.Fatal(err)
		}
	}
	copies := globalCopies(t, zs) // the mesh, the 10 policies, the Zone
	g2 := e.startGlobal(fresh, addr)
	waitFor(t, "the held deletes in the ZoneInsight", 10*time.Second, func() bool {
		ins := insight(t, fresh, "east")
		return ins != nil && ins.Held != nil && ins.Held.Deletes >= int64(copies-1) && strings.Contains(ins.Held.Reason, "store id changed")
	})
	reason, held := z.client.Held()
	if held < copies-1 || reason == "" {
		t.Fatalf("zone holds %d deletes (%q), want the %d copies (but the Zone)", held, reason, copies)
	}
	if n := len(list(t, zs, resource.TypeMeshTrace)); n != 10 {
		t.Fatalf("zone lost policies: %d left", n)
	}
	if v := metricValue(t, g2.reg, "meshtrace_kds_held_deletes", "east"); v != float64(held) {
		t.Fatalf("meshtrace_kds_held_deletes{zone=east} = %v, want %d", v, held)
	}
	// New policies on the new global still arrive.
	put(t, fresh, mesh("default"))
	rev = put(t, fresh, meshTrace("default", "p-new", 1))
	waitApplied(t, rev, 10*time.Second, z)
	if n := len(list(t, zs, resource.TypeMeshTrace)); n != 11 {
		t.Fatalf("want 11 policies on the zone, got %d", n)
	}
	// The zone restarts: still held (a snapshot on every connect, judged
	// against the cursor from before the loss).
	z.stop()
	z = e.startZone("east", zs, tok, []string{g2.addr})
	waitFor(t, "the zone to hold again after its restart", 10*time.Second, func() bool {
		_, n := z.client.Held()
		return n > 0 && z.client.Stats().RefusedDeletes >= 1
	})
	if n := len(list(t, zs, resource.TypeMeshTrace)); n != 11 {
		t.Fatalf("held zone changed: %d policies", n)
	}
	// The operator releases: the zone reconnects and deletes.
	if _, err := g2.srv.ReleaseDeletes(context.Background(), "east"); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "the released deletes", 10*time.Second, func() bool {
		_, n := z.client.Held()
		return n == 0 && len(list(t, zs, resource.TypeMeshTrace)) == 1
	})
	sameContent(t, fresh, zs, resource.TypeMeshTrace)
	waitFor(t, "the ZoneInsight to clear", 10*time.Second, func() bool {
		ins := insight(t, fresh, "east")
		return ins != nil && ins.Held == nil
	})
}

// A global restored from a backup (same store id, revision behind the
// zone's cursor) holds the zone's deletes too.
func TestRestoredGlobalBehindZoneHoldsDeletes(t *testing.T) {
	e := newEnv(t)
	gs := newMemory(t)
	put(t, gs, mesh("default"))
	putBurst(t, gs, "default", 5, 0)
	g := e.startGlobal(gs, "")
	zs := newMemory(t)
	tok := token(t, gs, "east")
	z := e.startZone("east", zs, tok, []string{g.addr})
	var rev int64
	for i := range 20 {
		rev = put(t, gs, meshTrace("default", "later", i))
	}
	waitApplied(t, rev, 10*time.Second, z)
	addr := g.addr
	g.stop()
	z.stop()

	// The restored store: the same values (store id, signing key) and the
	// policies of the backup, at a lower revision than the zone's cursor.
	restored := newMemory(t)
	for _, k := range []string{"kds/token-signing-keys/1", "kds/token-signing-key-current", "kds/store-id"} {
		v, err := gs.GetValue(context.Background(), k)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := restored.PutValue(context.Background(), k, v); err != nil {
			t.Fatal(err)
		}
	}
	put(t, restored, mesh("default"))
	putBurst(t, restored, "default", 5, 0)
	if r, _ := restored.Revision(context.Background()); r >= rev {
		t.Fatalf("restored store at %d is not behind %d", r, rev)
	}
	e.startGlobal(restored, addr)
	z = e.startZone("east", zs, tok, []string{addr})
	waitFor(t, "the held delete", 10*time.Second, func() bool {
		reason, n := z.client.Held()
		return n >= 1 && strings.Contains(reason, "behind the zone's cursor")
	})
	if _, _, err := zs.Get(context.Background(), resource.Key{Type: resource.TypeMeshTrace, Mesh: "default", Name: "later"}); err != nil {
		t.Fatalf("held policy deleted: %v", err)
	}
}

// An invalid resource is NACKed by name; the others of its batch apply, and
// global records the NACK (callback, metric, ZoneInsight).
func TestInvalidResourceDoesNotBlockOthers(t *testing.T) {
	e := newEnv(t)
	gs := newMemory(t)
	put(t, gs, mesh("default"))
	ops := []store.Op{}
	for i := range 5 {
		r := meshTrace("default", fmt.Sprintf("ok-%d", i), i)
		ops = append(ops, store.Op{Key: r.Key(), Resource: r})
	}
	bad := &resource.Resource{Meta: resource.Meta{Type: resource.TypeMeshTrace, Mesh: "default", Name: "bad"}, Spec: &resource.MeshTraceSpec{}}
	ops = append(ops, store.Op{Key: bad.Key(), Resource: bad})
	rev, err := gs.Txn(context.Background(), ops)
	if err != nil {
		t.Fatal(err)
	}
	g := e.startGlobal(gs, "")
	zs := newMemory(t)
	z := e.startZone("east", zs, token(t, gs, "east"), []string{g.addr})
	waitApplied(t, rev, 10*time.Second, z)
	got := list(t, zs, resource.TypeMeshTrace)
	if len(got) != 5 {
		t.Fatalf("want the 5 valid policies on the zone, got %d", len(got))
	}
	waitFor(t, "the NACK on global", 5*time.Second, func() bool {
		for _, n := range g.nackList() {
			if n.Type == resource.TypeMeshTrace && n.Name == "bad" && strings.Contains(n.Reason, "default") {
				return true
			}
		}
		return false
	})
	if v := metricValue(t, g.reg, "meshtrace_kds_nacks_total", "east"); v < 1 {
		t.Fatalf("meshtrace_kds_nacks_total{zone=east} = %v", v)
	}
	waitFor(t, "the NACK in the ZoneInsight", 5*time.Second, func() bool {
		ins := insight(t, gs, "east")
		return ins != nil && ins.NACKs >= 1 && ins.LastNACK != nil && ins.LastNACK.Name == "bad"
	})
	// Fixing it on global delivers it.
	rev = put(t, gs, meshTrace("default", "bad", 3))
	waitApplied(t, rev, 10*time.Second, z)
	if len(list(t, zs, resource.TypeMeshTrace)) != 6 {
		t.Fatal("fixed policy not delivered")
	}
}

// globalCopies counts the zone's copies of global's resources.
func globalCopies(t testing.TB, zs store.Store) int {
	n := 0
	for _, d := range resource.Types() {
		if !d.Sync.Has(resource.SyncGlobalToZone) {
			continue
		}
		for _, r := range list(t, zs, d.Type) {
			if r.Labels[resource.LabelOrigin] == resource.OriginGlobal {
				n++
			}
		}
	}
	return n
}

func insight(t testing.TB, st store.Store, zone string) *resource.ZoneInsightSpec {
	t.Helper()
	r, _, err := st.Get(context.Background(), resource.Key{Type: resource.TypeZoneInsight, Name: zone})
	if err != nil {
		return nil
	}
	return r.Spec.(*resource.ZoneInsightSpec)
}

// A ZoneInsight that would exceed the store's value cap (thousands of
// proxies) is summarised to fit: the first proxies are kept, the rest
// counted, and the insight (online, then offline) is still written.
func TestZoneInsightSummarisedToFit(t *testing.T) {
	e := newEnv(t)
	gs := newMemory(t)
	gs.SetMaxValueBytes(16 << 10)
	put(t, gs, mesh("default"))
	g := e.startGlobal(gs, "")
	proxies := make([]resource.ProxyTracing, 2000)
	for i := range proxies {
		proxies[i] = resource.ProxyTracing{Mesh: "default", Name: fmt.Sprintf("proxy-%04d", i), Service: "web", Backend: "Zipkin"}
	}
	z := e.startZone("east", newMemory(t), token(t, gs, "east"), []string{g.addr}, func(c *kds.ClientConfig) {
		c.ProxyReport = func() []resource.ProxyTracing { return proxies }
	})
	waitFor(t, "the summarised insight", 10*time.Second, func() bool {
		ins := insight(t, gs, "east")
		return ins != nil && ins.Online && ins.ProxiesOmitted > 0 && len(ins.Proxies)+ins.ProxiesOmitted == len(proxies)
	})
	z.stop()
	waitFor(t, "the zone offline in its insight", 10*time.Second, func() bool {
		ins := insight(t, gs, "east")
		return ins != nil && !ins.Online
	})
}
