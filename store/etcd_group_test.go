package store

import (
	"slices"
	"testing"

	"go.etcd.io/etcd/api/v3/etcdserverpb"
	clientv3 "go.etcd.io/etcd/client/v3"
)

// A group's transaction holds every member's own compares, puts and gets in
// order, then one compare and one get per Mesh however many members check
// it; each member's Else responses are its own gets' and its Meshes', in
// its order.
func TestGroupOpsShareMeshChecks(t *testing.T) {
	member := func(key string, meshes ...string) *groupMember {
		m := &groupMember{keys: []string{key}, meshes: meshes}
		m.cmps = append(m.cmps, clientv3.Compare(clientv3.CreateRevision(key), "=", 0))
		m.puts = append(m.puts, clientv3.OpPut(key, "v"))
		m.gets = append(m.gets, clientv3.OpGet(key))
		for _, mk := range meshes {
			m.cmps = append(m.cmps, clientv3.Compare(clientv3.CreateRevision(mk), ">", 0))
			m.gets = append(m.gets, clientv3.OpGet(mk, clientv3.WithCountOnly()))
		}
		return m
	}
	batch := []*groupMember{
		member("t1", "mesh-a"),
		member("t2", "mesh-b"),
		member("t3", "mesh-a"),
		member("t4"),
		member("t5", "mesh-b", "mesh-a"),
	}
	ops := groupOps(batch)
	cmpKeys := func() (out []string) {
		for _, c := range ops.cmps {
			out = append(out, string(c.KeyBytes()))
		}
		return out
	}
	opKeys := func(os []clientv3.Op) (out []string) {
		for _, o := range os {
			out = append(out, string(o.KeyBytes()))
		}
		return out
	}
	if got, want := cmpKeys(), []string{"t1", "t2", "t3", "t4", "t5", "mesh-a", "mesh-b"}; !slices.Equal(got, want) {
		t.Errorf("compares on %v, want %v", got, want)
	}
	if got, want := opKeys(ops.puts), []string{"t1", "t2", "t3", "t4", "t5"}; !slices.Equal(got, want) {
		t.Errorf("puts of %v, want %v", got, want)
	}
	if got, want := opKeys(ops.gets), []string{"t1", "t2", "t3", "t4", "t5", "mesh-a", "mesh-b"}; !slices.Equal(got, want) {
		t.Errorf("gets of %v, want %v", got, want)
	}
	for i, m := range batch {
		var got []string
		for _, at := range ops.elseOf[i] {
			got = append(got, string(ops.gets[at].KeyBytes()))
		}
		if want := opKeys(m.gets); !slices.Equal(got, want) {
			t.Errorf("member %d's Else reads %v, want its own %v", i, got, want)
		}
	}
	// The shared compares are the members' own.
	for i, c := range ops.cmps[5:] {
		pc := c.GetCompare()
		if pc.Target != etcdserverpb.Compare_CREATE || pc.Result != etcdserverpb.Compare_GREATER {
			t.Errorf("mesh compare %d is %v", i, pc)
		}
	}
}
