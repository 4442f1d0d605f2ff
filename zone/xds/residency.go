package xds

import (
	"context"

	"github.com/meshtrace/meshtrace/policy/meshtrace"
	"github.com/meshtrace/meshtrace/residency"
	"github.com/meshtrace/meshtrace/resource"
)

// guard is the zone's own residency check, applied to every proxy's merged
// configuration before it is built: defence in depth behind global's
// admission, so a policy written straight into a store, or a global running
// an older build, still cannot send a proxy's spans out of the zone.
type guard struct {
	zone   residency.Zone
	digest digest // folded into every proxy's inputs
}

// residencyState is what the guard found for one build.
type residencyState struct {
	// violation says why the collector is outside the zone ("" when allowed).
	violation string
	collector string
	// blocked: in Enforce mode the proxy is served tracing off.
	blocked bool
}

// SetResidency sets the zone's residency (from its Zone resource; a zero
// Zone or mode Off turns the check off) and rebuilds the proxies it changes.
func (r *Reconciler) SetResidency(ctx context.Context, z residency.Zone) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	d := hashJSON(z.Name, z.Mode, z.Allowed.Strings())
	if !z.Checked() {
		d = digest{}
	}
	if d == r.guard.digest {
		r.guard.zone = z
		return nil
	}
	r.guard = guard{zone: z, digest: d}
	r.log.Info("residency", "zone", z.Name, "mode", z.Mode, "allowed", z.Allowed.Strings())
	dirty := make(map[resource.Key]bool, len(r.proxies))
	for k := range r.proxies {
		dirty[k] = true
	}
	return r.syncLocked(ctx, dirty)
}

// enforce checks merged rules; in Enforce mode a collector outside the zone
// turns tracing off in rules.
func (g guard) enforce(rules *meshtrace.Rules) residencyState {
	if !g.zone.Checked() {
		return residencyState{}
	}
	ok, collector, reason := residency.Check(rules.Conf, g.zone)
	if ok {
		return residencyState{}
	}
	st := residencyState{violation: reason, collector: collector}
	if g.zone.Mode == resource.ResidencyEnforce {
		rules.Conf.Backends = &[]resource.Backend{}
		st.blocked = true
	}
	return st
}

// logResidency logs a proxy whose build newly violates the zone's residency.
func (r *Reconciler) logResidency(k resource.Key, prev, cur *built) {
	if cur.residency.violation == "" || (prev != nil && prev.residency == cur.residency) {
		return
	}
	if cur.residency.blocked {
		r.log.Warn("residency: proxy served with tracing off, its collector is outside the zone",
			"mesh", k.Mesh, "name", k.Name, "collector", cur.residency.collector, "reason", cur.residency.violation)
		return
	}
	r.log.Warn("residency violation (Audit): proxy exports outside the zone",
		"mesh", k.Mesh, "name", k.Name, "collector", cur.residency.collector, "reason", cur.residency.violation)
}

// ResidencyWarning says why a proxy's collector is outside the zone's
// residency and what the zone did about it; "" when nothing is wrong.
func (r *Reconciler) ResidencyWarning(mesh, name string) string {
	r.mu.RLock()
	defer r.mu.RUnlock()
	p, ok := r.lookup(mesh, name)
	if !ok || p.built == nil || p.built.residency.violation == "" {
		return ""
	}
	rs := p.built.residency
	if rs.blocked {
		return "residency (Enforce): tracing is off: the policies send spans to " + rs.collector + ", and " + rs.violation
	}
	return "residency (Audit): the policies send spans to " + rs.collector + ", and " + rs.violation
}
