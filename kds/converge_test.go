package kds_test

import (
	"context"
	"flag"
	"fmt"
	"math/rand/v2"
	"strings"
	"testing"
	"time"

	"github.com/meshtrace/meshtrace/kds"
	"github.com/meshtrace/meshtrace/resource"
	"github.com/meshtrace/meshtrace/store"
)

var (
	seedFlag  = flag.Int64("seed", 0, "TestConvergence: run this seed only (0: the fixed seeds)")
	soakFlag  = flag.Duration("soak", 0, "TestConvergence: run random seeds for this long (make soak)")
	stepsFlag = flag.Int("steps", 40, "TestConvergence: random steps per seed")
)

// TestConvergence interleaves random writes on global (single puts,
// transactions whose keys share a revision, bursts, deletes of most
// policies, large policies cut into many batches, corrupt values, values
// naming another key) with random faults (a stream cut, a zone restart, a
// global replica restart or switch, a compaction while a zone is away).
// After quiescence every zone holds exactly global's valid policies, no
// corrupt value was applied, and no delete was held (global never lost its
// data), whatever the servers' batching (gap, stretch: by seed). Then
// global loses its data (a fresh store): every zone holds its
// deletes and keeps its copies until they are released, then equals the new
// global. Seeded: a failure prints the seed; rerun it with
// `go test ./kds -run TestConvergence -seed N`. `make soak` runs random
// seeds for minutes.
func TestConvergence(t *testing.T) {
	seeds := []int64{1, 2, 3}
	if *seedFlag != 0 {
		seeds = []int64{*seedFlag}
	}
	if *soakFlag > 0 {
		deadline := time.Now().Add(*soakFlag)
		for i := 0; time.Now().Before(deadline) && !t.Failed(); i++ {
			seed := time.Now().UnixNano()
			t.Run(fmt.Sprintf("seed=%d", seed), func(t *testing.T) { converge(t, seed, *stepsFlag) })
		}
		return
	}
	for _, seed := range seeds {
		t.Run(fmt.Sprintf("seed=%d", seed), func(t *testing.T) { converge(t, seed, *stepsFlag) })
	}
}

type world struct {
	t       *testing.T
	e       *env
	rng     *rand.Rand
	gs      *store.MemoryStore
	globals [2]*global
	addrs   []string
	up      [2]bool
	zones   []*zone
	stores  []*store.MemoryStore
	tokens  []string
	away    []bool
	version int
	// gap and stretch are the servers' batching, by seed (not drawn from
	// rng, so a seed's steps stay what they were before batching was
	// varied): none, a gap, a gap with a stretch.
	gap, stretch time.Duration
}

const cvCap = 96 << 10 // message cap of both sides: large policies need several batches

func converge(t *testing.T, seed int64, steps int) {
	t.Cleanup(func() {
		if t.Failed() {
			t.Logf("FAILED with seed %d: rerun with go test ./kds -run TestConvergence -seed %d -v", seed, seed)
		}
	})
	t.Cleanup(kds.RecordRevisions())
	w := &world{t: t, e: newEnv(t), rng: rand.New(rand.NewPCG(uint64(seed), 7)), gs: newMemory(t)}
	switch uint64(seed) % 3 {
	case 1:
		w.gap = 5 * time.Millisecond
	case 2:
		w.gap, w.stretch = 5*time.Millisecond, 50*time.Millisecond
	}
	t.Logf("seed %d: batch gap %s, stretch %s", seed, w.gap, w.stretch)
	put(t, w.gs, mesh("default"))
	for i := range 2 {
		w.globals[i] = w.startGlobal("")
		w.addrs = append(w.addrs, w.globals[i].addr)
		w.up[i] = true
	}
	for i := range 3 {
		name := fmt.Sprintf("zone-%d", i)
		w.stores = append(w.stores, newMemory(t))
		w.tokens = append(w.tokens, token(t, w.gs, name))
		w.zones = append(w.zones, nil)
		w.away = append(w.away, false)
		w.startZone(i)
	}
	for step := range steps {
		w.step(step)
		time.Sleep(time.Duration(w.rng.IntN(15)) * time.Millisecond)
	}
	// Quiescence: every replica and zone up, then everything settled.
	for i := range w.globals {
		if !w.up[i] {
			w.globals[i] = w.startGlobal(w.addrs[i])
			w.up[i] = true
		}
	}
	for i := range w.zones {
		if w.away[i] {
			w.startZone(i)
		}
	}
	settle(t, w.gs, w.zones...)
	for i, zs := range w.stores {
		deadline := time.Now().Add(20 * time.Second)
		for d := sameSet(t, w.gs, zs); d != ""; d = sameSet(t, w.gs, zs) {
			if time.Now().After(deadline) {
				t.Fatalf("zone-%d differs from global after 20s: %s (zone stats %+v)", i, d, w.zones[i].client.Stats())
			}
			time.Sleep(10 * time.Millisecond)
		}
		if s := w.zones[i].client.Stats(); s.RefusedDeletes != 0 {
			t.Fatalf("zone-%d held deletes although global never lost its data: %+v", i, s)
		}
		if d := sameRevisions(t, w.gs, w.zones[i].client, false); d != "" {
			t.Fatalf("zone-%d: %s", i, d)
		}
	}
	w.loseGlobalData()
}

// loseGlobalData replaces global's store by a fresh one (same signing key,
// so the zones' tokens stay valid, but a new store id and a few policies):
// every zone holding copies global no longer has holds their deletes and
// keeps serving them, until an operator releases them; then every zone
// equals the new global.
func (w *world) loseGlobalData() {
	t, ctx := w.t, context.Background()
	for i := range w.globals {
		w.globals[i].stop()
	}
	fresh := newMemory(t)
	for _, k := range []string{"kds/token-signing-keys/1", "kds/token-signing-key-current"} {
		v, err := w.gs.GetValue(ctx, k)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := fresh.PutValue(ctx, k, v); err != nil {
			t.Fatal(err)
		}
	}
	put(t, fresh, mesh("default"))
	for i := range 3 {
		put(t, fresh, meshTrace("default", fmt.Sprintf("after-loss-%d", i), i))
	}
	old := make([]int, len(w.stores))
	for i, zs := range w.stores {
		old[i] = len(list(t, zs, resource.TypeMeshTrace))
	}
	w.gs = fresh
	for i := range w.globals {
		w.globals[i] = w.startGlobal(w.addrs[i])
	}
	for i, z := range w.zones {
		if old[i] == 0 {
			continue
		}
		waitFor(t, fmt.Sprintf("zone-%d to hold its deletes", i), 20*time.Second, func() bool {
			reason, n := z.client.Held()
			return n > 0 && strings.Contains(reason, "store id changed")
		})
		if got := len(list(t, w.stores[i], resource.TypeMeshTrace)); got < old[i] {
			t.Fatalf("zone-%d lost policies to a global that lost its data: %d left of %d", i, got, old[i])
		}
	}
	for i := range w.zones {
		if _, err := w.globals[0].srv.ReleaseDeletes(ctx, fmt.Sprintf("zone-%d", i)); err != nil {
			t.Fatal(err)
		}
	}
	for i, zs := range w.stores {
		deadline := time.Now().Add(20 * time.Second)
		for d := sameSet(t, fresh, zs); d != ""; d = sameSet(t, fresh, zs) {
			if time.Now().After(deadline) {
				t.Fatalf("zone-%d differs from the new global after the release: %s", i, d)
			}
			time.Sleep(10 * time.Millisecond)
		}
		if d := sameRevisions(t, fresh, w.zones[i].client, true); d != "" {
			t.Fatalf("zone-%d after the release: %s", i, d)
		}
	}
}

func (w *world) startGlobal(addr string) *global {
	return w.e.startGlobal(w.gs, addr, func(c *kds.ServerConfig) {
		c.MaxMessageBytes, c.BatchGap, c.BatchStretch = cvCap, w.gap, w.stretch
	})
}

func (w *world) startZone(i int) {
	w.zones[i] = w.e.startZone(fmt.Sprintf("zone-%d", i), w.stores[i], w.tokens[i], w.addrs, func(c *kds.ClientConfig) {
		c.MaxMessageBytes = cvCap
	})
	w.away[i] = false
}

func (w *world) name() string { return fmt.Sprintf("p-%d", w.rng.IntN(60)) }

func (w *world) policy(name string) *resource.Resource {
	w.version++
	return meshTrace("default", name, w.version)
}

func (w *world) key(name string) resource.Key {
	return resource.Key{Type: resource.TypeMeshTrace, Mesh: "default", Name: name}
}

func (w *world) step(step int) {
	t, ctx := w.t, context.Background()
	switch op := w.rng.IntN(100); {
	case op < 25: // single put
		put(t, w.gs, w.policy(w.name()))
	case op < 40: // one transaction: its keys share a revision
		var ops []store.Op
		for range 1 + w.rng.IntN(12) {
			r := w.policy(w.name())
			ops = append(ops, store.Op{Key: r.Key(), Resource: r})
		}
		if _, err := w.gs.Txn(ctx, ops); err != nil {
			t.Fatal(err)
		}
	case op < 48: // burst
		for range 20 {
			put(t, w.gs, w.policy(w.name()))
		}
	case op < 53: // delete most policies
		res, err := w.gs.List(ctx, resource.TypeMeshTrace, store.ListOptions{})
		if err != nil {
			t.Fatal(err)
		}
		var ops []store.Op
		for _, r := range res.Items {
			if w.rng.IntN(10) < 8 {
				ops = append(ops, store.Op{Delete: true, Key: r.Key()})
			}
		}
		if _, err := w.gs.Txn(ctx, ops); err != nil {
			t.Fatal(err)
		}
	case op < 58: // single delete
		_, _ = w.gs.Delete(ctx, w.key(w.name()), store.AnyVersion)
	case op < 62: // a large policy (a batch of its own)
		put(t, w.gs, bigPolicy("default", w.name(), 40+w.rng.IntN(40)))
	case op < 66: // a corrupt value
		w.gs.PutRaw(w.key(w.name()), []byte("{not json"))
	case op < 70: // a value naming another policy than its key
		k, other := w.name(), w.name()
		if k == other {
			other += "-x"
		}
		w.gs.PutRaw(w.key(k), []byte(fmt.Sprintf(`{"meta":{"type":"MeshTrace","mesh":"default","name":%q},"spec":{}}`, other)))
	case op < 72: // decodes, but is invalid: NACKed by the zones
		k := w.name()
		w.gs.PutRaw(w.key(k), []byte(fmt.Sprintf(`{"meta":{"type":"MeshTrace","mesh":"default","name":%q},"spec":{}}`, k)))
	case op < 76: // cut a zone's stream: a raw stream with its token replaces it
		i := w.rng.IntN(len(w.zones))
		if w.away[i] {
			return
		}
		up := w.upGlobal()
		if up < 0 {
			return
		}
		stream, stop := w.e.rawStream(t, w.globals[up].addr, w.tokens[i])
		_ = stream.Send(hello(0))
		_, _ = stream.Recv()
		stop()
	case op < 83: // zone restart, or away for a while
		i := w.rng.IntN(len(w.zones))
		if w.away[i] {
			w.startZone(i)
			return
		}
		w.zones[i].stop()
		w.away[i] = true
		if w.rng.IntN(2) == 0 {
			w.startZone(i)
		}
	case op < 90: // global replica restart or switch (the other serves meanwhile)
		i := w.rng.IntN(2)
		if w.up[i] {
			if w.up[1-i] || w.rng.IntN(3) == 0 {
				w.globals[i].stop()
				w.up[i] = false
			}
			return
		}
		w.globals[i] = w.startGlobal(w.addrs[i])
		w.up[i] = true
	default: // compaction (zones away lose their history)
		rev, err := w.gs.Revision(ctx)
		if err != nil {
			t.Fatal(err)
		}
		if err := w.gs.Compact(ctx, rev); err != nil && !strings.Contains(err.Error(), "compacted") {
			t.Fatal(err)
		}
	}
}

func (w *world) upGlobal() int {
	for i, up := range w.up {
		if up {
			return i
		}
	}
	return -1
}

// sameSet compares the zone's copies of global's policies and meshes with
// global's valid ones (corrupt values are not in global's lists); "" when
// equal. A key whose value on global does not validate is NACKed by the
// zones, which keep their last good copy (or none): it is not compared.
func sameSet(t testing.TB, gs, zs store.Store) string {
	for _, typ := range []resource.Type{resource.TypeMesh, resource.TypeMeshTrace} {
		g, z := list(t, gs, typ), list(t, zs, typ)
		for k, zr := range z {
			if zr.Labels[resource.LabelOrigin] != resource.OriginGlobal {
				delete(z, k)
			}
		}
		for k, gr := range g {
			c := *gr
			if resource.Validate(&c) != nil {
				delete(g, k)
				delete(z, k)
			}
		}
		if len(g) != len(z) {
			return fmt.Sprintf("%s: global has %d, zone has %d", typ, len(g), len(z))
		}
		for k, gr := range g {
			zr, ok := z[k]
			if !ok {
				return k + " missing on the zone"
			}
			want := *gr
			want.Labels = map[string]string{resource.LabelOrigin: resource.OriginGlobal}
			for lk, lv := range gr.Labels {
				want.Labels[lk] = lv
			}
			if resource.Hash(&want) != resource.Hash(zr) {
				return k + " differs on the zone"
			}
		}
	}
	return ""
}

// sameRevisions checks revision for revision what sameSet checks by content:
// every copy the zone's client applied of a resource global holds (valid)
// was sent at global's current revision of it, not an older one with the
// same content. Copies the client did not apply itself (kept from before a
// zone restart and not resent on resume) are not recorded; with all, every
// resource of global must have been (the client took a full snapshot).
func sameRevisions(t testing.TB, gs store.Store, c *kds.Client, all bool) string {
	got := c.GlobalRevisions()
	for _, typ := range []resource.Type{resource.TypeMesh, resource.TypeMeshTrace} {
		for k, gr := range list(t, gs, typ) {
			cp := *gr
			if resource.Validate(&cp) != nil {
				continue
			}
			rev, ok := got[gr.Key()]
			switch {
			case !ok && all:
				return k + ": no revision recorded for the zone's copy"
			case ok && rev != gr.Version:
				return fmt.Sprintf("%s: the zone's copy is global's revision %d, global is at %d", k, rev, gr.Version)
			}
		}
	}
	return ""
}
