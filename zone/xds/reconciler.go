package xds

import (
	"cmp"
	"context"
	"crypto/sha256"
	"encoding/json"
	"errors"
	"fmt"
	"runtime"
	"slices"
	"sort"
	"strings"
	"sync"

	"github.com/envoyproxy/go-control-plane/pkg/cache/v3"
	"github.com/hashicorp/go-hclog"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/meshtrace/meshtrace/policy/meshtrace"
	"github.com/meshtrace/meshtrace/resource"
)

// ErrUnknownProxy is returned for a proxy the Reconciler does not know.
var ErrUnknownProxy = errors.New("unknown proxy")

// Snapshots is the part of a snapshot cache the Reconciler writes to;
// go-control-plane's cache.SnapshotCache implements it.
type Snapshots interface {
	SetSnapshot(ctx context.Context, node string, snapshot cache.ResourceSnapshot) error
	ClearSnapshot(node string)
}

type digest = [sha256.Size]byte

// proxy is the Reconciler's state for one Dataplane.
type proxy struct {
	dp       *resource.Resource
	dpDigest digest // mesh + spec, not the name: equal specs share snapshots
	policies []resource.Key
	inputs   digest // dpDigest + matched policies in order
	built    *built // nil until a build succeeded
	err      error  // last build error; the proxy keeps its last good snapshot
	// own caches the listener-specific encodings of the Dataplane digested
	// ownFor, so that a policy change does not re-encode routes.
	own    map[string][]byte
	ownFor digest
	// contrib is what the Dataplane adds to the zone's endpoints; dests are
	// the services its outbounds go to.
	contrib map[string]*member
	dests   []string
}

// built is a snapshot shared by every proxy with the same inputs.
type built struct {
	inputs digest
	// shape is inputs without the destinations' endpoints: builds of one
	// shape differ in their load assignments only.
	shape     digest
	rules     meshtrace.Rules
	residency residencyState
	snap      *cache.Snapshot
	parts     []*part // the snapshot's clusters, in order
	refs      int
}

// policy is a MeshTrace (or MeshGateway) as the reconciler holds it. Its
// digest is worked out on first use: most policies a burst sets are new and
// no proxy may ever match them, so hashing each as it arrives (a JSON
// encoding of its spec) is mostly wasted.
type policy struct {
	r    *resource.Resource
	hash func(*resource.Resource) digest
	once sync.Once // the parallel plans read digests
	d    digest
}

func newPolicy(res *resource.Resource, hash func(*resource.Resource) digest) *policy {
	return &policy{r: res, hash: hash}
}

// digest is the policy's key, labels and spec hashed (MeshGateways: key and spec).
func (p *policy) digest() digest {
	p.once.Do(func() { p.d = p.hash(p.r) })
	return p.d
}

func policyDigest(res *resource.Resource) digest  { return hashJSON(res.Key(), res.Labels, res.Spec) }
func gatewayDigest(res *resource.Resource) digest { return hashJSON(res.Key(), res.Spec) }

// Reconciler keeps a snapshot per proxy in a snapshot cache, current with the
// dataplanes, MeshTrace policies and MeshGateways it is given. For each proxy
// it hashes the inputs (the Dataplane, the policies that select it in merge
// order, the endpoints and protocol of each outbound's service, its
// MeshGateway) and rebuilds and pushes only when that hash changes; proxies
// with identical inputs share one build. A Dataplane that comes, goes or
// changes its inbounds makes only the proxies with an outbound to one of its
// services rebuild. It is safe for concurrent use.
type Reconciler struct {
	log    hclog.Logger
	out    Snapshots
	pushes prometheus.Counter
	errs   prometheus.Counter
	tls    CollectorTLS

	mu        sync.RWMutex
	proxies   map[resource.Key]*proxy
	byMesh    map[string]map[resource.Key]*proxy
	policies  map[resource.Key]*policy
	meshPols  map[string][]*resource.Resource        // policies per mesh, for matching
	meshIdx   map[string]*meshtrace.Index            // meshPols indexed; absent when stale
	affecting map[resource.Key]map[resource.Key]bool // policy -> proxies it selects
	builds    map[digest]*built
	parts     *parts
	services  *services
	consumers map[svcKey]map[resource.Key]bool // service -> proxies with an outbound to it
	gateways  map[resource.Key]*policy         // MeshGateways
	meshGWs   map[string][]*resource.Resource  // MeshGateways per mesh
	guard     guard
}

// ReconcilerOption configures a Reconciler.
type ReconcilerOption func(*Reconciler)

// WithCollectorTLS sets how proxies verify https collectors.
func WithCollectorTLS(t CollectorTLS) ReconcilerOption {
	return func(r *Reconciler) { r.tls = t }
}

// NewReconciler returns a Reconciler writing to out. Metrics are registered
// with reg when it is not nil.
func NewReconciler(logger hclog.Logger, out Snapshots, reg prometheus.Registerer, opts ...ReconcilerOption) (*Reconciler, error) {
	if logger == nil {
		logger = hclog.NewNullLogger()
	}
	r := &Reconciler{
		log: logger.Named("xds"),
		out: out,
		pushes: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "meshtrace_xds_snapshot_pushes_total",
			Help: "Snapshots set in the xDS snapshot cache (one per proxy whose configuration changed).",
		}),
		errs: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "meshtrace_xds_snapshot_build_errors_total",
			Help: "Proxy configurations that could not be built; the proxy keeps its last good configuration.",
		}),
		proxies:   map[resource.Key]*proxy{},
		byMesh:    map[string]map[resource.Key]*proxy{},
		policies:  map[resource.Key]*policy{},
		meshPols:  map[string][]*resource.Resource{},
		meshIdx:   map[string]*meshtrace.Index{},
		affecting: map[resource.Key]map[resource.Key]bool{},
		builds:    map[digest]*built{},
		parts:     newParts(),
		services:  newServices(),
		consumers: map[svcKey]map[resource.Key]bool{},
		gateways:  map[resource.Key]*policy{},
		meshGWs:   map[string][]*resource.Resource{},
	}
	for _, o := range opts {
		o(r)
	}
	if reg != nil {
		var err error
		if r.pushes, err = register(reg, r.pushes); err != nil {
			return nil, err
		}
		if r.errs, err = register(reg, r.errs); err != nil {
			return nil, err
		}
	}
	return r, nil
}

func register(reg prometheus.Registerer, c prometheus.Counter) (prometheus.Counter, error) {
	if err := reg.Register(c); err != nil {
		var are prometheus.AlreadyRegisteredError
		if errors.As(err, &are) {
			if existing, ok := are.ExistingCollector.(prometheus.Counter); ok {
				return existing, nil
			}
		}
		return nil, fmt.Errorf("register metric: %w", err)
	}
	return c, nil
}

// Update replaces the whole state: dataplanes, and MeshTrace policies and
// MeshGateways (both in policies), not in the lists are deleted; resources of
// other types are ignored. Only proxies whose inputs changed are rebuilt. The
// state is applied even when some proxies fail to build; the returned error
// lists those (they keep their last good snapshot).
func (r *Reconciler) Update(ctx context.Context, dataplanes, policies []*resource.Resource) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	dirty := map[resource.Key]bool{}
	keepPol := map[resource.Key]bool{}
	keepGW := map[resource.Key]bool{}
	for _, p := range policies {
		switch p.Type {
		case resource.TypeMeshTrace:
			keepPol[p.Key()] = true
		case resource.TypeMeshGateway:
			keepGW[p.Key()] = true
		}
	}
	keepDP := map[resource.Key]bool{}
	for _, dp := range dataplanes {
		if dp.Type == resource.TypeDataplane {
			keepDP[dp.Key()] = true
		}
	}
	var bulk meshChanges
	if len(r.policies)-len(keepPol) > bulkPolicies || countPolicies(policies) > bulkPolicies {
		bulk = meshChanges{}
	}
	for k := range r.policies {
		if !keepPol[k] {
			r.deletePolicy(k, dirty, bulk)
		}
	}
	for k := range r.gateways {
		if !keepGW[k] {
			r.deleteGateway(k, dirty)
		}
	}
	for k := range r.proxies {
		if !keepDP[k] {
			r.deleteProxy(k, dirty)
		}
	}
	for _, p := range policies {
		switch p.Type {
		case resource.TypeMeshTrace:
			r.setPolicy(p, dirty, bulk)
		case resource.TypeMeshGateway:
			r.setGateway(p, dirty)
		}
	}
	r.finishBulk(bulk, dirty)
	for _, dp := range dataplanes {
		if dp.Type == resource.TypeDataplane {
			r.setDataplane(dp, dirty)
		}
	}
	return r.syncLocked(ctx, dirty)
}

// Upsert adds or replaces dataplanes, MeshTrace policies and MeshGateways.
// Other types are ignored.
func (r *Reconciler) Upsert(ctx context.Context, rs ...*resource.Resource) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	dirty := map[resource.Key]bool{}
	var bulk meshChanges
	if countPolicies(rs) > bulkPolicies {
		bulk = meshChanges{}
	}
	for _, res := range rs {
		switch res.Type {
		case resource.TypeMeshTrace:
			r.setPolicy(res, dirty, bulk)
		case resource.TypeMeshGateway:
			r.setGateway(res, dirty)
		case resource.TypeDataplane:
			r.setDataplane(res, dirty)
		}
	}
	r.finishBulk(bulk, dirty)
	return r.syncLocked(ctx, dirty)
}

// Delete removes dataplanes (their snapshots are cleared), MeshTrace policies
// and MeshGateways.
func (r *Reconciler) Delete(ctx context.Context, keys ...resource.Key) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	dirty := map[resource.Key]bool{}
	var bulk meshChanges
	if countKeys(keys, resource.TypeMeshTrace) > bulkPolicies {
		bulk = meshChanges{}
	}
	for _, k := range keys {
		switch k.Type {
		case resource.TypeMeshTrace:
			r.deletePolicy(k, dirty, bulk)
		case resource.TypeMeshGateway:
			r.deleteGateway(k, dirty)
		case resource.TypeDataplane:
			r.deleteProxy(k, dirty)
		}
	}
	r.finishBulk(bulk, dirty)
	return r.syncLocked(ctx, dirty)
}

func hashJSON(parts ...any) digest {
	h := sha256.New()
	enc := json.NewEncoder(h)
	for _, p := range parts {
		if err := enc.Encode(p); err != nil {
			// Specs are plain data; fall back to their Go representation.
			fmt.Fprintf(h, "%#v\n", p)
		}
	}
	var d digest
	h.Sum(d[:0])
	return d
}

// bulkPolicies is the number of MeshTraces in one call from which the
// meshes they touch are handled at once (see setPolicy).
const bulkPolicies = 16

// countPolicies is the number of MeshTraces in rs.
func countPolicies(rs []*resource.Resource) int {
	n := 0
	for _, res := range rs {
		if res.Type == resource.TypeMeshTrace {
			n++
		}
	}
	return n
}

func countKeys(keys []resource.Key, t resource.Type) int {
	n := 0
	for _, k := range keys {
		if k.Type == t {
			n++
		}
	}
	return n
}

// meshChanges are the names of the MeshTraces a bulk call set or deleted,
// per mesh.
type meshChanges map[string][]string

// setPolicy records a MeshTrace and marks the proxies it selects dirty.
// With bulk (many policies at once, such as a snapshot) it only notes the
// name: finishBulk then merges the mesh's changes into its list in one pass
// and marks all its proxies, instead of a pass over the proxies per policy.
func (r *Reconciler) setPolicy(res *resource.Resource, dirty map[resource.Key]bool, bulk meshChanges) {
	k := res.Key()
	p := newPolicy(res, policyDigest)
	if old, ok := r.policies[k]; ok && old.digest() == p.digest() {
		return
	}
	r.policies[k] = p
	if bulk != nil {
		bulk[res.Mesh] = append(bulk[res.Mesh], res.Name)
		return
	}
	r.putMeshPolicy(res)
	for pk := range r.affecting[k] {
		dirty[pk] = true
	}
	for pk, p := range r.byMesh[res.Mesh] {
		if meshtrace.Affects(res, p.dp, meshtrace.SelectGateway(p.dp, r.meshGWs[res.Mesh])) {
			dirty[pk] = true
		}
	}
}

// finishBulk brings the lists of the meshes in bulk up to date with
// r.policies and marks their proxies dirty (unchanged ones are not rebuilt).
// Each list is merged with the mesh's sorted changed names in place, with
// the index that held it dropped (as putMeshPolicy does): each name is found
// by binary search and the unchanged runs between them move whole, so a
// call costs a few copies of the list's pointers, not a read of every
// policy's name nor a new list.
func (r *Reconciler) finishBulk(bulk meshChanges, dirty map[resource.Key]bool) {
	for mesh, names := range bulk {
		slices.Sort(names)
		names = slices.Compact(names)
		list := mergeNames(r.meshPols[mesh], names, func(name string) *resource.Resource {
			if p, ok := r.policies[resource.Key{Type: resource.TypeMeshTrace, Mesh: mesh, Name: name}]; ok {
				return p.r
			}
			return nil
		})
		if len(list) == 0 {
			delete(r.meshPols, mesh)
		} else {
			r.meshPols[mesh] = list
		}
		delete(r.meshIdx, mesh)
		for pk := range r.byMesh[mesh] {
			dirty[pk] = true
		}
	}
}

// mergeNames returns list (sorted by name, names unique) with each of names
// (sorted, unique) set to current(name), or removed when that is nil. It
// reuses list's array: first replacing and removing in one forward pass,
// then inserting the new names from the back.
func mergeNames(list []*resource.Resource, names []string, current func(string) *resource.Resource) []*resource.Resource {
	var added []*resource.Resource
	w, i := 0, 0
	for _, name := range names {
		j, found := slices.BinarySearchFunc(list[i:], name, byName)
		w += copy(list[w:], list[i:i+j])
		i += j
		p := current(name)
		switch {
		case found && p != nil:
			list[w] = p
			w++
			i++
		case found:
			i++
		case p != nil:
			added = append(added, p)
		}
	}
	w += copy(list[w:], list[i:])
	clear(list[w:])
	list = list[:w]
	if len(added) == 0 {
		return list
	}
	n := len(list)
	list = slices.Grow(list, len(added))[:n+len(added)]
	// From the back: the old policies above each added one move up past it.
	end := n // list[:end] holds the old policies not moved yet
	for k := len(added) - 1; k >= 0; k-- {
		j, _ := slices.BinarySearchFunc(list[:end], added[k].Name, byName)
		top := k + 1 + end // one past where list[end-1] goes
		copy(list[top-(end-j):top], list[j:end])
		end = j
		list[end+k] = added[k]
	}
	return list
}

func (r *Reconciler) setGateway(res *resource.Resource, dirty map[resource.Key]bool) {
	k := res.Key()
	p := newPolicy(res, gatewayDigest)
	if old, ok := r.gateways[k]; ok && old.digest() == p.digest() {
		return
	}
	r.gateways[k] = p
	r.gatewaysChanged(res.Mesh, dirty)
}

func (r *Reconciler) deleteGateway(k resource.Key, dirty map[resource.Key]bool) {
	if _, ok := r.gateways[k]; !ok {
		return
	}
	delete(r.gateways, k)
	r.gatewaysChanged(k.Mesh, dirty)
}

// gatewaysChanged rebuilds a mesh's MeshGateway list and marks its builtin
// gateways dirty: their listeners and MeshGateway targets may change.
func (r *Reconciler) gatewaysChanged(mesh string, dirty map[resource.Key]bool) {
	var list []*resource.Resource
	for _, g := range r.gateways {
		if g.r.Mesh == mesh {
			list = append(list, g.r)
		}
	}
	sort.Slice(list, func(i, j int) bool { return list[i].Name < list[j].Name })
	if len(list) == 0 {
		delete(r.meshGWs, mesh)
	} else {
		r.meshGWs[mesh] = list
	}
	for pk, p := range r.byMesh[mesh] {
		if spec, ok := p.dp.Spec.(*resource.DataplaneSpec); ok && spec.IsBuiltinGateway() {
			dirty[pk] = true
		}
	}
}

// setEndpoints records what proxy k adds to the zone's endpoints and where
// its outbounds go; syncLocked rebuilds the touched services and marks dirty
// the proxies whose destinations changed.
func (r *Reconciler) setEndpoints(k resource.Key, p *proxy, dp *resource.Resource, dirty map[resource.Key]bool) {
	var contrib map[string]*member
	var dests []string
	if dp != nil {
		contrib = contributions(dp)
		if spec, ok := dp.Spec.(*resource.DataplaneSpec); ok {
			for _, out := range spec.Networking.Outbound {
				if d := out.Tags[resource.TagService]; d != "" {
					dests = append(dests, d)
				}
			}
		}
	}
	r.services.set(k, p.contrib, contrib)
	p.contrib = contrib
	for _, d := range p.dests {
		sk := svcKey{k.Mesh, d}
		if set := r.consumers[sk]; set != nil {
			delete(set, k)
			if len(set) == 0 {
				delete(r.consumers, sk)
			}
		}
	}
	for _, d := range dests {
		sk := svcKey{k.Mesh, d}
		if r.consumers[sk] == nil {
			r.consumers[sk] = map[resource.Key]bool{}
		}
		r.consumers[sk][k] = true
	}
	p.dests = dests
}

func (r *Reconciler) deletePolicy(k resource.Key, dirty map[resource.Key]bool, bulk meshChanges) {
	if _, ok := r.policies[k]; !ok {
		return
	}
	delete(r.policies, k)
	for pk := range r.affecting[k] {
		dirty[pk] = true
	}
	if bulk != nil {
		bulk[k.Mesh] = append(bulk[k.Mesh], k.Name)
		return
	}
	r.removeMeshPolicy(k)
}

// putMeshPolicy puts res into its mesh's policy list (sorted by name). The
// list is changed in place unless the mesh's index holds it: a policy that
// replaces one filed under the same service then goes into a copy and the
// index keeps its service chains (meshtrace.Index.Replaced); otherwise the
// index is dropped (built again when a proxy of the mesh needs it) and the
// list is free to change.
func (r *Reconciler) putMeshPolicy(res *resource.Resource) {
	list := r.meshPols[res.Mesh]
	i, found := slices.BinarySearchFunc(list, res.Name, byName)
	if ix := r.meshIdx[res.Mesh]; ix != nil && found {
		out := slices.Clone(list)
		out[i] = res
		r.meshPols[res.Mesh] = out
		r.meshIdx[res.Mesh] = ix.Replaced(out, i)
		return
	}
	delete(r.meshIdx, res.Mesh)
	if found {
		list[i] = res
		return
	}
	r.meshPols[res.Mesh] = slices.Insert(list, i, res)
}

// removeMeshPolicy removes k from its mesh's policy list, in place (the
// mesh's index, which holds the list, is dropped).
func (r *Reconciler) removeMeshPolicy(k resource.Key) {
	list := r.meshPols[k.Mesh]
	i, found := slices.BinarySearchFunc(list, k.Name, byName)
	if !found {
		return
	}
	delete(r.meshIdx, k.Mesh)
	if len(list) == 1 {
		delete(r.meshPols, k.Mesh)
		return
	}
	r.meshPols[k.Mesh] = slices.Delete(list, i, i+1)
}

func byName(p *resource.Resource, name string) int { return strings.Compare(p.Name, name) }

func (r *Reconciler) setDataplane(res *resource.Resource, dirty map[resource.Key]bool) {
	k := res.Key()
	d := hashJSON(res.Mesh, res.Spec)
	if old, ok := r.proxies[k]; ok {
		old.dp = res
		if old.dpDigest != d {
			old.dpDigest = d
			dirty[k] = true
			r.setEndpoints(k, old, res, dirty)
		}
		return
	}
	p := &proxy{dp: res, dpDigest: d}
	r.proxies[k] = p
	if r.byMesh[res.Mesh] == nil {
		r.byMesh[res.Mesh] = map[resource.Key]*proxy{}
	}
	r.byMesh[res.Mesh][k] = p
	dirty[k] = true
	r.setEndpoints(k, p, res, dirty)
}

func (r *Reconciler) deleteProxy(k resource.Key, dirty map[resource.Key]bool) {
	p, ok := r.proxies[k]
	if !ok {
		return
	}
	r.setEndpoints(k, p, nil, dirty)
	delete(dirty, k)
	r.out.ClearSnapshot(NodeID(k.Mesh, k.Name))
	r.setPolicies(k, p, nil)
	r.release(p.built)
	delete(r.proxies, k)
	delete(r.byMesh[k.Mesh], k)
	if len(r.byMesh[k.Mesh]) == 0 {
		delete(r.byMesh, k.Mesh)
	}
}

// setPolicies moves proxy k in the policy -> proxies index.
func (r *Reconciler) setPolicies(k resource.Key, p *proxy, keys []resource.Key) {
	for _, pk := range p.policies {
		if set := r.affecting[pk]; set != nil {
			delete(set, k)
			if len(set) == 0 {
				delete(r.affecting, pk)
			}
		}
	}
	for _, pk := range keys {
		if r.affecting[pk] == nil {
			r.affecting[pk] = map[resource.Key]bool{}
		}
		r.affecting[pk][k] = true
	}
	p.policies = keys
}

func (r *Reconciler) release(b *built) {
	if b == nil {
		return
	}
	b.refs--
	if b.refs <= 0 {
		delete(r.builds, b.inputs)
	}
}

// plan is the work for one dirty proxy, computed in parallel.
type plan struct {
	key      resource.Key
	p        *proxy
	policies []resource.Key
	inputs   digest
	built    *built // a new build, or nil when one is reused or unchanged
	err      error
}

// parallelThreshold is the batch size from which builds run on all cores.
const parallelThreshold = 64

func (r *Reconciler) syncLocked(ctx context.Context, dirty map[resource.Key]bool) error {
	for _, sk := range r.services.flush() {
		for ck := range r.consumers[sk] {
			if _, ok := r.proxies[ck]; ok {
				dirty[ck] = true
			}
		}
	}
	if len(dirty) == 0 {
		return nil
	}
	plans := make([]plan, 0, len(dirty))
	for k := range dirty {
		if p, ok := r.proxies[k]; ok {
			plans = append(plans, plan{key: k, p: p})
			if _, ok := r.meshIdx[k.Mesh]; !ok {
				// Once per mesh and change, before the parallel plans read it.
				r.meshIdx[k.Mesh] = meshtrace.NewIndex(r.meshPols[k.Mesh])
			}
		}
	}
	// Compute (read-only on shared state): match, hash inputs, build when needed.
	workers := 1
	if len(plans) >= parallelThreshold {
		workers = runtime.GOMAXPROCS(0)
	}
	var wg sync.WaitGroup
	next := make(chan int, len(plans))
	for i := range plans {
		next <- i
	}
	close(next)
	for range workers {
		wg.Go(func() {
			for i := range next {
				r.plan(&plans[i])
			}
		})
	}
	wg.Wait()
	// Commit sequentially in a stable order.
	slices.SortFunc(plans, func(a, b plan) int { return compareKeys(a.key, b.key) })
	var errs []error
	for i := range plans {
		if err := r.commit(ctx, &plans[i]); err != nil {
			errs = append(errs, err)
		}
	}
	return errors.Join(errs...)
}

func compareKeys(a, b resource.Key) int {
	return cmp.Or(strings.Compare(a.Mesh, b.Mesh), strings.Compare(a.Name, b.Name))
}

func (r *Reconciler) plan(pl *plan) {
	p := pl.p
	gw := meshtrace.SelectGateway(p.dp, r.meshGWs[p.dp.Mesh])
	matched := meshtrace.MatchIndexed(p.dp, r.meshIdx[p.dp.Mesh], gw)
	// confKey identifies the merged configuration (the matched policies in
	// order); inputs adds the Dataplane.
	h := sha256.New()
	pl.policies = make([]resource.Key, len(matched))
	for i, m := range matched {
		pl.policies[i] = m.Key()
		d := r.policies[m.Key()].digest()
		h.Write(d[:])
	}
	if r.guard.digest != (digest{}) {
		h.Write(r.guard.digest[:])
	}
	var confKey digest
	h.Sum(confKey[:0])
	h.Reset()
	h.Write(confKey[:])
	h.Write(p.dpDigest[:])
	in := &inputs{services: r.services, tls: r.tls}
	eps := sha256.New() // the destinations' endpoints
	for _, d := range p.dests {
		part, protocol := in.destination(p.dp.Mesh, d)
		h.Write(part.sum[:])
		h.Write([]byte(protocol))
		eps.Write(part.claSum[:])
	}
	if gw != nil {
		in.gateway = gw.Spec.(*resource.MeshGatewaySpec)
		d := r.gateways[gw.Key()].digest()
		h.Write(d[:])
	}
	var shape digest
	h.Sum(shape[:0])
	h.Write(eps.Sum(nil))
	h.Sum(pl.inputs[:0])
	if p.built != nil && p.built.inputs == pl.inputs {
		return // unchanged
	}
	if _, ok := r.builds[pl.inputs]; ok {
		return // another proxy has the same inputs
	}
	if old := p.built; old != nil && old.shape == shape {
		// Only endpoints changed: keep listeners and clusters.
		snap, parts := withEndpoints(old.snap, old.parts, p.dp.Mesh, in)
		pl.built = &built{inputs: pl.inputs, shape: shape, rules: old.rules, residency: old.residency, snap: snap, parts: parts}
		return
	}
	rules := meshtrace.Merge(matched)
	res := r.guard.enforce(&rules)
	if p.ownFor != p.dpDigest {
		p.own, p.ownFor = map[string][]byte{}, p.dpDigest
	}
	snap, parts, err := build(p.dp, rules.Conf, r.parts, confKey, p.own, in)
	if err != nil {
		pl.err = err
		return
	}
	pl.built = &built{inputs: pl.inputs, shape: shape, rules: rules, residency: res, snap: snap, parts: parts}
}

func (r *Reconciler) commit(ctx context.Context, pl *plan) error {
	p := pl.p
	r.setPolicies(pl.key, p, pl.policies)
	if pl.err != nil {
		p.err = pl.err
		r.errs.Inc()
		r.log.Warn("cannot build proxy configuration, keeping the last good one",
			"mesh", pl.key.Mesh, "name", pl.key.Name, "error", pl.err)
		return fmt.Errorf("%s: %w", pl.key, pl.err)
	}
	p.err = nil
	if p.built != nil && p.built.inputs == pl.inputs {
		return nil
	}
	b := r.builds[pl.inputs]
	if b == nil {
		b = pl.built
		if b == nil { // cannot happen: plan builds when no shared build exists
			return fmt.Errorf("%s: no build for inputs", pl.key)
		}
		r.builds[pl.inputs] = b
	}
	b.refs++
	// New inputs may still give the same content (a policy change that another,
	// more specific policy overrides): then the proxy has nothing to receive.
	same := p.built != nil && sameVersions(p.built.snap, b.snap)
	r.logResidency(pl.key, p.built, b)
	r.release(p.built)
	p.built = b
	p.inputs = pl.inputs
	if same {
		return nil
	}
	node := NodeID(pl.key.Mesh, pl.key.Name)
	if err := r.out.SetSnapshot(ctx, node, b.snap); err != nil {
		return fmt.Errorf("%s: set snapshot: %w", pl.key, err)
	}
	r.pushes.Inc()
	if r.log.IsDebug() {
		names := make([]string, len(b.rules.Policies))
		for i, k := range b.rules.Policies {
			names[i] = k.Name
		}
		r.log.Debug("pushed snapshot", "node", node, "policies", names, "version", Version(b.snap))
	}
	return nil
}
