package kds_test

import (
	"context"
	"fmt"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/meshtrace/meshtrace/kds"
	"github.com/meshtrace/meshtrace/resource"
	"github.com/meshtrace/meshtrace/store"
)

// 1000 policies created in a burst on an etcd-backed global reach two zones
// (one on etcd, one in memory); a zone cut while policies change resumes by
// revision; a compaction while it is away forces a snapshot that converges.
func TestEtcdBurstResumeAndCompaction(t *testing.T) {
	if testing.Short() {
		t.Skip("embedded etcd")
	}
	e := newEnv(t)
	gs := openEtcd(t)
	g := e.startGlobal(gs, "")
	east, west := openEtcd(t), newMemory(t)
	ze := e.startZone("east", east, token(t, gs, "east"), []string{g.addr})
	zw := e.startZone("west", west, token(t, gs, "west"), []string{g.addr})
	waitFor(t, "zones to connect", 10*time.Second, func() bool { return ze.client.Connected() && zw.client.Connected() })

	start := time.Now()
	put(t, gs, mesh("default"))
	rev := putBurst(t, gs, "default", 1000, 0)
	waitApplied(t, rev, 20*time.Second, ze, zw)
	t.Logf("1000 policies reached both zones in %s", time.Since(start))
	for _, z := range []store.Store{east, west} {
		sameContent(t, gs, z, resource.TypeMeshTrace)
		sameContent(t, gs, z, resource.TypeMesh)
	}

	// Cut east; change 100, delete 10, add 5.
	ze.stop()
	ctx := context.Background()
	for i := range 100 {
		put(t, gs, meshTrace("default", fmt.Sprintf("p-%d", i), 5000+i))
	}
	for i := range 10 {
		if _, err := gs.Delete(ctx, resource.Key{Type: resource.TypeMeshTrace, Mesh: "default", Name: fmt.Sprintf("p-%d", 900+i)}, store.AnyVersion); err != nil {
			t.Fatal(err)
		}
	}
	for i := range 5 {
		rev = put(t, gs, meshTrace("default", fmt.Sprintf("new-%d", i), i))
	}
	ze = e.startZone("east", east, token(t, gs, "east"), []string{g.addr})
	waitApplied(t, rev, 20*time.Second, ze, zw)
	sameContent(t, gs, east, resource.TypeMeshTrace)
	if s := ze.client.Stats(); s.Snapshots != 0 || s.Writes != 115 {
		t.Fatalf("resume: want no snapshot and 115 writes, got %+v", s)
	}

	// Cut east again; delete one and change one, then compact the history.
	ze.stop()
	if _, err := gs.Delete(ctx, resource.Key{Type: resource.TypeMeshTrace, Mesh: "default", Name: "p-500"}, store.AnyVersion); err != nil {
		t.Fatal(err)
	}
	rev = put(t, gs, meshTrace("default", "p-501", 77))
	if err := gs.Compact(ctx, rev); err != nil {
		t.Fatal(err)
	}
	ze = e.startZone("east", east, token(t, gs, "east"), []string{g.addr})
	waitApplied(t, rev, 20*time.Second, ze)
	sameContent(t, gs, east, resource.TypeMeshTrace)
	// (Under load a session may be cut and the snapshot sent again; still
	// only the two changes are written.)
	if s := ze.client.Stats(); s.Snapshots < 1 || s.Writes != 2 || s.RefusedDeletes != 0 {
		t.Fatalf("after compaction: want 1 snapshot and 2 writes, got %+v", s)
	}
}

// The global server restarts in the middle of a burst: the zone resumes from
// its revision; nothing is lost and nothing wrongly deleted.
func TestEtcdGlobalRestartMidBurst(t *testing.T) {
	if testing.Short() {
		t.Skip("embedded etcd")
	}
	e := newEnv(t)
	gs := openEtcd(t)
	put(t, gs, mesh("default"))
	base := putBurst(t, gs, "default", 200, 0)
	g := e.startGlobal(gs, "")
	zs := newMemory(t)
	var deletes sync.Map
	z := e.startZone("east", zs, token(t, gs, "east"), []string{g.addr})
	waitApplied(t, base, 20*time.Second, z)
	wch, err := zs.Watch(context.Background(), store.WatchOptions{Types: []resource.Type{resource.TypeMeshTrace}})
	if err != nil {
		t.Fatal(err)
	}
	go func() {
		for resp := range wch {
			for _, ev := range resp.Events {
				if ev.Type == store.EventDelete {
					deletes.Store(ev.Resource.Key().String(), true)
				}
			}
		}
	}()

	done := make(chan int64)
	var written atomic.Int64
	go func() {
		var last int64
		for i := range 1000 {
			written.Add(1)
			r := meshTrace("default", fmt.Sprintf("p-%d", i%300), 100+i)
			rev, err := gs.Put(context.Background(), r, store.AnyVersion)
			if err != nil {
				t.Error(err)
				break
			}
			last = rev
		}
		done <- last
	}()
	waitFor(t, "the burst to start", 5*time.Second, func() bool { return written.Load() > 100 })
	addr := g.addr
	g.stop()
	atStop := written.Load()
	time.Sleep(100 * time.Millisecond)
	e.startGlobal(gs, addr)
	last := <-done
	t.Logf("global stopped after %d of 1000 writes", atStop)
	if atStop >= 1000 {
		t.Fatal("the burst ended before the restart")
	}
	waitApplied(t, last, 20*time.Second, z)
	sameContent(t, gs, zs, resource.TypeMeshTrace)
	s := z.client.Stats()
	if s.Sessions < 2 || s.Snapshots != 1 || s.RefusedDeletes != 0 {
		t.Fatalf("want a reconnect resumed without snapshot: %+v", s)
	}
	n := 0
	deletes.Range(func(any, any) bool { n++; return true })
	if n != 0 {
		t.Fatalf("%d resources were deleted on the zone", n)
	}
}

// Two global replicas over one store: a zone connected to one moves to the
// other when it dies and resumes by revision; the insight follows it.
func TestEtcdReplicaFailover(t *testing.T) {
	if testing.Short() {
		t.Skip("embedded etcd")
	}
	e := newEnv(t)
	gs := openEtcd(t)
	put(t, gs, mesh("default"))
	rev := putBurst(t, gs, "default", 100, 0)
	a := e.startGlobal(gs, "", func(c *kds.ServerConfig) { c.Instance = "global-a" })
	b := e.startGlobal(gs, "", func(c *kds.ServerConfig) { c.Instance = "global-b" })
	zs := newMemory(t)
	put(t, zs, dataplane("default", "dp-1", "web"))
	z := e.startZone("east", zs, token(t, gs, "east"), []string{a.addr, b.addr})
	waitApplied(t, rev, 20*time.Second, z)
	waitFor(t, "insight on a", 5*time.Second, func() bool {
		in := insight(t, gs, "east")
		return in != nil && in.Online && in.GlobalInstance == "global-a" && in.LastAckedRevision >= rev &&
			in.Stats["MeshTrace"].Acked == 100 && in.Stats["Mesh"].Acked == 1 && in.LagRevisions == 0
	})
	a.stop()
	rev = putBurst(t, gs, "default", 100, 10)
	waitApplied(t, rev, 20*time.Second, z)
	sameContent(t, gs, zs, resource.TypeMeshTrace)
	if s := z.client.Stats(); s.Sessions < 2 || s.Snapshots != 1 {
		t.Fatalf("want the second session to resume without a snapshot: %+v", s)
	}
	waitFor(t, "insight on b", 5*time.Second, func() bool {
		in := insight(t, gs, "east")
		return in != nil && in.Online && in.GlobalInstance == "global-b" && in.LastAckedRevision >= rev
	})
	// The zone's Dataplane is still there, once.
	if dps := list(t, gs, resource.TypeDataplane); len(dps) != 1 || dps["Dataplane/default/east.dp-1"] == nil {
		t.Fatalf("dataplanes on global: %v", dps)
	}
}

// rawPut plants a value under a resource's etcd key as it is.
func rawPut(t testing.TB, st *store.EtcdStore, k resource.Key, value string) int64 {
	t.Helper()
	resp, err := st.Client().Put(context.Background(), "/meshtrace/resources/"+string(k.Type)+"/"+k.Mesh+"/"+k.Name, value)
	if err != nil {
		t.Fatal(err)
	}
	return resp.Header.Revision
}

// A corrupt value on global (not JSON) and a value whose envelope names
// another resource than its key neither block the sync nor reach a zone: a
// new zone gets every valid policy, a zone that had the key's policy before
// drops it, the store reports both, and deleting the mismatching key leaves
// the live policy it names alone on every zone.
func TestCorruptValuesNeverBlockOrReachZones(t *testing.T) {
	if testing.Short() {
		t.Skip("embedded etcd")
	}
	e := newEnv(t)
	gs := openEtcd(t)
	put(t, gs, mesh("default"))
	putBurst(t, gs, "default", 20, 0)
	g := e.startGlobal(gs, "")
	old := newMemory(t)
	zo := e.startZone("old", old, token(t, gs, "old"), []string{g.addr})
	key := func(n string) resource.Key {
		return resource.Key{Type: resource.TypeMeshTrace, Mesh: "default", Name: n}
	}
	rawPut(t, gs, key("p-3"), "not json")
	rev := rawPut(t, gs, key("p-4"), `{"meta":{"type":"MeshTrace","mesh":"default","name":"p-5"},"spec":{}}`)
	waitApplied(t, rev, 10*time.Second, zo)

	fresh := newMemory(t)
	zf := e.startZone("fresh", fresh, token(t, gs, "fresh"), []string{g.addr})
	waitApplied(t, rev, 10*time.Second, zf)
	for name, zs := range map[string]store.Store{"old": old, "fresh": fresh} {
		got := list(t, zs, resource.TypeMeshTrace)
		if len(got) != 18 || got["MeshTrace/default/p-3"] != nil || got["MeshTrace/default/p-4"] != nil || got["MeshTrace/default/p-5"] == nil {
			t.Fatalf("zone %s: want the 18 valid policies (p-5 kept, p-3 and p-4 gone), got %d", name, len(got))
		}
		sameContent(t, gs, zs, resource.TypeMeshTrace)
	}
	if bad := gs.Corrupt(); len(bad) != 2 {
		t.Fatalf("want 2 corrupt values reported, got %+v", bad)
	}
	// Deleting the mismatching key deletes p-4, never p-5.
	if _, err := gs.Client().Delete(context.Background(), "/meshtrace/resources/MeshTrace/default/p-4"); err != nil {
		t.Fatal(err)
	}
	rev = put(t, gs, meshTrace("default", "after", 1))
	waitApplied(t, rev, 10*time.Second, zo, zf)
	for _, zs := range []store.Store{old, fresh} {
		if list(t, zs, resource.TypeMeshTrace)["MeshTrace/default/p-5"] == nil {
			t.Fatal("deleting the mismatching key deleted p-5 on a zone")
		}
		sameContent(t, gs, zs, resource.TypeMeshTrace)
	}
}

// One etcd watch on global feeds every zone: the number of watches does not
// grow with zones.
func TestEtcdWatchesDoNotGrowWithZones(t *testing.T) {
	if testing.Short() {
		t.Skip("embedded etcd")
	}
	e := newEnv(t)
	gs := openEtcd(t)
	put(t, gs, mesh("default"))
	g := e.startGlobal(gs, "")
	var zones []*zone
	for i := range 8 {
		name := fmt.Sprintf("z%d", i)
		zones = append(zones, e.startZone(name, newMemory(t), token(t, gs, name), []string{g.addr}))
	}
	rev := putBurst(t, gs, "default", 50, 0)
	waitApplied(t, rev, 20*time.Second, zones...)
	if n := gs.Watches(); n != 1 {
		t.Fatalf("%d etcd watches on global with %d zones, want 1", n, len(zones))
	}
	// A zone reconnecting (resume) does not open one either.
	zones[0].stop()
	rev = put(t, gs, meshTrace("default", "p-1", 99))
	zones[0] = e.startZone("z0", zones[0].store, token(t, gs, "z0"), []string{g.addr})
	waitApplied(t, rev, 10*time.Second, zones...)
	if n := gs.Watches(); n != 1 {
		t.Fatalf("%d etcd watches after a resume, want 1", n)
	}
}
