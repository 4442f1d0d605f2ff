// Package xds turns dataplanes and their MeshTrace rules into Envoy
// configuration and serves it: Build makes one proxy's snapshot, the
// Reconciler keeps every proxy's snapshot current in a go-control-plane
// SnapshotCache, and Server serves that cache over ADS.
//
// Resource names in a proxy's snapshot:
//
//	inbound:<address>:<port>    listener per inbound -> cluster localhost:<servicePort>
//	outbound:<address>:<port>   listener per outbound -> EDS cluster <destination kuma.io/service>
//	gateway:<address>:<port>    builtin gateway listener (port of inbound[0], else 8080), 404 for now
//	localhost:<port>            STATIC cluster to the application (serviceAddress or 127.0.0.1)
//	<service>                   EDS cluster with an empty ClusterLoadAssignment
//	meshtrace:<type>:<host>_<port>  collector cluster ("-tls" after the type for https)
package xds

import (
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"sort"
	"strconv"
	"strings"

	clusterv3 "github.com/envoyproxy/go-control-plane/envoy/config/cluster/v3"
	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	endpointv3 "github.com/envoyproxy/go-control-plane/envoy/config/endpoint/v3"
	listenerv3 "github.com/envoyproxy/go-control-plane/envoy/config/listener/v3"
	routev3 "github.com/envoyproxy/go-control-plane/envoy/config/route/v3"
	routerv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/http/router/v3"
	hcmv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/network/http_connection_manager/v3"
	"github.com/envoyproxy/go-control-plane/pkg/cache/types"
	"github.com/envoyproxy/go-control-plane/pkg/cache/v3"
	resourcev3 "github.com/envoyproxy/go-control-plane/pkg/resource/v3"
	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/anypb"
	"google.golang.org/protobuf/types/known/durationpb"

	"github.com/meshtrace/meshtrace/policy/meshtrace"
	"github.com/meshtrace/meshtrace/policy/meshtrace/envoy"
	"github.com/meshtrace/meshtrace/resource"
)

const (
	// DefaultGatewayPort is the port of a builtin gateway's listener when the
	// gateway Dataplane has no inbound to take the port from. (Kuma takes
	// gateway ports from MeshGateway resources, which this project does not
	// model; the gateway's first inbound port stands in for them.)
	DefaultGatewayPort = 8080

	localhost      = "127.0.0.1"
	connectTimeout = 5
	hcmFilter      = "envoy.filters.network.http_connection_manager"
	routerFilter   = "envoy.filters.http.router"
)

// ErrNotDataplane is returned by Build for a resource that is not a Dataplane.
var ErrNotDataplane = errors.New("not a Dataplane")

// NodeID is the xDS node id of a proxy: <mesh>.<dataplane name>.
func NodeID(mesh, name string) string { return mesh + "." + name }

var routerAny = mustAny(&routerv3.Router{})

func mustAny(m proto.Message) *anypb.Any {
	a, err := anypb.New(m)
	if err != nil {
		panic(err)
	}
	return a
}

// builder accumulates one proxy's resources.
type builder struct {
	tr        *prepared // nil when tracing is off
	parts     *parts    // nil: nothing shared
	own       map[string][]byte
	listeners []types.Resource
	clusters  []types.Resource
	endpoints []types.Resource
	sums      []digest        // per cluster: hash of the cluster and its load assignment
	seen      map[string]bool // cluster names already added
	eds       int             // EDS clusters added
}

// Build returns the snapshot of one proxy: a listener per inbound (routing to
// the local cluster localhost:<servicePort>), a listener per outbound (routing
// to an EDS cluster named after the destination's kuma.io/service, served with
// an empty ClusterLoadAssignment), or for a builtin gateway one listener on
// its first inbound's port (else DefaultGatewayPort) answering 404 until
// routes exist. Every HttpConnectionManager carries the tracing block of
// rules, and the collector cluster is in the same snapshot. Outbounds without
// a kuma.io/service tag are skipped.
//
// Every resource passes ValidateAll and the snapshot is Consistent. The
// version is a hash of the content: equal inputs give equal versions.
func Build(dp *resource.Resource, rules meshtrace.Rules) (*cache.Snapshot, error) {
	return build(dp, rules.Conf, nil, digest{}, nil)
}

// build is Build sharing what it can through shared (which may be nil);
// confKey identifies conf among the configurations parts has seen. own, when
// not nil, caches this proxy's listener-specific encodings by listener name:
// it must be emptied whenever the Dataplane changes.
func build(dp *resource.Resource, conf resource.MeshTraceConf, shared *parts, confKey digest, own map[string][]byte) (*cache.Snapshot, error) {
	spec, ok := dp.Spec.(*resource.DataplaneSpec)
	if !ok {
		return nil, ErrNotDataplane
	}
	tr, err := shared.tracing(confKey, conf)
	if err != nil {
		return nil, fmt.Errorf("meshtrace: %w", err)
	}
	b := &builder{tr: tr, parts: shared, own: own, seen: map[string]bool{}}
	nw := spec.Networking
	service := proxyService(spec)

	if spec.IsBuiltinGateway() {
		port := uint32(DefaultGatewayPort)
		if len(nw.Inbound) > 0 {
			port = nw.Inbound[0].Port
		}
		name := "gateway:" + hostPort(nw.Address, port)
		l := envoy.Listener{Direction: envoy.Gateway, Service: service}
		if err := b.listener(name, nw.Address, port, corev3.TrafficDirection_INBOUND, "", l); err != nil {
			return nil, err
		}
	} else {
		for _, in := range nw.Inbound {
			addr := in.Address
			if addr == "" {
				addr = nw.Address
			}
			svcPort := in.ServicePort
			if svcPort == 0 {
				svcPort = in.Port
			}
			svcAddr := in.ServiceAddress
			if svcAddr == "" {
				svcAddr = localhost
			}
			cluster := "localhost:" + strconv.FormatUint(uint64(svcPort), 10)
			if err := b.staticCluster(cluster, svcAddr, svcPort); err != nil {
				return nil, err
			}
			name := "inbound:" + hostPort(addr, in.Port)
			l := envoy.Listener{Direction: envoy.Inbound, Service: in.Tags[resource.TagService]}
			if err := b.listener(name, addr, in.Port, corev3.TrafficDirection_INBOUND, cluster, l); err != nil {
				return nil, err
			}
		}
	}
	for _, out := range nw.Outbound {
		dest := out.Tags[resource.TagService]
		if dest == "" {
			continue
		}
		addr := out.Address
		if addr == "" {
			addr = localhost
		}
		if err := b.edsCluster(dest); err != nil {
			return nil, err
		}
		name := "outbound:" + hostPort(addr, out.Port)
		l := envoy.Listener{Direction: envoy.Outbound, Service: service, Destination: dest}
		if err := b.listener(name, addr, out.Port, corev3.TrafficDirection_OUTBOUND, dest, l); err != nil {
			return nil, err
		}
	}
	if tr != nil && len(b.listeners) > 0 {
		b.add(tr.collector)
	}
	return b.snapshot()
}

// proxyService is the proxy's own service: the gateway's kuma.io/service, else
// its first inbound's.
func proxyService(spec *resource.DataplaneSpec) string {
	if g := spec.Networking.Gateway; g != nil {
		return g.Tags[resource.TagService]
	}
	if len(spec.Networking.Inbound) > 0 {
		return spec.Networking.Inbound[0].Tags[resource.TagService]
	}
	return ""
}

func hostPort(host string, port uint32) string {
	return net.JoinHostPort(host, strconv.FormatUint(uint64(port), 10))
}

var prefixMatch = &routev3.RouteMatch{PathSpecifier: &routev3.RouteMatch_Prefix{Prefix: "/"}}

// noRoute answers 404: a builtin gateway's routes come from route policies
// this project does not model yet.
func noRoute() *routev3.VirtualHost {
	return &routev3.VirtualHost{Name: "*", Domains: []string{"*"}, Routes: []*routev3.Route{{
		Match: prefixMatch,
		Action: &routev3.Route_DirectResponse{DirectResponse: &routev3.DirectResponseAction{
			Status: 404,
		}},
	}}}
}

func routeTo(cluster string) *routev3.VirtualHost {
	return &routev3.VirtualHost{Name: cluster, Domains: []string{"*"}, Routes: []*routev3.Route{{
		Match: prefixMatch,
		Action: &routev3.Route_Route{Route: &routev3.RouteAction{
			ClusterSpecifier: &routev3.RouteAction_Cluster{Cluster: cluster},
		}},
	}}}
}

// statPrefix makes a listener name usable as a stats prefix: dots and colons
// would split or confuse Envoy's stat name segments.
func statPrefix(name string) string {
	return strings.Map(func(r rune) rune {
		if r == '.' || r == ':' || r == '[' || r == ']' {
			return '_'
		}
		return r
	}, name)
}

// listener adds a listener whose HttpConnectionManager routes everything to
// cluster (or answers 404 when cluster is empty).
func (b *builder) listener(name, addr string, port uint32, dir corev3.TrafficDirection, cluster string, l envoy.Listener) error {
	var tracing *hcmv3.HttpConnectionManager_Tracing
	if b.tr != nil {
		var err error
		if tracing, err = b.tr.tracer.HTTP(l); err != nil {
			return fmt.Errorf("listener %s: %w", name, err)
		}
	}
	own, err := b.ownHCM(name, cluster)
	if err != nil {
		return fmt.Errorf("listener %s: %w", name, err)
	}
	shared, err := b.tr.sharedHCM(tracing)
	if err != nil {
		return fmt.Errorf("listener %s: %w", name, err)
	}
	// See ownHCM: the two encodings hold disjoint fields.
	value := make([]byte, 0, len(own)+len(shared))
	hcmAny := &anypb.Any{TypeUrl: hcmTypeURL, Value: append(append(value, own...), shared...)}
	lis := &listenerv3.Listener{
		Name:             name,
		Address:          envoy.SocketAddress(addr, port),
		TrafficDirection: dir,
		FilterChains: []*listenerv3.FilterChain{{
			Filters: []*listenerv3.Filter{{
				Name:       hcmFilter,
				ConfigType: &listenerv3.Filter_TypedConfig{TypedConfig: hcmAny},
			}},
		}},
	}
	if err := lis.ValidateAll(); err != nil {
		return fmt.Errorf("listener %s: %w", name, err)
	}
	b.listeners = append(b.listeners, lis)
	return nil
}

var (
	hcmTypeURL = "type.googleapis.com/" + string(proto.MessageName(&hcmv3.HttpConnectionManager{}))
	marshal    = proto.MarshalOptions{Deterministic: true}
)

// ownHCM returns the encoding of a listener's own HttpConnectionManager
// fields (stat prefix and routes), validated, from b.own when it has them.
//
// A listener's HttpConnectionManager is packed as this encoding followed by
// the encoding of the fields listeners share (codec, router filter, tracing
// block; see sharedFields), which is made once per tracing block. Protobuf
// parsers accept fields in any order, and the concatenation of the encodings
// of disjoint fields is the encoding of their union: this saves most of the
// marshaling, and on a policy change a proxy's own fields are reused as is.
func (b *builder) ownHCM(name, cluster string) ([]byte, error) {
	if enc, ok := b.own[name]; ok {
		return enc, nil
	}
	var vh *routev3.VirtualHost
	if cluster == "" {
		vh = noRoute()
	} else {
		vh = routeTo(cluster)
	}
	rc := &routev3.RouteConfiguration{Name: name, VirtualHosts: []*routev3.VirtualHost{vh}}
	if err := rc.ValidateAll(); err != nil {
		return nil, fmt.Errorf("route configuration: %w", err)
	}
	enc, err := marshal.Marshal(&hcmv3.HttpConnectionManager{
		StatPrefix:     statPrefix(name),
		RouteSpecifier: &hcmv3.HttpConnectionManager_RouteConfig{RouteConfig: rc},
	})
	if err != nil {
		return nil, err
	}
	if b.own != nil {
		b.own[name] = enc
	}
	return enc, nil
}

var routerFilters = []*hcmv3.HttpFilter{{
	Name:       routerFilter,
	ConfigType: &hcmv3.HttpFilter_TypedConfig{TypedConfig: routerAny},
}}

// sharedFields returns the validated encoding of the HttpConnectionManager
// fields every listener with this tracing block has.
func sharedFields(tracing *hcmv3.HttpConnectionManager_Tracing) ([]byte, error) {
	shared := &hcmv3.HttpConnectionManager{
		CodecType:   hcmv3.HttpConnectionManager_AUTO,
		HttpFilters: routerFilters,
		Tracing:     tracing,
	}
	// Validate as a whole message; the listener-specific fields are checked per listener.
	check := &hcmv3.HttpConnectionManager{
		StatPrefix:     "check",
		RouteSpecifier: &hcmv3.HttpConnectionManager_RouteConfig{RouteConfig: &routev3.RouteConfiguration{}},
		CodecType:      shared.CodecType,
		HttpFilters:    shared.HttpFilters,
		Tracing:        shared.Tracing,
	}
	if err := check.ValidateAll(); err != nil {
		return nil, fmt.Errorf("http connection manager: %w", err)
	}
	return marshal.Marshal(shared)
}

// untracedHCM is the shared encoding when tracing is off.
var untracedHCM = func() []byte {
	b, err := sharedFields(nil)
	if err != nil {
		panic(err)
	}
	return b
}()

// add adds a cluster (and its load assignment) unless one of that name is in.
func (b *builder) add(p *part) {
	name := p.cluster.GetName()
	if b.seen[name] {
		return
	}
	b.seen[name] = true
	b.clusters = append(b.clusters, p.cluster)
	b.sums = append(b.sums, p.sum)
	if p.cla != nil {
		b.endpoints = append(b.endpoints, p.cla)
		b.eds++
	}
}

func (b *builder) staticCluster(name, addr string, port uint32) error {
	if b.seen[name] {
		return nil
	}
	p, err := b.parts.cluster("static\x00"+name+"\x00"+hostPort(addr, port), func() (*part, error) {
		return newPart(&clusterv3.Cluster{
			Name:                 name,
			ConnectTimeout:       durationpb.New(connectTimeout * 1e9),
			ClusterDiscoveryType: &clusterv3.Cluster_Type{Type: clusterv3.Cluster_STATIC},
			LoadAssignment: &endpointv3.ClusterLoadAssignment{
				ClusterName: name,
				Endpoints: []*endpointv3.LocalityLbEndpoints{{LbEndpoints: []*endpointv3.LbEndpoint{{
					HostIdentifier: &endpointv3.LbEndpoint_Endpoint{Endpoint: &endpointv3.Endpoint{
						Address: envoy.SocketAddress(addr, port),
					}},
				}}}},
			},
		}, nil)
	})
	if err != nil {
		return err
	}
	b.add(p)
	return nil
}

var adsSource = &corev3.ConfigSource{
	ResourceApiVersion:    corev3.ApiVersion_V3,
	ConfigSourceSpecifier: &corev3.ConfigSource_Ads{Ads: &corev3.AggregatedConfigSource{}},
}

func (b *builder) edsCluster(name string) error {
	if b.seen[name] {
		return nil
	}
	p, err := b.parts.cluster("eds\x00"+name, func() (*part, error) {
		return newPart(&clusterv3.Cluster{
			Name:                 name,
			ConnectTimeout:       durationpb.New(connectTimeout * 1e9),
			ClusterDiscoveryType: &clusterv3.Cluster_Type{Type: clusterv3.Cluster_EDS},
			EdsClusterConfig:     &clusterv3.Cluster_EdsClusterConfig{EdsConfig: adsSource},
		}, &endpointv3.ClusterLoadAssignment{ClusterName: name})
	})
	if err != nil {
		return err
	}
	b.add(p)
	return nil
}

func (b *builder) snapshot() (*cache.Snapshot, error) {
	// The version hashes the content. Listeners are hashed through their
	// already marshaled HttpConnectionManager rather than marshaled again.
	h := sha256.New()
	buf := make([]byte, 0, 1024)
	for _, r := range b.listeners {
		l := r.(*listenerv3.Listener)
		sa := l.GetAddress().GetSocketAddress()
		buf = append(buf[:0], l.GetName()...)
		buf = append(buf, 0)
		buf = append(buf, sa.GetAddress()...)
		buf = strconv.AppendUint(append(buf, 0), uint64(sa.GetPortValue()), 10)
		buf = strconv.AppendInt(append(buf, 0), int64(l.GetTrafficDirection()), 10)
		for _, fc := range l.GetFilterChains() {
			for _, f := range fc.GetFilters() {
				buf = append(append(buf, 0), f.GetName()...)
				buf = append(append(buf, 0), f.GetTypedConfig().GetTypeUrl()...)
				buf = append(append(buf, 0), f.GetTypedConfig().GetValue()...)
			}
		}
		h.Write(buf)
		h.Write([]byte{1})
	}
	for i := range b.sums {
		h.Write(b.sums[i][:])
	}
	version := hex.EncodeToString(h.Sum(nil)[:8])
	snap, err := cache.NewSnapshot(version, map[resourcev3.Type][]types.Resource{
		resourcev3.ListenerType: b.listeners,
		resourcev3.ClusterType:  b.clusters,
		resourcev3.EndpointType: b.endpoints,
	})
	if err != nil {
		return nil, err
	}
	// The snapshot is consistent by construction (routes are inline and every
	// EDS cluster is added with its ClusterLoadAssignment); snap.Consistent()
	// would unpack every HttpConnectionManager again, so tests check it instead.
	if len(b.endpoints) != b.eds {
		return nil, fmt.Errorf("inconsistent snapshot: %d EDS clusters, %d load assignments", b.eds, len(b.endpoints))
	}
	return snap, nil
}

// Dump renders a snapshot's listeners, clusters and endpoints as indented
// JSON (protojson of each resource, sorted by name) for inspection.
func Dump(snap *cache.Snapshot) ([]byte, error) {
	out := struct {
		Version   string            `json:"version"`
		Listeners []json.RawMessage `json:"listeners"`
		Clusters  []json.RawMessage `json:"clusters"`
		Endpoints []json.RawMessage `json:"endpoints"`
	}{Version: snap.GetVersion(resourcev3.ListenerType)}
	for _, t := range []struct {
		typ string
		dst *[]json.RawMessage
	}{
		{resourcev3.ListenerType, &out.Listeners},
		{resourcev3.ClusterType, &out.Clusters},
		{resourcev3.EndpointType, &out.Endpoints},
	} {
		items := snap.GetResources(t.typ)
		names := make([]string, 0, len(items))
		for n := range items {
			names = append(names, n)
		}
		sort.Strings(names)
		*t.dst = []json.RawMessage{}
		for _, n := range names {
			b, err := protojson.Marshal(items[n])
			if err != nil {
				return nil, fmt.Errorf("%s: %w", n, err)
			}
			*t.dst = append(*t.dst, b)
		}
	}
	return json.MarshalIndent(out, "", "  ")
}
