package zone

import (
	"context"
	"errors"
	"net/http"

	"github.com/meshtrace/meshtrace/inspect"
	"github.com/meshtrace/meshtrace/policy/meshtrace"
	"github.com/meshtrace/meshtrace/resource"
	"github.com/meshtrace/meshtrace/zone/xds"
)

func (z *Zone) inspectRoutes() map[string]http.Handler { return inspect.Routes(zoneSource{z}) }

// zoneSource answers inspect questions from the live proxy state.
type zoneSource struct{ z *Zone }

func (s zoneSource) DataplaneRules(ctx context.Context, mesh, name string) (inspect.DataplaneRules, error) {
	rules, ok := s.z.rec.Rules(mesh, name)
	if !ok {
		return inspect.DataplaneRules{}, inspect.ErrNotFound
	}
	return inspect.RulesView(mesh, name, s.z.cfg.Name, rules), nil
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
