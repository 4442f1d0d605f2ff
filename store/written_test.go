package store_test

import (
	"context"
	"errors"
	"fmt"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/meshtrace/meshtrace/resource"
	"github.com/meshtrace/meshtrace/store"
)

// sampledTrace is a MeshTrace with a spec, labels and times, as the API and
// the KDS applier write them.
func sampledTrace(name string, percent int64) *resource.Resource {
	r := trace(0)
	r.Name = name
	r.Labels = map[string]string{"kuma.io/origin": "global"}
	r.CreationTime = time.Date(2026, 11, 30, 6, 0, 0, 123, time.UTC)
	r.ModificationTime = r.CreationTime
	r.Spec = &resource.MeshTraceSpec{
		TargetRef: &resource.TargetRef{Kind: resource.KindMesh},
		Default: &resource.MeshTraceConf{
			Sampling: &resource.Sampling{Overall: resource.Int(percent), Random: resource.Str("0.5")},
			Backends: &[]resource.Backend{{Type: resource.BackendZipkin, Zipkin: &resource.ZipkinBackend{URL: "http://zipkin:9411"}}},
		},
	}
	return r
}

// A store does not decode the watch events of its own writes: it hands
// out what it wrote (equal to what decoding gives, Version the event's
// revision). Values another client writes to the same etcd, even one
// equal to a value this store wrote before, are decoded. Writes that do
// not land (compare failed, missing mesh, cancelled) leave nothing behind.
func TestEtcdOwnWritesAreNotDecoded(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	s := openEmbedded(t, t.TempDir(), true)
	other := openExternal(t, s.Endpoints(), store.Options{})
	mesh, _ := resource.New(resource.TypeMesh, "", "default")
	if _, err := s.Put(ctx, mesh, store.MustNotExist); err != nil {
		t.Fatal(err)
	}
	start, err := s.Revision(ctx)
	if err != nil {
		t.Fatal(err)
	}
	live, err := s.Watch(ctx, store.WatchOptions{})
	if err != nil {
		t.Fatal(err)
	}
	from, err := s.Watch(ctx, store.WatchOptions{Types: []resource.Type{resource.TypeMeshTrace}, FromRevision: start + 1})
	if err != nil {
		t.Fatal(err)
	}
	decoded, reused := s.DecodedValues(), s.ReusedValues()

	own := 0
	a := sampledTrace("a", 10)
	if _, err := s.Put(ctx, a, store.MustNotExist); err != nil {
		t.Fatal(err)
	}
	own++
	var batch []*resource.Resource
	for i := range 5 {
		batch = append(batch, sampledTrace(fmt.Sprintf("b-%d", i), int64(i)))
	}
	if _, err := s.PutBatch(ctx, batch, store.BatchOptions{RequireMesh: true}); err != nil {
		t.Fatal(err)
	}
	own += len(batch)
	if _, err := s.Txn(ctx, []store.Op{{Resource: sampledTrace("c", 1)}, {Resource: sampledTrace("d", 2)}}); err != nil {
		t.Fatal(err)
	}
	own += 2

	// Writes that fail.
	if _, err := s.Put(ctx, sampledTrace("a", 99), store.MustNotExist); !errors.Is(err, store.ErrAlreadyExists) {
		t.Fatalf("create over a: %v", err)
	}
	if _, err := s.Put(ctx, sampledTrace("a", 98), a.Version-1); !errors.Is(err, store.ErrConflict) {
		t.Fatalf("stale update of a: %v", err)
	}
	lost := sampledTrace("lost", 1)
	lost.Mesh = "nowhere"
	if _, err := s.PutBatch(ctx, []*resource.Resource{lost, sampledTrace("aborted", 1)}, store.BatchOptions{RequireMesh: true}); !errors.Is(err, store.ErrNoMesh) {
		t.Fatalf("batch into a missing mesh: %v", err)
	}
	// A cancelled write may still land (etcd may have taken it): then its
	// event is decoded.
	gone, stop := context.WithCancel(ctx)
	stop()
	if _, err := s.Txn(gone, []store.Op{{Resource: sampledTrace("cancelled", 1)}}); err == nil {
		t.Fatal("a cancelled Txn succeeded")
	}
	cancelled := 0

	// Another client: a new value, then the value a holds now written
	// again (same bytes as this store's write, another revision), then an
	// update of a batch item this store then overwrites (its hint is
	// stale: its first transaction fails its compare and is retried).
	if _, err := other.Put(ctx, sampledTrace("e", 5), store.AnyVersion); err != nil {
		t.Fatal(err)
	}
	if _, err := other.Put(ctx, sampledTrace("a", 10), store.AnyVersion); err != nil {
		t.Fatal(err)
	}
	if _, err := other.Put(ctx, sampledTrace("b-0", 50), store.AnyVersion); err != nil {
		t.Fatal(err)
	}
	const others = 3
	if _, err := s.PutBatch(ctx, []*resource.Resource{sampledTrace("b-0", 60)}, store.BatchOptions{}); err != nil {
		t.Fatal(err)
	}
	own++
	last, err := s.Put(ctx, sampledTrace("last", 1), store.AnyVersion)
	if err != nil {
		t.Fatal(err)
	}
	own++

	for _, w := range []struct {
		name string
		ch   <-chan store.WatchResponse
	}{{"live", live}, {"from a revision", from}} {
		name, ch := w.name, w.ch
		n := 0
		for done := false; !done; {
			var resp store.WatchResponse
			select {
			case resp = <-ch:
			case <-ctx.Done():
				t.Fatalf("%s: %d events, none at %d", name, n, last)
			}
			if resp.Err != nil {
				t.Fatalf("%s: %v", name, resp.Err)
			}
			for _, ev := range resp.Events {
				n++
				if ev.Resource.Name == "cancelled" && name == "live" {
					cancelled++
				}
				done = done || ev.Revision == last
				l, err := s.List(ctx, resource.TypeMeshTrace, store.ListOptions{Revision: ev.Revision})
				if err != nil {
					t.Fatal(err)
				}
				var want *resource.Resource
				for _, r := range l.Items {
					if r.Key() == ev.Resource.Key() {
						want = r
					}
				}
				if want == nil || ev.Resource.Version != ev.Revision ||
					!reflect.DeepEqual(ev.Resource.Meta, want.Meta) || !reflect.DeepEqual(ev.Resource.Spec, want.Spec) {
					t.Fatalf("%s: event %s at %d: %#v %#v, read %#v", name, ev.Resource.Key(), ev.Revision, ev.Resource.Meta, ev.Resource.Spec, want)
				}
			}
		}
		if n != own+others+cancelled {
			t.Fatalf("%s: %d events, want %d", name, n, own+others+cancelled)
		}
	}
	if d, r := s.DecodedValues()-decoded, s.ReusedValues()-reused; d != int64(others+cancelled) || r != int64(own) {
		t.Fatalf("%d values decoded and %d taken from the writes; want the %d of the other client decoded and the %d own ones taken", d, r, others, own)
	}
	if n := s.PendingWrites(); n != 0 {
		t.Fatalf("%d writes still wait for their event", n)
	}
}

// A write whose event no watcher of the store meets (it follows another
// type) waits only until a few thousand newer writes are registered.
func TestEtcdOwnWritesExpire(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	s := openEmbedded(t, t.TempDir(), true)
	if _, err := s.Watch(ctx, store.WatchOptions{Types: []resource.Type{resource.TypeZone}}); err != nil {
		t.Fatal(err)
	}
	var ops []store.Op
	for i := range 5000 {
		ops = append(ops, store.Op{Resource: sampledTrace(fmt.Sprintf("t-%d", i), 1)})
	}
	if _, err := s.Txn(ctx, ops); err != nil {
		t.Fatal(err)
	}
	if n := s.PendingWrites(); n == 0 || n > 4096 {
		t.Fatalf("%d writes wait for their event, want at most 4096", n)
	}
	// Large values: at most 8 MiB of them wait.
	big := strings.Repeat("x", 300<<10)
	ops = ops[:0]
	for i := range 40 {
		r := sampledTrace(fmt.Sprintf("big-%d", i), 1)
		r.Labels["big"] = big
		ops = append(ops, store.Op{Resource: r})
	}
	if _, err := s.Txn(ctx, ops); err != nil {
		t.Fatal(err)
	}
	if n, b := s.PendingWrites(), s.PendingBytes(); n == 0 || b > 8<<20 || b < 4<<20 {
		t.Fatalf("%d writes of %d bytes wait for their event, want at most 8 MiB", n, b)
	}
}
