package store_test

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/meshtrace/meshtrace/resource"
	"github.com/meshtrace/meshtrace/store"
)

// Every hub of a store follows its own etcd watch, but each stored value is
// decoded once for all of them: watchers from a revision (private hubs, with
// different type filters) and a live one (a shared hub) receive the same
// *resource.Resource for a change, creates, updates, deletes (their last
// value) and multi-resource transactions alike. A corrupt value is still
// reported to every watcher as a Corrupt delete, and listed once.
func TestEtcdWatchersShareDecodedValues(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	s := openEmbedded(t, t.TempDir(), true)
	mesh, _ := resource.New(resource.TypeMesh, "", "default")
	old := trace(0)
	for _, r := range []*resource.Resource{mesh, old} {
		if _, err := s.Put(ctx, r, store.MustNotExist); err != nil {
			t.Fatal(err)
		}
	}
	now, err := s.Revision(ctx)
	if err != nil {
		t.Fatal(err)
	}
	filters := [][]resource.Type{nil, {resource.TypeMeshTrace}, {resource.TypeMeshTrace, resource.TypeMesh},
		{resource.TypeMeshTrace, resource.TypeDataplane}}
	var chans []<-chan store.WatchResponse
	for _, f := range filters {
		ch, err := s.Watch(ctx, store.WatchOptions{Types: f, FromRevision: now + 1})
		if err != nil {
			t.Fatal(err)
		}
		chans = append(chans, ch)
	}
	live, err := s.Watch(ctx, store.WatchOptions{Types: []resource.Type{resource.TypeMeshTrace}})
	if err != nil {
		t.Fatal(err)
	}
	chans = append(chans, live)
	before, reusedBefore := s.DecodedValues(), s.ReusedValues()

	// Creates in one batch, updates one by one, a transaction of puts and
	// deletes, a delete of a value no watcher saw written, a corrupt value,
	// and a last put every watcher waits for.
	var batch []*resource.Resource
	for i := 1; i <= 20; i++ {
		batch = append(batch, trace(i))
	}
	if _, err := s.PutBatch(ctx, batch, store.BatchOptions{RequireMesh: true}); err != nil {
		t.Fatal(err)
	}
	for _, r := range batch[:5] {
		r.Labels = map[string]string{"updated": "yes"}
		if _, err := s.Put(ctx, r, r.Version); err != nil {
			t.Fatal(err)
		}
	}
	ops := []store.Op{{Resource: trace(21)}, {Resource: trace(22)}, {Delete: true, Key: batch[6].Key()}, {Delete: true, Key: batch[7].Key()}}
	if _, err := s.Txn(ctx, ops); err != nil {
		t.Fatal(err)
	}
	if _, err := s.Delete(ctx, old.Key(), store.AnyVersion); err != nil {
		t.Fatal(err)
	}
	bad := resource.Key{Type: resource.TypeMeshTrace, Mesh: "default", Name: "bad"}
	s.PutRaw(bad, []byte("not json"))
	lastRev, err := s.Put(ctx, trace(23), store.MustNotExist)
	if err != nil {
		t.Fatal(err)
	}

	got := make([][]store.Event, len(chans))
	for i, ch := range chans {
		for done := false; !done; {
			select {
			case resp, ok := <-ch:
				if !ok || resp.Err != nil {
					t.Fatalf("watcher %d: closed (%v)", i, resp.Err)
				}
				for _, ev := range resp.Events {
					got[i] = append(got[i], ev)
					done = done || ev.Revision == lastRev
				}
			case <-ctx.Done():
				t.Fatalf("watcher %d: %d events, none at %d", i, len(got[i]), lastRev)
			}
		}
	}
	all := got[0] // no type filter
	if len(all) != 20+5+4+1+1+1 {
		t.Fatalf("%d events, want 32", len(all))
	}
	// The same events, in the same order, and the same resources.
	for i, evs := range got[1:] {
		if len(evs) != len(all) {
			t.Fatalf("watcher %d: %d events, want %d", i+1, len(evs), len(all))
		}
		for j, ev := range evs {
			want := all[j]
			if ev.Type != want.Type || ev.Revision != want.Revision || ev.Corrupt != want.Corrupt || ev.Resource.Key() != want.Resource.Key() {
				t.Fatalf("watcher %d, event %d: %+v, want %+v", i+1, j, ev, want)
			}
			if !ev.Corrupt && ev.Resource != want.Resource {
				t.Fatalf("watcher %d, event %d (%s %s): a resource of its own, not the shared one", i+1, j, ev.Type, ev.Resource.Key())
			}
		}
	}
	// One decode per value: every put's new value, and the last value of
	// the delete of the trace written before the watches began. (The
	// deleted values of the transaction were decoded for their puts.) The
	// values this store wrote while watched are not decoded but taken from
	// the write: only the corrupt value and the one written before the
	// watches are.
	values := map[string]bool{}
	corrupt := 0
	for _, ev := range all {
		values[fmt.Sprintf("%s@%d", ev.Resource.Key(), ev.Resource.Version)] = true
		if ev.Corrupt {
			corrupt++
			if ev.Type != store.EventDelete || ev.Resource.Key() != bad {
				t.Fatalf("corrupt event %+v", ev)
			}
		}
	}
	if corrupt != 1 {
		t.Fatalf("%d corrupt events, want 1", corrupt)
	}
	decoded, reused := s.DecodedValues()-before, s.ReusedValues()-reusedBefore
	if decoded+reused != int64(len(values)) || decoded != 2 {
		t.Fatalf("%d values decoded and %d taken from the writes for %d watchers, want %d in all (each value once), 2 decoded",
			decoded, reused, len(chans), len(values))
	}
	if c := s.Corrupt(); len(c) != 1 || c[0].Key != "/meshtrace/resources/MeshTrace/default/bad" {
		t.Fatalf("Corrupt() = %+v, want the one corrupt value", c)
	}
}

func trace(i int) *resource.Resource {
	r, _ := resource.New(resource.TypeMeshTrace, "default", fmt.Sprintf("t-%d", i))
	return r
}
