package xds

import (
	"sort"

	"github.com/envoyproxy/go-control-plane/pkg/cache/v3"
	resourcev3 "github.com/envoyproxy/go-control-plane/pkg/resource/v3"

	"github.com/meshtrace/meshtrace/policy/meshtrace"
	"github.com/meshtrace/meshtrace/resource"
)

const listenerType = resourcev3.ListenerType

func dpKey(mesh, name string) resource.Key {
	return resource.Key{Type: resource.TypeDataplane, Mesh: mesh, Name: name}
}

func (r *Reconciler) lookup(mesh, name string) (*proxy, bool) {
	p, ok := r.proxies[dpKey(mesh, name)]
	return p, ok
}

// Rules returns the merged MeshTrace rules of a proxy's current snapshot.
func (r *Reconciler) Rules(mesh, name string) (meshtrace.Rules, bool) {
	r.mu.RLock()
	defer r.mu.RUnlock()
	p, ok := r.lookup(mesh, name)
	if !ok || p.built == nil {
		return meshtrace.Rules{}, false
	}
	return p.built.rules, true
}

// Dataplane returns the Dataplane of a proxy the Reconciler knows.
func (r *Reconciler) Dataplane(mesh, name string) (*resource.Resource, bool) {
	r.mu.RLock()
	defer r.mu.RUnlock()
	p, ok := r.lookup(mesh, name)
	if !ok {
		return nil, false
	}
	return p.dp, true
}

// Snapshot returns the snapshot last pushed for a proxy. It must not be modified.
func (r *Reconciler) Snapshot(mesh, name string) (*cache.Snapshot, bool) {
	r.mu.RLock()
	defer r.mu.RUnlock()
	p, ok := r.lookup(mesh, name)
	if !ok || p.built == nil {
		return nil, false
	}
	return p.built.snap, true
}

// Err returns the last error building a proxy's configuration, nil when its
// current snapshot reflects its current inputs.
func (r *Reconciler) Err(mesh, name string) error {
	r.mu.RLock()
	defer r.mu.RUnlock()
	p, ok := r.lookup(mesh, name)
	if !ok {
		return ErrUnknownProxy
	}
	return p.err
}

// AffectedBy returns the proxies (Dataplane keys, sorted) a policy selects.
func (r *Reconciler) AffectedBy(policy resource.Key) []resource.Key {
	r.mu.RLock()
	defer r.mu.RUnlock()
	out := make([]resource.Key, 0, len(r.affecting[policy]))
	for k := range r.affecting[policy] {
		out = append(out, k)
	}
	sort.Slice(out, func(i, j int) bool { return compareKeys(out[i], out[j]) < 0 })
	return out
}

// Collector returns the tracing backend type and collector address a proxy's
// current snapshot sends spans to; both are empty when tracing is off.
func (r *Reconciler) Collector(mesh, name string) (backendType, collector string, ok bool) {
	rules, ok := r.Rules(mesh, name)
	if !ok {
		return "", "", false
	}
	backendType, collector = meshtrace.EffectiveCollector(rules.Conf)
	return backendType, collector, true
}

// Proxies returns every proxy's effective tracing, sorted by mesh and name,
// in the shape ZoneInsight reports.
func (r *Reconciler) Proxies() []resource.ProxyTracing {
	r.mu.RLock()
	defer r.mu.RUnlock()
	out := make([]resource.ProxyTracing, 0, len(r.proxies))
	for k, p := range r.proxies {
		pt := resource.ProxyTracing{Mesh: k.Mesh, Name: k.Name}
		if spec, ok := p.dp.Spec.(*resource.DataplaneSpec); ok {
			pt.Service = spec.IdentifyingService()
		}
		if p.built != nil {
			pt.Backend, pt.Collector = meshtrace.EffectiveCollector(p.built.rules.Conf)
			for _, pk := range p.built.rules.Policies {
				pt.Policies = append(pt.Policies, pk.Name)
			}
			if rs := p.built.residency; rs.violation != "" {
				pt.ResidencyViolation, pt.ResidencyCollector, pt.ResidencyBlocked = rs.violation, rs.collector, rs.blocked
			}
		}
		out = append(out, pt)
	}
	sort.Slice(out, func(i, j int) bool {
		if out[i].Mesh != out[j].Mesh {
			return out[i].Mesh < out[j].Mesh
		}
		return out[i].Name < out[j].Name
	})
	return out
}

// DumpJSON returns a proxy's current xDS resources as indented JSON (see Dump).
func (r *Reconciler) DumpJSON(mesh, name string) ([]byte, error) {
	snap, ok := r.Snapshot(mesh, name)
	if !ok {
		return nil, ErrUnknownProxy
	}
	return Dump(snap)
}
