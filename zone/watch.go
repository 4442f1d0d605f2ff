package zone

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/hashicorp/go-hclog"

	"github.com/meshtrace/meshtrace/residency"
	"github.com/meshtrace/meshtrace/resource"
	"github.com/meshtrace/meshtrace/store"
)

// proxyInputs is what feeds the xDS reconciler; xds.Reconciler implements it.
type proxyInputs interface {
	Update(ctx context.Context, dataplanes, policies []*resource.Resource) error
	Upsert(ctx context.Context, rs ...*resource.Resource) error
	Delete(ctx context.Context, keys ...resource.Key) error
	SetResidency(ctx context.Context, z residency.Zone) error
}

// watchedTypes are the zone store types that shape proxies' configuration
// (the Zone resource, synced from global, carries the zone's residency).
var watchedTypes = []resource.Type{resource.TypeDataplane, resource.TypeMeshTrace, resource.TypeMeshGateway, resource.TypeZone}

// setResidency hands the zone's residency to out: the Zone resource named
// zone among rs, Off when there is none.
func setResidency(ctx context.Context, out proxyInputs, zone string, r *resource.Resource) error {
	var spec *resource.ZoneSpec
	if r != nil {
		spec, _ = r.Spec.(*resource.ZoneSpec)
	}
	return out.SetResidency(ctx, residency.CompileZone(zone, spec))
}

// feed keeps out current with the store: it lists every watched type at one
// revision, hands the whole state over, then applies changes from revision+1.
// When the watch cannot go on (history compacted, subscriber overflow) it
// lists again at one revision and lets the reconciler diff. It returns when
// ctx ends. synced is called after every full state hand-over.
func feed(ctx context.Context, log hclog.Logger, st store.Store, zone string, out proxyInputs, synced func(rev int64)) error {
	backoff := 100 * time.Millisecond
	for {
		rev, err := relist(ctx, log, st, zone, out)
		if err == nil {
			backoff = 100 * time.Millisecond
			if synced != nil {
				synced(rev)
			}
			err = follow(ctx, log, st, zone, out, rev+1)
		}
		if ctx.Err() != nil {
			return nil
		}
		log.Warn("store watch interrupted, listing again", "rev", rev, "error", err)
		select {
		case <-ctx.Done():
			return nil
		case <-time.After(backoff):
		}
		if backoff < 5*time.Second {
			backoff *= 2
		}
	}
}

func relist(ctx context.Context, log hclog.Logger, st store.Store, zone string, out proxyInputs) (int64, error) {
	var rev int64
	lists := map[resource.Type][]*resource.Resource{}
	for _, t := range watchedTypes {
		res, err := st.List(ctx, t, store.ListOptions{Revision: rev})
		if err != nil {
			return 0, fmt.Errorf("list %s: %w", t, err)
		}
		rev = res.Revision
		lists[t] = res.Items
	}
	// Residency first, so no proxy is served before the zone's check is on.
	var own *resource.Resource
	for _, z := range lists[resource.TypeZone] {
		if z.Name == zone {
			own = z
		}
	}
	if err := setResidency(ctx, out, zone, own); err != nil {
		log.Warn("some proxies could not be built", "error", err)
	}
	if err := out.Update(ctx, lists[resource.TypeDataplane], append(lists[resource.TypeMeshTrace], lists[resource.TypeMeshGateway]...)); err != nil {
		// Proxies that failed to build keep their last good config; the
		// state itself was taken.
		log.Warn("some proxies could not be built", "error", err)
	}
	return rev, nil
}

func follow(ctx context.Context, log hclog.Logger, st store.Store, zone string, out proxyInputs, from int64) error {
	ch, err := st.Watch(ctx, store.WatchOptions{Types: watchedTypes, FromRevision: from})
	if err != nil {
		return fmt.Errorf("watch: %w", err)
	}
	for resp := range ch {
		if resp.Err != nil {
			return resp.Err
		}
		var ups []*resource.Resource
		var dels []resource.Key
		flush := func() error {
			var errs []error
			if len(ups) > 0 {
				errs = append(errs, out.Upsert(ctx, ups...))
			}
			if len(dels) > 0 {
				errs = append(errs, out.Delete(ctx, dels...))
			}
			ups, dels = nil, nil
			return errors.Join(errs...)
		}
		for _, ev := range resp.Events {
			if ev.Resource.Type == resource.TypeZone {
				if ev.Resource.Name != zone {
					continue
				}
				_ = flush()
				own := ev.Resource
				if ev.Type == store.EventDelete {
					own = nil
				}
				if err := setResidency(ctx, out, zone, own); err != nil {
					log.Warn("some proxies could not be built", "rev", resp.Revision, "error", err)
				}
				continue
			}
			if log.IsDebug() {
				k := ev.Resource.Key()
				log.Debug("store change", "op", ev.Type, "type", k.Type, "mesh", k.Mesh, "name", k.Name, "rev", ev.Revision)
			}
			switch ev.Type {
			case store.EventPut:
				if len(dels) > 0 {
					_ = flush()
				}
				ups = append(ups, ev.Resource)
			case store.EventDelete:
				if len(ups) > 0 {
					_ = flush()
				}
				dels = append(dels, ev.Resource.Key())
			}
		}
		if err := flush(); err != nil {
			log.Warn("some proxies could not be built", "rev", resp.Revision, "error", err)
		}
	}
	if ctx.Err() != nil {
		return nil
	}
	return errors.New("watch channel closed")
}
