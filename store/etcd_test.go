package store_test

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/meshtrace/meshtrace/resource"

	"github.com/meshtrace/meshtrace/store"
	"github.com/meshtrace/meshtrace/store/storetest"
)

// openEmbedded starts an embedded etcd in a temp dir; fsync is off to keep the
// suite fast (durability is tested by TestEmbeddedReopen with the default).
func openEmbedded(t testing.TB, dir string, noFsync bool) *store.EtcdStore {
	t.Helper()
	s, err := store.OpenEmbedded(context.Background(), store.EmbeddedConfig{Dir: dir, UnsafeNoFsync: noFsync})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	return s
}

func TestEtcdConformance(t *testing.T) {
	storetest.Run(t, func(t *testing.T) store.Store {
		return openEmbedded(t, t.TempDir(), true)
	})
}

// sharedServer is one embedded etcd that tests open external stores on, each
// under its own prefix.
func sharedServer(t *testing.T) []string {
	t.Helper()
	return openEmbedded(t, t.TempDir(), true).Endpoints()
}

func openExternal(t *testing.T, eps []string, o store.Options) *store.EtcdStore {
	t.Helper()
	s, err := store.OpenExternal(context.Background(), store.ExternalConfig{Endpoints: eps, Options: o})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	return s
}

func TestExternalConformance(t *testing.T) {
	eps := sharedServer(t)
	storetest.Run(t, func(t *testing.T) store.Store {
		return openExternal(t, eps, store.Options{Prefix: "/" + t.Name() + "/"})
	})
}

func TestEmbeddedReopen(t *testing.T) {
	ctx := context.Background()
	dir := t.TempDir()
	s, err := store.OpenEmbedded(ctx, store.EmbeddedConfig{Dir: dir})
	if err != nil {
		t.Fatal(err)
	}
	r, _ := resource.New(resource.TypeMeshTrace, "default", "kept")
	r.Labels = map[string]string{"a": "b"}
	rev, err := s.Put(ctx, r, store.MustNotExist)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := s.PutValue(ctx, "cursor", []byte("7")); err != nil {
		t.Fatal(err)
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	if _, _, err := s.Get(ctx, r.Key()); !errors.Is(err, store.ErrClosed) {
		t.Fatalf("Get after Close: %v", err)
	}

	s2 := openEmbedded(t, dir, false)
	got, readRev, err := s2.Get(ctx, r.Key())
	if err != nil {
		t.Fatal(err)
	}
	if got.Version != rev || got.Labels["a"] != "b" || readRev < rev+1 {
		t.Fatalf("after reopen: %+v read at %d, want version %d", got.Meta, readRev, rev)
	}
	if v, err := s2.GetValue(ctx, "cursor"); err != nil || string(v) != "7" {
		t.Fatalf("value after reopen: %q %v", v, err)
	}
}

func TestEtcdWatchSharedAndOverflow(t *testing.T) {
	ctx := context.Background()
	eps := sharedServer(t)
	s := openExternal(t, eps, store.Options{WatchBuffer: 2})

	slow, err := s.Watch(ctx, store.WatchOptions{})
	if err != nil {
		t.Fatal(err)
	}
	fastCtx, cancelFast := context.WithCancel(ctx)
	fast, err := s.Watch(fastCtx, store.WatchOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if n := s.SharedWatches(); n != 1 {
		t.Fatalf("%d shared etcd watches for 2 subscribers of one prefix, want 1", n)
	}
	// The fast subscriber reads each change before the next is written; the
	// slow one never reads.
	const n = 10
	got := make(chan int)
	go func() {
		count := 0
		for resp := range fast {
			if resp.Err != nil {
				t.Errorf("fast subscriber got %v", resp.Err)
			}
			count += len(resp.Events)
			got <- count
		}
	}()
	for i := range n {
		r, _ := resource.New(resource.TypeZone, "", fmt.Sprintf("z%d", i))
		if _, err := s.Put(ctx, r, store.AnyVersion); err != nil {
			t.Fatal(err)
		}
		select {
		case c := <-got:
			if c != i+1 {
				t.Fatalf("fast subscriber has %d events after %d puts", c, i+1)
			}
		case <-time.After(10 * time.Second):
			t.Fatal("fast subscriber did not get the event")
		}
	}
	var last store.WatchResponse
	responses := 0
	for resp := range slow {
		last = resp
		responses++
	}
	if !errors.Is(last.Err, store.ErrWatchOverflow) || responses != 3 {
		t.Fatalf("slow subscriber: %d responses, last %+v; want 2 then ErrWatchOverflow", responses, last)
	}
	cancelFast()
	deadline := time.Now().Add(10 * time.Second)
	for s.SharedWatches() != 0 {
		if time.Now().After(deadline) {
			t.Fatal("shared watch still running with no subscribers")
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// Close ends every watch with ErrClosed, on an external store (over gRPC)
// and on an embedded one (in-process, whose server stops after them).
func TestEtcdCloseEndsWatches(t *testing.T) {
	eps := sharedServer(t)
	open := map[string]func() (*store.EtcdStore, error){
		"external": func() (*store.EtcdStore, error) {
			return store.OpenExternal(context.Background(), store.ExternalConfig{Endpoints: eps})
		},
		"embedded": func() (*store.EtcdStore, error) {
			return store.OpenEmbedded(context.Background(), store.EmbeddedConfig{Dir: t.TempDir(), UnsafeNoFsync: true})
		},
	}
	for name, open := range open {
		t.Run(name, func(t *testing.T) {
			s, err := open()
			if err != nil {
				t.Fatal(err)
			}
			live, _ := s.Watch(context.Background(), store.WatchOptions{})
			hist, _ := s.Watch(context.Background(), store.WatchOptions{FromRevision: 1})
			if err := s.Close(); err != nil {
				t.Fatal(err)
			}
			for _, ch := range []<-chan store.WatchResponse{live, hist} {
				var last store.WatchResponse
				for resp := range ch {
					last = resp
				}
				if !errors.Is(last.Err, store.ErrClosed) {
					t.Fatalf("last response after Close: %+v", last)
				}
			}
			if _, err := s.Watch(context.Background(), store.WatchOptions{}); !errors.Is(err, store.ErrClosed) {
				t.Fatalf("Watch after Close: %v", err)
			}
		})
	}
}

func TestEtcdMetrics(t *testing.T) {
	reg := prometheus.NewRegistry()
	eps := sharedServer(t)
	s := openExternal(t, eps, store.Options{Registerer: reg})
	// A second store on the same registerer shares the histogram.
	openExternal(t, eps, store.Options{Registerer: reg})
	r, _ := resource.New(resource.TypeZone, "", "z")
	if _, err := s.Put(context.Background(), r, store.AnyVersion); err != nil {
		t.Fatal(err)
	}
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, mf := range mfs {
		if mf.GetName() != "meshtrace_store_operation_duration_seconds" {
			continue
		}
		for _, m := range mf.GetMetric() {
			for _, l := range m.GetLabel() {
				if l.GetName() == "op" && l.GetValue() == "put" && m.GetHistogram().GetSampleCount() == 1 {
					return
				}
			}
		}
	}
	t.Fatal("no put sample in meshtrace_store_operation_duration_seconds")
}

func TestOpenExternalUnreachable(t *testing.T) {
	_, err := store.OpenExternal(context.Background(), store.ExternalConfig{
		Endpoints: []string{"http://127.0.0.1:1"}, DialTimeout: 300 * time.Millisecond})
	if err == nil {
		t.Fatal("OpenExternal succeeded against a closed port")
	}
}

func TestOpenFromConfig(t *testing.T) {
	eps := sharedServer(t)
	ctx := context.Background()
	if err := (store.Config{}).Validate(); err == nil {
		t.Fatal("empty config validated")
	}
	c := store.Config{External: store.ExternalStoreConfig{Endpoints: eps}}
	if err := c.Validate(); err != nil {
		t.Fatal(err)
	}
	s, err := store.Open(ctx, c, store.Options{Prefix: "/open/"})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	if _, err := s.Revision(ctx); err != nil {
		t.Fatal(err)
	}
	bad := store.Config{External: store.ExternalStoreConfig{Endpoints: []string{"127.0.0.1:2379"}}}
	if err := bad.Validate(); err == nil {
		t.Fatal("endpoint without scheme validated")
	}
}

// A private watch (from a revision) whose only subscriber overflows stops
// its etcd watch at once, instead of running on the whole prefix with PrevKV
// until the store closes.
func TestEtcdOverflowedPrivateWatchStops(t *testing.T) {
	ctx := context.Background()
	s := openExternal(t, sharedServer(t), store.Options{WatchBuffer: 2})
	rev, err := s.Revision(ctx)
	if err != nil {
		t.Fatal(err)
	}
	ch, err := s.Watch(ctx, store.WatchOptions{FromRevision: rev + 1}) // never read until it ends
	if err != nil {
		t.Fatal(err)
	}
	if n := s.Watches(); n != 1 {
		t.Fatalf("%d running watches, want 1", n)
	}
	// etcd may pack several events into one watch response, so the number of
	// writes that overflows a buffer of 2 responses is not fixed: keep writing
	// (bounded) until the hub has stopped its etcd watch, then check why.
	deadline := time.Now().Add(10 * time.Second)
	for i := 0; s.Watches() != 0; i++ {
		if time.Now().After(deadline) {
			t.Fatalf("%d etcd watches still running after %d writes to a subscriber that never reads", s.Watches(), i)
		}
		r, _ := resource.New(resource.TypeZone, "", fmt.Sprintf("z%d", i))
		if _, err := s.Put(ctx, r, store.AnyVersion); err != nil {
			t.Fatal(err)
		}
	}
	var last store.WatchResponse
	for resp := range ch { // closed: the hub stopped
		last = resp
	}
	if !errors.Is(last.Err, store.ErrWatchOverflow) {
		t.Fatalf("want ErrWatchOverflow, got %+v", last)
	}
}

// Concurrent single writes share etcd transactions (group commit): 64
// writers released at once land in fewer revisions than writes, each with
// its own acknowledged revision holding its own value.
func TestEtcdGroupCommit(t *testing.T) {
	s := openEmbedded(t, t.TempDir(), false)
	ctx := context.Background()
	m, _ := resource.New(resource.TypeMesh, "", "group")
	if _, err := s.Put(ctx, m, store.MustNotExist); err != nil {
		t.Fatal(err)
	}
	const writers = 64
	revs := make([]int64, writers)
	start := make(chan struct{})
	var wg sync.WaitGroup
	for w := range writers {
		wg.Go(func() {
			<-start
			r, _ := resource.New(resource.TypeMeshTrace, "group", fmt.Sprintf("t-%d", w))
			res, err := s.PutBatch(ctx, []*resource.Resource{r}, store.BatchOptions{RequireMesh: true})
			if err != nil {
				t.Error(err)
				return
			}
			revs[w] = res[0].Revision
		})
	}
	close(start)
	wg.Wait()
	distinct := map[int64]bool{}
	for w, rev := range revs {
		got, _, err := s.Get(ctx, resource.Key{Type: resource.TypeMeshTrace, Mesh: "group", Name: fmt.Sprintf("t-%d", w)})
		if err != nil || got.Version != rev {
			t.Fatalf("t-%d acknowledged at %d, stored: %v, %v", w, rev, got, err)
		}
		distinct[rev] = true
	}
	if len(distinct) >= writers {
		t.Fatalf("%d writes in %d transactions: none shared", writers, len(distinct))
	}
	t.Logf("%d concurrent writes in %d transactions", writers, len(distinct))
}

// Writers sharing transactions check their Meshes once per transaction:
// each still gets its own answer. Writers in a mesh that does not exist
// fail with ErrNoMesh (and fail the shared transaction, so the others retry
// alone); the others land, each at its acknowledged revision.
func TestEtcdGroupCommitMeshChecks(t *testing.T) {
	s := openEmbedded(t, t.TempDir(), false)
	ctx := context.Background()
	for _, name := range []string{"group-a", "group-b"} {
		m, _ := resource.New(resource.TypeMesh, "", name)
		if _, err := s.Put(ctx, m, store.MustNotExist); err != nil {
			t.Fatal(err)
		}
	}
	meshes := []string{"group-a", "group-b", "group-a", "group-none"}
	const writers = 64
	revs := make([]int64, writers)
	errs := make([]error, writers)
	start := make(chan struct{})
	var wg sync.WaitGroup
	for w := range writers {
		wg.Go(func() {
			<-start
			r, _ := resource.New(resource.TypeMeshTrace, meshes[w%len(meshes)], fmt.Sprintf("t-%d", w))
			res, err := s.PutBatch(ctx, []*resource.Resource{r}, store.BatchOptions{RequireMesh: true})
			errs[w] = err
			if err == nil {
				revs[w] = res[0].Revision
			}
		})
	}
	close(start)
	wg.Wait()
	distinct := map[int64]bool{}
	for w := range writers {
		mesh := meshes[w%len(meshes)]
		key := resource.Key{Type: resource.TypeMeshTrace, Mesh: mesh, Name: fmt.Sprintf("t-%d", w)}
		got, _, err := s.Get(ctx, key)
		if mesh == "group-none" {
			if !errors.Is(errs[w], store.ErrNoMesh) {
				t.Errorf("%s: want ErrNoMesh, got %v", key, errs[w])
			}
			if !errors.Is(err, store.ErrNotFound) {
				t.Errorf("%s stored: %v, %v", key, got, err)
			}
			continue
		}
		if errs[w] != nil {
			t.Errorf("%s: %v", key, errs[w])
			continue
		}
		if err != nil || got.Version != revs[w] {
			t.Errorf("%s acknowledged at %d, stored: %v, %v", key, revs[w], got, err)
		}
		distinct[revs[w]] = true
	}
	t.Logf("%d writes in existing meshes in %d transactions", writers*3/4, len(distinct))
}
