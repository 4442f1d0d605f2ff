package storetest

import (
	"fmt"
	"reflect"
	"testing"
	"time"

	"github.com/meshtrace/meshtrace/resource"
	"github.com/meshtrace/meshtrace/store"
)

// fullTrace is a MeshTrace with every part of its spec set.
func fullTrace(mesh, name string) *resource.Resource {
	r := trace(mesh, name, map[string]string{"team": "a", "kuma.io/origin": "global"})
	lit, def, shared := "v", "none", true
	r.Spec = &resource.MeshTraceSpec{
		TargetRef: &resource.TargetRef{Kind: "MeshService", Name: "web", Tags: map[string]string{"version": "2"}, ProxyTypes: []string{"Sidecar"}},
		Default: &resource.MeshTraceConf{
			Tags:     &[]resource.TraceTag{{Name: "a", Literal: &lit}, {Name: "b", Header: &resource.HeaderTag{Name: "x-b", Default: &def}}},
			Sampling: &resource.Sampling{Overall: resource.Int(80), Client: resource.Str("12.5")},
			Backends: &[]resource.Backend{{Type: "Zipkin", Zipkin: &resource.ZipkinBackend{URL: "http://zipkin:9411", SharedSpanContext: &shared}}},
		},
	}
	return r
}

// testWatchValuesMatchReads: what a watcher receives for a put is what a
// read at the event's revision returns (Meta and spec reflect.DeepEqual,
// Version the revision), whichever way it was written (Put, PutBatch with a
// Prepare, Txn), and also for resources whose stored form reads back
// different from what the writer held (an empty label map, a local time
// with a monotonic reading, an empty tag map): a store that reuses what it
// wrote must hand out what a read gives, not what the writer held.
func testWatchValuesMatchReads(t *testing.T, s store.Store) {
	ctx := ctxT(t)
	start, err := s.Revision(ctx)
	if err != nil {
		t.Fatal(err)
	}
	live, err := s.Watch(ctx, store.WatchOptions{})
	if err != nil {
		t.Fatal(err)
	}
	from, err := s.Watch(ctx, store.WatchOptions{Types: []resource.Type{resource.TypeMeshTrace, resource.TypeZone}, FromRevision: start + 1})
	if err != nil {
		t.Fatal(err)
	}

	full := fullTrace("m", "full")
	mustPut(t, s, full, store.MustNotExist)
	full.Labels = map[string]string{"team": "b"}
	mustPut(t, s, full, full.Version)
	odd := fullTrace("m", "odd")
	odd.Labels = map[string]string{}
	odd.CreationTime = time.Now()
	odd.ModificationTime = time.Now().In(time.FixedZone("east", 3600))
	odd.Spec.(*resource.MeshTraceSpec).TargetRef.Tags = map[string]string{}
	mustPut(t, s, odd, store.AnyVersion)
	oddSpec := fullTrace("m", "odd-spec")
	oddSpec.Spec.(*resource.MeshTraceSpec).TargetRef.Tags = map[string]string{}
	mustPut(t, s, oddSpec, store.AnyVersion)
	var batch []*resource.Resource
	for i := range 6 {
		batch = append(batch, fullTrace("m", fmt.Sprintf("batch-%d", i)))
	}
	batch[5].Labels = map[string]string{}
	if _, err := s.PutBatch(ctx, batch, store.BatchOptions{Prepare: newStamp().prepare}); err != nil {
		t.Fatal(err)
	}
	ops := []store.Op{{Resource: fullTrace("m", "txn-0")}, {Resource: trace("m", "txn-1", nil)}, {Delete: true, Key: batch[0].Key()}}
	if _, err := s.Txn(ctx, ops); err != nil {
		t.Fatal(err)
	}
	last := mustPut(t, s, zone("z", true), store.AnyVersion)

	for name, ch := range map[string]<-chan store.WatchResponse{"live": live, "from a revision": from} {
		var evs []store.Event
		for len(evs) == 0 || evs[len(evs)-1].Revision < last {
			resp := next(t, ch)
			if resp.Err != nil {
				t.Fatalf("%s: %v", name, resp.Err)
			}
			evs = append(evs, resp.Events...)
		}
		if len(evs) != 2+2+6+3+1 {
			t.Fatalf("%s: %d events, want 14", name, len(evs))
		}
		for _, ev := range evs {
			got := ev.Resource
			if ev.Type == store.EventDelete {
				if got.Key() != batch[0].Key() {
					t.Fatalf("%s: delete of %s", name, got.Key())
				}
				continue
			}
			if got.Version != ev.Revision {
				t.Fatalf("%s: %s at revision %d has Version %d", name, got.Key(), ev.Revision, got.Version)
			}
			l, err := s.List(ctx, got.Type, store.ListOptions{Revision: ev.Revision})
			if err != nil {
				t.Fatal(err)
			}
			var want *resource.Resource
			for _, r := range l.Items {
				if r.Key() == got.Key() {
					want = r
				}
			}
			if want == nil {
				t.Fatalf("%s: %s not listed at revision %d", name, got.Key(), ev.Revision)
			}
			if !reflect.DeepEqual(got.Meta, want.Meta) {
				t.Fatalf("%s: %s at %d: event meta %#v, read %#v", name, got.Key(), ev.Revision, got.Meta, want.Meta)
			}
			if !reflect.DeepEqual(got.Spec, want.Spec) {
				t.Fatalf("%s: %s at %d: event spec %#v, read %#v", name, got.Key(), ev.Revision, got.Spec, want.Spec)
			}
		}
	}
}
