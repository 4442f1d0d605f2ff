package store

import (
	"fmt"
	"reflect"
	"testing"

	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/meshtrace/meshtrace/resource"
)

// A cached Mesh check is the one a write would build (the Mesh's storage
// key, its exists-compare and its count read), the same each time it is
// asked for, and the cache stays bounded however many names writes give.
func TestMeshChecksAreTheWritesOwn(t *testing.T) {
	ks := newKeyspace("/p/")
	var c meshChecks
	for i := range 3 * maxMeshChecks {
		name := fmt.Sprintf("mesh-%d", i%(2*maxMeshChecks))
		got := c.get(ks, name)
		key := ks.resourceKey(resource.Key{Type: resource.TypeMesh, Name: name})
		want := meshCheck{
			key: key,
			cmp: clientv3.Compare(clientv3.CreateRevision(key), ">", 0),
			get: clientv3.OpGet(key, clientv3.WithCountOnly()),
		}
		if !reflect.DeepEqual(got, want) {
			t.Fatalf("%s: cached %+v, want %+v", name, got, want)
		}
		if len(c.m) > maxMeshChecks {
			t.Fatalf("%d meshes cached, at most %d", len(c.m), maxMeshChecks)
		}
	}
}
