package kds

import (
	"context"
	"testing"

	"github.com/meshtrace/meshtrace/resource"
	"github.com/meshtrace/meshtrace/store"
)

// unchangedBetween sees every create, update and delete of the given types
// between two revisions, and nothing of other types or of stored values.
func TestUnchangedBetween(t *testing.T) {
	ctx := context.Background()
	st := store.NewMemory()
	t.Cleanup(func() { _ = st.Close() })
	dp := func(name string) *resource.Resource {
		r, err := resource.New(resource.TypeDataplane, "default", name)
		if err != nil {
			t.Fatal(err)
		}
		return r
	}
	put := func(r *resource.Resource) int64 {
		rev, err := st.Put(ctx, r, store.AnyVersion)
		if err != nil {
			t.Fatal(err)
		}
		return rev
	}
	types := []resource.Type{resource.TypeDataplane}
	check := func(step string, from, to int64, want bool) {
		t.Helper()
		got, err := unchangedBetween(ctx, st, types, from, to)
		if err != nil || got != want {
			t.Fatalf("%s: unchanged between %d and %d = %v, %v; want %v", step, from, to, got, err, want)
		}
	}
	from := put(dp("a"))
	put(&resource.Resource{Meta: resource.Meta{Type: resource.TypeMesh, Name: "default"}, Spec: &resource.MeshSpec{}})
	to, err := st.PutValue(ctx, "kds/cursor", []byte("x"))
	if err != nil {
		t.Fatal(err)
	}
	check("another type and a value", from, to, true)
	created := put(dp("b"))
	check("a create", to, created, false)
	updated := put(dp("a"))
	check("an update", created, updated, false)
	deleted, err := st.Delete(ctx, resource.Key{Type: resource.TypeDataplane, Mesh: "default", Name: "b"}, store.AnyVersion)
	if err != nil {
		t.Fatal(err)
	}
	check("a delete", updated, deleted, false)
}
