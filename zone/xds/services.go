package xds

import (
	"cmp"
	"crypto/sha256"
	"net"
	"slices"
	"strconv"
	"strings"

	clusterv3 "github.com/envoyproxy/go-control-plane/envoy/config/cluster/v3"
	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	endpointv3 "github.com/envoyproxy/go-control-plane/envoy/config/endpoint/v3"
	"google.golang.org/protobuf/types/known/durationpb"
	"google.golang.org/protobuf/types/known/structpb"

	"github.com/meshtrace/meshtrace/policy/meshtrace/envoy"
	"github.com/meshtrace/meshtrace/resource"
)

// svcKey names a service of a mesh.
type svcKey struct{ mesh, name string }

// member is what one Dataplane contributes to one service: an endpoint per
// inbound tagged with the service, in inbound order, and their protocols.
type member struct {
	lbs       []*endpointv3.LbEndpoint
	protocols []string
	enc       []byte // deterministic encoding of lbs, for the service digest
}

// service is a destination of outbounds: its endpoints in the zone, the
// protocol they agree on, and the EDS cluster with its load assignment.
type service struct {
	key      svcKey
	members  map[resource.Key]*member
	protocol string
	part     *part // EDS cluster + ClusterLoadAssignment
}

// services is the zone's endpoint table, built from the inbounds of its
// Dataplanes. It is not safe for concurrent writes; the Reconciler guards it.
type services struct {
	byKey map[svcKey]*service
	dirty map[svcKey]*part // touched since the last flush -> part before
}

func newServices() *services {
	return &services{byKey: map[svcKey]*service{}, dirty: map[svcKey]*part{}}
}

// get returns the service or nil when no Dataplane of the zone serves it.
func (s *services) get(mesh, name string) *service {
	if s == nil {
		return nil
	}
	return s.byKey[svcKey{mesh, name}]
}

// contributions returns dp's members by service.
func contributions(dp *resource.Resource) map[string]*member {
	spec, ok := dp.Spec.(*resource.DataplaneSpec)
	if !ok || spec.IsGateway() {
		return nil
	}
	out := map[string]*member{}
	nw := spec.Networking
	for _, in := range nw.Inbound {
		name := in.Tags[resource.TagService]
		if name == "" {
			continue
		}
		m := out[name]
		if m == nil {
			m = &member{}
			out[name] = m
		}
		addr := cmp.Or(in.Address, nw.AdvertisedAddress, nw.Address)
		if net.ParseIP(addr) == nil {
			continue // EDS endpoints are IPs; Envoy does not resolve names there
		}
		lb := lbEndpoint(addr, in.Port, in.Tags)
		if lb.ValidateAll() != nil {
			continue
		}
		m.lbs = append(m.lbs, lb)
		m.protocols = append(m.protocols, resource.ParseProtocol(in.Tags[resource.TagProtocol]))
	}
	for name, m := range out {
		if len(m.lbs) == 0 {
			delete(out, name)
			continue
		}
		for _, lb := range m.lbs {
			b, err := marshal.Marshal(lb)
			if err != nil { // plain messages always marshal
				panic(err)
			}
			m.enc = append(m.enc, b...)
		}
	}
	return out
}

// lbEndpoint is one endpoint with its tags as filter metadata
// (envoy.lb), as Kuma passes them for subset load balancing.
func lbEndpoint(addr string, port uint32, tags map[string]string) *endpointv3.LbEndpoint {
	fields := make(map[string]*structpb.Value, len(tags))
	for k, v := range tags {
		fields[k] = structpb.NewStringValue(v)
	}
	return &endpointv3.LbEndpoint{
		HostIdentifier: &endpointv3.LbEndpoint_Endpoint{Endpoint: &endpointv3.Endpoint{Address: envoy.SocketAddress(addr, port)}},
		Metadata:       &corev3.Metadata{FilterMetadata: map[string]*structpb.Struct{"envoy.lb": {Fields: fields}}},
	}
}

// set replaces dp's contributions (nil removes them). The services it
// touches are rebuilt by the next flush.
func (s *services) set(k resource.Key, old, now map[string]*member) {
	touch := func(name string) {
		sk := svcKey{k.Mesh, name}
		svc := s.byKey[sk]
		if _, ok := s.dirty[sk]; !ok {
			var before *part
			if svc != nil {
				before = svc.part
			}
			s.dirty[sk] = before
		}
		if svc == nil {
			svc = &service{key: sk, members: map[resource.Key]*member{}}
			s.byKey[sk] = svc
		}
		if m, ok := now[name]; ok {
			svc.members[k] = m
		} else {
			delete(svc.members, k)
		}
		if len(svc.members) == 0 {
			delete(s.byKey, sk)
		}
	}
	for name := range old {
		if _, ok := now[name]; !ok {
			touch(name)
		}
	}
	for name := range now {
		touch(name)
	}
}

// flush rebuilds the services set touched since the last flush, once each
// however many Dataplanes changed them, and returns those whose content
// changed.
func (s *services) flush() []svcKey {
	var changed []svcKey
	for sk, before := range s.dirty {
		svc := s.byKey[sk]
		switch {
		case svc == nil:
			if before != nil {
				changed = append(changed, sk)
			}
		default:
			svc.rebuild()
			if before == nil || before.sum != svc.part.sum || before.claSum != svc.part.claSum {
				changed = append(changed, sk)
			}
		}
	}
	clear(s.dirty)
	return changed
}

// rebuild recomputes the protocol, cluster and load assignment.
func (svc *service) rebuild() {
	keys := make([]resource.Key, 0, len(svc.members))
	n := 0
	for k, m := range svc.members {
		keys = append(keys, k)
		n += len(m.lbs)
	}
	slices.SortFunc(keys, func(a, b resource.Key) int { return strings.Compare(a.Name, b.Name) })
	lbs := make([]*endpointv3.LbEndpoint, 0, n)
	protocol := ""
	h := sha256.New()
	for i, k := range keys {
		m := svc.members[k]
		lbs = append(lbs, m.lbs...)
		for j, p := range m.protocols {
			if i == 0 && j == 0 {
				protocol = p
			} else {
				protocol = commonProtocol(protocol, p)
			}
		}
		h.Write(m.enc)
	}
	svc.protocol = protocol
	cla := &endpointv3.ClusterLoadAssignment{ClusterName: svc.key.name,
		Endpoints: []*endpointv3.LocalityLbEndpoints{{LbEndpoints: lbs}}}
	p := &part{cluster: edsCluster(svc.key.name, protocol), cla: cla, sum: edsSum(svc.key.name, protocol)}
	h.Write([]byte(protocol))
	h.Sum(p.claSum[:0])
	svc.part = p
}

// emptyService is the destination of an outbound no Dataplane of the zone
// serves: an EDS cluster with no endpoints (connections are refused) and an
// unknown protocol (tcp_proxy).
func emptyService(name string) *part {
	return &part{cluster: edsCluster(name, resource.ProtocolUnknown), cla: &endpointv3.ClusterLoadAssignment{ClusterName: name},
		sum: edsSum(name, resource.ProtocolUnknown), claSum: sha256.Sum256([]byte("empty\x00" + name))}
}

var adsSource = &corev3.ConfigSource{
	ResourceApiVersion:    corev3.ApiVersion_V3,
	ConfigSourceSpecifier: &corev3.ConfigSource_Ads{Ads: &corev3.AggregatedConfigSource{}},
}

// edsSum stands for the hash of edsCluster(name, protocol), which depends on
// nothing else.
func edsSum(name, protocol string) digest {
	return sha256.Sum256([]byte("eds\x00" + name + "\x00" + strconv.FormatBool(isHTTP2(protocol))))
}

func edsCluster(name, protocol string) *clusterv3.Cluster {
	c := &clusterv3.Cluster{
		Name:                 name,
		ConnectTimeout:       durationpb.New(connectTimeout * 1e9),
		ClusterDiscoveryType: &clusterv3.Cluster_Type{Type: clusterv3.Cluster_EDS},
		EdsClusterConfig:     &clusterv3.Cluster_EdsClusterConfig{EdsConfig: adsSource},
	}
	if isHTTP2(protocol) {
		c.TypedExtensionProtocolOptions = http2Options
	}
	return c
}

// protocolStacks lists each protocol with the protocols it is carried over
// (Kuma's stacks): the common protocol of two is the first of one's stack in
// the other's.
var protocolStacks = map[string][]string{
	resource.ProtocolGRPC:  {resource.ProtocolGRPC, resource.ProtocolHTTP2, resource.ProtocolTCP},
	resource.ProtocolHTTP2: {resource.ProtocolHTTP2, resource.ProtocolTCP},
	resource.ProtocolHTTP:  {resource.ProtocolHTTP, resource.ProtocolTCP},
	resource.ProtocolKafka: {resource.ProtocolKafka, resource.ProtocolTCP},
	resource.ProtocolTCP:   {resource.ProtocolTCP},
}

// commonProtocol is the protocol two endpoints of a service both speak
// (http and http2 give tcp, grpc and http2 give http2); unknown when either is.
func commonProtocol(a, b string) string {
	if a == b {
		return a
	}
	sa, sb := protocolStacks[a], protocolStacks[b]
	for _, p := range sa {
		if slices.Contains(sb, p) {
			return p
		}
	}
	return resource.ProtocolUnknown
}

// isHTTP reports whether listeners of protocol p get an HttpConnectionManager
// (and tracing).
func isHTTP(p string) bool {
	return p == resource.ProtocolHTTP || p == resource.ProtocolHTTP2 || p == resource.ProtocolGRPC
}

// isHTTP2 reports whether clusters of protocol p speak HTTP/2 upstream.
func isHTTP2(p string) bool { return p == resource.ProtocolHTTP2 || p == resource.ProtocolGRPC }
