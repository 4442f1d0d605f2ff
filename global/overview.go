package global

import (
	"context"

	"github.com/meshtrace/meshtrace/overview"
	"github.com/meshtrace/meshtrace/resource"
	"github.com/meshtrace/meshtrace/store"
)

// proxyLookup answers, for the overview endpoints, each Dataplane's xDS
// connection from what its zone last reported in its ZoneInsight. A proxy of
// a zone that is offline is shown offline from the zone's disconnection: its
// zone can no longer tell.
func (g *Global) proxyLookup(ctx context.Context) (overview.ProxyLookup, error) {
	insights, err := g.Store().List(ctx, resource.TypeZoneInsight, store.ListOptions{})
	if err != nil {
		return nil, err
	}
	type key struct{ zone, mesh, name string }
	byProxy := map[key]*resource.ProxyXDS{}
	for _, in := range insights.Items {
		spec, ok := in.Spec.(*resource.ZoneInsightSpec)
		if !ok {
			continue
		}
		for _, p := range spec.Proxies {
			if p.XDS == nil {
				continue
			}
			st := *p.XDS
			if !spec.Online && st.Online {
				st.Online = false
				st.DisconnectedTime = spec.DisconnectedTime
			}
			byProxy[key{in.Name, p.Mesh, p.Name}] = &st
		}
	}
	return func(dp *resource.Resource) *resource.ProxyXDS {
		return byProxy[key{dp.Labels[resource.LabelZone], dp.Mesh, dp.Labels[resource.LabelDisplayName]}]
	}, nil
}
