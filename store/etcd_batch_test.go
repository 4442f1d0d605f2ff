package store

import (
	"fmt"
	"testing"

	pb "go.etcd.io/etcd/api/v3/etcdserverpb"
	clientv3 "go.etcd.io/etcd/client/v3"
	"google.golang.org/protobuf/proto"

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
		want := clientTxn(t, []clientv3.Cmp{clientv3.Compare(clientv3.CreateRevision(key), ">", 0)},
			nil, []clientv3.Op{clientv3.OpGet(key, clientv3.WithCountOnly())})
		gotReq := &pb.TxnRequest{Compare: []*pb.Compare{got.cmp}, Failure: []*pb.RequestOp{got.get}}
		if got.key != key || !proto.Equal(gotReq, want) {
			t.Fatalf("%s: cached %s %v, want %s %v", name, got.key, gotReq, key, want)
		}
		if again := c.get(ks, name); again != got {
			t.Fatalf("%s: asked again, a different check", name)
		}
		if len(c.m) > maxMeshChecks {
			t.Fatalf("%d meshes cached, at most %d", len(c.m), maxMeshChecks)
		}
	}
}
