package kds

import (
	"context"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"hash/fnv"
	"sync/atomic"
	"time"

	"github.com/hashicorp/go-hclog"

	kdsv1 "github.com/meshtrace/meshtrace/proto/kds/v1"
	"github.com/meshtrace/meshtrace/resource"
	"github.com/meshtrace/meshtrace/store"
)

// zoneSetter is implemented by specs that carry their zone (Dataplane).
type zoneSetter interface{ SetZone(zone string) }

// GlobalName is the name under which global stores a Dataplane named name
// that zone uploaded.
func GlobalName(zone, name string) string { return zone + "." + name }

// HashedName is the name under which global stores a policy a zone
// uploaded, as Kuma 2.7 names it: the zone's name, a dash and 16 characters
// of the FNV-64a hash of mesh, name, zone and Kubernetes namespace ("" on
// Universal), hex-encoded and mapped onto k8s' vowel-free alphabet. The
// zone's own name is kept in kuma.io/display-name.
func HashedName(mesh, name, zone, namespace string) string {
	h := fnv.New64a()
	for _, s := range []string{mesh, name, zone, namespace} {
		_, _ = h.Write([]byte(s))
	}
	const safe = "bcdfghjklmnpqrstvwxz2456789"
	hexed := hex.EncodeToString(h.Sum(nil))
	out := make([]byte, len(hexed))
	for i := range len(hexed) {
		out[i] = safe[int(hexed[i])%len(safe)]
	}
	const maxName = 253 - 17
	if len(name) > maxName {
		name = name[:maxName]
	}
	return name + "-" + string(out)
}

// uploadedName is the name on global of a resource of type t named name in
// mesh that zone uploaded: Dataplanes are prefixed with the zone (their
// names are per zone), policies hashed as Kuma 2.7 does.
func uploadedName(t resource.Type, mesh, name, zone string) string {
	if t == resource.TypeDataplane {
		return GlobalName(zone, name)
	}
	return HashedName(mesh, name, zone, "")
}

// uploader applies one zone's uploads to global's store. A zone can only
// write resources of types synced upward, under names prefixed with its own
// (authenticated) zone, labelled as its own; it can never touch a resource
// another zone or global owns.
type uploader struct {
	s    *Server
	zone string
	log  hclog.Logger

	index map[resource.Key]string // this zone's resources on global -> content hash
	// storeID is the zone store's id from the Hello: the upload cursor is
	// kept under it ("" keeps none).
	storeID string
	// onCounts, when set, gets the number of the zone's resources on global
	// by type after every upload batch.
	onCounts func(map[string]int64)
	seen     map[resource.Key]bool // during an upload snapshot
	// saved is the upload cursor this stream last persisted; idleSaved when
	// it last persisted one from an idle heartbeat.
	saved     int64
	idleSaved time.Time
}

// idleUploadCursorEvery spaces the upload cursors global persists from an
// idle zone's heartbeats: far below the zone's compaction retention (1h by
// default), without a global write per zone at every heartbeat.
var idleUploadCursorEvery = func() *atomic.Int64 {
	var d atomic.Int64
	d.Store(int64(time.Minute))
	return &d
}()

// idle keeps rev, from an idle zone's heartbeat (see
// session.idleUploadCursor), as the zone's upload cursor.
func (u *uploader) idle(ctx context.Context, rev int64, now time.Time) error {
	if rev <= u.saved || u.storeID == "" {
		return nil
	}
	if !u.idleSaved.IsZero() && now.Sub(u.idleSaved) < time.Duration(idleUploadCursorEvery.Load()) {
		return nil
	}
	if err := saveUploadCursor(ctx, u.s.cfg.Store, u.zone, cursor{StoreID: u.storeID, Revision: rev}); err != nil {
		return err
	}
	u.saved, u.idleSaved = rev, now
	return nil
}

func newUploader(s *Server, zone string, log hclog.Logger) *uploader {
	return &uploader{s: s, zone: zone, log: log}
}

func (u *uploader) loadIndex(ctx context.Context) error {
	u.index = map[resource.Key]string{}
	for _, t := range typesSynced(resource.SyncZoneToGlobal) {
		res, err := u.s.cfg.Store.List(ctx, t, store.ListOptions{Labels: map[string]string{resource.LabelZone: u.zone}})
		if err != nil {
			return err
		}
		for _, r := range res.Items {
			if r.Labels[resource.LabelOrigin] == resource.OriginZone {
				u.index[r.Key()] = contentHash(r)
			}
		}
	}
	return nil
}

// apply applies one upload batch. It returns an error only when the store
// fails; rejected resources are listed in the Ack.
func (u *uploader) apply(ctx context.Context, b *kdsv1.Batch) (*kdsv1.Ack, error) {
	if u.index == nil {
		if err := u.loadIndex(ctx); err != nil {
			return nil, fmt.Errorf("kds: load zone resources: %w", err)
		}
	}
	if b.GetSnapshot() && u.seen == nil {
		u.seen = map[resource.Key]bool{}
	}
	ack := &kdsv1.Ack{Nonce: b.GetNonce()}
	reject := func(w *kdsv1.Resource, reason string) {
		ack.Errors = append(ack.Errors, &kdsv1.ResourceError{Type: w.Type, Mesh: w.Mesh, Name: w.Name, Reason: reason, Revision: w.Revision})
	}
	var ops []store.Op
	var hashes []string
	var sources []*kdsv1.Resource
	meshes := map[string]bool{} // mesh name -> exists on global, per batch
	for _, w := range b.GetResources() {
		key := keyOf(w)
		key.Name = uploadedName(key.Type, key.Mesh, w.Name, u.zone)
		if u.seen != nil {
			u.seen[key] = true
		}
		d, ok := resource.Lookup(key.Type)
		if !ok || !d.Sync.Has(resource.SyncZoneToGlobal) || d.Type == resource.TypeZoneInsight {
			reject(w, fmt.Sprintf("type %q is not accepted from zones", w.Type))
			continue
		}
		if w.Delete {
			if _, mine := u.index[key]; !mine {
				continue // never ours: nothing to delete, and nothing else may be
			}
			ops = append(ops, store.Op{Delete: true, Key: key})
			hashes, sources = append(hashes, ""), append(sources, w)
			continue
		}
		r, err := decodeWire(w)
		if err != nil {
			reject(w, err.Error())
			continue
		}
		if zs, ok := r.Spec.(zoneSetter); ok {
			zs.SetZone(u.zone)
		}
		// Checked again here, as global stores it: under the prefixed name,
		// in a mesh global knows.
		if len(key.Name) > resource.MaxNameLength {
			reject(w, fmt.Sprintf("name %q is %d characters once prefixed with the zone as %q: at most %d", w.Name, len(key.Name), key.Name, resource.MaxNameLength))
			continue
		}
		if d.Scope == resource.ScopeMesh {
			ok, err := u.meshExists(ctx, meshes, key.Mesh)
			if err != nil {
				return nil, err
			}
			if !ok {
				reject(w, fmt.Sprintf("mesh %q does not exist on global", key.Mesh))
				continue
			}
		}
		r.Name = key.Name
		r.Labels = withLabels(r.Labels, map[string]string{
			resource.LabelZone:        u.zone,
			resource.LabelOrigin:      resource.OriginZone,
			resource.LabelDisplayName: w.Name,
		})
		h := contentHash(r)
		prev, mine := u.index[key]
		if mine && prev == h {
			continue
		}
		if !mine {
			if owner, err := u.owner(ctx, key); err != nil {
				return nil, err
			} else if owner != "" {
				reject(w, fmt.Sprintf("%s exists on global and belongs to %s", key, owner))
				continue
			}
		}
		now := time.Now().UTC()
		if r.CreationTime.IsZero() {
			r.CreationTime = now
		}
		r.ModificationTime = now
		ops = append(ops, store.Op{Key: key, Resource: r})
		hashes, sources = append(hashes, h), append(sources, w)
	}
	if err := u.commit(ctx, ops, hashes, func(i int, err error) { reject(sources[i], err.Error()) }); err != nil {
		return nil, err
	}
	if b.GetSnapshotEnd() {
		if err := u.finishSnapshot(ctx); err != nil {
			return nil, err
		}
	}
	for _, e := range ack.Errors {
		u.s.metrics.uploadNACKs.WithLabelValues(u.zone).Inc()
		u.log.Warn("upload rejected", "type", e.Type, "mesh", e.Mesh, "name", e.Name, "reason", e.Reason)
	}
	ack.Revision = b.GetRevision()
	if rev := b.GetRevision(); rev > 0 && u.storeID != "" {
		if err := saveUploadCursor(ctx, u.s.cfg.Store, u.zone, cursor{StoreID: u.storeID, Revision: rev}); err != nil {
			return nil, err
		}
		u.saved = max(u.saved, rev)
	}
	if u.onCounts != nil {
		counts := map[string]int64{}
		for k := range u.index {
			counts[string(k.Type)]++
		}
		u.onCounts(counts)
	}
	return ack, nil
}

// meshExists says whether global has mesh, remembering answers in known.
func (u *uploader) meshExists(ctx context.Context, known map[string]bool, mesh string) (bool, error) {
	if ok, seen := known[mesh]; seen {
		return ok, nil
	}
	_, _, err := u.s.cfg.Store.Get(ctx, resource.Key{Type: resource.TypeMesh, Name: mesh})
	switch {
	case err == nil:
		known[mesh] = true
	case errors.Is(err, store.ErrNotFound):
		known[mesh] = false
	default:
		return false, fmt.Errorf("kds: read mesh %s: %w", mesh, err)
	}
	return known[mesh], nil
}

// owner says who owns an existing resource not in this zone's index: "" when
// it does not exist.
func (u *uploader) owner(ctx context.Context, key resource.Key) (string, error) {
	r, _, err := u.s.cfg.Store.Get(ctx, key)
	if errors.Is(err, store.ErrNotFound) {
		return "", nil
	}
	if err != nil {
		return "", fmt.Errorf("kds: read %s: %w", key, err)
	}
	if z := r.Labels[resource.LabelZone]; z != "" && r.Labels[resource.LabelOrigin] == resource.OriginZone {
		if z == u.zone {
			return "", nil // ours, written by another stream of this zone
		}
		return "zone " + z, nil
	}
	return "global", nil
}

// commit writes ops (commitOps) and records in the index what was written.
func (u *uploader) commit(ctx context.Context, ops []store.Op, hashes []string, rejected func(i int, err error)) error {
	_, err := commitOps(ctx, u.s.cfg.Store, ops, nil, func(i int) {
		if ops[i].Delete {
			delete(u.index, ops[i].Key)
		} else {
			u.index[ops[i].Key] = hashes[i]
		}
	}, rejected)
	return err
}

// finishSnapshot deletes this zone's resources the snapshot did not name.
// The zone is the source of truth of what it uploads: global mirrors it, so
// an upload snapshot's deletes always apply.
func (u *uploader) finishSnapshot(ctx context.Context) error {
	seen := u.seen
	u.seen = nil
	var gone []store.Op
	for k := range u.index {
		if !seen[k] {
			gone = append(gone, store.Op{Delete: true, Key: k})
		}
	}
	return u.commit(ctx, gone, nil, func(int, error) {}) // deletes only: no hashes
}

// saveUploadCursor keeps, on global, how far the zone's uploads are applied.
func saveUploadCursor(ctx context.Context, st store.Store, zone string, c cursor) error {
	b, err := json.Marshal(c)
	if err != nil {
		return err
	}
	if _, err := st.PutValue(ctx, valueUploadCursorPrefix+zone, b); err != nil {
		return fmt.Errorf("kds: persist upload cursor: %w", err)
	}
	return nil
}

// uploadRevision is the revision of the zone store storeID up to which
// global applied the zone's uploads; 0 when unknown or of another store.
func uploadRevision(ctx context.Context, st store.Store, zone, storeID string) (int64, error) {
	if storeID == "" {
		return 0, nil
	}
	b, err := st.GetValue(ctx, valueUploadCursorPrefix+zone)
	if errors.Is(err, store.ErrNotFound) {
		return 0, nil
	}
	if err != nil {
		return 0, fmt.Errorf("kds: read upload cursor: %w", err)
	}
	var c cursor
	if json.Unmarshal(b, &c) != nil || c.StoreID != storeID {
		return 0, nil
	}
	return c.Revision, nil
}
