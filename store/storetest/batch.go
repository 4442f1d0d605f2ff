package storetest

import (
	"errors"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/meshtrace/meshtrace/resource"
	"github.com/meshtrace/meshtrace/store"
)

func mesh(name string) *resource.Resource {
	r, err := resource.New(resource.TypeMesh, "", name)
	if err != nil {
		panic(err)
	}
	return r
}

// stamp is a Prepare that keeps the creation time of what exists and records
// what it was shown.
type stamp struct {
	mu   sync.Mutex
	seen map[string]*resource.Resource
	now  time.Time
}

func newStamp() *stamp {
	return &stamp{seen: map[string]*resource.Resource{}, now: time.Date(2026, 11, 2, 0, 0, 0, 0, time.UTC)}
}

func (p *stamp) prepare(r, existing *resource.Resource) error {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.seen[r.Key().String()] = existing
	if existing != nil {
		r.CreationTime = existing.CreationTime
	} else {
		r.CreationTime = p.now
	}
	r.ModificationTime = p.now
	return nil
}

func testPutBatch(t *testing.T, s store.Store) {
	ctx := ctxT(t)
	p := newStamp()
	first := []*resource.Resource{trace("default", "a", nil), trace("default", "b", nil)}
	res, err := s.PutBatch(ctx, first, store.BatchOptions{Prepare: p.prepare})
	if err != nil {
		t.Fatal(err)
	}
	for i, r := range res {
		if !r.Created || r.Revision <= 0 || r.Err != nil || first[i].Version != r.Revision {
			t.Fatalf("create result %d: %+v (version %d)", i, r, first[i].Version)
		}
	}
	if p.seen["MeshTrace/default/a"] != nil {
		t.Fatalf("Prepare was shown %v for a new resource", p.seen["MeshTrace/default/a"])
	}
	created := p.now
	p.now = p.now.Add(time.Hour)
	second := []*resource.Resource{trace("default", "a", map[string]string{"v": "2"}), trace("default", "c", nil)}
	res, err = s.PutBatch(ctx, second, store.BatchOptions{Prepare: p.prepare})
	if err != nil {
		t.Fatal(err)
	}
	if res[0].Created || !res[1].Created || res[0].Revision != res[1].Revision {
		t.Fatalf("update+create results: %+v", res)
	}
	ex := p.seen["MeshTrace/default/a"]
	if ex == nil || ex.Version != first[0].Version || !ex.CreationTime.Equal(created) {
		t.Fatalf("Prepare was shown %+v, want version %d created %s", ex, first[0].Version, created)
	}
	got, _, err := s.Get(ctx, second[0].Key())
	if err != nil {
		t.Fatal(err)
	}
	if got.Labels["v"] != "2" || !got.CreationTime.Equal(created) || !got.ModificationTime.Equal(p.now) || got.Version != res[0].Revision {
		t.Fatalf("stored %+v", got.Meta)
	}
	// A key twice is refused before anything is written.
	if _, err := s.PutBatch(ctx, []*resource.Resource{trace("default", "d", nil), trace("default", "d", nil)}, store.BatchOptions{}); err == nil {
		t.Fatal("a key twice in one batch was accepted")
	}
	if _, _, err := s.Get(ctx, resource.Key{Type: resource.TypeMeshTrace, Mesh: "default", Name: "d"}); !errors.Is(err, store.ErrNotFound) {
		t.Fatalf("refused batch wrote something: %v", err)
	}
}

func testPutBatchMesh(t *testing.T, s store.Store) {
	ctx := ctxT(t)
	opts := store.BatchOptions{RequireMesh: true}
	res, err := s.PutBatch(ctx, []*resource.Resource{trace("m1", "a", nil)}, opts)
	if !errors.Is(err, store.ErrNoMesh) || !errors.Is(res[0].Err, store.ErrNoMesh) || res[0].Revision != 0 {
		t.Fatalf("policy in a missing mesh: %v %+v", err, res)
	}
	if _, _, err := s.Get(ctx, resource.Key{Type: resource.TypeMeshTrace, Mesh: "m1", Name: "a"}); !errors.Is(err, store.ErrNotFound) {
		t.Fatalf("written anyway: %v", err)
	}
	// The mesh written by the same batch counts.
	if _, err := s.PutBatch(ctx, []*resource.Resource{mesh("m1"), trace("m1", "a", nil)}, opts); err != nil {
		t.Fatal(err)
	}
	if _, err := s.PutBatch(ctx, []*resource.Resource{trace("m1", "b", nil)}, opts); err != nil {
		t.Fatal(err)
	}
	// Without RequireMesh nothing is checked.
	if _, err := s.PutBatch(ctx, []*resource.Resource{trace("m2", "a", nil)}, store.BatchOptions{}); err != nil {
		t.Fatal(err)
	}
}

// A refusal in the middle of a long batch: earlier transactions landed whole,
// the failing one not at all, later ones were not attempted.
func testPutBatchAtomicChunks(t *testing.T, s store.Store) {
	ctx := ctxT(t)
	if _, err := s.Put(ctx, mesh("default"), store.AnyVersion); err != nil {
		t.Fatal(err)
	}
	const n, bad = 400, 300
	rs := make([]*resource.Resource, n)
	for i := range rs {
		rs[i] = trace("default", fmt.Sprintf("p-%03d", i), nil)
	}
	refuse := errors.New("refused")
	res, err := s.PutBatch(ctx, rs, store.BatchOptions{RequireMesh: true, Prepare: func(r, _ *resource.Resource) error {
		if r.Name == fmt.Sprintf("p-%03d", bad) {
			return refuse
		}
		return nil
	}})
	if !errors.Is(err, refuse) {
		t.Fatalf("err = %v, want the refusal", err)
	}
	if !errors.Is(res[bad].Err, refuse) {
		t.Fatalf("result %d: %+v", bad, res[bad])
	}
	revs := map[int64]int{}
	written := 0
	for i, r := range res {
		_, _, gerr := s.Get(ctx, rs[i].Key())
		switch {
		case r.Err == nil:
			if r.Revision <= 0 || gerr != nil {
				t.Fatalf("%d reported written at %d, get: %v", i, r.Revision, gerr)
			}
			revs[r.Revision]++
			written++
		case i < bad && !errors.Is(r.Err, store.ErrAborted), i > bad && !errors.Is(r.Err, store.ErrNotAttempted) && !errors.Is(r.Err, store.ErrAborted):
			t.Fatalf("%d: %v", i, r.Err)
		default:
			if !errors.Is(gerr, store.ErrNotFound) {
				t.Fatalf("%d failed (%v) but is stored", i, r.Err)
			}
		}
	}
	if written == 0 || written >= bad {
		t.Fatalf("%d written before the refusal at %d", written, bad)
	}
	for rev, c := range revs {
		if c > store.MaxTxnOps {
			t.Fatalf("%d resources in the transaction at %d (max %d)", c, rev, store.MaxTxnOps)
		}
	}
}

// Another writer changed a resource after this store last saw it: the batch
// still writes it, showing Prepare the current version.
func testPutBatchStaleVersion(t *testing.T, s store.Store) {
	ctx := ctxT(t)
	p := newStamp()
	r := trace("default", "a", nil)
	if _, err := s.PutBatch(ctx, []*resource.Resource{r}, store.BatchOptions{Prepare: p.prepare}); err != nil {
		t.Fatal(err)
	}
	other := trace("default", "a", map[string]string{"by": "other"})
	v2 := mustPut(t, s, other, r.Version)
	again := trace("default", "a", map[string]string{"by": "batch"})
	res, err := s.PutBatch(ctx, []*resource.Resource{again}, store.BatchOptions{Prepare: p.prepare})
	if err != nil {
		t.Fatal(err)
	}
	if res[0].Created || res[0].Revision <= v2 || p.seen["MeshTrace/default/a"].Version != v2 {
		t.Fatalf("result %+v, Prepare shown %+v, want version %d", res[0], p.seen["MeshTrace/default/a"], v2)
	}
	// Deleted behind its back: created again.
	mustDelete(t, s, again.Key())
	res, err = s.PutBatch(ctx, []*resource.Resource{trace("default", "a", nil)}, store.BatchOptions{Prepare: p.prepare})
	if err != nil || !res[0].Created {
		t.Fatalf("after delete: %+v %v", res, err)
	}
}

func testPutBatchDryRun(t *testing.T, s store.Store) {
	ctx := ctxT(t)
	if _, err := s.Put(ctx, mesh("default"), store.AnyVersion); err != nil {
		t.Fatal(err)
	}
	existing := trace("default", "old", nil)
	mustPut(t, s, existing, store.MustNotExist)
	rev, _ := s.Revision(ctx)
	rs := []*resource.Resource{trace("default", "old", nil), trace("default", "new", nil), mesh("m9"), trace("m9", "x", nil), trace("nomesh", "y", nil)}
	res, err := s.PutBatch(ctx, rs, store.BatchOptions{RequireMesh: true, DryRun: true})
	if !errors.Is(err, store.ErrNoMesh) {
		t.Fatalf("err = %v, want ErrNoMesh for the policy in a missing mesh", err)
	}
	want := []struct {
		created bool
		noMesh  bool
	}{{false, false}, {true, false}, {true, false}, {true, false}, {true, true}}
	for i, w := range want {
		if res[i].Created != w.created || errors.Is(res[i].Err, store.ErrNoMesh) != w.noMesh || (!w.noMesh && res[i].Err != nil) || res[i].Revision != 0 {
			t.Fatalf("dry-run result %d: %+v", i, res[i])
		}
	}
	if after, _ := s.Revision(ctx); after != rev {
		t.Fatalf("a dry run moved the revision from %d to %d", rev, after)
	}
}

// Writers racing on the same resources all succeed (the batch retries with
// the current version) and the last write is what is stored.
func testPutBatchConcurrent(t *testing.T, s store.Store) {
	ctx := ctxT(t)
	var wg sync.WaitGroup
	errs := make(chan error, 8*10)
	for w := range 8 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range 10 {
				r := trace("default", "shared", map[string]string{"w": fmt.Sprint(w), "i": fmt.Sprint(i)})
				if _, err := s.PutBatch(ctx, []*resource.Resource{r}, store.BatchOptions{}); err != nil {
					errs <- err
				}
			}
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		if !errors.Is(err, store.ErrConflict) {
			t.Fatalf("concurrent batch: %v", err)
		}
	}
}

// Many single-resource writes at once (what concurrent API PUTs do; the etcd
// store may send them in one transaction) each keep their own outcome: a
// write whose Mesh is missing or whose Prepare refuses fails alone and is not
// stored, the others land, and writers racing on one key all land in turn.
func testPutBatchConcurrentSingles(t *testing.T, s store.Store) {
	ctx := ctxT(t)
	mustPut(t, s, mesh("singles"), store.MustNotExist)
	refuse := errors.New("refused by Prepare")
	const writers = 48
	type outcome struct {
		res []store.BatchResult
		err error
	}
	out := make([]outcome, writers)
	start := make(chan struct{})
	var wg sync.WaitGroup
	for w := range writers {
		wg.Go(func() {
			<-start
			var r *resource.Resource
			opts := store.BatchOptions{RequireMesh: true}
			switch w % 4 {
			case 0, 1:
				r = trace("singles", fmt.Sprintf("ok-%d", w), nil)
			case 2:
				r = trace("no-such-mesh", fmt.Sprintf("nomesh-%d", w), nil)
			case 3:
				if w%8 == 3 {
					r = trace("singles", fmt.Sprintf("refused-%d", w), nil)
					opts.Prepare = func(*resource.Resource, *resource.Resource) error { return refuse }
				} else {
					r = trace("singles", "raced", map[string]string{"w": fmt.Sprint(w)})
				}
			}
			res, err := s.PutBatch(ctx, []*resource.Resource{r}, opts)
			out[w] = outcome{res, err}
		})
	}
	close(start)
	wg.Wait()
	var lastRaced int64
	for w, o := range out {
		switch {
		case w%4 < 2 || (w%4 == 3 && w%8 != 3):
			if o.err != nil || len(o.res) != 1 || o.res[0].Revision == 0 {
				t.Fatalf("writer %d: %+v, %v", w, o.res, o.err)
			}
			if w%4 == 3 {
				lastRaced = max(lastRaced, o.res[0].Revision)
			}
		case w%4 == 2:
			if !errors.Is(o.err, store.ErrNoMesh) || o.res[0].Revision != 0 {
				t.Fatalf("writer %d (missing mesh): %+v, %v", w, o.res, o.err)
			}
		default:
			if !errors.Is(o.err, refuse) || o.res[0].Revision != 0 {
				t.Fatalf("writer %d (refused): %+v, %v", w, o.res, o.err)
			}
		}
	}
	list, err := s.List(ctx, resource.TypeMeshTrace, store.ListOptions{})
	if err != nil {
		t.Fatal(err)
	}
	got := map[string]bool{}
	for _, r := range list.Items {
		got[r.Mesh+"/"+r.Name] = true
	}
	for w := range writers {
		switch {
		case w%4 < 2:
			if !got[fmt.Sprintf("singles/ok-%d", w)] {
				t.Errorf("ok-%d acknowledged but not stored", w)
			}
		case w%4 == 2:
			if got[fmt.Sprintf("no-such-mesh/nomesh-%d", w)] {
				t.Errorf("nomesh-%d stored", w)
			}
		case w%8 == 3:
			if got[fmt.Sprintf("singles/refused-%d", w)] {
				t.Errorf("refused-%d stored", w)
			}
		}
	}
	raced, _, err := s.Get(ctx, resource.Key{Type: resource.TypeMeshTrace, Mesh: "singles", Name: "raced"})
	if err != nil {
		t.Fatal(err)
	}
	if raced.Version != lastRaced {
		t.Fatalf("raced key is at version %d, the last acknowledged write was %d", raced.Version, lastRaced)
	}
}

// rawPutter is implemented by stores that can plant a value under a
// resource's key as it is (MemoryStore.PutRaw; EtcdStore in its tests).
type rawPutter interface {
	PutRaw(k resource.Key, value []byte) int64
}

// A corrupt current value (not JSON, or an envelope naming another resource)
// never blocks a write to its key: PutBatch overwrites it as an existing
// value at its revision (Prepare sees only its key and version), a dry run
// says the same, and Delete removes it under the revision Get reports in its
// CorruptError (a stale revision conflicts, as for any value).
func testOverwriteCorrupt(t *testing.T, s store.Store) {
	raw, ok := s.(rawPutter)
	if !ok {
		t.Skip("the store cannot plant raw values")
	}
	ctx := ctxT(t)
	notJSON := trace("default", "not-json", nil)
	other := trace("default", "other", nil)
	// other was written through the batch first, so the store's hint of its
	// version is stale once the corrupt value replaces it.
	if _, err := s.PutBatch(ctx, []*resource.Resource{other}, store.BatchOptions{}); err != nil {
		t.Fatal(err)
	}
	revs := map[string]int64{
		"not-json": raw.PutRaw(notJSON.Key(), []byte("not json")),
		"other":    raw.PutRaw(other.Key(), []byte(`{"meta":{"type":"MeshTrace","mesh":"default","name":"live"},"spec":{}}`)),
	}
	batch := func() []*resource.Resource {
		return []*resource.Resource{trace("default", "not-json", nil), trace("default", "other", nil)}
	}
	for _, dry := range []bool{true, false} {
		p := newStamp()
		rs := batch()
		res, err := s.PutBatch(ctx, rs, store.BatchOptions{Prepare: p.prepare, DryRun: dry})
		if err != nil {
			t.Fatalf("PutBatch over corrupt values (dry run %v): %v", dry, err)
		}
		for i, r := range res {
			name := rs[i].Name
			if r.Err != nil || r.Created {
				t.Fatalf("%s (dry run %v): want an update, got %+v", name, dry, r)
			}
			ex := p.seen[rs[i].Key().String()]
			if ex == nil || ex.Key() != rs[i].Key() || ex.Version != revs[name] || len(ex.Labels) != 0 {
				t.Fatalf("%s (dry run %v): Prepare saw %+v, want its key at version %d", name, dry, ex, revs[name])
			}
		}
	}
	for _, n := range []string{"not-json", "other"} {
		got, _, err := s.Get(ctx, resource.Key{Type: resource.TypeMeshTrace, Mesh: "default", Name: n})
		if err != nil || got.Name != n {
			t.Fatalf("Get %s after overwriting its corrupt value: %+v, %v", n, got, err)
		}
	}
	if _, _, err := s.Get(ctx, resource.Key{Type: resource.TypeMeshTrace, Mesh: "default", Name: "live"}); !errors.Is(err, store.ErrNotFound) {
		t.Fatalf("the resource a mismatching value named was written: %v", err)
	}

	// Delete: Get reports the corrupt value's revision; a stale one conflicts.
	k := notJSON.Key()
	rev := raw.PutRaw(k, []byte("{"))
	_, _, err := s.Get(ctx, k)
	var ce *store.CorruptError
	if !errors.As(err, &ce) || !errors.Is(err, store.ErrCorrupt) || ce.Revision != rev {
		t.Fatalf("Get of a corrupt value: want a CorruptError at revision %d, got %v", rev, err)
	}
	if _, err := s.Delete(ctx, k, rev-1); !errors.Is(err, store.ErrConflict) {
		t.Fatalf("Delete of a corrupt value at a stale version: want ErrConflict, got %v", err)
	}
	if _, err := s.Delete(ctx, k, ce.Revision); err != nil {
		t.Fatalf("Delete of a corrupt value: %v", err)
	}
	if _, _, err := s.Get(ctx, k); !errors.Is(err, store.ErrNotFound) {
		t.Fatalf("after Delete: want ErrNotFound, got %v", err)
	}
}
