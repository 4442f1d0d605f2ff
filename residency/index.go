package residency

import (
	"context"
	"errors"
	"fmt"
	"runtime"
	"slices"
	"sort"
	"strings"
	"sync"
	"time"

	"github.com/hashicorp/go-hclog"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/meshtrace/meshtrace/policy/meshtrace"
	"github.com/meshtrace/meshtrace/resource"
	"github.com/meshtrace/meshtrace/store"
)

// watchedTypes are what the evaluation depends on.
var watchedTypes = []resource.Type{resource.TypeZone, resource.TypeDataplane, resource.TypeMeshTrace, resource.TypeMeshGateway}

// Config configures an Index.
type Config struct {
	// Store is watched (Run) for Zones, Dataplanes and MeshTraces.
	Store  store.Store
	Logger hclog.Logger
	// Registerer receives meshtrace_residency_violations{zone}; nil keeps it unregistered.
	Registerer prometheus.Registerer
	// LocalZone, set on a zone control plane, is the zone of every Dataplane
	// that has no kuma.io/zone label. Empty on global.
	LocalZone string
	// Now is the clock (tests); nil means time.Now.
	Now func() time.Time
}

// Index holds Zones, Dataplanes and MeshTraces in memory, the verdict of
// every proxy, and the current violations. It is safe for concurrent use.
type Index struct {
	cfg     Config
	log     hclog.Logger
	now     func() time.Time
	metric  *prometheus.GaugeVec
	admitMu sync.RWMutex // serializes admitted writes, see Admit

	mu        sync.Mutex
	changed   chan struct{} // closed and replaced whenever rev moves
	ready     bool
	rev       int64
	lastWrite int64 // revision of the last write admitted here
	// lastZoneWrite is the revision of the last Zone write admitted here.
	lastZoneWrite int64
	zones         map[string]*resource.Resource
	compiled      map[string]Zone
	meshes        map[string]*meshState
	verdicts      map[resource.Key]Verdict
	violations    map[resource.Key]Violation
}

type meshState struct {
	policies map[resource.Key]*resource.Resource
	list     []*resource.Resource // policies, most specific first; nil when stale
	idx      *meshtrace.Index     // list indexed; built with it
	dps      map[resource.Key]*dpEntry
	dpList   []*dpEntry                          // dps as a slice; nil when stale
	gateways map[resource.Key]*resource.Resource // MeshGateways
	gwList   []*resource.Resource                // nil when stale
	// byService holds the proxies by every kuma.io/service of their tag
	// sets: a MeshService policy can select no others.
	byService map[string]map[resource.Key]*dpEntry
}

// dpEntry is a Dataplane with what evaluation reads of it every time.
type dpEntry struct {
	key  resource.Key
	r    *resource.Resource
	zone string
	name string // ProxyName
	// gateway marks builtin gateways, which a MeshGateway may configure.
	gateway bool
	// services are the kuma.io/service values of its tag sets (byService).
	services []string
}

// serviceTags lists the kuma.io/service values of a proxy's tag sets, each
// once.
func serviceTags(r *resource.Resource) []string {
	ds, _ := r.Spec.(*resource.DataplaneSpec)
	if ds == nil {
		return nil
	}
	var out []string
	for _, tags := range ds.TagSets() {
		if s, ok := tags[resource.TagService]; ok && !slices.Contains(out, s) {
			out = append(out, s)
		}
	}
	return out
}

func (m *meshState) indexServices(e *dpEntry) {
	for _, s := range e.services {
		set := m.byService[s]
		if set == nil {
			set = map[resource.Key]*dpEntry{}
			m.byService[s] = set
		}
		set[e.key] = e
	}
}

// serviceEntries lists the proxies of any of services, each once.
func (m *meshState) serviceEntries(services []string) []*dpEntry {
	var out []*dpEntry
	for i, s := range services {
		for k, e := range m.byService[s] {
			if i > 0 && slices.ContainsFunc(services[:i], func(prev string) bool { return m.byService[prev][k] != nil }) {
				continue // listed under an earlier service
			}
			out = append(out, e)
		}
	}
	return out
}

func (m *meshState) unindexServices(e *dpEntry) {
	for _, s := range e.services {
		if set := m.byService[s]; set != nil {
			delete(set, e.key)
			if len(set) == 0 {
				delete(m.byService, s)
			}
		}
	}
}

// policyList returns the mesh's policies, most specific first (the reverse
// of the merge order, see meshtrace.Less).
func (m *meshState) policyList() []*resource.Resource {
	if m.list == nil {
		m.list = make([]*resource.Resource, 0, len(m.policies))
		for _, p := range m.policies {
			m.list = append(m.list, p)
		}
		sortMostSpecificFirst(m.list)
		m.idx = nil
	}
	if m.idx == nil {
		m.idx = meshtrace.NewIndex(m.list)
	}
	return m.list
}

// policyIndex returns policyList indexed: the candidates of a proxy, most
// specific first, are the policies evaluate needs to look at.
func (m *meshState) policyIndex() *meshtrace.Index {
	m.policyList()
	return m.idx
}

// sortMostSpecificFirst orders policies so that the first one selecting a
// proxy and setting backends is the one whose backends the merge keeps.
// Zone-originated policies are ordered by the name they have on their zone
// (kuma.io/display-name; global stores them under a hashed name), so that
// ties between them break as on the zone, where they are merged.
func sortMostSpecificFirst(ps []*resource.Resource) {
	slices.SortFunc(ps, mostSpecificFirst)
}

// mostSpecificFirst orders policies most specific first (the reverse of
// meshtrace.Less on their names on the zone); ties, possible between
// zone-originated policies of two zones, break by their names on global.
func mostSpecificFirst(a, b *resource.Resource) int {
	az, bz := asOnZone(a), asOnZone(b)
	switch {
	case meshtrace.Less(bz, az):
		return -1
	case meshtrace.Less(az, bz):
		return 1
	}
	return strings.Compare(a.Name, b.Name)
}

// asOnZone is p under the name it has where it is merged.
func asOnZone(p *resource.Resource) *resource.Resource {
	if n := nameOnZone(p); n != p.Name {
		cp := *p
		cp.Name = n
		return &cp
	}
	return p
}

// withoutPolicy returns list (most specific first) without p, by copy: a
// list handed out before stays as it was.
func withoutPolicy(list []*resource.Resource, p *resource.Resource) []*resource.Resource {
	i, found := slices.BinarySearchFunc(list, p, mostSpecificFirst)
	if !found || list[i] != p {
		if i = slices.Index(list, p); i < 0 {
			return list
		}
	}
	out := make([]*resource.Resource, 0, len(list)-1)
	return append(append(out, list[:i]...), list[i+1:]...)
}

// samePlace returns the position of old in list (most specific first) when
// cur, put there instead, keeps the list in order, so that withoutPolicy
// then withPolicy would give the same list; else -1.
func samePlace(list []*resource.Resource, old, cur *resource.Resource) int {
	i, found := slices.BinarySearchFunc(list, old, mostSpecificFirst)
	if !found || list[i] != old {
		if i = slices.Index(list, old); i < 0 {
			return -1
		}
	}
	if (i > 0 && mostSpecificFirst(list[i-1], cur) >= 0) || (i+1 < len(list) && mostSpecificFirst(cur, list[i+1]) >= 0) {
		return -1
	}
	return i
}

// withPolicy returns list (most specific first) with p inserted in order,
// by copy. One change then costs a copy of the list, not a sort of it.
func withPolicy(list []*resource.Resource, p *resource.Resource) []*resource.Resource {
	i, _ := slices.BinarySearchFunc(list, p, mostSpecificFirst)
	out := make([]*resource.Resource, 0, len(list)+1)
	out = append(append(out, list[:i]...), p)
	return append(out, list[i:]...)
}

// nameOnZone is the name a policy has where it is merged: a zone-originated
// policy's kuma.io/display-name, else its name.
func nameOnZone(p *resource.Resource) string {
	if p.Labels[resource.LabelOrigin] == resource.OriginZone {
		if d := p.Labels[resource.LabelDisplayName]; d != "" {
			return d
		}
	}
	return p.Name
}

// gatewayList builds the MeshGateway slice when stale. Admission builds it
// before checking proxies on several goroutines, which then only read it.
func (m *meshState) gatewayList() []*resource.Resource {
	if m.gwList == nil {
		m.gwList = make([]*resource.Resource, 0, len(m.gateways))
		for _, g := range m.gateways {
			m.gwList = append(m.gwList, g)
		}
	}
	return m.gwList
}

func (m *meshState) entries() []*dpEntry {
	if m.dpList == nil {
		m.dpList = make([]*dpEntry, 0, len(m.dps))
		for _, e := range m.dps {
			m.dpList = append(m.dpList, e)
		}
	}
	return m.dpList
}

// gateway is the MeshGateway configuring a builtin gateway proxy (nil for
// other proxies).
func (m *meshState) gateway(e *dpEntry) []*resource.Resource {
	if !e.gateway || len(m.gateways) == 0 {
		return nil
	}
	m.gatewayList()
	if gw := meshtrace.SelectGateway(e.r, m.gwList); gw != nil {
		return []*resource.Resource{gw}
	}
	return nil
}

// Violation is a current violation and since when it is known.
type Violation struct {
	Verdict
	Mode  resource.ResidencyMode `json:"mode"`
	Since time.Time              `json:"since"`
}

// NewIndex returns an empty index; Run fills it from the store.
func NewIndex(cfg Config) (*Index, error) {
	if cfg.Logger == nil {
		cfg.Logger = hclog.NewNullLogger()
	}
	now := cfg.Now
	if now == nil {
		now = time.Now
	}
	ix := &Index{
		cfg: cfg, log: cfg.Logger, now: now,
		changed: make(chan struct{}),
		metric: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "meshtrace_residency_violations",
			Help: "Proxies whose effective trace collector is outside their zone's allowed collectors (zones in Enforce or Audit).",
		}, []string{"zone"}),
	}
	ix.reset()
	if cfg.Registerer != nil {
		if err := cfg.Registerer.Register(ix.metric); err != nil {
			return nil, fmt.Errorf("residency: register metrics: %w", err)
		}
	}
	return ix, nil
}

func (ix *Index) reset() {
	ix.zones = map[string]*resource.Resource{}
	ix.compiled = map[string]Zone{}
	ix.meshes = map[string]*meshState{}
	ix.verdicts = map[resource.Key]Verdict{}
	if ix.violations == nil {
		ix.violations = map[resource.Key]Violation{}
	}
}

// Run keeps the index current with the store until ctx ends: it lists at one
// revision, then follows a watch from the next; when the watch cannot go on
// (compaction, overflow) it lists again and re-evaluates everything.
func (ix *Index) Run(ctx context.Context) error {
	if ix.cfg.Store == nil {
		return errors.New("residency: Config.Store is required to Run")
	}
	backoff := 100 * time.Millisecond
	for {
		rev, err := ix.relist(ctx)
		if err == nil {
			backoff = 100 * time.Millisecond
			err = ix.follow(ctx, rev+1)
		}
		if ctx.Err() != nil {
			return nil
		}
		ix.log.Warn("store watch interrupted, listing again", "rev", rev, "error", err)
		select {
		case <-ctx.Done():
			return nil
		case <-time.After(backoff):
		}
		backoff = min(2*backoff, 5*time.Second)
	}
}

func (ix *Index) relist(ctx context.Context) (int64, error) {
	var rev int64
	var all []*resource.Resource
	for _, t := range watchedTypes {
		res, err := ix.cfg.Store.List(ctx, t, store.ListOptions{Revision: rev})
		if err != nil {
			return 0, fmt.Errorf("list %s: %w", t, err)
		}
		rev = res.Revision
		all = append(all, res.Items...)
	}
	ix.Load(rev, all)
	return rev, nil
}

func (ix *Index) follow(ctx context.Context, from int64) error {
	ch, err := ix.cfg.Store.Watch(ctx, store.WatchOptions{Types: watchedTypes, FromRevision: from})
	if err != nil {
		return fmt.Errorf("watch: %w", err)
	}
	for resp := range ch {
		if resp.Err != nil {
			return resp.Err
		}
		ix.Apply(resp.Revision, resp.Events)
	}
	if ctx.Err() != nil {
		return nil
	}
	return errors.New("watch channel closed")
}

// Load replaces the whole state with items read at rev and re-evaluates
// every proxy.
func (ix *Index) Load(rev int64, items []*resource.Resource) {
	ix.mu.Lock()
	defer ix.mu.Unlock()
	ix.reset()
	for _, r := range items {
		ix.put(r)
	}
	next := map[resource.Key]Verdict{}
	cache := checkCache{}
	for _, ms := range ix.meshes {
		for _, e := range ms.entries() {
			next[e.key] = ix.evaluate(e, ms, cache)
		}
	}
	ix.verdicts = next
	ix.diffViolations(nil)
	ix.ready = true
	ix.advance(rev)
}

// Apply applies a batch of store events of revision rev (a watch response)
// and re-evaluates the proxies they can change.
func (ix *Index) Apply(rev int64, events []store.Event) {
	ix.mu.Lock()
	defer ix.mu.Unlock()
	dirty := map[resource.Key]bool{}
	policies := 0
	for _, ev := range events {
		if ev.Resource.Type == resource.TypeMeshTrace {
			policies++
		}
	}
	if policies > maxIncremental {
		// Many policies (a snapshot, a bulk apply): one sort beats as many
		// copies of the list as policies.
		for _, ev := range events {
			if ms := ix.meshes[ev.Resource.Mesh]; ms != nil && ev.Resource.Type == resource.TypeMeshTrace {
				ms.list, ms.idx = nil, nil
			}
		}
	}
	zones := false
	for _, ev := range events {
		r := ev.Resource
		k := r.Key()
		switch k.Type {
		case resource.TypeZone:
			zones = true
			ix.markZone(dirty, k.Name)
		case resource.TypeDataplane:
			dirty[k] = true
		case resource.TypeMeshTrace:
			ix.markPolicy(dirty, ix.policy(k), r)
		case resource.TypeMeshGateway:
			ix.markGateways(dirty, k.Mesh)
		}
		if ev.Type == store.EventDelete {
			ix.remove(k)
		} else {
			ix.put(r)
		}
	}
	type job struct {
		e  *dpEntry
		ms *meshState
	}
	jobs := make([]job, 0, len(dirty))
	for k := range dirty {
		ms := ix.meshes[k.Mesh]
		var e *dpEntry
		if ms != nil {
			e = ms.dps[k]
		}
		if e == nil {
			delete(ix.verdicts, k)
			continue
		}
		ms.policyList() // built here: the workers below only read them
		ms.gatewayList()
		jobs = append(jobs, job{e, ms})
	}
	verdicts := make([]Verdict, len(jobs))
	forEach(len(jobs), func(cache checkCache, i int) {
		j := jobs[i]
		verdicts[i] = ix.evaluate(j.e, j.ms, cache)
	})
	for i, j := range jobs {
		ix.verdicts[j.e.key] = verdicts[i]
	}
	// No proxy to look at and no zone changed: the violations and their
	// counts per zone are what they were (a policy selecting no proxy).
	if len(dirty) > 0 || zones {
		ix.diffViolations(dirty)
	}
	ix.advance(rev)
}

// forEach calls fn for 0..n-1, on every core from parallelThreshold items;
// each goroutine has its own check cache.
func forEach(n int, fn func(cache checkCache, i int)) {
	if n < parallelThreshold {
		// Most changes touch a few proxies, or none: no goroutine.
		if n > 0 {
			cache := checkCache{}
			for i := range n {
				fn(cache, i)
			}
		}
		return
	}
	workers := runtime.GOMAXPROCS(0)
	var wg sync.WaitGroup
	for w := range workers {
		wg.Go(func() {
			cache := checkCache{}
			for i := w; i < n; i += workers {
				fn(cache, i)
			}
		})
	}
	wg.Wait()
}

// markZone marks every proxy of zone.
func (ix *Index) markZone(dirty map[resource.Key]bool, zone string) {
	for _, ms := range ix.meshes {
		for _, e := range ms.entries() {
			if e.zone == zone {
				dirty[e.key] = true
			}
		}
	}
}

// markGateways marks the builtin gateway proxies of a mesh.
func (ix *Index) markGateways(dirty map[resource.Key]bool, mesh string) {
	if ms := ix.meshes[mesh]; ms != nil {
		for _, e := range ms.entries() {
			if e.gateway {
				dirty[e.key] = true
			}
		}
	}
}

// markPolicy marks the proxies the old or the new version of a policy selects.
func (ix *Index) markPolicy(dirty map[resource.Key]bool, old, cur *resource.Resource) {
	ms := ix.meshes[cur.Mesh]
	if ms == nil {
		return
	}
	mark := func(e *dpEntry) {
		gw := ms.gateway(e)
		if (old != nil && meshtrace.Affects(old, e.r, gw...)) || meshtrace.Affects(cur, e.r, gw...) {
			dirty[e.key] = true
		}
	}
	// A MeshService policy (before and after the change) can only select
	// proxies with its service: only they are looked at, not the whole mesh.
	oldSvc, oldOK := targetService(old)
	curSvc, curOK := targetService(cur)
	if (old == nil || oldOK) && curOK && narrowByService {
		for _, e := range ms.byService[curSvc] {
			mark(e)
		}
		if old != nil && oldSvc != curSvc {
			for _, e := range ms.byService[oldSvc] {
				mark(e)
			}
		}
		return
	}
	for _, e := range ms.entries() {
		mark(e)
	}
}

// targetService is the service a MeshService or MeshServiceSubset policy
// names: the only kuma.io/service of the proxies it can select (see
// meshtrace.Affects). ok is false for every other policy.
func targetService(p *resource.Resource) (string, bool) {
	if p == nil {
		return "", false
	}
	s, _ := p.Spec.(*resource.MeshTraceSpec)
	if s == nil || s.TargetRef == nil || s.TargetRef.Name == "" {
		return "", false
	}
	switch s.TargetRef.Kind {
	case resource.KindMeshService, resource.KindMeshServiceSubset:
		return s.TargetRef.Name, true
	}
	return "", false
}

func (ix *Index) advance(rev int64) {
	if rev > ix.rev {
		ix.rev = rev
	}
	close(ix.changed)
	ix.changed = make(chan struct{})
}

func (ix *Index) mesh(name string) *meshState {
	ms := ix.meshes[name]
	if ms == nil {
		ms = &meshState{policies: map[resource.Key]*resource.Resource{}, dps: map[resource.Key]*dpEntry{},
			gateways: map[resource.Key]*resource.Resource{}, byService: map[string]map[resource.Key]*dpEntry{}}
		ix.meshes[name] = ms
	}
	return ms
}

func (ix *Index) policy(k resource.Key) *resource.Resource {
	if ms := ix.meshes[k.Mesh]; ms != nil {
		return ms.policies[k]
	}
	return nil
}

func (ix *Index) put(r *resource.Resource) {
	k := r.Key()
	switch k.Type {
	case resource.TypeZone:
		ix.zones[k.Name] = r
		spec, _ := r.Spec.(*resource.ZoneSpec)
		ix.compiled[k.Name] = CompileZone(k.Name, spec)
	case resource.TypeDataplane:
		ms := ix.mesh(k.Mesh)
		e := &dpEntry{key: k, r: r, zone: ix.zoneOf(r), name: ProxyName(r), services: serviceTags(r)}
		if ds, _ := r.Spec.(*resource.DataplaneSpec); ds != nil {
			e.gateway = ds.IsBuiltinGateway()
		}
		if old := ms.dps[k]; old != nil {
			ms.unindexServices(old)
			*old = *e // in place: the slice stays valid
			ms.indexServices(old)
		} else {
			ms.dps[k] = e
			ms.dpList = nil
			ms.indexServices(e)
		}
	case resource.TypeMeshTrace:
		ms := ix.mesh(k.Mesh)
		old := ms.policies[k]
		ms.policies[k] = r
		if ms.list != nil {
			if old != nil {
				if i := samePlace(ms.list, old, r); i >= 0 {
					// An update that keeps its place (the usual case): the
					// index is updated in place instead of built again.
					list := slices.Clone(ms.list)
					list[i] = r
					if ms.idx != nil {
						ms.idx = ms.idx.Replaced(list, i)
					}
					ms.list = list
					return
				}
				ms.list = withoutPolicy(ms.list, old)
			}
			ms.list, ms.idx = withPolicy(ms.list, r), nil
		}
	case resource.TypeMeshGateway:
		ms := ix.mesh(k.Mesh)
		ms.gateways[k] = r
		ms.gwList = nil
	}
}

func (ix *Index) remove(k resource.Key) {
	switch k.Type {
	case resource.TypeZone:
		delete(ix.zones, k.Name)
		delete(ix.compiled, k.Name)
	case resource.TypeDataplane:
		if ms := ix.meshes[k.Mesh]; ms != nil {
			if e := ms.dps[k]; e != nil {
				ms.unindexServices(e)
			}
			delete(ms.dps, k)
			ms.dpList = nil
		}
	case resource.TypeMeshTrace:
		if ms := ix.meshes[k.Mesh]; ms != nil {
			if old := ms.policies[k]; old != nil && ms.list != nil {
				ms.list, ms.idx = withoutPolicy(ms.list, old), nil
			}
			delete(ms.policies, k)
		}
	case resource.TypeMeshGateway:
		if ms := ix.meshes[k.Mesh]; ms != nil {
			delete(ms.gateways, k)
			ms.gwList = nil
		}
	}
}

func (ix *Index) zoneOf(dp *resource.Resource) string {
	if z := ZoneOf(dp); z != "" {
		return z
	}
	return ix.cfg.LocalZone
}

// zone returns the compiled residency of a zone (Off when it has none).
func (ix *Index) zone(name string) Zone {
	if z, ok := ix.compiled[name]; ok {
		return z
	}
	return Zone{Name: name, Mode: resource.ResidencyOff}
}

// evaluate checks one proxy; zones that are Off never violate.
func (ix *Index) evaluate(e *dpEntry, ms *meshState, cache checkCache) Verdict {
	z := ix.zone(e.zone)
	v := evaluate(e.r, e.name, ms.policyIndex().Candidates(e.r), z, cache, ms.gateway(e)...)
	if !z.Checked() {
		v.Allowed, v.Reason = true, ""
	}
	return v
}

// maxLoggedPerChange caps the violations logged one by one per store
// change (a Mesh-wide policy may flag thousands of proxies at once).
const maxLoggedPerChange = 50

// diffViolations brings the violation set in line with the verdicts of the
// keys in dirty (every key when dirty is nil), logs each new and each
// resolved violation, and updates the metric.
func (ix *Index) diffViolations(dirty map[resource.Key]bool) {
	now := ix.now().UTC()
	var added, resolved int // beyond maxLoggedPerChange, only counted
	check := func(k resource.Key) {
		v, ok := ix.verdicts[k]
		old, was := ix.violations[k]
		switch {
		case ok && !v.Allowed:
			mode := ix.zone(v.Zone).Mode
			if was && old.Collector == v.Collector && samePolicy(old.Policy, v.Policy) && old.Mode == mode {
				old.Verdict = v
				ix.violations[k] = old
				return
			}
			ix.violations[k] = Violation{Verdict: v, Mode: mode, Since: now}
			if added++; added <= maxLoggedPerChange {
				ix.log.Warn("residency violation", "zone", v.Zone, "mesh", v.Mesh, "name", v.Proxy, "mode", mode,
					"backend", v.Backend, "collector", v.Collector, "policy", v.Policy.String(), "reason", v.Reason)
			}
		case was:
			delete(ix.violations, k)
			if resolved++; resolved <= maxLoggedPerChange {
				ix.log.Info("residency violation resolved", "zone", old.Zone, "mesh", old.Mesh, "name", old.Proxy,
					"collector", old.Collector)
			}
		}
	}
	defer func() {
		if added > maxLoggedPerChange {
			ix.log.Warn("residency violations not logged one by one: see GET /residency", "more", added-maxLoggedPerChange)
		}
		if resolved > maxLoggedPerChange {
			ix.log.Info("residency violations resolved, not logged one by one", "more", resolved-maxLoggedPerChange)
		}
	}()
	if dirty == nil {
		for k := range ix.violations {
			check(k)
		}
		for k := range ix.verdicts {
			check(k)
		}
	} else {
		for k := range dirty {
			check(k)
		}
	}
	counts := map[string]int{}
	for z := range ix.compiled {
		counts[z] = 0
	}
	for _, v := range ix.violations {
		counts[v.Zone]++
	}
	ix.metric.Reset()
	for z, n := range counts {
		ix.metric.WithLabelValues(z).Set(float64(n))
	}
}

func samePolicy(a, b *PolicyRef) bool {
	if a == nil || b == nil {
		return a == b
	}
	return *a == *b
}

// Ready reports whether the first list has been loaded.
func (ix *Index) Ready() bool {
	ix.mu.Lock()
	defer ix.mu.Unlock()
	return ix.ready
}

// Revision is the store revision the index reflects.
func (ix *Index) Revision() int64 {
	ix.mu.Lock()
	defer ix.mu.Unlock()
	return ix.rev
}

// WaitFor blocks until the index reflects revision rev and is loaded, or ctx ends.
func (ix *Index) WaitFor(ctx context.Context, rev int64) error {
	for {
		ix.mu.Lock()
		ok, ch := ix.ready && ix.rev >= rev, ix.changed
		ix.mu.Unlock()
		if ok {
			return nil
		}
		select {
		case <-ch:
		case <-ctx.Done():
			return ctx.Err()
		}
	}
}

// Violations returns the current violations, ordered by zone, mesh, proxy.
func (ix *Index) Violations() []Violation {
	ix.mu.Lock()
	defer ix.mu.Unlock()
	out := make([]Violation, 0, len(ix.violations))
	for _, v := range ix.violations {
		out = append(out, v)
	}
	sortViolations(out)
	return out
}

func sortViolations(vs []Violation) {
	sort.Slice(vs, func(i, j int) bool {
		a, b := vs[i], vs[j]
		return cmpStrings(a.Zone, b.Zone, a.Mesh, b.Mesh, a.Proxy, b.Proxy) < 0
	})
}

func cmpStrings(pairs ...string) int {
	for i := 0; i+1 < len(pairs); i += 2 {
		if c := strings.Compare(pairs[i], pairs[i+1]); c != 0 {
			return c
		}
	}
	return 0
}

// MaxProxyNames caps the proxy names listed per collector in a Report.
const MaxProxyNames = 50

// Report is GET /residency: per zone, its mode, allowed set, proxies by
// effective collector and current violations.
type Report struct {
	// Revision is the store revision the report reflects.
	Revision int64        `json:"revision"`
	Zones    []ZoneReport `json:"zones"`
}

// ZoneReport is one zone of a Report.
type ZoneReport struct {
	Zone              string                 `json:"zone"`
	Mode              resource.ResidencyMode `json:"mode"`
	AllowedCollectors []string               `json:"allowedCollectors"`
	// Proxies counts the zone's proxies global knows of.
	Proxies int `json:"proxies"`
	// TracingOff counts proxies without a tracing backend.
	TracingOff int                `json:"tracingOff"`
	Collectors []CollectorProxies `json:"collectors"`
	Violations []Violation        `json:"violations"`
	// ZoneReported are the proxies the zone itself found outside its allowed
	// collectors (ZoneInsight): served tracing off in Enforce mode.
	ZoneReported []ZoneReported `json:"zoneReported,omitempty"`
}

// ZoneReported is one proxy a zone's own check flagged.
type ZoneReported struct {
	Mesh      string `json:"mesh"`
	Proxy     string `json:"proxy"`
	Collector string `json:"collector"`
	// Blocked: the zone serves this proxy tracing off (Enforce).
	Blocked bool   `json:"blocked"`
	Reason  string `json:"reason"`
}

// CollectorProxies lists the proxies exporting to one collector.
type CollectorProxies struct {
	Backend   string `json:"backend"`
	Collector string `json:"collector"`
	Allowed   bool   `json:"allowed"`
	Count     int    `json:"count"`
	// Proxies are mesh/name, at most MaxProxyNames of them.
	Proxies []string `json:"proxies"`
}

// Report builds the current report for every zone known (by Zone resource
// or by a proxy), ordered by name.
func (ix *Index) Report() Report {
	ix.mu.Lock()
	defer ix.mu.Unlock()
	zones := map[string]*ZoneReport{}
	get := func(name string) *ZoneReport {
		zr := zones[name]
		if zr == nil {
			z := ix.zone(name)
			zr = &ZoneReport{Zone: name, Mode: z.Mode, AllowedCollectors: z.Allowed.Strings(),
				Collectors: []CollectorProxies{}, Violations: []Violation{}}
			zones[name] = zr
		}
		return zr
	}
	for name := range ix.compiled {
		get(name)
	}
	type ck struct{ zone, backend, collector string }
	byCollector := map[ck]*CollectorProxies{}
	for _, v := range ix.verdicts {
		zr := get(v.Zone)
		zr.Proxies++
		if v.Backend == "" {
			zr.TracingOff++
			continue
		}
		c := byCollector[ck{v.Zone, v.Backend, v.Collector}]
		if c == nil {
			c = &CollectorProxies{Backend: v.Backend, Collector: v.Collector, Allowed: true}
			byCollector[ck{v.Zone, v.Backend, v.Collector}] = c
		}
		c.Count++
		c.Allowed = c.Allowed && v.Allowed
		c.Proxies = append(c.Proxies, v.Mesh+"/"+v.Proxy)
	}
	for k, c := range byCollector {
		slices.Sort(c.Proxies)
		if len(c.Proxies) > MaxProxyNames {
			c.Proxies = c.Proxies[:MaxProxyNames]
		}
		zr := zones[k.zone]
		zr.Collectors = append(zr.Collectors, *c)
	}
	for _, v := range ix.violations {
		zr := get(v.Zone)
		zr.Violations = append(zr.Violations, v)
	}
	out := Report{Revision: ix.rev, Zones: make([]ZoneReport, 0, len(zones))}
	for _, zr := range zones {
		sort.Slice(zr.Collectors, func(i, j int) bool {
			a, b := zr.Collectors[i], zr.Collectors[j]
			return cmpStrings(a.Collector, b.Collector, a.Backend, b.Backend) < 0
		})
		sortViolations(zr.Violations)
		out.Zones = append(out.Zones, *zr)
	}
	sort.Slice(out.Zones, func(i, j int) bool { return out.Zones[i].Zone < out.Zones[j].Zone })
	return out
}
