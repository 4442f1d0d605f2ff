package store_test

import (
	"context"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/meshtrace/meshtrace/resource"
	"github.com/meshtrace/meshtrace/store"
)

// rawPutter plants a value under a resource's storage key as it is.
type rawPutter func(t *testing.T, k resource.Key, value []byte) int64

func policy(name string) *resource.Resource {
	return &resource.Resource{
		Meta: resource.Meta{Type: resource.TypeMeshTrace, Mesh: "default", Name: name},
		Spec: &resource.MeshTraceSpec{TargetRef: &resource.TargetRef{Kind: resource.KindMesh}},
	}
}

// Corrupt values (not JSON, an undecodable spec, an envelope naming another
// resource than its key) never fail a List or block a watch: they are
// skipped, reported once in Corrupt(), seen by watchers as a delete of their
// key (marked Corrupt), and forgotten once the key is rewritten or deleted.
// Deleting a key whose value names another resource never reports that
// other resource as deleted.
func TestCorruptValuesAreSkippedAndReported(t *testing.T) {
	type corruptStore interface {
		store.Store
		store.CorruptReporter
	}
	for _, tc := range []struct {
		name string
		open func(t *testing.T) (corruptStore, rawPutter)
	}{
		{"memory", func(t *testing.T) (corruptStore, rawPutter) {
			m := store.NewMemory()
			t.Cleanup(func() { _ = m.Close() })
			return m, func(_ *testing.T, k resource.Key, v []byte) int64 { return m.PutRaw(k, v) }
		}},
		{"etcd", func(t *testing.T) (corruptStore, rawPutter) {
			s := openEmbedded(t, t.TempDir(), true)
			return s, func(t *testing.T, k resource.Key, v []byte) int64 {
				resp, err := s.Client().Put(context.Background(), "/meshtrace/resources/"+string(k.Type)+"/"+k.Mesh+"/"+k.Name, string(v))
				if err != nil {
					t.Fatal(err)
				}
				return resp.Header.Revision
			}
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			ctx := context.Background()
			st, raw := tc.open(t)
			for _, n := range []string{"a", "b", "live"} {
				if _, err := st.Put(ctx, policy(n), store.AnyVersion); err != nil {
					t.Fatal(err)
				}
			}
			wch, err := st.Watch(ctx, store.WatchOptions{Types: []resource.Type{resource.TypeMeshTrace}})
			if err != nil {
				t.Fatal(err)
			}
			key := func(n string) resource.Key {
				return resource.Key{Type: resource.TypeMeshTrace, Mesh: "default", Name: n}
			}
			// "a" is not JSON; "b" holds live's envelope; "c" has a bad spec.
			raw(t, key("a"), []byte("not json"))
			raw(t, key("b"), []byte(`{"meta":{"type":"MeshTrace","mesh":"default","name":"live"},"spec":{}}`))
			raw(t, key("c"), []byte(`{"meta":{"type":"MeshTrace","mesh":"default","name":"c"},"spec":{"targetRef":7}}`))

			res, err := st.List(ctx, resource.TypeMeshTrace, store.ListOptions{})
			if err != nil {
				t.Fatalf("List failed on corrupt values: %v", err)
			}
			if len(res.Items) != 1 || res.Items[0].Name != "live" || res.Total != 1 {
				t.Fatalf("List: want only live, got %d items (total %d)", len(res.Items), res.Total)
			}
			if _, _, err := st.Get(ctx, key("b")); !errors.Is(err, store.ErrCorrupt) {
				t.Fatalf("Get of a mismatching key: want ErrCorrupt, got %v", err)
			}
			bad := st.Corrupt()
			if len(bad) != 3 {
				t.Fatalf("want 3 corrupt values reported, got %+v", bad)
			}
			if !strings.Contains(bad[1].Error, "names MeshTrace/default/live") {
				t.Fatalf("mismatch not explained: %+v", bad[1])
			}
			// Watchers see each corrupt put as a delete of its own key.
			got := map[string]store.Event{}
			deadline := time.After(10 * time.Second)
			for len(got) < 3 {
				select {
				case resp := <-wch:
					for _, ev := range resp.Events {
						got[ev.Resource.Name] = ev
					}
				case <-deadline:
					t.Fatalf("watch: got %v", got)
				}
			}
			for _, n := range []string{"a", "b", "c"} {
				if ev := got[n]; ev.Type != store.EventDelete || !ev.Corrupt {
					t.Fatalf("watch event of %s: %+v", n, ev)
				}
			}
			// Deleting b reports b deleted, not live (the name in its value).
			if _, err := st.Delete(ctx, key("b"), store.AnyVersion); err != nil {
				t.Fatal(err)
			}
			select {
			case resp := <-wch:
				if len(resp.Events) != 1 || resp.Events[0].Resource.Name != "b" || resp.Events[0].Type != store.EventDelete {
					t.Fatalf("delete event: %+v", resp.Events)
				}
			case <-time.After(10 * time.Second):
				t.Fatal("no delete event")
			}
			// Rewriting a with a good value clears its report.
			if _, err := st.Put(ctx, policy("a"), store.AnyVersion); err != nil {
				t.Fatal(err)
			}
			if _, err := st.List(ctx, resource.TypeMeshTrace, store.ListOptions{}); err != nil {
				t.Fatal(err)
			}
			waitCorrupt := func(want int) {
				t.Helper()
				for range 1000 {
					if len(st.Corrupt()) == want {
						return
					}
					time.Sleep(5 * time.Millisecond)
				}
				t.Fatalf("want %d corrupt values, got %+v", want, st.Corrupt())
			}
			waitCorrupt(1) // c only
		})
	}
}
