package kds_test

import (
	"context"
	"fmt"
	"strings"
	"testing"
	"time"

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

	// Reconnect with nothing changed: no batch, no write.
	ze.stop()
	ze = e.startZone("east", east, token(t, gs, "east"), []string{g.addr})
	waitFor(t, "east to connect", 5*time.Second, ze.client.Connected)
	time.Sleep(300 * time.Millisecond)
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

// A global restarted on an empty store sends an empty snapshot: the zone
// refuses to delete everything, reports it, and keeps serving its copies.
func TestEmptySnapshotDoesNotWipeZone(t *testing.T) {
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
	g2 := e.startGlobal(fresh, addr)
	waitFor(t, "the refused snapshot", 10*time.Second, func() bool { return z.client.Stats().RefusedDeletes == 1 })
	if n := len(list(t, zs, resource.TypeMeshTrace)); n != 10 {
		t.Fatalf("zone lost policies: %d left", n)
	}
	waitFor(t, "global to record the refusal", 5*time.Second, func() bool {
		for _, n := range g2.nackList() {
			if strings.Contains(n.Reason, "deletes refused") {
				return true
			}
		}
		return false
	})
	// New policies on the new global still arrive.
	rev = put(t, fresh, meshTrace("default", "p-new", 1))
	waitApplied(t, rev, 10*time.Second, z)
	if n := len(list(t, zs, resource.TypeMeshTrace)); n != 11 {
		t.Fatalf("want 11 policies on the zone, got %d", n)
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

func insight(t testing.TB, st store.Store, zone string) *resource.ZoneInsightSpec {
	t.Helper()
	r, _, err := st.Get(context.Background(), resource.Key{Type: resource.TypeZoneInsight, Name: zone})
	if err != nil {
		return nil
	}
	return r.Spec.(*resource.ZoneInsightSpec)
}
