package residency

import (
	"context"
	"errors"
	"fmt"
	"runtime"
	"slices"
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
	d, err := ix.serialize(ctx, some.Type == resource.TypeZone)
	if err != nil {
		return nil, err
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

// serialize starts a serialized admission (Admit, AdmitBatch): it takes
// admitMu and waits, at most AdmitWait, until the index reflects the last
// write admitted before. The Decision holds admitMu until Done; on an error
// it is already released. zone marks a decision that admits Zone writes.
func (ix *Index) serialize(ctx context.Context, zone bool) (*Decision, error) {
	ix.admitMu.Lock()
	d := &Decision{ix: ix, zone: zone}
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
	return d, nil
}

// admitPolicy fills d for a MeshTrace write. Callers hold ix.mu.
func (ix *Index) admitPolicy(d *Decision, old, cur *resource.Resource) {
	for _, a := range ix.admitChanges([]change{{old: old, cur: cur}}) {
		if a.enforce {
			d.Refused = append(d.Refused, a.v)
		} else {
			d.Audited = append(d.Audited, a.v)
		}
	}
	sortVerdicts(d.Refused)
	sortVerdicts(d.Audited)
}

// change is one MeshTrace write: old is the stored version (nil on create or
// when unknown), cur the one to store (nil on delete).
type change struct{ old, cur *resource.Resource }

func (c change) key() resource.Key {
	if c.cur != nil {
		return c.cur.Key()
	}
	return c.old.Key()
}

// attributed is a new violation and the change it is charged to.
type attributed struct {
	v       Verdict
	item    int // index into the changes
	enforce bool
}

// admitChanges evaluates MeshTrace writes together: every proxy any version
// of any of them selects is checked under the policies as they will be after
// all of them, and each new violation is charged to the change whose policy
// brings the collector in, else to the first change selecting the proxy.
// Callers hold ix.mu.
func (ix *Index) admitChanges(changes []change) []attributed {
	byMesh := map[string][]int{}
	for i, c := range changes {
		if c.cur == nil && c.old == nil {
			continue
		}
		k := c.key()
		byMesh[k.Mesh] = append(byMesh[k.Mesh], i)
	}
	var out []attributed
	for mesh, idx := range byMesh {
		out = append(out, ix.admitMesh(mesh, changes, idx)...)
	}
	return out
}

func (ix *Index) admitMesh(mesh string, changes []change, idx []int) []attributed {
	ms := ix.meshes[mesh]
	if ms == nil || len(ms.dps) == 0 {
		return nil
	}
	// The policies of the mesh as they will be after the writes, most
	// specific first; and every version that may select a proxy.
	written := map[resource.Key]*resource.Resource{}
	var selectors [][]*resource.Resource // per change: old, indexed, cur
	for _, i := range idx {
		c := changes[i]
		k := c.key()
		written[k] = c.cur
		indexed := ms.policies[k] // may be fresher or staler than old
		var sel []*resource.Resource
		for _, p := range []*resource.Resource{c.old, indexed, c.cur} {
			if p != nil && !slices.Contains(sel, p) {
				sel = append(sel, p)
			}
		}
		selectors = append(selectors, sel)
	}
	entries := ms.entries()
	if svcs, ok := selectorServices(selectors); ok && narrowByService {
		// Every version of every change is a MeshService policy: only the
		// proxies of those services can be selected.
		entries = ms.serviceEntries(svcs)
		if len(entries) == 0 {
			return nil
		}
	}
	current := ms.policyList()
	var after []*resource.Resource
	if len(written) <= maxIncremental {
		// A few writes: edit the sorted list (copies) instead of sorting it again.
		after = current
		for k, p := range written {
			if indexed := ms.policies[k]; indexed != nil {
				after = withoutPolicy(after, indexed)
			}
			if p != nil {
				after = withPolicy(after, p)
			}
		}
	} else {
		after = make([]*resource.Resource, 0, len(current)+len(idx))
		for _, p := range current {
			if _, ok := written[p.Key()]; !ok {
				after = append(after, p)
			}
		}
		for _, p := range written {
			if p != nil {
				after = append(after, p)
			}
		}
		sortMostSpecificFirst(after)
	}
	afterIdx := meshtrace.NewIndex(after)
	ms.gatewayList() // built here: the workers below only read it
	// Proxies are checked in parallel chunks; each chunk has its own cache.
	workers := 1
	if len(entries) >= parallelThreshold {
		workers = runtime.GOMAXPROCS(0)
	}
	results := make([][]attributed, workers)
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
				first := -1
				for j, sel := range selectors {
					for _, p := range sel {
						if first < 0 && selects(p, e.r, z.Name, gw) {
							first = j
						}
					}
				}
				if first < 0 {
					continue
				}
				v := evaluate(e.r, e.name, afterIdx.Candidates(e.r), z, cache, gw...)
				if v.Allowed {
					continue
				}
				if before, ok := ix.verdicts[e.key]; ok && !before.Allowed && before.Collector == v.Collector && before.Backend == v.Backend {
					continue // already exported there: not these writes' doing
				}
				item := idx[first]
				for _, j := range idx {
					if k := changes[j].key(); v.Policy != nil && v.Policy.Mesh == k.Mesh && v.Policy.Name == k.Name {
						item = j
					}
				}
				results[w] = append(results[w], attributed{v: v, item: item, enforce: z.Mode == resource.ResidencyEnforce})
			}
		})
	}
	wg.Wait()
	var out []attributed
	for _, r := range results {
		out = append(out, r...)
	}
	return out
}

// maxIncremental is the number of writes up to which admission edits the
// mesh's sorted policy list rather than sorting a new one.
const maxIncremental = 16

// selects reports whether policy p takes part for dp of zone.
// narrowByService lets admission and the index look only at the proxies of
// a MeshService policy's service; tests turn it off to compare.
var narrowByService = true

// selectorServices lists the services the selectors name when every one is
// a MeshService or MeshServiceSubset policy (see targetService).
func selectorServices(selectors [][]*resource.Resource) ([]string, bool) {
	var out []string
	for _, sel := range selectors {
		for _, p := range sel {
			s, ok := targetService(p)
			if !ok {
				return nil, false
			}
			if !slices.Contains(out, s) {
				out = append(out, s)
			}
		}
	}
	return out, true
}

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
			if v := evaluate(e.r, e.name, ms.policyIndex().Candidates(e.r), z, cache, ms.gateway(e)...); !v.Allowed {
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

// BatchDecision is the verdict on several writes stored together (POST
// /_apply): Items[i] is item i's share, as a Decision without its lock.
type BatchDecision struct {
	Items []Decision
	d     *Decision
}

// Allowed reports whether every item may be stored.
func (b *BatchDecision) Allowed() bool {
	for i := range b.Items {
		if !b.Items[i].Allowed() {
			return false
		}
	}
	return true
}

// Done is as Decision.Done, once for the whole batch.
func (b *BatchDecision) Done(rev int64) { b.d.Done(rev) }

// AdmitBatch evaluates writes stored together (cur[i] to store; creates and
// updates only, as POST /_apply does): the MeshTraces are checked as one
// change, so documents that violate only together are refused together, and
// each violation is charged to the document whose policy brings the
// collector in (else the first one selecting the proxy). Zone writes get
// their Current violations; other types pass. Locking is as for Admit.
func (ix *Index) AdmitBatch(ctx context.Context, cur []*resource.Resource) (*BatchDecision, error) {
	b := &BatchDecision{Items: make([]Decision, len(cur))}
	policies, zones := false, false
	for _, r := range cur {
		switch r.Type {
		case resource.TypeMeshTrace:
			policies = true
		case resource.TypeZone:
			zones = true
		}
	}
	if !policies && !zones {
		b.d = &Decision{}
		return b, nil
	}
	if !zones {
		if d := ix.admitUnchecked(); d != nil {
			b.d = d
			return b, nil
		}
	}
	d, err := ix.serialize(ctx, zones)
	if err != nil {
		return nil, err
	}
	b.d = d
	ix.mu.Lock()
	defer ix.mu.Unlock()
	changes := make([]change, len(cur))
	for i, r := range cur {
		switch r.Type {
		case resource.TypeMeshTrace:
			changes[i] = change{cur: r}
		case resource.TypeZone:
			b.Items[i].Current = ix.zoneViolations(r.Name, r)
		}
	}
	for _, a := range ix.admitChanges(changes) {
		it := &b.Items[a.item]
		if a.enforce {
			it.Refused = append(it.Refused, a.v)
		} else {
			it.Audited = append(it.Audited, a.v)
		}
	}
	for i := range b.Items {
		sortVerdicts(b.Items[i].Refused)
		sortVerdicts(b.Items[i].Audited)
	}
	return b, nil
}
