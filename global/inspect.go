package global

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"sort"
	"strings"

	"github.com/meshtrace/meshtrace/inspect"
	"github.com/meshtrace/meshtrace/resource"
	"github.com/meshtrace/meshtrace/restapi"
	"github.com/meshtrace/meshtrace/store"
	"github.com/meshtrace/meshtrace/zone/meshtrace"
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

func (s storeSource) DataplaneRules(ctx context.Context, mesh, name string) (inspect.DataplaneRules, error) {
	dp, err := s.dataplane(ctx, mesh, name)
	if err != nil {
		return inspect.DataplaneRules{}, err
	}
	pols, err := s.policies(ctx, mesh)
	if err != nil {
		return inspect.DataplaneRules{}, err
	}
	rules := meshtrace.Compute(dp, pols)
	out := inspect.DataplaneRules{Mesh: mesh, Name: dp.Name, Zone: dp.Labels[resource.LabelZone], Policies: []inspect.PolicyRef{}}
	for _, k := range rules.Policies {
		out.Policies = append(out.Policies, inspect.Policy(k))
	}
	if len(rules.Policies) > 0 {
		conf := rules.Conf
		out.Conf = &conf
	}
	out.Backend, out.Collector = meshtrace.EffectiveCollector(rules.Conf)
	return out, nil
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
	out := inspect.AffectedDataplanes{Items: []inspect.AffectedDataplane{}}
	for _, dp := range dps.Items {
		if !meshtrace.Affects(pol, dp) {
			continue
		}
		item := inspect.AffectedDataplane{Mesh: mesh, Name: dp.Name, Zone: dp.Labels[resource.LabelZone]}
		if spec, ok := dp.Spec.(*resource.DataplaneSpec); ok {
			for _, tags := range spec.TagSets() {
				item.Service = tags[resource.TagService]
				break
			}
		}
		item.Backend, item.Collector = meshtrace.EffectiveCollector(meshtrace.Compute(dp, pols).Conf)
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
