package kds

import (
	"context"
	"crypto/sha256"
	"fmt"
	"time"

	"github.com/hashicorp/go-hclog"

	kdsv1 "github.com/meshtrace/meshtrace/proto/kds/v1"
	"github.com/meshtrace/meshtrace/resource"
	"github.com/meshtrace/meshtrace/store"
)

// localCopy is what the zone holds under a key of a downward type. A copy
// read from the store at session start is known by its content hash; one
// written by this session by the hash of the message bytes it came in, which
// is cheaper and equal for an unchanged resource sent again.
type localCopy struct {
	content string   // resource.Hash, or "" when only wire is known
	wire    [32]byte // sha256 of the Universal JSON received, or zero
	global  bool     // labelled kuma.io/origin: global, so KDS owns it
}

// applier applies global's batches to the zone's store. Only copies labelled
// kuma.io/origin: global are ever changed or deleted; a resource already
// unchanged is not written again.
type applier struct {
	c       *Client
	storeID string // of global's store, from the Welcome
	release string // global's latest release of held deletes, from the Welcome
	// prev is the cursor the zone had when the stream opened: a snapshot's
	// deletes are judged against it.
	prev cursor
	log  hclog.Logger

	index map[resource.Key]localCopy
	seen  map[resource.Key]bool // during a snapshot
	snap  snapshotProgress
}

// snapshotProgressEvery is how often a snapshot being applied is logged.
const snapshotProgressEvery = 5 * time.Second

// snapshotProgress logs how far a zone is in applying a (large, chunked)
// snapshot: every snapshotProgressEvery, and once at its end when it took
// longer than that.
type snapshotProgress struct {
	start, logged      time.Time
	batches, resources int
}

func (p *snapshotProgress) batch(log hclog.Logger, n int, end bool, now time.Time) {
	if p.start.IsZero() {
		p.start, p.logged = now, now
	}
	p.batches++
	p.resources += n
	switch {
	case end:
		if took := now.Sub(p.start); took >= snapshotProgressEvery {
			log.Info("snapshot from global applied", "resources", p.resources, "batches", p.batches, "took", took.Round(time.Millisecond))
		}
		*p = snapshotProgress{}
	case now.Sub(p.logged) >= snapshotProgressEvery:
		p.logged = now
		log.Info("applying snapshot from global", "resources", p.resources, "batches", p.batches, "elapsed", now.Sub(p.start).Round(time.Second))
	}
}

func newApplier(c *Client, storeID, release string, prev cursor, log hclog.Logger) *applier {
	return &applier{c: c, storeID: storeID, release: release, prev: prev, log: log}
}

func (a *applier) loadIndex(ctx context.Context) error {
	a.index = map[resource.Key]localCopy{}
	for _, t := range typesSynced(resource.SyncGlobalToZone) {
		res, err := a.c.cfg.Store.List(ctx, t, store.ListOptions{})
		if err != nil {
			return err
		}
		for _, r := range res.Items {
			a.index[r.Key()] = localCopy{content: contentHash(r), global: r.Labels[resource.LabelOrigin] == resource.OriginGlobal}
		}
	}
	return nil
}

// apply applies one batch and returns its Ack. It returns an error only when
// the zone's store fails: the stream is then cut and the batch is sent again
// after reconnecting, since the cursor did not move.
func (a *applier) apply(ctx context.Context, b *kdsv1.Batch) (*kdsv1.Ack, error) {
	a.c.count(func(s *ClientStats) {
		s.Batches++
		if b.GetSnapshot() && a.seen == nil {
			s.Snapshots++
		}
	})
	if b.GetSnapshot() && a.seen == nil {
		a.seen = map[resource.Key]bool{}
	}
	ack := &kdsv1.Ack{Nonce: b.GetNonce()}
	reject := func(w *kdsv1.Resource, reason string) {
		ack.Errors = append(ack.Errors, &kdsv1.ResourceError{Type: w.Type, Mesh: w.Mesh, Name: w.Name, Reason: reason, Revision: w.Revision})
	}
	n := len(b.GetResources())
	ops := make([]store.Op, 0, n+1) // room for the cursor (commitOps)
	wires := make([][32]byte, 0, n)
	sources := make([]*kdsv1.Resource, 0, n)
	for _, w := range b.GetResources() {
		key := keyOf(w)
		if a.seen != nil {
			a.seen[key] = true
		}
		d, ok := resource.Lookup(key.Type)
		if !ok || !d.Sync.Has(resource.SyncGlobalToZone) {
			reject(w, fmt.Sprintf("type %q is not synced from global to zones", w.Type))
			continue
		}
		cur, exists := a.index[key]
		if w.Delete {
			if !exists {
				continue
			}
			if !cur.global {
				reject(w, "the zone's resource is not a copy from global; left in place")
				continue
			}
			ops = append(ops, store.Op{Delete: true, Key: key})
			wires, sources = append(wires, [32]byte{}), append(sources, w)
			continue
		}
		if exists && !cur.global {
			reject(w, "a zone-local resource with this name exists; not overwritten")
			continue
		}
		wire := sha256.Sum256(w.Json)
		if exists && cur.wire == wire {
			a.c.noteRevision(key, w.Revision)
			continue
		}
		r, specJSON, err := decodeWireSpec(w)
		if err != nil {
			reject(w, err.Error())
			continue
		}
		// r is this decode's own: its labels take the origin in place.
		if r.Labels == nil {
			r.Labels = make(map[string]string, 1)
		}
		r.Labels[resource.LabelOrigin] = resource.OriginGlobal
		if exists && cur.content != "" && cur.content == contentHash(r) {
			a.index[key] = localCopy{wire: wire, global: true}
			a.c.noteRevision(key, w.Revision)
			continue
		}
		// specJSON, when set, is stored as it came: the spec is not encoded again.
		ops = append(ops, store.Op{Key: key, Resource: r, SpecJSON: specJSON})
		wires, sources = append(wires, wire), append(sources, w)
	}
	if a.log.IsDebug() {
		for _, w := range sources {
			a.log.Debug("applying from global", "type", w.Type, "mesh", w.Mesh, "name", w.Name, "rev", w.Revision, "delete", w.Delete)
		}
	}
	revs := make([]int64, len(sources))
	for i, w := range sources {
		revs[i] = w.Revision
	}
	// The cursor rides in the batch's transaction: one commit (and fsync)
	// per batch instead of two. A snapshot's end writes it after its
	// deletes (finishSnapshot), below.
	var cursorOp *store.Op
	if rev := b.GetRevision(); rev > 0 && !b.GetSnapshotEnd() && len(ops) > 0 {
		op, err := a.c.cursorOp(a.storeID, rev)
		if err != nil {
			return nil, err
		}
		cursorOp = op
	}
	cursorWritten, err := a.commit(ctx, ops, cursorOp, wires, revs, func(i int, err error) { reject(sources[i], err.Error()) })
	if err != nil {
		return nil, err
	}
	if a.seen != nil {
		a.snap.batch(a.log, len(b.GetResources()), b.GetSnapshotEnd(), time.Now())
	}
	if b.GetSnapshotEnd() {
		held, err := a.finishSnapshot(ctx, b.GetRevision())
		if err != nil {
			return nil, err
		}
		if held != nil {
			ack.Error = fmt.Sprintf("snapshot deletes held: %s; %d copies kept until global has them again or an operator releases the deletes", held.Reason, held.Deletes)
			ack.Held, ack.HeldDeletes = held.Reason, int64(held.Deletes)
		}
	}
	if n := len(ack.Errors); n > 0 {
		a.c.metrics.nacks.Add(float64(n))
		a.c.count(func(s *ClientStats) { s.Rejected += n })
		for _, e := range ack.Errors {
			a.log.Warn("rejected resource from global", "type", e.Type, "mesh", e.Mesh, "name", e.Name, "reason", e.Reason)
		}
	}
	if rev := b.GetRevision(); rev > 0 {
		if cursorWritten {
			a.c.cursorSaved(a.storeID, rev)
		} else if err := a.c.saveCursor(ctx, a.storeID, rev); err != nil {
			return nil, err
		}
		ack.Revision = rev
		if a.c.cfg.OnApplied != nil {
			a.c.cfg.OnApplied(rev)
		}
	}
	return ack, nil
}

// commit writes ops (commitOps), with cursor in the same transaction when
// set, and records in the index what was written; revs are the global
// revisions of the puts (see Client.noteRevision). It reports whether the
// cursor was written.
func (a *applier) commit(ctx context.Context, ops []store.Op, cursor *store.Op, wires [][32]byte, revs []int64, rejected func(i int, err error)) (bool, error) {
	written := 0
	cursorWritten, err := commitOps(ctx, a.c.cfg.Store, ops, cursor, func(i int) {
		if ops[i].Delete {
			delete(a.index, ops[i].Key)
			a.c.noteRevision(ops[i].Key, 0)
		} else {
			a.index[ops[i].Key] = localCopy{wire: wires[i], global: true}
			a.c.noteRevision(ops[i].Key, revs[i])
		}
		written++
	}, rejected)
	if written > 0 {
		a.c.count(func(s *ClientStats) { s.Writes += written })
	}
	return cursorWritten, err
}

// finishSnapshot deletes the global copies the snapshot did not name, unless
// global looks like it lost its data (Kuma #9455): its store id changed, its
// revision is behind the zone's cursor, or it sent nothing while the zone
// holds copies. Then the deletes are held: reported in the Ack (so global
// shows the zone as held), counted, kept across restarts, judged again at
// every snapshot (the zone asks for one on every connect while held), and
// applied once an operator releases them. Legitimate deletes (a newer
// revision of the same store) always apply. It returns the held state, nil
// when nothing is held.
func (a *applier) finishSnapshot(ctx context.Context, snapRev int64) (*heldDeletes, error) {
	seen := a.seen
	a.seen = nil
	total := 0
	var gone []store.Op
	for k, cp := range a.index {
		if !cp.global {
			continue
		}
		total++
		if !seen[k] {
			gone = append(gone, store.Op{Delete: true, Key: k})
		}
	}
	a.c.mu.Lock()
	held := a.c.held
	a.c.mu.Unlock()
	ref := a.prev
	if held != nil {
		ref = cursor{StoreID: held.FromStoreID, Revision: held.FromRevision}
	}
	if len(gone) == 0 {
		if held != nil {
			a.log.Info("held snapshot deletes cleared: global has every copy again")
		}
		a.setHeld(nil)
		return nil, nil
	}
	reason := lostData(ref, a.storeID, snapRev, len(seen), total)
	released := held != nil && a.release != "" && a.release != held.Release
	if reason != "" && !released {
		h := &heldDeletes{Reason: reason, Since: time.Now().UTC(), Deletes: len(gone),
			FromStoreID: ref.StoreID, FromRevision: ref.Revision, Release: a.release}
		if held != nil {
			h.Since, h.Release = held.Since, held.Release
		}
		a.log.Error("snapshot deletes held: global looks like it lost its data", "reason", reason, "deletes", len(gone), "copies", total)
		a.c.metrics.refused.Inc()
		a.c.count(func(s *ClientStats) { s.RefusedDeletes++ })
		a.setHeld(h)
		return h, nil
	}
	if released {
		a.log.Warn("held snapshot deletes released by an operator", "deletes", len(gone))
	}
	a.log.Info("snapshot deletes stale copies", "count", len(gone))
	if _, err := a.commit(ctx, gone, nil, nil, nil, func(int, error) {}); err != nil { // deletes only: no wires
		return nil, err
	}
	a.setHeld(nil)
	return nil, nil
}

func (a *applier) setHeld(h *heldDeletes) {
	a.c.mu.Lock()
	a.c.held = h
	a.c.mu.Unlock()
	if h == nil {
		a.c.metrics.held.Set(0)
	} else {
		a.c.metrics.held.Set(float64(h.Deletes))
	}
}

// lostData says why a snapshot of global's store storeID at revision rev,
// naming named resources while the zone holds copies of global's, looks like
// global lost its data, compared with the zone's cursor prev; "" when it
// does not.
func lostData(prev cursor, storeID string, rev int64, named, copies int) string {
	switch {
	case prev.StoreID != "" && prev.StoreID != storeID:
		return fmt.Sprintf("global's store id changed from %s to %s", prev.StoreID, storeID)
	case prev.StoreID == storeID && rev < prev.Revision:
		return fmt.Sprintf("global's revision %d is behind the zone's cursor %d", rev, prev.Revision)
	case named == 0 && copies > 0:
		return fmt.Sprintf("global sent an empty snapshot while the zone holds %d copies", copies)
	}
	return ""
}
