package zone

import (
	"context"
	"errors"
	"net/http"

	"github.com/meshtrace/meshtrace/inspect"
	"github.com/meshtrace/meshtrace/overview"
	"github.com/meshtrace/meshtrace/policy/meshtrace"
	"github.com/meshtrace/meshtrace/resource"
	"github.com/meshtrace/meshtrace/zone/xds"
)

func (z *Zone) inspectRoutes() map[string]http.Handler {
	routes := inspect.Routes(zoneSource{z})
	for p, h := range overview.Routes(overview.Config{Store: z.Store(), Proxies: z.proxyLookup}) {
		routes[p] = h
	}
	return routes
}

// proxyLookup answers the overview endpoints from the zone's ADS server.
func (z *Zone) proxyLookup(context.Context) (overview.ProxyLookup, error) {
	statuses := z.xds.ProxyStatuses()
	return func(dp *resource.Resource) *resource.ProxyXDS {
		if st, ok := statuses[dp.Mesh+"."+dp.Name]; ok {
			return &st
		}
		return nil
	}, nil
}

// zoneSource answers inspect questions from the live proxy state.
type zoneSource struct{ z *Zone }

func (s zoneSource) DataplaneRules(ctx context.Context, mesh, name string) (inspect.DataplaneRules, error) {
	rules, ok := s.z.rec.Rules(mesh, name)
	dp, found := s.z.rec.Dataplane(mesh, name)
	if !ok || !found {
		return inspect.DataplaneRules{}, inspect.ErrNotFound
	}
	view := inspect.RulesView(mesh, name, s.z.cfg.Name, rules, dp)
	if w := s.z.rec.ResidencyWarning(mesh, name); w != "" {
		view.Warnings = append(view.Warnings, w)
	}
	return view, nil
}

func (s zoneSource) PolicyDataplanes(ctx context.Context, mesh, name string) (inspect.AffectedDataplanes, error) {
	key := resource.Key{Type: resource.TypeMeshTrace, Mesh: mesh, Name: name}
	if _, _, err := s.z.Store().Get(ctx, key); err != nil {
		return inspect.AffectedDataplanes{}, err
	}
	services := map[resource.Key]string{}
	for _, p := range s.z.rec.Proxies() {
		services[resource.Key{Type: resource.TypeDataplane, Mesh: p.Mesh, Name: p.Name}] = p.Service
	}
	out := inspect.AffectedDataplanes{Items: []inspect.AffectedDataplane{}}
	for _, k := range s.z.rec.AffectedBy(key) {
		item := inspect.AffectedDataplane{Mesh: k.Mesh, Name: k.Name, Zone: s.z.cfg.Name, Service: services[k]}
		if rules, ok := s.z.rec.Rules(k.Mesh, k.Name); ok {
			item.Backend, item.Collector = meshtrace.EffectiveCollector(rules.Conf)
		}
		out.Items = append(out.Items, item)
	}
	out.Total = len(out.Items)
	return out, nil
}

func (s zoneSource) DataplaneXDS(ctx context.Context, mesh, name string) ([]byte, error) {
	b, err := s.z.rec.DumpJSON(mesh, name)
	if errors.Is(err, xds.ErrUnknownProxy) {
		return nil, inspect.ErrNotFound
	}
	return b, err
}

// ProxyReport is every proxy's effective tracing and xDS connection, as the
// zone reports them to global in its ZoneInsight. Disconnected proxies whose
// Dataplane is gone are forgotten here.
func (z *Zone) ProxyReport() []resource.ProxyTracing {
	proxies := z.rec.Proxies()
	statuses := z.xds.ProxyStatuses()
	known := make(map[string]bool, len(proxies))
	for i := range proxies {
		node := proxies[i].Mesh + "." + proxies[i].Name
		known[node] = true
		if st, ok := statuses[node]; ok {
			proxies[i].XDS = &st
		}
	}
	if len(statuses) > len(known) {
		z.xds.ForgetOfflineProxies(func(node string) bool { return known[node] })
	}
	return proxies
}
