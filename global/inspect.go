package global

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"sort"
	"strings"

	"github.com/meshtrace/meshtrace/inspect"
	"github.com/meshtrace/meshtrace/kds"
	"github.com/meshtrace/meshtrace/policy/meshtrace"
	"github.com/meshtrace/meshtrace/resource"
	"github.com/meshtrace/meshtrace/restapi"
	"github.com/meshtrace/meshtrace/store"
)

// storeSource answers inspect questions on global from its store: the
// Dataplanes zones reported and the policies global holds, matched and merged
// by the same code the zones run.
type storeSource struct{ g *Global }

func (s storeSource) policies(ctx context.Context, mesh string) ([]*resource.Resource, error) {
	res, err := s.g.Store().List(ctx, resource.TypeMeshTrace, store.ListOptions{Mesh: mesh})
	if err != nil {
		return nil, err
	}
	return res.Items, nil
}

func (s storeSource) gateways(ctx context.Context, mesh string) ([]*resource.Resource, error) {
	res, err := s.g.Store().List(ctx, resource.TypeMeshGateway, store.ListOptions{Mesh: mesh})
	if err != nil {
		return nil, err
	}
	return res.Items, nil
}

// dataplane finds a Dataplane by its global name (<zone>.<name>) or, when
// unambiguous, by the name it has in its zone.
func (s storeSource) dataplane(ctx context.Context, mesh, name string) (*resource.Resource, error) {
	st := s.g.Store()
	dp, _, err := st.Get(ctx, resource.Key{Type: resource.TypeDataplane, Mesh: mesh, Name: name})
	if err == nil {
		return dp, nil
	}
	if !errors.Is(err, store.ErrNotFound) {
		return nil, err
	}
	res, err := st.List(ctx, resource.TypeDataplane, store.ListOptions{Mesh: mesh, Labels: map[string]string{resource.LabelDisplayName: name}})
	if err != nil {
		return nil, err
	}
	switch len(res.Items) {
	case 0:
		return nil, inspect.ErrNotFound
	case 1:
		return res.Items[0], nil
	}
	names := make([]string, len(res.Items))
	for i, r := range res.Items {
		names[i] = r.Name
	}
	return nil, restapi.NewError(http.StatusBadRequest, fmt.Sprintf("dataplane %q exists in several zones; name one of: %s", name, strings.Join(names, ", ")))
}

// forward asks the proxy's zone for one of its inspect answers over KDS.
// ok is false when the zone is not connected to this replica.
func (s storeSource) forward(ctx context.Context, dp *resource.Resource, suffix string) (status int, body []byte, ok bool, err error) {
	srv := s.g.KDSServer()
	zone := dp.Labels[resource.LabelZone]
	local := dp.Labels[resource.LabelDisplayName]
	if srv == nil || zone == "" || local == "" {
		return 0, nil, false, nil
	}
	status, body, err = srv.Inspect(ctx, zone, "/meshes/"+url.PathEscape(dp.Mesh)+"/dataplanes/"+url.PathEscape(local)+"/"+suffix)
	if errors.Is(err, kds.ErrZoneNotConnected) {
		return 0, nil, false, nil
	}
	return status, body, err == nil, err
}

// zoneAnswer turns a zone's non-200 answer into an API error.
func zoneAnswer(zone string, status int, body []byte) error {
	var e restapi.Error
	if json.Unmarshal(body, &e) != nil || e.Title == "" {
		e = *restapi.NewError(status, strings.TrimSpace(string(body)))
	}
	e.Status = status
	e.Detail = fmt.Sprintf("zone %s answered: %s", zone, e.Detail)
	return &e
}

// DataplaneRules answers with the zone's own view when the proxy's zone is
// connected to this replica, else computes the same rules from global's store.
func (s storeSource) DataplaneRules(ctx context.Context, mesh, name string) (inspect.DataplaneRules, error) {
	dp, err := s.dataplane(ctx, mesh, name)
	if err != nil {
		return inspect.DataplaneRules{}, err
	}
	status, body, ok, err := s.forward(ctx, dp, "_rules")
	if err != nil {
		return inspect.DataplaneRules{}, err
	}
	if ok && status == http.StatusOK {
		var out inspect.DataplaneRules
		if err := json.Unmarshal(body, &out); err != nil {
			return inspect.DataplaneRules{}, fmt.Errorf("zone answer: %w", err)
		}
		out.Name = dp.Name
		return out, nil
	}
	pols, err := s.policies(ctx, mesh)
	if err != nil {
		return inspect.DataplaneRules{}, err
	}
	gws, err := s.gateways(ctx, mesh)
	if err != nil {
		return inspect.DataplaneRules{}, err
	}
	rules := meshtrace.Compute(dp, inZone(pols, dp.Labels[resource.LabelZone]), meshtrace.SelectGateway(dp, gws))
	return inspect.RulesView(mesh, dp.Name, dp.Labels[resource.LabelZone], rules, dp), nil
}

// DataplaneXDS forwards to the proxy's zone: only the zone holds the Envoy
// configuration it serves.
func (s storeSource) DataplaneXDS(ctx context.Context, mesh, name string) ([]byte, error) {
	dp, err := s.dataplane(ctx, mesh, name)
	if err != nil {
		return nil, err
	}
	status, body, ok, err := s.forward(ctx, dp, "xds")
	if err != nil {
		return nil, err
	}
	zone := dp.Labels[resource.LabelZone]
	if !ok {
		return nil, restapi.NewError(http.StatusServiceUnavailable, fmt.Sprintf("zone %q of dataplane %q is not connected to this global instance; ask the zone's API or another global replica", zone, dp.Name))
	}
	if status != http.StatusOK {
		return nil, zoneAnswer(zone, status, body)
	}
	return body, nil
}

func (s storeSource) PolicyDataplanes(ctx context.Context, mesh, name string) (inspect.AffectedDataplanes, error) {
	st := s.g.Store()
	pol, _, err := st.Get(ctx, resource.Key{Type: resource.TypeMeshTrace, Mesh: mesh, Name: name})
	if err != nil {
		return inspect.AffectedDataplanes{}, err
	}
	dps, err := st.List(ctx, resource.TypeDataplane, store.ListOptions{Mesh: mesh})
	if err != nil {
		return inspect.AffectedDataplanes{}, err
	}
	pols, err := s.policies(ctx, mesh)
	if err != nil {
		return inspect.AffectedDataplanes{}, err
	}
	gws, err := s.gateways(ctx, mesh)
	if err != nil {
		return inspect.AffectedDataplanes{}, err
	}
	// One index per zone of the policies applying there: each proxy is then
	// matched against the policies about it, not against every policy.
	indexes := map[string]*meshtrace.Index{}
	out := inspect.AffectedDataplanes{Items: []inspect.AffectedDataplane{}}
	for _, dp := range dps.Items {
		zone := dp.Labels[resource.LabelZone]
		if !appliesIn(pol, zone) {
			continue
		}
		gw := meshtrace.SelectGateway(dp, gws)
		if !meshtrace.Affects(pol, dp, gw) {
			continue
		}
		item := inspect.AffectedDataplane{Mesh: mesh, Name: dp.Name, Zone: dp.Labels[resource.LabelZone]}
		if spec, ok := dp.Spec.(*resource.DataplaneSpec); ok {
			for _, tags := range spec.TagSets() {
				item.Service = tags[resource.TagService]
				break
			}
		}
		ix, ok := indexes[zone]
		if !ok {
			ix = meshtrace.NewIndex(inZone(pols, zone))
			indexes[zone] = ix
		}
		item.Backend, item.Collector = meshtrace.EffectiveCollector(meshtrace.ComputeIndexed(dp, ix, gw).Conf)
		out.Items = append(out.Items, item)
	}
	sort.Slice(out.Items, func(i, j int) bool {
		if out.Items[i].Zone != out.Items[j].Zone {
			return out.Items[i].Zone < out.Items[j].Zone
		}
		return out.Items[i].Name < out.Items[j].Name
	})
	out.Total = len(out.Items)
	return out, nil
}

// appliesIn reports whether policy p can apply to proxies of zone: a policy
// a zone synced up (kuma.io/origin: zone) applies only in that zone.
func appliesIn(p *resource.Resource, zone string) bool {
	return p.Labels[resource.LabelOrigin] != resource.OriginZone || p.Labels[resource.LabelZone] == zone
}

// inZone keeps the policies that can apply to proxies of zone.
func inZone(pols []*resource.Resource, zone string) []*resource.Resource {
	out := make([]*resource.Resource, 0, len(pols))
	for _, p := range pols {
		if appliesIn(p, zone) {
			out = append(out, p)
		}
	}
	return out
}
