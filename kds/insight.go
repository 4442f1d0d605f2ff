package kds

import (
	"cmp"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"maps"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/hashicorp/go-hclog"

	kdsv1 "github.com/meshtrace/meshtrace/proto/kds/v1"
	"github.com/meshtrace/meshtrace/resource"
	"github.com/meshtrace/meshtrace/store"
)

// insight is a stream's view of its zone, written to the store as the
// ZoneInsight named after the zone (debounced by the stream's flushLoop).
type insight struct {
	instance string

	mu        sync.Mutex
	spec      resource.ZoneInsightSpec
	connected time.Time
	dirty     bool
}

func newInsight(instance string) *insight {
	return &insight{instance: instance}
}

// begin starts a connection: counters carry on from the stored insight.
func (in *insight) begin(ctx context.Context, st store.Store, zone string, last int64) error {
	var prev *resource.ZoneInsightSpec
	r, _, err := st.Get(ctx, resource.Key{Type: resource.TypeZoneInsight, Name: zone})
	if err == nil {
		prev, _ = r.Spec.(*resource.ZoneInsightSpec)
	} else if !errors.Is(err, store.ErrNotFound) {
		err = fmt.Errorf("kds: read insight: %w", err)
	} else {
		err = nil
	}
	in.mu.Lock()
	defer in.mu.Unlock()
	if prev != nil {
		in.spec.NACKs, in.spec.LastNACK = prev.NACKs, prev.LastNACK
		in.spec.Stats = maps.Clone(prev.Stats)
		in.spec.Proxies = prev.Proxies
		in.spec.Held = prev.Held
		in.spec.Uploaded = prev.Uploaded
	}
	if in.spec.Stats == nil {
		in.spec.Stats = map[string]resource.TypeStats{}
	}
	in.connected = time.Now().UTC()
	in.spec.Online = true
	in.spec.ConnectedTime = in.connected
	in.spec.DisconnectedTime = time.Time{}
	in.spec.GlobalInstance = in.instance
	in.spec.LastAckedRevision = last
	in.dirty = true
	return err
}

func (in *insight) update(f func(*resource.ZoneInsightSpec)) {
	in.mu.Lock()
	defer in.mu.Unlock()
	f(&in.spec)
	in.dirty = true
}

// setLag records the lag, marking the insight dirty only when it changed
// (the send loop calls it on every turn).
func (in *insight) setLag(revs int64) {
	in.mu.Lock()
	defer in.mu.Unlock()
	if in.spec.LagRevisions != revs {
		in.spec.LagRevisions = revs
		in.dirty = true
	}
}

func (in *insight) isDirty() bool {
	in.mu.Lock()
	defer in.mu.Unlock()
	return in.dirty
}

func (in *insight) acked() int64 {
	in.mu.Lock()
	defer in.mu.Unlock()
	return in.spec.LastAckedRevision
}

// zoneApplied records the cursor the zone's heartbeat reports.
func (in *insight) zoneApplied(rev int64) {
	in.mu.Lock()
	defer in.mu.Unlock()
	if rev > in.spec.LastAckedRevision {
		in.spec.LastAckedRevision = rev
		in.dirty = true
	}
}

func (in *insight) sent(b *kdsv1.Batch) {
	in.update(func(s *resource.ZoneInsightSpec) {
		for _, r := range b.Resources {
			ts := s.Stats[r.Type]
			ts.Sent++
			s.Stats[r.Type] = ts
		}
	})
}

func (in *insight) ackedBatch(f *flight, a *kdsv1.Ack, nacks []resource.NACK) {
	in.update(func(s *resource.ZoneInsightSpec) {
		if a.GetRevision() > s.LastAckedRevision {
			s.LastAckedRevision = a.GetRevision()
		}
		nacked := map[resource.Type]int64{}
		for _, e := range a.GetErrors() {
			nacked[resource.Type(e.GetType())]++
		}
		for t, n := range f.perType {
			ts := s.Stats[string(t)]
			ts.Acked += n - nacked[t]
			ts.Nacked += nacked[t]
			s.Stats[string(t)] = ts
		}
		if f.end {
			if a.GetHeld() == "" {
				s.Held = nil
			} else {
				since := time.Now().UTC()
				if s.Held != nil {
					since = s.Held.Since
				}
				s.Held = &resource.HeldDeletes{Reason: a.GetHeld(), Deletes: a.GetHeldDeletes(), Since: since}
			}
		}
		for _, n := range nacks {
			s.NACKs++
			last := n
			s.LastNACK = &last
		}
	})
}

func (in *insight) recordNACK(n resource.NACK) {
	in.update(func(s *resource.ZoneInsightSpec) {
		s.NACKs++
		s.LastNACK = &n
	})
}

func (in *insight) setProxies(b []byte, log hclog.Logger) {
	var proxies []resource.ProxyTracing
	if err := json.Unmarshal(b, &proxies); err != nil {
		log.Warn("bad zone report", "error", err)
		return
	}
	slices.SortFunc(proxies, func(a, b resource.ProxyTracing) int {
		return cmp.Or(strings.Compare(a.Mesh, b.Mesh), strings.Compare(a.Name, b.Name))
	})
	in.update(func(s *resource.ZoneInsightSpec) { s.Proxies = proxies })
}

// write stores the insight unless a newer connection of the zone (on this or
// another replica) has written its own since.
func (in *insight) write(ctx context.Context, st store.Store, zone string) error {
	in.mu.Lock()
	spec := in.spec
	spec.Stats = maps.Clone(in.spec.Stats)
	connected := in.connected
	in.dirty = false
	in.mu.Unlock()
	key := resource.Key{Type: resource.TypeZoneInsight, Name: zone}
	for range 3 {
		cur, _, err := st.Get(ctx, key)
		expect := store.MustNotExist
		created := time.Now().UTC()
		switch {
		case err == nil:
			expect = cur.Version
			created = cur.CreationTime
			if cs, ok := cur.Spec.(*resource.ZoneInsightSpec); ok && cs.ConnectedTime.After(connected) {
				return nil // a newer stream owns the insight
			}
		case !errors.Is(err, store.ErrNotFound):
			return err
		}
		r := &resource.Resource{Meta: resource.Meta{
			Type: resource.TypeZoneInsight, Name: zone,
			CreationTime: created, ModificationTime: time.Now().UTC(),
		}, Spec: &spec}
		_, err = st.Put(ctx, r, expect)
		for errors.Is(err, store.ErrTooLarge) && len(spec.Proxies) > 0 {
			// Summarise: keep the first half of the proxies (sorted by mesh
			// and name) and count the rest, until it fits.
			keep := len(spec.Proxies) / 2
			spec.ProxiesOmitted += len(spec.Proxies) - keep
			spec.Proxies = spec.Proxies[:keep]
			_, err = st.Put(ctx, r, expect)
		}
		if errors.Is(err, store.ErrConflict) || errors.Is(err, store.ErrAlreadyExists) {
			continue
		}
		return err
	}
	return fmt.Errorf("kds: insight of %s kept changing", zone)
}
