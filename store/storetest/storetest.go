// Package storetest is the conformance suite every store.Store must pass.
package storetest

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/meshtrace/meshtrace/resource"
	"github.com/meshtrace/meshtrace/store"
)

// Compactor is implemented by stores whose history can be compacted.
type Compactor interface {
	Compact(ctx context.Context, rev int64) error
}

// Run runs the suite; newStore returns an empty store (cleaned up by the caller,
// e.g. with t.Cleanup).
func Run(t *testing.T, newStore func(t *testing.T) store.Store) {
	tests := []struct {
		name string
		fn   func(t *testing.T, s store.Store)
	}{
		{"CRUD", testCRUD},
		{"VersionConflict", testVersionConflict},
		{"MustNotExist", testMustNotExist},
		{"NotFound", testNotFound},
		{"ConcurrentUpdates", testConcurrentUpdates},
		{"ListPagination", testListPagination},
		{"ListFilters", testListFilters},
		{"ListAtRevision", testListAtRevision},
		{"ListKeysOnly", testListKeysOnly},
		{"Revisions", testRevisions},
		{"WatchLive", testWatchLive},
		{"WatchFromRevision", testWatchFromRevision},
		{"WatchDelete", testWatchDelete},
		{"WatchTypes", testWatchTypes},
		{"WatchCancel", testWatchCancel},
		{"WatchValuesMatchReads", testWatchValuesMatchReads},
		{"Compaction", testCompaction},
		{"TxnLarge", testTxnLarge},
		{"SizeCap", testSizeCap},
		{"Values", testValues},
		{"TxnValue", testTxnValue},
		{"CreateValueRace", testCreateValueRace},
		{"PutBatch", testPutBatch},
		{"PutBatchMesh", testPutBatchMesh},
		{"PutBatchAtomicChunks", testPutBatchAtomicChunks},
		{"PutBatchStaleVersion", testPutBatchStaleVersion},
		{"PutBatchDryRun", testPutBatchDryRun},
		{"PutBatchConcurrent", testPutBatchConcurrent},
		{"PutBatchConcurrentSingles", testPutBatchConcurrentSingles},
		{"OverwriteCorrupt", testOverwriteCorrupt},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			tc.fn(t, newStore(t))
		})
	}
}

func ctxT(t *testing.T) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	t.Cleanup(cancel)
	return ctx
}

// trace returns a MeshTrace resource with a recognizable spec.
func trace(mesh, name string, labels map[string]string) *resource.Resource {
	r, err := resource.New(resource.TypeMeshTrace, mesh, name)
	if err != nil {
		panic(err)
	}
	r.Labels = labels
	r.CreationTime = time.Date(2026, 11, 1, 12, 0, 0, 0, time.UTC)
	r.ModificationTime = r.CreationTime
	return r
}

func zone(name string, enabled bool) *resource.Resource {
	r, err := resource.New(resource.TypeZone, "", name)
	if err != nil {
		panic(err)
	}
	r.Spec.(*resource.ZoneSpec).Enabled = &enabled
	return r
}

func mustPut(t *testing.T, s store.Store, r *resource.Resource, expect int64) int64 {
	t.Helper()
	rev, err := s.Put(ctxT(t), r, expect)
	if err != nil {
		t.Fatalf("Put %s: %v", r.Key(), err)
	}
	return rev
}

func testCRUD(t *testing.T, s store.Store) {
	ctx := ctxT(t)
	z := zone("east", false)
	rev, err := s.Put(ctx, z, store.AnyVersion)
	if err != nil {
		t.Fatal(err)
	}
	if rev <= 0 || z.Version != rev {
		t.Fatalf("Put returned rev %d, set Version %d", rev, z.Version)
	}
	got, readRev, err := s.Get(ctx, z.Key())
	if err != nil {
		t.Fatal(err)
	}
	if readRev < rev || got.Version != rev || got.Name != "east" || got.Type != resource.TypeZone {
		t.Fatalf("Get = %+v at %d, want version %d", got.Meta, readRev, rev)
	}
	if e := got.Spec.(*resource.ZoneSpec).Enabled; e == nil || *e {
		t.Fatalf("spec not round-tripped: %+v", got.Spec)
	}

	tr := trace("default", "t1", map[string]string{"team": "a"})
	mustPut(t, s, tr, store.MustNotExist)
	got, _, err = s.Get(ctx, tr.Key())
	if err != nil {
		t.Fatal(err)
	}
	if got.Mesh != "default" || got.Labels["team"] != "a" || !got.CreationTime.Equal(tr.CreationTime) {
		t.Fatalf("meta not round-tripped: %+v", got.Meta)
	}
	if _, ok := got.Spec.(*resource.MeshTraceSpec); !ok {
		t.Fatalf("spec type %T", got.Spec)
	}

	// Update at the read version.
	got.Labels = map[string]string{"team": "b"}
	rev2, err := s.Put(ctx, got, got.Version)
	if err != nil {
		t.Fatal(err)
	}
	if rev2 <= tr.Version || got.Version != rev2 {
		t.Fatalf("update rev %d, version %d, previous %d", rev2, got.Version, tr.Version)
	}
	again, _, _ := s.Get(ctx, tr.Key())
	if again.Labels["team"] != "b" || again.Version != rev2 {
		t.Fatalf("after update: %+v", again.Meta)
	}

	drev, err := s.Delete(ctx, tr.Key(), rev2)
	if err != nil {
		t.Fatal(err)
	}
	if drev <= rev2 {
		t.Fatalf("delete rev %d <= %d", drev, rev2)
	}
	if _, _, err := s.Get(ctx, tr.Key()); !errors.Is(err, store.ErrNotFound) {
		t.Fatalf("Get after delete: %v", err)
	}
	if _, err := s.Delete(ctx, z.Key(), store.AnyVersion); err != nil {
		t.Fatal(err)
	}
}

func testVersionConflict(t *testing.T, s store.Store) {
	ctx := ctxT(t)
	r := trace("default", "t", map[string]string{"v": "1"})
	v1 := mustPut(t, s, r, store.MustNotExist)
	r.Labels = map[string]string{"v": "2"}
	v2 := mustPut(t, s, r, v1)

	stale := trace("default", "t", map[string]string{"v": "stale"})
	if _, err := s.Put(ctx, stale, v1); !errors.Is(err, store.ErrConflict) {
		t.Fatalf("stale Put: %v, want ErrConflict", err)
	}
	if stale.Version != 0 {
		t.Fatalf("failed Put set Version %d", stale.Version)
	}
	got, _, _ := s.Get(ctx, r.Key())
	if got.Labels["v"] != "2" || got.Version != v2 {
		t.Fatalf("stale write overwrote: %+v", got.Meta)
	}
	if _, err := s.Delete(ctx, r.Key(), v1); !errors.Is(err, store.ErrConflict) {
		t.Fatalf("stale Delete: %v, want ErrConflict", err)
	}
	if _, _, err := s.Get(ctx, r.Key()); err != nil {
		t.Fatalf("stale delete removed the resource: %v", err)
	}
	// Delete then recreate: an old version must not match the new incarnation.
	mustDelete(t, s, r.Key())
	mustPut(t, s, trace("default", "t", nil), store.MustNotExist)
	if _, err := s.Put(ctx, trace("default", "t", nil), v2); !errors.Is(err, store.ErrConflict) {
		t.Fatalf("Put with version of a deleted incarnation: %v", err)
	}
}

func mustDelete(t *testing.T, s store.Store, k resource.Key) int64 {
	t.Helper()
	rev, err := s.Delete(ctxT(t), k, store.AnyVersion)
	if err != nil {
		t.Fatalf("Delete %s: %v", k, err)
	}
	return rev
}

func testMustNotExist(t *testing.T, s store.Store) {
	ctx := ctxT(t)
	r := zone("z", true)
	mustPut(t, s, r, store.MustNotExist)
	_, err := s.Put(ctx, zone("z", false), store.MustNotExist)
	if !errors.Is(err, store.ErrAlreadyExists) {
		t.Fatalf("second create: %v", err)
	}
	if !strings.Contains(err.Error(), "z") {
		t.Fatalf("error does not name the key: %v", err)
	}
	got, _, _ := s.Get(ctx, r.Key())
	if !*got.Spec.(*resource.ZoneSpec).Enabled {
		t.Fatal("create overwrote an existing resource")
	}
}

func testNotFound(t *testing.T, s store.Store) {
	ctx := ctxT(t)
	k := resource.Key{Type: resource.TypeMeshTrace, Mesh: "default", Name: "missing"}
	if _, _, err := s.Get(ctx, k); !errors.Is(err, store.ErrNotFound) {
		t.Fatalf("Get: %v", err)
	}
	if _, err := s.Delete(ctx, k, store.AnyVersion); !errors.Is(err, store.ErrNotFound) {
		t.Fatalf("Delete: %v", err)
	}
	if _, err := s.Delete(ctx, k, 5); !errors.Is(err, store.ErrNotFound) {
		t.Fatalf("Delete with version: %v", err)
	}
	if _, err := s.Put(ctx, trace("default", "missing", nil), 5); !errors.Is(err, store.ErrNotFound) {
		t.Fatalf("update of a missing resource: %v", err)
	}
}

func testConcurrentUpdates(t *testing.T, s store.Store) {
	ctx := ctxT(t)
	v := mustPut(t, s, trace("default", "hot", nil), store.MustNotExist)
	const n = 8
	var wg sync.WaitGroup
	errs := make([]error, n)
	for i := range n {
		wg.Add(1)
		go func() {
			defer wg.Done()
			_, errs[i] = s.Put(ctx, trace("default", "hot", map[string]string{"w": fmt.Sprint(i)}), v)
		}()
	}
	wg.Wait()
	wins := 0
	for i, err := range errs {
		switch {
		case err == nil:
			wins++
		case !errors.Is(err, store.ErrConflict):
			t.Errorf("writer %d: %v", i, err)
		}
	}
	if wins != 1 {
		t.Fatalf("%d writers won, want exactly 1", wins)
	}
}

func names(rs []*resource.Resource) string {
	var b []string
	for _, r := range rs {
		b = append(b, r.Mesh+"/"+r.Name)
	}
	return strings.Join(b, ",")
}

func testListPagination(t *testing.T, s store.Store) {
	ctx := ctxT(t)
	var ops []store.Op
	for _, mesh := range []string{"b", "a", "a-b"} {
		for _, name := range []string{"y", "x", "z"} {
			ops = append(ops, store.Op{Resource: trace(mesh, name, nil)})
		}
	}
	if _, err := s.Txn(ctx, ops); err != nil {
		t.Fatal(err)
	}
	all, err := s.List(ctx, resource.TypeMeshTrace, store.ListOptions{})
	if err != nil {
		t.Fatal(err)
	}
	want := "a/x,a/y,a/z,a-b/x,a-b/y,a-b/z,b/x,b/y,b/z"
	if got := names(all.Items); got != want || all.Total != 9 {
		t.Fatalf("List = %s (total %d), want %s", got, all.Total, want)
	}
	for _, it := range all.Items {
		if it.Version == 0 {
			t.Fatalf("%s listed without Version", it.Key())
		}
	}
	p, err := s.List(ctx, resource.TypeMeshTrace, store.ListOptions{Offset: 2, Limit: 3})
	if err != nil {
		t.Fatal(err)
	}
	if got := names(p.Items); got != "a/z,a-b/x,a-b/y" || p.Total != 9 {
		t.Fatalf("page = %s (total %d)", got, p.Total)
	}
	p, _ = s.List(ctx, resource.TypeMeshTrace, store.ListOptions{Offset: 8, Limit: 3})
	if got := names(p.Items); got != "b/z" || p.Total != 9 {
		t.Fatalf("last page = %s (total %d)", got, p.Total)
	}
	p, _ = s.List(ctx, resource.TypeMeshTrace, store.ListOptions{Offset: 20})
	if len(p.Items) != 0 || p.Total != 9 {
		t.Fatalf("past the end = %s (total %d)", names(p.Items), p.Total)
	}
	p, _ = s.List(ctx, resource.TypeDataplane, store.ListOptions{})
	if len(p.Items) != 0 || p.Total != 0 || p.Revision == 0 {
		t.Fatalf("empty type: %+v", p)
	}
}

func testListFilters(t *testing.T, s store.Store) {
	ctx := ctxT(t)
	mustPut(t, s, trace("m1", "a", map[string]string{"env": "prod", "team": "x"}), 0)
	mustPut(t, s, trace("m1", "b", map[string]string{"env": "dev"}), 0)
	mustPut(t, s, trace("m1-2", "c", map[string]string{"env": "prod"}), 0)
	mustPut(t, s, trace("m2", "d", map[string]string{"env": "prod", "team": "x"}), 0)
	mustPut(t, s, zone("m1", true), 0)

	cases := []struct {
		opts store.ListOptions
		want string
	}{
		{store.ListOptions{Mesh: "m1"}, "m1/a,m1/b"},
		{store.ListOptions{Labels: map[string]string{"env": "prod"}}, "m1/a,m1-2/c,m2/d"},
		{store.ListOptions{Labels: map[string]string{"env": "prod", "team": "x"}}, "m1/a,m2/d"},
		{store.ListOptions{Mesh: "m1", Labels: map[string]string{"env": "prod"}}, "m1/a"},
		{store.ListOptions{Labels: map[string]string{"env": "prod"}, Limit: 1, Offset: 1}, "m1-2/c"},
		{store.ListOptions{Mesh: "nope"}, ""},
	}
	for _, c := range cases {
		res, err := s.List(ctx, resource.TypeMeshTrace, c.opts)
		if err != nil {
			t.Fatal(err)
		}
		if got := names(res.Items); got != c.want {
			t.Errorf("List(%+v) = %s, want %s", c.opts, got, c.want)
		}
	}
	res, _ := s.List(ctx, resource.TypeMeshTrace, store.ListOptions{Labels: map[string]string{"env": "prod"}, Limit: 1})
	if res.Total != 3 {
		t.Errorf("filtered Total = %d, want 3", res.Total)
	}
	zs, _ := s.List(ctx, resource.TypeZone, store.ListOptions{})
	if names(zs.Items) != "/m1" {
		t.Errorf("zones = %s", names(zs.Items))
	}
}

func testListAtRevision(t *testing.T, s store.Store) {
	ctx := ctxT(t)
	mustPut(t, s, trace("m", "a", nil), 0)
	r1 := mustPut(t, s, trace("m", "b", nil), 0)
	mustDelete(t, s, resource.Key{Type: resource.TypeMeshTrace, Mesh: "m", Name: "a"})
	mustPut(t, s, trace("m", "c", nil), 0)

	old, err := s.List(ctx, resource.TypeMeshTrace, store.ListOptions{Revision: r1})
	if err != nil {
		t.Fatal(err)
	}
	if names(old.Items) != "m/a,m/b" || old.Revision != r1 {
		t.Fatalf("List at %d = %s at %d", r1, names(old.Items), old.Revision)
	}
	now, _ := s.List(ctx, resource.TypeMeshTrace, store.ListOptions{})
	if names(now.Items) != "m/b,m/c" || now.Revision <= r1 {
		t.Fatalf("List now = %s at %d", names(now.Items), now.Revision)
	}
}

// KeysOnly lists keys and versions (at a revision too), without values.
func testListKeysOnly(t *testing.T, s store.Store) {
	ctx := ctxT(t)
	ra := mustPut(t, s, trace("m", "a", map[string]string{"x": "1"}), 0)
	r1 := mustPut(t, s, trace("m", "b", nil), 0)
	mustDelete(t, s, resource.Key{Type: resource.TypeMeshTrace, Mesh: "m", Name: "a"})
	rc := mustPut(t, s, trace("m", "c", nil), 0)
	old, err := s.List(ctx, resource.TypeMeshTrace, store.ListOptions{Revision: r1, KeysOnly: true})
	if err != nil {
		t.Fatal(err)
	}
	if names(old.Items) != "m/a,m/b" || old.Items[0].Version != ra || old.Items[1].Version != r1 || old.Items[0].Spec != nil {
		t.Fatalf("KeysOnly at %d = %s %+v", r1, names(old.Items), old.Items[0])
	}
	now, err := s.List(ctx, resource.TypeMeshTrace, store.ListOptions{KeysOnly: true, Labels: map[string]string{"x": "1"}})
	if err != nil {
		t.Fatal(err)
	}
	if names(now.Items) != "m/b,m/c" || now.Items[1].Version != rc {
		t.Fatalf("KeysOnly now = %s", names(now.Items))
	}
}

func testRevisions(t *testing.T, s store.Store) {
	ctx := ctxT(t)
	last, err := s.Revision(ctx)
	if err != nil {
		t.Fatal(err)
	}
	check := func(what string, rev int64) {
		t.Helper()
		if rev <= last {
			t.Fatalf("%s returned revision %d, not after %d", what, rev, last)
		}
		last = rev
		cur, err := s.Revision(ctx)
		if err != nil || cur < rev {
			t.Fatalf("Revision() = %d, %v after write at %d", cur, err, rev)
		}
	}
	check("Put", mustPut(t, s, trace("m", "a", nil), 0))
	check("Put", mustPut(t, s, trace("m", "a", nil), 0))
	rev, err := s.Txn(ctx, []store.Op{{Resource: trace("m", "b", nil)}, {Resource: zone("z", true)}})
	if err != nil {
		t.Fatal(err)
	}
	check("Txn", rev)
	rev, err = s.PutValue(ctx, "cursor", []byte("1"))
	if err != nil {
		t.Fatal(err)
	}
	check("PutValue", rev)
	check("Delete", mustDelete(t, s, resource.Key{Type: resource.TypeZone, Name: "z"}))
	_, got, err := s.Get(ctx, resource.Key{Type: resource.TypeMeshTrace, Mesh: "m", Name: "b"})
	if err != nil || got < last {
		t.Fatalf("Get read at %d, %v; last write %d", got, err, last)
	}
	l, _ := s.List(ctx, resource.TypeMeshTrace, store.ListOptions{})
	if l.Revision < last {
		t.Fatalf("List read at %d; last write %d", l.Revision, last)
	}
}

// next reads one response or fails after a timeout.
func next(t *testing.T, ch <-chan store.WatchResponse) store.WatchResponse {
	t.Helper()
	select {
	case resp, ok := <-ch:
		if !ok {
			t.Fatal("watch channel closed")
		}
		return resp
	case <-time.After(10 * time.Second):
		t.Fatal("no watch response within 10s")
	}
	return store.WatchResponse{}
}

// collect reads events until n have arrived.
func collect(t *testing.T, ch <-chan store.WatchResponse, n int) []store.Event {
	t.Helper()
	var evs []store.Event
	for len(evs) < n {
		resp := next(t, ch)
		if resp.Err != nil {
			t.Fatalf("watch error: %v", resp.Err)
		}
		evs = append(evs, resp.Events...)
	}
	if len(evs) != n {
		t.Fatalf("got %d events, want %d: %+v", len(evs), n, evs)
	}
	return evs
}

func testWatchLive(t *testing.T, s store.Store) {
	ctx := ctxT(t)
	before := mustPut(t, s, trace("m", "before", nil), 0)
	ch, err := s.Watch(ctx, store.WatchOptions{})
	if err != nil {
		t.Fatal(err)
	}
	r1 := mustPut(t, s, trace("m", "a", nil), 0)
	r2 := mustPut(t, s, zone("z", true), 0)
	evs := collect(t, ch, 2)
	if evs[0].Type != store.EventPut || evs[0].Resource.Name != "a" || evs[0].Revision != r1 || evs[0].Resource.Version != r1 {
		t.Fatalf("event 0 = %+v", evs[0])
	}
	if evs[1].Resource.Type != resource.TypeZone || evs[1].Revision != r2 {
		t.Fatalf("event 1 = %+v", evs[1])
	}
	if evs[0].Revision <= before {
		t.Fatal("watch delivered a change from before it started")
	}
}

func testWatchFromRevision(t *testing.T, s store.Store) {
	ctx := ctxT(t)
	r1 := mustPut(t, s, trace("m", "a", nil), 0)
	r2 := mustPut(t, s, trace("m", "b", nil), 0)
	ch, err := s.Watch(ctx, store.WatchOptions{FromRevision: r1})
	if err != nil {
		t.Fatal(err)
	}
	r3 := mustPut(t, s, trace("m", "c", nil), 0)
	evs := collect(t, ch, 3)
	for i, want := range []int64{r1, r2, r3} {
		if evs[i].Revision != want {
			t.Fatalf("event %d at %d, want %d", i, evs[i].Revision, want)
		}
	}
	// Resume just after the last handled revision: nothing is replayed twice.
	ch2, err := s.Watch(ctx, store.WatchOptions{FromRevision: r2 + 1})
	if err != nil {
		t.Fatal(err)
	}
	evs = collect(t, ch2, 1)
	if evs[0].Resource.Name != "c" {
		t.Fatalf("resumed watch got %+v", evs[0])
	}
}

func testWatchDelete(t *testing.T, s store.Store) {
	ctx := ctxT(t)
	v := mustPut(t, s, trace("m", "gone", map[string]string{"k": "v"}), 0)
	ch, err := s.Watch(ctx, store.WatchOptions{Types: []resource.Type{resource.TypeMeshTrace}})
	if err != nil {
		t.Fatal(err)
	}
	drev := mustDelete(t, s, resource.Key{Type: resource.TypeMeshTrace, Mesh: "m", Name: "gone"})
	ev := collect(t, ch, 1)[0]
	if ev.Type != store.EventDelete || ev.Revision != drev {
		t.Fatalf("delete event = %+v", ev)
	}
	r := ev.Resource
	if r == nil || r.Type != resource.TypeMeshTrace || r.Mesh != "m" || r.Name != "gone" {
		t.Fatalf("delete event resource = %+v", r)
	}
	if r.Labels["k"] != "v" || r.Version != v {
		t.Fatalf("delete event lacks the last value: %+v", r.Meta)
	}
}

func testWatchTypes(t *testing.T, s store.Store) {
	ctx := ctxT(t)
	zch, err := s.Watch(ctx, store.WatchOptions{Types: []resource.Type{resource.TypeZone}})
	if err != nil {
		t.Fatal(err)
	}
	both, err := s.Watch(ctx, store.WatchOptions{Types: []resource.Type{resource.TypeZone, resource.TypeMesh}})
	if err != nil {
		t.Fatal(err)
	}
	mustPut(t, s, trace("m", "ignored", nil), 0)
	if _, err := s.PutValue(ctx, "ignored", []byte("x")); err != nil {
		t.Fatal(err)
	}
	mesh, _ := resource.New(resource.TypeMesh, "", "m")
	mustPut(t, s, mesh, 0)
	mustPut(t, s, zone("z", true), 0)
	if ev := collect(t, zch, 1)[0]; ev.Resource.Type != resource.TypeZone {
		t.Fatalf("zone watch got %+v", ev)
	}
	evs := collect(t, both, 2)
	if evs[0].Resource.Type != resource.TypeMesh || evs[1].Resource.Type != resource.TypeZone {
		t.Fatalf("two-type watch got %s then %s", evs[0].Resource.Type, evs[1].Resource.Type)
	}
}

func testWatchCancel(t *testing.T, s store.Store) {
	ctx, cancel := context.WithCancel(ctxT(t))
	ch, err := s.Watch(ctx, store.WatchOptions{})
	if err != nil {
		t.Fatal(err)
	}
	other, err := s.Watch(ctxT(t), store.WatchOptions{})
	if err != nil {
		t.Fatal(err)
	}
	cancel()
	deadline := time.After(10 * time.Second)
	for {
		select {
		case _, ok := <-ch:
			if ok {
				continue
			}
		case <-deadline:
			t.Fatal("channel not closed after ctx cancel")
		}
		break
	}
	// Other watchers keep working.
	mustPut(t, s, zone("after-cancel", true), 0)
	if ev := collect(t, other, 1)[0]; ev.Resource.Name != "after-cancel" {
		t.Fatalf("other watcher got %+v", ev)
	}
}

func testCompaction(t *testing.T, s store.Store) {
	c, ok := s.(Compactor)
	if !ok {
		t.Skip("store cannot compact")
	}
	ctx := ctxT(t)
	r1 := mustPut(t, s, trace("m", "a", nil), 0)
	mustPut(t, s, trace("m", "a", nil), 0)
	r3 := mustPut(t, s, trace("m", "b", nil), 0)
	if err := c.Compact(ctx, r3); err != nil {
		t.Fatal(err)
	}
	ch, err := s.Watch(ctx, store.WatchOptions{FromRevision: r1})
	if err != nil {
		t.Fatal(err)
	}
	resp := next(t, ch)
	var ce *store.CompactedError
	if !errors.As(resp.Err, &ce) || !errors.Is(resp.Err, store.ErrCompacted) {
		t.Fatalf("watch from compacted revision: %+v", resp)
	}
	if ce.CompactRevision != r3 || ce.Requested != r1 {
		t.Fatalf("CompactedError = %+v, want requested %d compact %d", ce, r1, r3)
	}
	select {
	case _, ok := <-ch:
		if ok {
			t.Fatal("channel open after compaction error")
		}
	case <-time.After(10 * time.Second):
		t.Fatal("channel not closed after compaction error")
	}
	_, err = s.List(ctx, resource.TypeMeshTrace, store.ListOptions{Revision: r1})
	if !errors.As(err, &ce) || !errors.Is(err, store.ErrCompacted) {
		t.Fatalf("List at compacted revision: %v", err)
	}
	// The compact revision itself is still readable and watchable.
	l, err := s.List(ctx, resource.TypeMeshTrace, store.ListOptions{Revision: r3})
	if err != nil || names(l.Items) != "m/a,m/b" {
		t.Fatalf("List at compact revision: %v %v", l, err)
	}
	ch, err = s.Watch(ctx, store.WatchOptions{FromRevision: r3})
	if err != nil {
		t.Fatal(err)
	}
	if ev := collect(t, ch, 1)[0]; ev.Resource.Name != "b" {
		t.Fatalf("watch from compact revision got %+v", ev)
	}
}

func testTxnLarge(t *testing.T, s store.Store) {
	ctx := ctxT(t)
	const n = 300
	ops := make([]store.Op, 0, n+1)
	for i := range n {
		ops = append(ops, store.Op{Resource: trace("m", fmt.Sprintf("t%03d", i), nil)})
	}
	// The same key twice: the later op wins.
	ops = append(ops, store.Op{Resource: trace("m", "t000", map[string]string{"second": "yes"})})
	rev, err := s.Txn(ctx, ops)
	if err != nil {
		t.Fatal(err)
	}
	l, err := s.List(ctx, resource.TypeMeshTrace, store.ListOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if l.Total != n || l.Revision < rev {
		t.Fatalf("after Txn: total %d at %d, want %d at >= %d", l.Total, l.Revision, n, rev)
	}
	if l.Items[0].Labels["second"] != "yes" {
		t.Fatalf("later op on the same key lost: %+v", l.Items[0].Meta)
	}
	var del []store.Op
	for i := 0; i < n; i += 2 {
		del = append(del, store.Op{Delete: true, Key: resource.Key{Type: resource.TypeMeshTrace, Mesh: "m", Name: fmt.Sprintf("t%03d", i)}})
	}
	drev, err := s.Txn(ctx, del)
	if err != nil || drev <= rev {
		t.Fatalf("delete Txn: %d, %v", drev, err)
	}
	l, _ = s.List(ctx, resource.TypeMeshTrace, store.ListOptions{})
	if l.Total != n/2 {
		t.Fatalf("after delete Txn: total %d, want %d", l.Total, n/2)
	}
}

func testSizeCap(t *testing.T, s store.Store) {
	ctx := ctxT(t)
	big := trace("m", "big", map[string]string{"blob": strings.Repeat("x", store.DefaultMaxValueBytes)})
	_, err := s.Put(ctx, big, store.AnyVersion)
	if !errors.Is(err, store.ErrTooLarge) || !strings.Contains(err.Error(), "big") {
		t.Fatalf("oversized Put: %v", err)
	}
	if _, err := s.Txn(ctx, []store.Op{{Resource: trace("m", "small", nil)}, {Resource: big}}); !errors.Is(err, store.ErrTooLarge) {
		t.Fatalf("oversized Txn: %v", err)
	}
	if _, _, err := s.Get(ctx, resource.Key{Type: resource.TypeMeshTrace, Mesh: "m", Name: "small"}); !errors.Is(err, store.ErrNotFound) {
		t.Fatalf("a rejected Txn wrote part of its ops: %v", err)
	}
	if _, err := s.PutValue(ctx, "big", make([]byte, store.DefaultMaxValueBytes+1)); !errors.Is(err, store.ErrTooLarge) {
		t.Fatalf("oversized PutValue: %v", err)
	}
	// Just under the cap fits.
	ok := trace("m", "fits", map[string]string{"blob": strings.Repeat("x", store.DefaultMaxValueBytes-1024)})
	mustPut(t, s, ok, store.AnyVersion)
}

func testValues(t *testing.T, s store.Store) {
	ctx := ctxT(t)
	if _, err := s.GetValue(ctx, "cursor/east"); !errors.Is(err, store.ErrNotFound) {
		t.Fatalf("unset value: %v", err)
	}
	if _, err := s.PutValue(ctx, "cursor/east", []byte("42")); err != nil {
		t.Fatal(err)
	}
	if _, err := s.PutValue(ctx, "cursor/east", []byte("43")); err != nil {
		t.Fatal(err)
	}
	v, err := s.GetValue(ctx, "cursor/east")
	if err != nil || string(v) != "43" {
		t.Fatalf("GetValue = %q, %v", v, err)
	}
	// Values are not resources.
	l, _ := s.List(ctx, resource.TypeZone, store.ListOptions{})
	if l.Total != 0 {
		t.Fatalf("values leaked into resources: %+v", l.Items)
	}
}

// testTxnValue: a value op in a Txn lands with the resource ops of its
// transaction or not at all, reads back with GetValue, and goes in the last
// transaction when the ops are split.
func testTxnValue(t *testing.T, s store.Store) {
	ctx := ctxT(t)
	key := func(name string) resource.Key {
		return resource.Key{Type: resource.TypeMeshTrace, Mesh: "m", Name: name}
	}
	gone := func(what string, names ...string) {
		t.Helper()
		if v, err := s.GetValue(ctx, "cursor/east"); !errors.Is(err, store.ErrNotFound) {
			t.Fatalf("%s: value written: %q, %v", what, v, err)
		}
		for _, n := range names {
			if _, _, err := s.Get(ctx, key(n)); !errors.Is(err, store.ErrNotFound) {
				t.Fatalf("%s: %s written: %v", what, n, err)
			}
		}
	}
	// Refused whole: an oversized resource, then an oversized value.
	big := trace("m", "big", map[string]string{"blob": strings.Repeat("x", store.DefaultMaxValueBytes)})
	_, err := s.Txn(ctx, []store.Op{{Resource: trace("m", "a", nil)}, {Resource: big}, {ValueKey: "cursor/east", Value: []byte("7")}})
	if !errors.Is(err, store.ErrTooLarge) {
		t.Fatalf("Txn with an oversized resource: %v", err)
	}
	gone("oversized resource", "a", "big")
	_, err = s.Txn(ctx, []store.Op{{Resource: trace("m", "a", nil)}, {ValueKey: "cursor/east", Value: make([]byte, store.DefaultMaxValueBytes+1)}})
	if !errors.Is(err, store.ErrTooLarge) || !strings.Contains(err.Error(), "cursor/east") {
		t.Fatalf("Txn with an oversized value: %v", err)
	}
	gone("oversized value", "a")

	// Lands whole: the resources at the revision returned, the value with them.
	a, b := trace("m", "a", nil), trace("m", "b", nil)
	rev, err := s.Txn(ctx, []store.Op{{Resource: a}, {Resource: b}, {ValueKey: "cursor/east", Value: []byte(`{"revision":7}`)}})
	if err != nil {
		t.Fatal(err)
	}
	if a.Version != rev || b.Version != rev {
		t.Fatalf("versions %d, %d, want the Txn's revision %d", a.Version, b.Version, rev)
	}
	if v, err := s.GetValue(ctx, "cursor/east"); err != nil || string(v) != `{"revision":7}` {
		t.Fatalf("GetValue after Txn = %q, %v", v, err)
	}
	if got, _, err := s.Get(ctx, key("a")); err != nil || got.Version != rev {
		t.Fatalf("Get after Txn: %+v, %v", got, err)
	}
	// A delete and a value: the value replaces the old one.
	if _, err := s.Txn(ctx, []store.Op{{Delete: true, Key: key("a")}, {ValueKey: "cursor/east", Value: []byte("8")}}); err != nil {
		t.Fatal(err)
	}
	if v, err := s.GetValue(ctx, "cursor/east"); err != nil || string(v) != "8" {
		t.Fatalf("GetValue after delete Txn = %q, %v", v, err)
	}
	// Values are not resources: no value shows in a List.
	if l, _ := s.List(ctx, resource.TypeMeshTrace, store.ListOptions{}); l.Total != 1 {
		t.Fatalf("after Txns: %d MeshTraces, want 1 (b)", l.Total)
	}

	// The value counts against the cap: MaxTxnOps-1 resources and a value
	// are one transaction, MaxTxnOps resources and a value two, the value
	// in the second (the revision Txn returns is after the resources').
	for _, n := range []int{store.MaxTxnOps - 1, store.MaxTxnOps} {
		var ops []store.Op
		var rs []*resource.Resource
		for i := range n {
			r := trace("m", fmt.Sprintf("s%03d", i), map[string]string{"n": fmt.Sprint(n)})
			rs = append(rs, r)
			ops = append(ops, store.Op{Resource: r})
		}
		want := fmt.Sprint("after ", n)
		ops = append(ops, store.Op{ValueKey: "cursor/east", Value: []byte(want)})
		rev, err := s.Txn(ctx, ops)
		if err != nil {
			t.Fatal(err)
		}
		first, last := rs[0].Version, rs[n-1].Version
		split := n == store.MaxTxnOps
		if first != last || (split && rev <= last) || (!split && rev != last) {
			t.Fatalf("%d resources and a value: resources at %d..%d, Txn returned %d (split: %v)", n, first, last, rev, split)
		}
		if v, err := s.GetValue(ctx, "cursor/east"); err != nil || string(v) != want {
			t.Fatalf("GetValue after %d resources = %q, %v", n, v, err)
		}
	}
}

// testCreateValueRace: writers racing to create one value all get the
// winner's, and an existing value is never replaced.
func testCreateValueRace(t *testing.T, s store.Store) {
	ctx := ctxT(t)
	const n = 8
	got := make([]string, n)
	errs := make([]error, n)
	var wg sync.WaitGroup
	for i := range n {
		wg.Add(1)
		go func() {
			defer wg.Done()
			var v []byte
			v, errs[i] = s.CreateValue(ctx, "signing-key", []byte(fmt.Sprint("key-", i)))
			got[i] = string(v)
		}()
	}
	wg.Wait()
	for i := range n {
		if errs[i] != nil {
			t.Fatalf("CreateValue %d: %v", i, errs[i])
		}
		if got[i] != got[0] {
			t.Fatalf("racing creators disagree: %q vs %q", got[i], got[0])
		}
	}
	stored, err := s.GetValue(ctx, "signing-key")
	if err != nil || string(stored) != got[0] {
		t.Fatalf("stored %q (%v), creators got %q", stored, err, got[0])
	}
	if v, err := s.CreateValue(ctx, "signing-key", []byte("later")); err != nil || string(v) != got[0] {
		t.Fatalf("CreateValue over an existing value: %q %v", v, err)
	}
	if _, err := s.CreateValue(ctx, "big", make([]byte, store.DefaultMaxValueBytes+1)); !errors.Is(err, store.ErrTooLarge) {
		t.Fatalf("oversized CreateValue: %v", err)
	}
}
