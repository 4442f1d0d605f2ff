package meshtrace

import (
	"slices"
	"sync/atomic"

	"github.com/meshtrace/meshtrace/resource"
)

// Index narrows a mesh's policy list to the policies that can select a given
// proxy, so that matching one proxy costs the policies about it, not every
// policy of the mesh: MeshService and MeshServiceSubset policies (usually
// nearly all of them) are filed under their service and only looked at for
// proxies with an inbound (or gateway) of that service; the other kinds
// (Mesh, MeshSubset, MeshGateway) are looked at for every proxy.
//
// An Index is immutable once built and safe for concurrent use.
type Index struct {
	all []*resource.Resource
	// head is the first position in all of each service's policies; next
	// chains a service's positions in ascending order (-1 ends a chain). No
	// allocation per service: building one costs one map of services.
	head map[string]int32
	next []int32
	rest []int // positions in all of the policies of no service, ascending
}

// NewIndex indexes policies; Candidates keeps their order. The slice must
// not be modified afterwards.
func NewIndex(policies []*resource.Resource) *Index {
	ix := &Index{all: policies, head: make(map[string]int32, len(policies)), next: make([]int32, len(policies))}
	for i := len(policies) - 1; i >= 0; i-- {
		if svc := serviceOf(policies[i]); svc != "" {
			ix.next[i] = -1
			if h, ok := ix.head[svc]; ok {
				ix.next[i] = h
			}
			ix.head[svc] = int32(i)
		} else {
			ix.rest = append(ix.rest, i)
		}
	}
	slices.Reverse(ix.rest)
	return ix
}

// Replaced returns the index of list, which must be ix's policies with the
// one at position i replaced (same length, every other position the same
// policy). When the new policy is filed under the same service as the old
// one (or under none, as the old one), the service chains stay as they are
// and only the policy slice is new: no pass over the policies. Otherwise,
// or when ix is nil, the index is built again. Neither ix nor list may be
// modified afterwards.
func (ix *Index) Replaced(list []*resource.Resource, i int) *Index {
	if ix == nil || len(list) != len(ix.all) || i < 0 || i >= len(list) || serviceOf(list[i]) != serviceOf(ix.all[i]) {
		return NewIndex(list)
	}
	return &Index{all: list, head: ix.head, next: ix.next, rest: ix.rest}
}

// serviceOf is the service a MeshService or MeshServiceSubset policy is
// limited to; "" for the other kinds (and a service kind without a name,
// which selects by tags alone).
func serviceOf(p *resource.Resource) string {
	s := spec(p)
	if s == nil || s.TargetRef == nil {
		return ""
	}
	switch s.TargetRef.Kind {
	case resource.KindMeshService, resource.KindMeshServiceSubset:
		return s.TargetRef.Name
	}
	return ""
}

// Len is the number of policies indexed.
func (ix *Index) Len() int {
	if ix == nil {
		return 0
	}
	return len(ix.all)
}

// All returns the policies indexed, in their order. It must not be modified.
func (ix *Index) All() []*resource.Resource {
	if ix == nil {
		return nil
	}
	return ix.all
}

// Candidates returns, in the indexed order, the policies that may select dp:
// every policy that selects dp is among them (Affects still decides).
func (ix *Index) Candidates(dp *resource.Resource) []*resource.Resource {
	ds := dataplane(dp)
	if ix == nil || ds == nil {
		return nil
	}
	pos := slices.Clone(ix.rest)
	seen := map[string]bool{}
	for _, tags := range ds.TagSets() {
		svc := tags[resource.TagService]
		if svc == "" || seen[svc] {
			continue
		}
		seen[svc] = true
		if h, ok := ix.head[svc]; ok {
			for i := h; i >= 0; i = ix.next[i] {
				pos = append(pos, int(i))
			}
		}
	}
	if len(seen) > 1 || (len(ix.rest) > 0 && len(pos) > len(ix.rest)) {
		slices.Sort(pos)
	}
	out := make([]*resource.Resource, len(pos))
	for i, p := range pos {
		out[i] = ix.all[p]
	}
	return out
}

// Examined counts the policies Match looked at: a measure of the matching
// work, for tests that hold it to the policies about a proxy (an Index's
// candidates) rather than all policies of a mesh.
var Examined atomic.Int64

// MatchIndexed is Match over the candidates of ix for dp.
func MatchIndexed(dp *resource.Resource, ix *Index, gw ...*resource.Resource) []*resource.Resource {
	return Match(dp, ix.Candidates(dp), gw...)
}

// ComputeIndexed is Compute over the candidates of ix for dp.
func ComputeIndexed(dp *resource.Resource, ix *Index, gw ...*resource.Resource) Rules {
	return Merge(MatchIndexed(dp, ix, gw...))
}
