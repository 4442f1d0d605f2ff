// Package xds turns dataplanes and their MeshTrace rules into Envoy
// configuration and serves it: Build makes one proxy's snapshot, the
// Reconciler keeps every proxy's snapshot current in a go-control-plane
// SnapshotCache, and Server serves that cache over ADS.
//
// Listeners follow kuma.io/protocol (the inbound's tag; for an outbound, the
// protocol the destination's endpoints in the zone agree on): http, http2 and
// grpc get an HttpConnectionManager with the proxy's tracing, tcp, kafka or
// none get tcp_proxy and no tracing. Resource names in a proxy's snapshot:
//
//	inbound:<address>:<port>    listener per inbound -> its application's cluster
//	outbound:<address>:<port>   listener per outbound -> EDS cluster <destination kuma.io/service>
//	gateway:<address>:<port>    builtin gateway listener per HTTP port of its MeshGateway, 404 (no routes)
//	localhost:<port>            STATIC cluster to an application on 127.0.0.1
//	<serviceAddress>:<port>     STATIC cluster to an application elsewhere
//	<service>                   EDS cluster; its ClusterLoadAssignment lists the zone's endpoints
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
	tcpproxyv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/network/tcp_proxy/v3"
	upstreamhttpv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/upstreams/http/v3"
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
	localhost      = "127.0.0.1"
	connectTimeout = 5
	hcmFilter      = "envoy.filters.network.http_connection_manager"
	tcpProxyFilter = "envoy.filters.network.tcp_proxy"
	routerFilter   = "envoy.filters.http.router"
	httpOptionsKey = "envoy.extensions.upstreams.http.v3.HttpProtocolOptions"
)

// ErrNotDataplane is returned by Build for a resource that is not a Dataplane.
var ErrNotDataplane = errors.New("not a Dataplane")

// NodeID is the xDS node id of a proxy: <mesh>.<dataplane name>.
func NodeID(mesh, name string) string { return mesh + "." + name }

var routerAny = mustAny(&routerv3.Router{})

// http2Options makes a cluster speak HTTP/2 to its upstream.
var http2Options = map[string]*anypb.Any{httpOptionsKey: mustAny(&upstreamhttpv3.HttpProtocolOptions{
	UpstreamProtocolOptions: &upstreamhttpv3.HttpProtocolOptions_ExplicitHttpConfig_{
		ExplicitHttpConfig: &upstreamhttpv3.HttpProtocolOptions_ExplicitHttpConfig{
			ProtocolConfig: &upstreamhttpv3.HttpProtocolOptions_ExplicitHttpConfig_Http2ProtocolOptions{
				Http2ProtocolOptions: &corev3.Http2ProtocolOptions{},
			},
		},
	},
})}

func mustAny(m proto.Message) *anypb.Any {
	a, err := anypb.New(m)
	if err != nil {
		panic(err)
	}
	return a
}

// CollectorTLS is how proxies check https collectors (zone configuration).
type CollectorTLS struct {
	// TrustedCA is the CA bundle path on the proxy; "" means envoy.DefaultTrustedCA.
	TrustedCA string
	// SkipVerify turns verification off.
	SkipVerify bool
}

// Env is what a proxy's configuration depends on besides its own Dataplane
// and its MeshTrace rules.
type Env struct {
	// Dataplanes are the zone's Dataplanes: an outbound's endpoints and
	// protocol come from their inbounds tagged with its kuma.io/service.
	Dataplanes []*resource.Resource
	// Gateways are the MeshGateways: a builtin gateway's listeners come from
	// the one selecting it (meshtrace.SelectGateway).
	Gateways []*resource.Resource
	// Collector is how https collectors are verified.
	Collector CollectorTLS
}

// inputs is Env prepared for building.
type inputs struct {
	services *services
	gateway  *resource.MeshGatewaySpec
	tls      CollectorTLS
}

func (in *inputs) destination(mesh, name string) (*part, string) {
	if svc := in.services.get(mesh, name); svc != nil {
		return svc.part, svc.protocol
	}
	return emptyService(name), resource.ProtocolUnknown
}

// builder accumulates one proxy's resources.
type builder struct {
	tr        *prepared // nil when tracing is off
	parts     *parts    // nil: nothing shared
	own       map[string][]byte
	listeners []types.Resource
	clusters  []types.Resource
	endpoints []types.Resource
	sums      []*part         // per cluster, for the versions
	seen      map[string]bool // cluster names already added
	eds       int             // EDS clusters added
	http      int             // listeners with an HttpConnectionManager
}

// Build returns the snapshot of one proxy:
//
//   - a listener per inbound, routing to the application's STATIC cluster;
//   - a listener per outbound, routing to the EDS cluster of the
//     destination's kuma.io/service, whose load assignment lists every inbound
//     of env.Dataplanes tagged with that service (an empty one when no
//     Dataplane of the zone serves it);
//   - for a builtin gateway, a listener per HTTP port of the MeshGateway of
//     env.Gateways that selects it, answering 404 until routes exist (no
//     listener without a MeshGateway, as Kuma).
//
// HTTP listeners (see the package comment) carry the tracing of rules, and
// the collector cluster is in the same snapshot. Outbounds without a
// kuma.io/service tag are skipped.
//
// Every resource passes ValidateAll and the snapshot is Consistent. The
// versions (one per resource type) hash the content: equal inputs give equal
// versions.
func Build(dp *resource.Resource, rules meshtrace.Rules, env Env) (*cache.Snapshot, error) {
	svcs := newServices()
	for _, other := range env.Dataplanes {
		if other.Type == resource.TypeDataplane && other.Mesh == dp.Mesh {
			svcs.set(other.Key(), nil, contributions(other))
		}
	}
	svcs.flush()
	in := &inputs{services: svcs, tls: env.Collector}
	if g := meshtrace.SelectGateway(dp, env.Gateways); g != nil {
		in.gateway = g.Spec.(*resource.MeshGatewaySpec)
	}
	snap, _, err := build(dp, rules.Conf, nil, digest{}, nil, in)
	return snap, err
}

// build is Build sharing what it can through shared (which may be nil);
// confKey identifies conf among the configurations parts has seen. own, when
// not nil, caches this proxy's listener-specific encodings by listener name:
// it must be emptied whenever the Dataplane changes. It also returns the
// snapshot's clusters' parts, in order (see withEndpoints).
func build(dp *resource.Resource, conf resource.MeshTraceConf, shared *parts, confKey digest, own map[string][]byte, in *inputs) (*cache.Snapshot, []*part, error) {
	spec, ok := dp.Spec.(*resource.DataplaneSpec)
	if !ok {
		return nil, nil, ErrNotDataplane
	}
	tr, err := shared.tracing(confKey, conf, envoy.Options{IPv6: spec.IsIPv6(), TrustedCA: in.tls.TrustedCA, SkipVerify: in.tls.SkipVerify})
	if err != nil {
		return nil, nil, fmt.Errorf("meshtrace: %w", err)
	}
	b := &builder{tr: tr, parts: shared, own: own, seen: map[string]bool{}}
	nw := spec.Networking
	service := spec.IdentifyingService()

	if spec.IsBuiltinGateway() {
		if err := b.gatewayListeners(listenAddress(nw.Address), service, in.gateway); err != nil {
			return nil, nil, err
		}
	} else {
		for _, inb := range nw.Inbound {
			addr := inb.Address
			if addr == "" {
				addr = listenAddress(nw.Address)
			}
			svcPort := inb.ServicePort
			if svcPort == 0 {
				svcPort = inb.Port
			}
			svcAddr := inb.ServiceAddress
			if svcAddr == "" {
				svcAddr = localhost
			}
			protocol := resource.ParseProtocol(inb.Tags[resource.TagProtocol])
			cluster := localClusterName(svcAddr, svcPort)
			if err := b.staticCluster(cluster, svcAddr, svcPort, isHTTP2(protocol)); err != nil {
				return nil, nil, err
			}
			name := "inbound:" + hostPort(addr, inb.Port)
			l := envoy.Listener{Direction: envoy.Inbound, Service: service}
			if err := b.listener(name, addr, inb.Port, corev3.TrafficDirection_INBOUND, cluster, protocol, l); err != nil {
				return nil, nil, err
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
		p, protocol := in.destination(dp.Mesh, dest)
		b.add(p)
		name := "outbound:" + hostPort(addr, out.Port)
		l := envoy.Listener{Direction: envoy.Outbound, Service: service, Destination: dest}
		if err := b.listener(name, addr, out.Port, corev3.TrafficDirection_OUTBOUND, dest, protocol, l); err != nil {
			return nil, nil, err
		}
	}
	if tr != nil && b.http > 0 {
		b.add(tr.collector)
	}
	snap, err := b.snapshot()
	return snap, b.sums, err
}

// listenAddress is where a listener of a proxy at addr binds: addr itself
// when it is an IP, else (a host name, which Envoy cannot listen on) every
// interface.
func listenAddress(addr string) string {
	if net.ParseIP(addr) != nil {
		return addr
	}
	return "0.0.0.0"
}

// localClusterName names an inbound's application cluster by its address
// and port: localhost:<port> on 127.0.0.1 (Kuma's name), else <address>:<port>.
func localClusterName(addr string, port uint32) string {
	if addr == localhost {
		return "localhost:" + strconv.FormatUint(uint64(port), 10)
	}
	return hostPort(addr, port)
}

// gatewayListeners adds a listener per HTTP port of gw (nil: none). Listeners
// of one port share it, each hostname a virtual host. HTTPS, TLS and TCP
// listeners need certificates or routes this project does not model; they
// get no listener.
func (b *builder) gatewayListeners(addr, service string, gw *resource.MeshGatewaySpec) error {
	if gw == nil || gw.Conf == nil {
		return nil
	}
	hosts := map[uint32][]string{}
	var ports []uint32
	for _, l := range gw.Conf.Listeners {
		if l.Protocol != resource.GatewayHTTP {
			continue
		}
		if _, ok := hosts[l.Port]; !ok {
			ports = append(ports, l.Port)
		}
		hosts[l.Port] = append(hosts[l.Port], l.NonEmptyHostname())
	}
	sort.Slice(ports, func(i, j int) bool { return ports[i] < ports[j] })
	for _, port := range ports {
		name := "gateway:" + hostPort(addr, port)
		l := envoy.Listener{Direction: envoy.Gateway, Service: service}
		if err := b.httpListener(name, addr, port, corev3.TrafficDirection_INBOUND, noRoutes(hosts[port]), l); err != nil {
			return err
		}
	}
	return nil
}

func hostPort(host string, port uint32) string {
	return net.JoinHostPort(host, strconv.FormatUint(uint64(port), 10))
}

var prefixMatch = &routev3.RouteMatch{PathSpecifier: &routev3.RouteMatch_Prefix{Prefix: "/"}}

// noRoutes answers 404 for every host: a builtin gateway's routes come from
// route policies this project does not model. "*" sorts last.
func noRoutes(hosts []string) func() []*routev3.VirtualHost {
	return func() []*routev3.VirtualHost {
		sorted := append([]string(nil), hosts...)
		sort.Slice(sorted, func(i, j int) bool {
			if (sorted[i] == "*") != (sorted[j] == "*") {
				return sorted[j] == "*"
			}
			return sorted[i] < sorted[j]
		})
		out := make([]*routev3.VirtualHost, 0, len(sorted))
		for _, h := range sorted {
			out = append(out, &routev3.VirtualHost{Name: h, Domains: []string{h}, Routes: []*routev3.Route{{
				Match: prefixMatch,
				Action: &routev3.Route_DirectResponse{DirectResponse: &routev3.DirectResponseAction{
					Status: 404,
				}},
			}}})
		}
		return out
	}
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

// listener adds a listener forwarding to cluster: an HttpConnectionManager
// (with tracing) for HTTP protocols, else tcp_proxy.
func (b *builder) listener(name, addr string, port uint32, dir corev3.TrafficDirection, cluster, protocol string, l envoy.Listener) error {
	if isHTTP(protocol) {
		return b.httpListener(name, addr, port, dir, func() []*routev3.VirtualHost { return []*routev3.VirtualHost{routeTo(cluster)} }, l)
	}
	return b.tcpListener(name, addr, port, dir, cluster)
}

// tcpListener adds a listener whose tcp_proxy forwards to cluster.
func (b *builder) tcpListener(name, addr string, port uint32, dir corev3.TrafficDirection, cluster string) error {
	key := "tcp\x00" + name + "\x00" + cluster
	enc, ok := b.own[key]
	if !ok {
		tp := &tcpproxyv3.TcpProxy{
			StatPrefix:       statPrefix(name),
			ClusterSpecifier: &tcpproxyv3.TcpProxy_Cluster{Cluster: cluster},
		}
		if err := tp.ValidateAll(); err != nil {
			return fmt.Errorf("listener %s: %w", name, err)
		}
		var err error
		if enc, err = marshal.Marshal(tp); err != nil {
			return err
		}
		if b.own != nil {
			b.own[key] = enc
		}
	}
	return b.addListener(name, addr, port, dir, tcpProxyFilter, &anypb.Any{TypeUrl: tcpProxyTypeURL, Value: enc})
}

func (b *builder) addListener(name, addr string, port uint32, dir corev3.TrafficDirection, filter string, cfg *anypb.Any) error {
	lis := &listenerv3.Listener{
		Name:             name,
		Address:          envoy.SocketAddress(addr, port),
		TrafficDirection: dir,
		FilterChains: []*listenerv3.FilterChain{{
			Filters: []*listenerv3.Filter{{
				Name:       filter,
				ConfigType: &listenerv3.Filter_TypedConfig{TypedConfig: cfg},
			}},
		}},
	}
	if err := lis.ValidateAll(); err != nil {
		return fmt.Errorf("listener %s: %w", name, err)
	}
	b.listeners = append(b.listeners, lis)
	return nil
}

// httpListener adds a listener whose HttpConnectionManager serves the
// virtual hosts vhosts returns.
func (b *builder) httpListener(name, addr string, port uint32, dir corev3.TrafficDirection, vhosts func() []*routev3.VirtualHost, l envoy.Listener) error {
	var tracing *hcmv3.HttpConnectionManager_Tracing
	if b.tr != nil {
		var err error
		if tracing, err = b.tr.tracer.HTTP(l); err != nil {
			return fmt.Errorf("listener %s: %w", name, err)
		}
	}
	own, err := b.ownHCM(name, vhosts, l.Direction != envoy.Gateway)
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
	b.http++
	return b.addListener(name, addr, port, dir, hcmFilter, hcmAny)
}

var (
	hcmTypeURL      = "type.googleapis.com/" + string(proto.MessageName(&hcmv3.HttpConnectionManager{}))
	tcpProxyTypeURL = "type.googleapis.com/" + string(proto.MessageName(&tcpproxyv3.TcpProxy{}))
	marshal         = proto.MarshalOptions{Deterministic: true}
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
//
// The cache (b.own) is used when cacheable: a listener whose routes depend
// only on the Dataplane.
func (b *builder) ownHCM(name string, vhosts func() []*routev3.VirtualHost, cacheable bool) ([]byte, error) {
	if enc, ok := b.own[name]; ok && cacheable {
		return enc, nil
	}
	rc := &routev3.RouteConfiguration{Name: name, VirtualHosts: vhosts()}
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
	if b.own != nil && cacheable {
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
	b.sums = append(b.sums, p)
	if p.cla != nil {
		b.endpoints = append(b.endpoints, p.cla)
		b.eds++
	}
}

func (b *builder) staticCluster(name, addr string, port uint32, http2 bool) error {
	if b.seen[name] {
		return nil
	}
	key := "static\x00" + name + "\x00" + hostPort(addr, port)
	var opts map[string]*anypb.Any
	if http2 {
		key += "\x00h2"
		opts = http2Options
	}
	p, err := b.parts.cluster(key, func() (*part, error) {
		return newPart(&clusterv3.Cluster{
			TypedExtensionProtocolOptions: opts,
			Name:                          name,
			ConnectTimeout:                durationpb.New(connectTimeout * 1e9),
			ClusterDiscoveryType:          &clusterv3.Cluster_Type{Type: clusterv3.Cluster_STATIC},
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
	lv := hex.EncodeToString(h.Sum(nil)[:8])
	cv, ev := versionOf(b.sums, func(p *part) digest { return p.sum }), versionOf(b.sums, func(p *part) digest { return p.claSum })
	snap := &cache.Snapshot{}
	snap.Resources[types.Listener] = cache.NewResources(lv, b.listeners)
	snap.Resources[types.Cluster] = cache.NewResources(cv, b.clusters)
	snap.Resources[types.Endpoint] = cache.NewResources(ev, b.endpoints)
	// The snapshot is consistent by construction (routes are inline and every
	// EDS cluster is added with its ClusterLoadAssignment); snap.Consistent()
	// would unpack every HttpConnectionManager again, so tests check it instead.
	if len(b.endpoints) != b.eds {
		return nil, fmt.Errorf("inconsistent snapshot: %d EDS clusters, %d load assignments", b.eds, len(b.endpoints))
	}
	return snap, nil
}

// withEndpoints returns old with the load assignments of its EDS clusters
// replaced by their current ones (listeners and clusters shared with old),
// and the parts that now make it. It is what a full build gives when only
// destinations' endpoints changed, at a fraction of the cost.
func withEndpoints(old *cache.Snapshot, oldParts []*part, mesh string, in *inputs) (*cache.Snapshot, []*part) {
	now := make([]*part, len(oldParts))
	var clas []types.Resource
	for i, p := range oldParts {
		if p.cla != nil {
			p, _ = in.destination(mesh, p.cluster.GetName())
			clas = append(clas, p.cla)
		}
		now[i] = p
	}
	snap := &cache.Snapshot{}
	snap.Resources[types.Listener] = old.Resources[types.Listener]
	snap.Resources[types.Cluster] = old.Resources[types.Cluster]
	snap.Resources[types.Endpoint] = cache.NewResources(versionOf(now, func(p *part) digest { return p.claSum }), clas)
	return snap, now
}

// versionOf hashes one digest per part.
func versionOf(ps []*part, sum func(*part) digest) string {
	h := sha256.New()
	for _, p := range ps {
		d := sum(p)
		h.Write(d[:])
	}
	return hex.EncodeToString(h.Sum(nil)[:8])
}

// sameVersions reports whether two snapshots have the same versions.
func sameVersions(a, b *cache.Snapshot) bool {
	for _, t := range []types.ResponseType{types.Listener, types.Cluster, types.Endpoint} {
		if a.Resources[t].Version != b.Resources[t].Version {
			return false
		}
	}
	return true
}

// Version is the snapshot's versions, listeners/clusters/endpoints.
func Version(snap *cache.Snapshot) string {
	return snap.Resources[types.Listener].Version + "/" + snap.Resources[types.Cluster].Version + "/" + snap.Resources[types.Endpoint].Version
}

// Dump renders a snapshot's listeners, clusters and endpoints as indented
// JSON (protojson of each resource, sorted by name) for inspection.
func Dump(snap *cache.Snapshot) ([]byte, error) {
	out := struct {
		Version   string            `json:"version"`
		Listeners []json.RawMessage `json:"listeners"`
		Clusters  []json.RawMessage `json:"clusters"`
		Endpoints []json.RawMessage `json:"endpoints"`
	}{Version: Version(snap)}
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
