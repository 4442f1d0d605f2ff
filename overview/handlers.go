package overview

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/meshtrace/meshtrace/policy/meshtrace"
	"github.com/meshtrace/meshtrace/resource"
	"github.com/meshtrace/meshtrace/restapi"
	"github.com/meshtrace/meshtrace/store"
)

// Page size limits of the lists (as the rest of the API).
const (
	DefaultPageSize = 100
	MaxPageSize     = 1000
)

// ProxyLookup returns a Dataplane's xDS connection, nil when unknown.
type ProxyLookup func(dp *resource.Resource) *resource.ProxyXDS

// Config says where the answers come from.
type Config struct {
	Store store.Store
	// Proxies returns a lookup of proxies' xDS connections valid for one
	// request: a zone asks its ADS server, global the zones' reports.
	Proxies func(ctx context.Context) (ProxyLookup, error)
	// Now is the clock (time.Now when nil).
	Now func() time.Time
}

// Routes returns the endpoints for restapi.Config.Routes.
func Routes(cfg Config) map[string]http.Handler {
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	if cfg.Proxies == nil {
		cfg.Proxies = func(context.Context) (ProxyLookup, error) {
			return func(*resource.Resource) *resource.ProxyXDS { return nil }, nil
		}
	}
	h := handlers{cfg}
	dpList, dpItem := http.HandlerFunc(h.dataplaneList), http.HandlerFunc(h.dataplaneItem)
	zoneList, zoneItem := http.HandlerFunc(h.zoneList), http.HandlerFunc(h.zoneItem)
	return map[string]http.Handler{
		"GET /meshes/{mesh}/dataplanes+insights":          dpList,
		"GET /meshes/{mesh}/dataplanes+insights/{name}":   dpItem,
		"GET /meshes/{mesh}/dataplanes/_overview":         dpList,
		"GET /meshes/{mesh}/dataplanes/{name}/_overview":  dpItem,
		"GET /dataplanes+insights":                        dpList,
		"GET /zones+insights":                             zoneList,
		"GET /zones+insights/{name}":                      zoneItem,
		"GET /zones/_overview":                            zoneList,
		"GET /zones/{name}/_overview":                     zoneItem,
		"GET /mesh-insights":                              http.HandlerFunc(h.meshInsightList),
		"GET /mesh-insights/{name}":                       http.HandlerFunc(h.meshInsightItem),
		"GET /meshes/{mesh}/meshtraces/{name}/dataplanes": http.HandlerFunc(h.policyDataplanes),
	}
}

type handlers struct{ cfg Config }

func fail(w http.ResponseWriter, err error, what string) {
	var apiErr *restapi.Error
	if errors.As(err, &apiErr) {
		restapi.WriteError(w, apiErr)
		return
	}
	restapi.WriteError(w, restapi.StoreError(err, what))
}

// page is the size and offset of a list request.
type page struct{ size, offset int }

func parsePage(q url.Values) (page, error) {
	p := page{size: DefaultPageSize}
	var bad []resource.Violation
	if s := q.Get("size"); s != "" {
		n, err := strconv.Atoi(s)
		if err != nil || n < 1 || n > MaxPageSize {
			bad = append(bad, resource.Violation{Field: "size", Message: fmt.Sprintf("must be an integer from 1 to %d, got %q", MaxPageSize, s)})
		}
		p.size = n
	}
	if s := q.Get("offset"); s != "" {
		n, err := strconv.Atoi(s)
		if err != nil || n < 0 {
			bad = append(bad, resource.Violation{Field: "offset", Message: fmt.Sprintf("must be a non-negative integer, got %q", s)})
		}
		p.offset = n
	}
	if len(bad) > 0 {
		return p, restapi.NewError(http.StatusBadRequest, "invalid list parameters", bad...)
	}
	return p, nil
}

// paginate cuts items to the page and builds Kuma's list with its next link.
func paginate[T any](r *http.Request, p page, items []T) List[T] {
	out := List[T]{Total: len(items), Items: []T{}}
	if p.offset < len(items) {
		end := min(p.offset+p.size, len(items))
		out.Items = items[p.offset:end]
		if end < len(items) {
			scheme := "http"
			if r.TLS != nil {
				scheme = "https"
			}
			q := r.URL.Query()
			q.Set("offset", strconv.Itoa(end))
			q.Set("size", strconv.Itoa(p.size))
			next := scheme + "://" + r.Host + r.URL.Path + "?" + q.Encode()
			out.Next = &next
		}
	}
	return out
}

func meta(r *resource.Resource, typ string) Meta {
	return Meta{
		Type: typ, Mesh: r.Mesh, Name: r.Name, Labels: r.Labels,
		CreationTime: r.CreationTime.UTC(), ModificationTime: r.ModificationTime.UTC(),
	}
}

func timePtr(t time.Time) *time.Time {
	if t.IsZero() {
		return nil
	}
	t = t.UTC()
	return &t
}

// dataplaneFilter is Kuma's filter of dataplane lists: tag=KEY:VALUE (the
// value matched as a substring, every tag on one inbound or the gateway),
// gateway=true|false|builtin|delegated, name=SUBSTRING.
type dataplaneFilter struct {
	tags    map[string]string
	gateway string
	name    string
}

func parseDataplaneFilter(q url.Values) (dataplaneFilter, error) {
	f := dataplaneFilter{tags: map[string]string{}, gateway: strings.ToLower(q.Get("gateway")), name: q.Get("name")}
	switch f.gateway {
	case "", "true", "false", "builtin", "delegated":
	default:
		msg := fmt.Sprintf("must be true, false, builtin or delegated, got %q", q.Get("gateway"))
		return f, restapi.NewError(http.StatusBadRequest, "invalid list parameters", resource.Violation{Field: "gateway", Message: msg})
	}
	for _, t := range q["tag"] {
		if k, v, ok := strings.Cut(t, ":"); ok {
			f.tags[k] = v
		}
	}
	return f, nil
}

func (f dataplaneFilter) keep(r *resource.Resource) bool {
	spec, ok := r.Spec.(*resource.DataplaneSpec)
	if !ok {
		return false
	}
	if f.name != "" && !strings.Contains(r.Name, f.name) {
		return false
	}
	gw := spec.Networking.Gateway
	switch f.gateway {
	case "true":
		if gw == nil {
			return false
		}
	case "false":
		if gw != nil {
			return false
		}
	case "builtin", "delegated":
		if gw == nil || !strings.EqualFold(gw.Type, f.gateway) && !(f.gateway == "delegated" && gw.Type == "") {
			return false
		}
	}
	if len(f.tags) == 0 {
		return true
	}
	for _, tags := range spec.TagSets() {
		if fuzzyMatch(f.tags, tags) {
			return true
		}
	}
	return false
}

func fuzzyMatch(want, have map[string]string) bool {
	for k, v := range want {
		hv, ok := have[k]
		if !ok || !strings.Contains(hv, v) {
			return false
		}
	}
	return true
}

func (h handlers) dataplaneOverview(dp *resource.Resource, lookup ProxyLookup) DataplaneOverview {
	out := DataplaneOverview{Meta: meta(dp, "DataplaneOverview")}
	out.Dataplane, _ = dp.Spec.(*resource.DataplaneSpec)
	if st := lookup(dp); st != nil && !st.ConnectedTime.IsZero() {
		sub := DiscoverySubscription{
			ID:                     fmt.Sprintf("%s.%s-%d", dp.Mesh, dp.Name, st.ConnectedTime.UnixNano()),
			ControlPlaneInstanceID: st.ControlPlane,
			ConnectTime:            timePtr(st.ConnectedTime),
			Status: SubscriptionStatus{
				LastUpdateTime: timePtr(st.LastUpdateTime),
				Total:          Stats{ResponsesSent: st.Sent, ResponsesAcknowledged: st.Acked, ResponsesRejected: st.Rejected},
			},
			AckedVersion: st.AckedVersion,
		}
		if !st.Online {
			sub.DisconnectTime = timePtr(st.DisconnectedTime)
			if sub.DisconnectTime == nil {
				sub.DisconnectTime = timePtr(st.ConnectedTime)
			}
		}
		if st.EnvoyVersion != "" {
			sub.Version = &DataplaneVersion{Envoy: &EnvoyVersion{Version: st.EnvoyVersion}}
		}
		out.DataplaneInsight = &DataplaneInsight{Subscriptions: []DiscoverySubscription{sub}}
	}
	return out
}

// Status is what kumactl prints in STATUS: Online when the proxy is
// connected and it is a gateway or has an inbound, else Offline (meshtrace's
// inbounds carry no health, so never Partially degraded).
func Status(dp *resource.Resource, st *resource.ProxyXDS) string {
	spec, ok := dp.Spec.(*resource.DataplaneSpec)
	if !ok || st == nil || !st.Online {
		return StatusOffline
	}
	if spec.Networking.Gateway == nil && len(spec.Networking.Inbound) == 0 {
		return StatusOffline
	}
	return StatusOnline
}

func (h handlers) dataplaneList(w http.ResponseWriter, r *http.Request) {
	p, err := parsePage(r.URL.Query())
	if err != nil {
		fail(w, err, "")
		return
	}
	f, err := parseDataplaneFilter(r.URL.Query())
	if err != nil {
		fail(w, err, "")
		return
	}
	mesh := r.PathValue("mesh")
	res, err := h.cfg.Store.List(r.Context(), resource.TypeDataplane, store.ListOptions{Mesh: mesh})
	if err != nil {
		fail(w, err, "dataplanes")
		return
	}
	lookup, err := h.cfg.Proxies(r.Context())
	if err != nil {
		fail(w, err, "dataplane insights")
		return
	}
	items := []DataplaneOverview{}
	for _, dp := range res.Items {
		if f.keep(dp) {
			items = append(items, h.dataplaneOverview(dp, lookup))
		}
	}
	restapi.WriteJSON(w, http.StatusOK, paginate(r, p, items))
}

func (h handlers) dataplaneItem(w http.ResponseWriter, r *http.Request) {
	key := resource.Key{Type: resource.TypeDataplane, Mesh: r.PathValue("mesh"), Name: r.PathValue("name")}
	dp, _, err := h.cfg.Store.Get(r.Context(), key)
	if err != nil {
		fail(w, err, fmt.Sprintf("Dataplane %q in mesh %q", key.Name, key.Mesh))
		return
	}
	lookup, err := h.cfg.Proxies(r.Context())
	if err != nil {
		fail(w, err, "dataplane insights")
		return
	}
	restapi.WriteJSON(w, http.StatusOK, h.dataplaneOverview(dp, lookup))
}

func (h handlers) zoneOverview(z, insight *resource.Resource) ZoneOverview {
	out := ZoneOverview{Meta: meta(z, "ZoneOverview")}
	out.Zone, _ = z.Spec.(*resource.ZoneSpec)
	if out.Zone == nil {
		out.Zone = &resource.ZoneSpec{}
	}
	in, _ := insightSpec(insight)
	if in == nil || in.ConnectedTime.IsZero() {
		return out
	}
	sub := KDSSubscription{
		ID:                fmt.Sprintf("%s-%d", z.Name, in.ConnectedTime.UnixNano()),
		GlobalInstanceID:  in.GlobalInstance,
		ConnectTime:       timePtr(in.ConnectedTime),
		Status:            KDSStatus{LastUpdateTime: timePtr(insight.ModificationTime)},
		Config:            `{"store":{"type":"etcd"}}`,
		LastAckedRevision: in.LastAckedRevision,
		LagRevisions:      in.LagRevisions,
		NACKs:             in.NACKs,
		Proxies:           len(in.Proxies),
	}
	if !in.Online {
		sub.DisconnectTime = timePtr(in.DisconnectedTime)
		if sub.DisconnectTime == nil {
			sub.DisconnectTime = timePtr(insight.ModificationTime)
		}
	}
	for typ, s := range in.Stats {
		st := Stats{ResponsesSent: nonNeg(s.Sent), ResponsesAcknowledged: nonNeg(s.Acked), ResponsesRejected: nonNeg(s.Nacked)}
		if sub.Status.Stat == nil {
			sub.Status.Stat = map[string]Stats{}
		}
		sub.Status.Stat[typ] = st
		sub.Status.Total.ResponsesSent += st.ResponsesSent
		sub.Status.Total.ResponsesAcknowledged += st.ResponsesAcknowledged
		sub.Status.Total.ResponsesRejected += st.ResponsesRejected
	}
	out.ZoneInsight = &ZoneInsight{Subscriptions: []KDSSubscription{sub}}
	return out
}

func nonNeg(n int64) uint64 {
	if n < 0 {
		return 0
	}
	return uint64(n)
}

func insightSpec(r *resource.Resource) (*resource.ZoneInsightSpec, bool) {
	if r == nil {
		return nil, false
	}
	s, ok := r.Spec.(*resource.ZoneInsightSpec)
	return s, ok
}

func (h handlers) zoneList(w http.ResponseWriter, r *http.Request) {
	p, err := parsePage(r.URL.Query())
	if err != nil {
		fail(w, err, "")
		return
	}
	ctx := r.Context()
	zones, err := h.cfg.Store.List(ctx, resource.TypeZone, store.ListOptions{})
	if err != nil {
		fail(w, err, "zones")
		return
	}
	insights, err := h.cfg.Store.List(ctx, resource.TypeZoneInsight, store.ListOptions{})
	if err != nil {
		fail(w, err, "zone insights")
		return
	}
	byName := make(map[string]*resource.Resource, len(insights.Items))
	for _, in := range insights.Items {
		byName[in.Name] = in
	}
	name := r.URL.Query().Get("name")
	items := []ZoneOverview{}
	for _, z := range zones.Items {
		if name == "" || strings.Contains(z.Name, name) {
			items = append(items, h.zoneOverview(z, byName[z.Name]))
		}
	}
	restapi.WriteJSON(w, http.StatusOK, paginate(r, p, items))
}

func (h handlers) zoneItem(w http.ResponseWriter, r *http.Request) {
	ctx := r.Context()
	name := r.PathValue("name")
	z, _, err := h.cfg.Store.Get(ctx, resource.Key{Type: resource.TypeZone, Name: name})
	if err != nil {
		fail(w, err, fmt.Sprintf("Zone %q", name))
		return
	}
	insight, _, err := h.cfg.Store.Get(ctx, resource.Key{Type: resource.TypeZoneInsight, Name: name})
	if err != nil && !errors.Is(err, store.ErrNotFound) {
		fail(w, err, fmt.Sprintf("ZoneInsight %q", name))
		return
	}
	restapi.WriteJSON(w, http.StatusOK, h.zoneOverview(z, insight))
}

// meshInsight counts one mesh's proxies, services and policies.
func (h handlers) meshInsight(ctx context.Context, mesh *resource.Resource, lookup ProxyLookup) (MeshInsight, error) {
	out := MeshInsight{
		Meta:       Meta{Type: "MeshInsight", Name: mesh.Name, CreationTime: mesh.CreationTime.UTC(), ModificationTime: h.cfg.Now().UTC()},
		Policies:   map[string]PolicyStat{},
		DPVersions: DPVersions{KumaDP: map[string]DataplaneStat{}, Envoy: map[string]DataplaneStat{}},
		MTLS:       MTLSStat{IssuedBackends: map[string]DataplaneStat{}, SupportedBackends: map[string]DataplaneStat{}},
	}
	for _, d := range resource.Types() {
		if !d.IsPolicy {
			continue
		}
		res, err := h.cfg.Store.List(ctx, d.Type, store.ListOptions{Mesh: mesh.Name, Limit: 1})
		if err != nil {
			return out, err
		}
		if res.Total > 0 {
			out.Policies[string(d.Type)] = PolicyStat{Total: uint32(res.Total)}
		}
	}
	dps, err := h.cfg.Store.List(ctx, resource.TypeDataplane, store.ListOptions{Mesh: mesh.Name})
	if err != nil {
		return out, err
	}
	services := map[string]bool{}
	for _, dp := range dps.Items {
		st := lookup(dp)
		status := Status(dp, st)
		out.Dataplanes.add(status)
		spec, _ := dp.Spec.(*resource.DataplaneSpec)
		if spec == nil {
			continue
		}
		switch gw := spec.Networking.Gateway; {
		case gw == nil:
			out.DataplanesByType.Standard.add(status)
		case gw.Type == resource.GatewayBuiltin:
			out.DataplanesByType.Gateway.add(status)
			out.DataplanesByType.GatewayBuiltin.add(status)
		default:
			out.DataplanesByType.Gateway.add(status)
			out.DataplanesByType.GatewayDelegated.add(status)
		}
		if st != nil && st.EnvoyVersion != "" {
			v := out.DPVersions.Envoy[st.EnvoyVersion]
			v.add(status)
			out.DPVersions.Envoy[st.EnvoyVersion] = v
		}
		for _, tags := range spec.TagSets() {
			if s := tags[resource.TagService]; s != "" {
				services[s] = true
			}
		}
	}
	out.Services = ServiceStat{Total: uint32(len(services)), Internal: uint32(len(services))}
	return out, nil
}

func (h handlers) meshInsightList(w http.ResponseWriter, r *http.Request) {
	p, err := parsePage(r.URL.Query())
	if err != nil {
		fail(w, err, "")
		return
	}
	ctx := r.Context()
	meshes, err := h.cfg.Store.List(ctx, resource.TypeMesh, store.ListOptions{})
	if err != nil {
		fail(w, err, "meshes")
		return
	}
	lookup, err := h.cfg.Proxies(ctx)
	if err != nil {
		fail(w, err, "dataplane insights")
		return
	}
	items := make([]MeshInsight, 0, len(meshes.Items))
	for _, m := range meshes.Items {
		in, err := h.meshInsight(ctx, m, lookup)
		if err != nil {
			fail(w, err, fmt.Sprintf("MeshInsight %q", m.Name))
			return
		}
		items = append(items, in)
	}
	restapi.WriteJSON(w, http.StatusOK, paginate(r, p, items))
}

func (h handlers) meshInsightItem(w http.ResponseWriter, r *http.Request) {
	ctx := r.Context()
	name := r.PathValue("name")
	m, _, err := h.cfg.Store.Get(ctx, resource.Key{Type: resource.TypeMesh, Name: name})
	if err != nil {
		fail(w, err, fmt.Sprintf("MeshInsight %q", name))
		return
	}
	lookup, err := h.cfg.Proxies(ctx)
	if err != nil {
		fail(w, err, "dataplane insights")
		return
	}
	in, err := h.meshInsight(ctx, m, lookup)
	if err != nil {
		fail(w, err, fmt.Sprintf("MeshInsight %q", name))
		return
	}
	restapi.WriteJSON(w, http.StatusOK, in)
}

// policyDataplanes answers kumactl inspect meshtrace NAME: every proxy of the
// mesh the policy's targetRef selects, as Kuma's policy inspect entries.
func (h handlers) policyDataplanes(w http.ResponseWriter, r *http.Request) {
	ctx := r.Context()
	key := resource.Key{Type: resource.TypeMeshTrace, Mesh: r.PathValue("mesh"), Name: r.PathValue("name")}
	pol, _, err := h.cfg.Store.Get(ctx, key)
	if err != nil {
		fail(w, err, fmt.Sprintf("MeshTrace %q in mesh %q", key.Name, key.Mesh))
		return
	}
	dps, err := h.cfg.Store.List(ctx, resource.TypeDataplane, store.ListOptions{Mesh: key.Mesh})
	if err != nil {
		fail(w, err, "dataplanes")
		return
	}
	gws, err := h.cfg.Store.List(ctx, resource.TypeMeshGateway, store.ListOptions{Mesh: key.Mesh})
	if err != nil {
		fail(w, err, "meshgateways")
		return
	}
	items := []PolicyInspectEntry{}
	for _, dp := range dps.Items {
		if meshtrace.Affects(pol, dp, meshtrace.SelectGateway(dp, gws.Items)) {
			items = append(items, PolicyInspectEntry{
				Kind:        KindSidecarDataplane,
				Dataplane:   ResourceKey{Mesh: dp.Mesh, Name: dp.Name},
				Attachments: []Attachment{{Type: AttachmentDataplane}},
			})
		}
	}
	sort.Slice(items, func(i, j int) bool { return items[i].Dataplane.Name < items[j].Dataplane.Name })
	restapi.WriteJSON(w, http.StatusOK, struct {
		Total int                  `json:"total"`
		Items []PolicyInspectEntry `json:"items"`
	}{len(items), items})
}
