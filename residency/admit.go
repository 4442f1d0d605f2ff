package residency

import (
	"context"
	"errors"
	"fmt"
	"runtime"
	"sort"
	"sync"
	"time"

	"github.com/meshtrace/meshtrace/policy/meshtrace"
	"github.com/meshtrace/meshtrace/resource"
)

// parallelThreshold is the number of proxies of a mesh from which admission
// checks them on every core.
const parallelThreshold = 2000

// ErrNotReady is returned by Admit when the index has not loaded the store
// (or has not caught up with the last write admitted) within AdmitWait.
var ErrNotReady = errors.New("residency: the residency index is not ready")

// AdmitWait bounds how long Admit waits for the index to reflect the last
// write it admitted.
const AdmitWait = 5 * time.Second

// Decision is the verdict on one write.
type Decision struct {
	// Refused are the new violations in zones in Enforce mode; the write must
	// not be stored when there is any.
	Refused []Verdict
	// Audited are the new violations in zones in Audit mode: admitted and
	// recorded (the continuous audit logs and lists them once stored).
	Audited []Verdict
	// Current, for Zone writes, are the violations the zone's new residency
	// finds among its proxies as they are now.
	Current []Verdict

	ix       *Index
	released bool
	shared   bool // holds admitMu's read side (a write no zone checks)
	zone     bool // a Zone write: later fast-path admits wait for it
}

// Allowed reports whether the write may be stored.
func (d *Decision) Allowed() bool { return len(d.Refused) == 0 }

// Done must be called once the write was stored (rev > 0) or not (rev 0):
// it lets the next write be admitted, after the index has seen this one.
func (d *Decision) Done(rev int64) {
	if d == nil || d.ix == nil || d.released {
		return
	}
	d.released = true
	if rev > 0 {
		d.ix.mu.Lock()
		if rev > d.ix.lastWrite {
			d.ix.lastWrite = rev
		}
		if d.zone && rev > d.ix.lastZoneWrite {
			d.ix.lastZoneWrite = rev
		}
		d.ix.mu.Unlock()
	}
	if d.shared {
		d.ix.admitMu.RUnlock()
		return
	}
	d.ix.admitMu.Unlock()
}

// Admit evaluates a write before it is stored: old is the stored resource
// (nil on create), cur the resource to store (nil on delete). MeshTrace
// writes are checked against every proxy the old or the new version selects,
// with every other policy of the mesh as the index holds them; a proxy
// counts as a new violation when, after the write, it exports to a collector
// its zone does not allow and did not already export there before. Zone
// writes are never refused; their Decision lists the proxies the new
// residency would flag (Current). Other types are admitted as they are.
//
// Admitted writes are serialized: the returned Decision holds a lock until
// Done, and the next Admit first waits for the index to reflect the
// previous write, so two writes through one control plane cannot each pass
// alone and violate together. While no zone has checks, MeshTrace writes
// are admitted at once and run concurrently (see admitUnchecked); Zone
// writes stay serialized with everything.
func (ix *Index) Admit(ctx context.Context, old, cur *resource.Resource) (*Decision, error) {
	some := cur
	if some == nil {
		some = old
	}
	if some == nil {
		return &Decision{}, nil
	}
	switch some.Type {
	case resource.TypeMeshTrace, resource.TypeZone:
	default:
		return &Decision{}, nil
	}
	if some.Type == resource.TypeMeshTrace {
		if d := ix.admitUnchecked(); d != nil {
			return d, nil
		}
	}
	ix.admitMu.Lock()
	d := &Decision{ix: ix, zone: some.Type == resource.TypeZone}
	ix.mu.Lock()
	want := ix.lastWrite
	ix.mu.Unlock()
	wctx, cancel := context.WithTimeout(ctx, AdmitWait)
	err := ix.WaitFor(wctx, want)
	cancel()
	if err != nil {
		d.Done(0)
		if ctx.Err() != nil {
			return nil, ctx.Err()
		}
		return nil, fmt.Errorf("%w: it has not loaded the store's state (revision %d) within %s", ErrNotReady, want, AdmitWait)
	}
	ix.mu.Lock()
	defer ix.mu.Unlock()
	if some.Type == resource.TypeZone {
		d.Current = ix.zoneViolations(some.Name, cur)
		return d, nil
	}
	ix.admitPolicy(d, old, cur)
	return d, nil
}

// admitPolicy fills d for a MeshTrace write. Callers hold ix.mu.
func (ix *Index) admitPolicy(d *Decision, old, cur *resource.Resource) {
	some := cur
	if some == nil {
		some = old
	}
	ms := ix.meshes[some.Mesh]
	if ms == nil || len(ms.dps) == 0 {
		return
	}
	// The policies of the mesh as they will be after the write, most
	// specific first.
	current := ms.policyList()
	after := make([]*resource.Resource, 0, len(current)+1)
	for _, p := range current {
		if p.Key() != some.Key() {
			after = append(after, p)
		}
	}
	if cur != nil {
		after = append(after, cur)
		sortMostSpecificFirst(after)
	}
	ms.gatewayList()                   // built here: the workers below only read it
	indexed := ms.policies[some.Key()] // may be fresher or staler than old
	if indexed == old {
		indexed = nil
	}
	entries := ms.entries()
	// Proxies are checked in parallel chunks; each chunk has its own cache.
	workers := 1
	if len(entries) >= parallelThreshold {
		workers = runtime.GOMAXPROCS(0)
	}
	type result struct{ refused, audited []Verdict }
	results := make([]result, workers)
	var wg sync.WaitGroup
	for w := range workers {
		wg.Go(func() {
			cache := checkCache{}
			for i := w; i < len(entries); i += workers {
				e := entries[i]
				z := ix.zone(e.zone)
				if !z.Checked() {
					continue
				}
				gw := ms.gateway(e)
				if !selects(old, e.r, z.Name, gw) && !selects(indexed, e.r, z.Name, gw) && !selects(cur, e.r, z.Name, gw) {
					continue
				}
				v := evaluate(e.r, e.name, after, z, cache, gw...)
				if v.Allowed {
					continue
				}
				if before, ok := ix.verdicts[e.key]; ok && !before.Allowed && before.Collector == v.Collector && before.Backend == v.Backend {
					continue // already exported there: not this write's doing
				}
				if z.Mode == resource.ResidencyEnforce {
					results[w].refused = append(results[w].refused, v)
				} else {
					results[w].audited = append(results[w].audited, v)
				}
			}
		})
	}
	wg.Wait()
	for _, r := range results {
		d.Refused = append(d.Refused, r.refused...)
		d.Audited = append(d.Audited, r.audited...)
	}
	sortVerdicts(d.Refused)
	sortVerdicts(d.Audited)
}

// selects reports whether policy p takes part for dp of zone.
func selects(p, dp *resource.Resource, zone string, gw []*resource.Resource) bool {
	return p != nil && AppliesIn(p, zone) && meshtrace.Affects(p, dp, gw...)
}

// zoneViolations evaluates every proxy of zone under the residency of cur
// (nil: the zone deleted, which turns checks off). Callers hold ix.mu.
func (ix *Index) zoneViolations(zone string, cur *resource.Resource) []Verdict {
	if cur == nil {
		return nil
	}
	spec, _ := cur.Spec.(*resource.ZoneSpec)
	z := CompileZone(zone, spec)
	if !z.Checked() {
		return nil
	}
	var out []Verdict
	cache := checkCache{}
	for _, ms := range ix.meshes {
		for _, e := range ms.entries() {
			if e.zone != zone {
				continue
			}
			if v := evaluate(e.r, e.name, ms.policyList(), z, cache, ms.gateway(e)...); !v.Allowed {
				out = append(out, v)
			}
		}
	}
	sortVerdicts(out)
	return out
}

func sortVerdicts(vs []Verdict) {
	sort.Slice(vs, func(i, j int) bool {
		a, b := vs[i], vs[j]
		return cmpStrings(a.Zone, b.Zone, a.Mesh, b.Mesh, a.Proxy, b.Proxy) < 0
	})
}

// admitUnchecked admits a MeshTrace write at once, without serializing it
// behind other writes, when no zone has residency checks (Enforce or Audit):
// no proxy can then violate anything. It needs an index that has seen every
// Zone write admitted here (those may turn checks on). The decision holds
// admitMu's read side until Done, so a Zone write waits for such writes to
// finish and they wait for it. It returns nil when the full path is needed.
func (ix *Index) admitUnchecked() *Decision {
	ix.admitMu.RLock()
	ix.mu.Lock()
	ok := ix.ready && ix.rev >= ix.lastZoneWrite
	for _, z := range ix.compiled {
		ok = ok && !z.Checked()
	}
	ix.mu.Unlock()
	if !ok {
		ix.admitMu.RUnlock()
		return nil
	}
	return &Decision{ix: ix, shared: true}
}
