// Package meshtrace is the MeshTrace policy logic shared by global and zones:
// which policies select a proxy (targetRef matching), how the selected
// policies merge into one configuration, and where that configuration sends
// spans (the parsed collector). The Envoy configuration it becomes lives in
// the envoy subpackage, used by the zone only. Neither imports the global or
// zone packages.
//
// Semantics follow Kong Mesh 2.7. A policy selects a proxy by the tags of its
// inbounds, or by its gateway's tags when the proxy is a gateway:
//
//   - Mesh (or no targetRef): every proxy of the mesh;
//   - MeshSubset: proxies with an inbound (or gateway) whose tags include all of targetRef.tags;
//   - MeshService: proxies with an inbound (or gateway) tagged kuma.io/service: <name>;
//   - MeshServiceSubset: both at once, on the same inbound;
//   - MeshGateway: builtin gateways configured by the MeshGateway <name> (see SelectGateway).
//
// targetRef.proxyTypes narrows Mesh and MeshSubset to sidecars (proxies
// without a gateway section) or gateways (builtin or delegated).
//
// Selected policies are merged from the least to the most specific (see Less),
// so the most specific policy's fields win.
package meshtrace

import (
	"slices"
	"sort"

	"github.com/meshtrace/meshtrace/resource"
)

// kindRank orders targetRef kinds from the least to the most specific.
var kindRank = map[string]int{
	resource.KindMesh:              0,
	resource.KindMeshSubset:        1,
	resource.KindMeshGateway:       2,
	resource.KindMeshService:       3,
	resource.KindMeshServiceSubset: 4,
}

// spec returns the MeshTrace spec of r, or nil when r is not a MeshTrace.
func spec(r *resource.Resource) *resource.MeshTraceSpec {
	if r == nil {
		return nil
	}
	s, _ := r.Spec.(*resource.MeshTraceSpec)
	return s
}

// dataplane returns the Dataplane spec of r, or nil when r is not a Dataplane.
func dataplane(r *resource.Resource) *resource.DataplaneSpec {
	if r == nil {
		return nil
	}
	s, _ := r.Spec.(*resource.DataplaneSpec)
	return s
}

// targetKind returns the policy's targetRef kind; an omitted targetRef is Mesh.
func targetKind(s *resource.MeshTraceSpec) string {
	if s.TargetRef == nil || s.TargetRef.Kind == "" {
		return resource.KindMesh
	}
	return s.TargetRef.Kind
}

// isZoneOrigin reports whether the policy was created on the zone. Policies
// without the kuma.io/origin label are treated as synced from global.
func isZoneOrigin(r *resource.Resource) bool {
	return r.Labels[resource.LabelOrigin] == resource.OriginZone
}

// Affects reports whether policy selects the proxy dp. Both must be of the
// same mesh; a resource of the wrong type never matches. gw is the
// MeshGateway configuring dp when dp is a builtin gateway (see
// SelectGateway); without it a MeshGateway target selects nothing.
func Affects(policy, dp *resource.Resource, gw ...*resource.Resource) bool {
	ps, ds := spec(policy), dataplane(dp)
	if ps == nil || ds == nil || policy.Mesh != dp.Mesh {
		return false
	}
	kind := targetKind(ps)
	var ref resource.TargetRef
	if ps.TargetRef != nil {
		ref = *ps.TargetRef
	}
	switch kind {
	case resource.KindMesh:
		return proxyTypeMatches(ref.ProxyTypes, ds)
	case resource.KindMeshSubset:
		return proxyTypeMatches(ref.ProxyTypes, ds) && anyTagSet(ds, ref.Tags, "")
	case resource.KindMeshService:
		return anyTagSet(ds, nil, ref.Name)
	case resource.KindMeshServiceSubset:
		return anyTagSet(ds, ref.Tags, ref.Name)
	case resource.KindMeshGateway:
		g := firstGateway(gw)
		return ds.IsBuiltinGateway() && g != nil && g.Mesh == policy.Mesh && g.Name == ref.Name
	default:
		return false
	}
}

func firstGateway(gw []*resource.Resource) *resource.Resource {
	if len(gw) == 0 {
		return nil
	}
	return gw[0]
}

// proxyTypeMatches reports whether a proxy of spec ds is one of types (all
// when types is empty).
func proxyTypeMatches(types []string, ds *resource.DataplaneSpec) bool {
	if len(types) == 0 {
		return true
	}
	want := resource.ProxyTypeSidecar
	if ds.IsGateway() {
		want = resource.ProxyTypeGateway
	}
	return slices.Contains(types, want)
}

// SelectGateway returns the MeshGateway of gateways that configures the
// builtin gateway dp: one whose selectors match dp's gateway tags, the most
// specific selector winning, then the smallest name. It returns nil for other
// proxies or when none matches.
func SelectGateway(dp *resource.Resource, gateways []*resource.Resource) *resource.Resource {
	ds := dataplane(dp)
	if ds == nil || !ds.IsBuiltinGateway() {
		return nil
	}
	var best *resource.Resource
	bestN := -1
	for _, g := range gateways {
		gs, ok := g.Spec.(*resource.MeshGatewaySpec)
		if !ok || g.Mesh != dp.Mesh {
			continue
		}
		if ok, n := gs.Selects(ds.Networking.Gateway.Tags); ok && (n > bestN || (n == bestN && g.Name < best.Name)) {
			best, bestN = g, n
		}
	}
	return best
}

// anyTagSet reports whether one of the proxy's tag sets holds every tag of
// want and, when service is not empty, kuma.io/service: service.
func anyTagSet(ds *resource.DataplaneSpec, want map[string]string, service string) bool {
	for _, tags := range ds.TagSets() {
		if service != "" && tags[resource.TagService] != service {
			continue
		}
		if subset(want, tags) {
			return true
		}
	}
	return false
}

func subset(want, have map[string]string) bool {
	for k, v := range want {
		if hv, ok := have[k]; !ok || hv != v {
			return false
		}
	}
	return true
}

// Less reports whether policy a is applied before policy b when merging (b's
// fields then override a's). The order is:
//
//  1. targetRef kind: Mesh < MeshSubset < MeshGateway < MeshService < MeshServiceSubset;
//  2. origin: policies synced from global before policies created on the zone;
//  3. name, descending, so that the lexicographically smallest name is applied
//     last and wins (of two Mesh policies "aa" and "bb", "aa" wins).
func Less(a, b *resource.Resource) bool {
	ka, kb := kindRank[targetKind(spec(a))], kindRank[targetKind(spec(b))]
	if ka != kb {
		return ka < kb
	}
	za, zb := isZoneOrigin(a), isZoneOrigin(b)
	if za != zb {
		return !za
	}
	return a.Name > b.Name
}

// Match returns the MeshTrace policies that select dp, in merge order (the
// last one wins). Policies of other meshes and other types are ignored. The
// input slice is not modified. gw is as for Affects.
func Match(dp *resource.Resource, policies []*resource.Resource, gw ...*resource.Resource) []*resource.Resource {
	Examined.Add(int64(len(policies)))
	// The order of Less, with each policy's sort keys looked up once.
	type ranked struct {
		p    *resource.Resource
		kind int
		zone bool
	}
	var sel []ranked
	for _, p := range policies {
		if Affects(p, dp, gw...) {
			sel = append(sel, ranked{p, kindRank[targetKind(spec(p))], isZoneOrigin(p)})
		}
	}
	sort.SliceStable(sel, func(i, j int) bool {
		a, b := sel[i], sel[j]
		if a.kind != b.kind {
			return a.kind < b.kind
		}
		if a.zone != b.zone {
			return !a.zone
		}
		return a.p.Name > b.p.Name
	})
	var out []*resource.Resource
	for _, r := range sel {
		out = append(out, r.p)
	}
	return out
}
