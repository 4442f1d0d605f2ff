package store

import (
	"slices"
	"testing"

	"go.etcd.io/etcd/api/v3/etcdserverpb"
)

// A group's transaction holds every member's own compares, puts and gets in
// order, then one compare and one get per Mesh however many members check
// it; each member's Else responses are its own gets' and its Meshes', in
// its order.
func TestGroupOpsShareMeshChecks(t *testing.T) {
	member := func(key string, meshes ...string) *groupMember {
		m := &groupMember{keys: []string{key}, meshes: meshes}
		ops := newTxnOps(1)
		m.cmps = append(m.cmps, ops.compare([]byte(key), 0))
		m.puts = append(m.puts, ops.put([]byte(key), []byte("v")))
		m.gets = append(m.gets, ops.get([]byte(key)))
		for _, mk := range meshes {
			m.cmps = append(m.cmps, meshExists([]byte(mk)))
			m.gets = append(m.gets, meshCount([]byte(mk)))
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
			out = append(out, string(c.Key))
		}
		return out
	}
	opKeys := func(os []*etcdserverpb.RequestOp) (out []string) {
		for _, o := range os {
			out = append(out, opKey(o))
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
			got = append(got, opKey(ops.gets[at]))
		}
		if want := opKeys(m.gets); !slices.Equal(got, want) {
			t.Errorf("member %d's Else reads %v, want its own %v", i, got, want)
		}
	}
	// The shared compares are the members' own.
	for i, c := range ops.cmps[5:] {
		if pc := c; pc.Target != etcdserverpb.Compare_CREATE || pc.Result != etcdserverpb.Compare_GREATER {
			t.Errorf("mesh compare %d is %v", i, pc)
		}
	}
}

// opKey is the key a put or a read of one key names.
func opKey(o *etcdserverpb.RequestOp) string {
	if p := o.GetRequestPut(); p != nil {
		return string(p.Key)
	}
	return string(o.GetRequestRange().GetKey())
}
