// Package envoy turns a merged MeshTrace configuration into Envoy tracing
// configuration: the HttpConnectionManager tracing block of each HTTP
// listener and the collector's cluster.
package envoy

import (
	"cmp"
	"errors"
	"fmt"
	"net"
	"sync"
	"time"

	clusterv3 "github.com/envoyproxy/go-control-plane/envoy/config/cluster/v3"
	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	endpointv3 "github.com/envoyproxy/go-control-plane/envoy/config/endpoint/v3"
	tracev3 "github.com/envoyproxy/go-control-plane/envoy/config/trace/v3"
	hcmv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/network/http_connection_manager/v3"
	tlsv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/transport_sockets/tls/v3"
	upstreamhttpv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/upstreams/http/v3"
	matcherv3 "github.com/envoyproxy/go-control-plane/envoy/type/matcher/v3"
	tracingtypev3 "github.com/envoyproxy/go-control-plane/envoy/type/tracing/v3"
	typev3 "github.com/envoyproxy/go-control-plane/envoy/type/v3"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/anypb"
	"google.golang.org/protobuf/types/known/durationpb"
	"google.golang.org/protobuf/types/known/wrapperspb"

	"github.com/meshtrace/meshtrace/policy/meshtrace"
	"github.com/meshtrace/meshtrace/resource"
)

// Envoy extension names used for tracing.
const (
	TracerZipkin        = "envoy.tracers.zipkin"
	TracerDatadog       = "envoy.tracers.datadog"
	TracerOpenTelemetry = "envoy.tracers.opentelemetry"

	transportSocketTLS   = "envoy.transport_sockets.tls"
	httpProtocolOptions  = "envoy.extensions.upstreams.http.v3.HttpProtocolOptions"
	collectorTimeout     = 5 * time.Second
	datadogInboundSuffix = "_INBOUND"
	datadogOutboundInfix = "_OUTBOUND_"
)

// DefaultTrustedCA is where the Envoy images (and Kuma's kuma-dp image) keep
// the system CA bundle.
const DefaultTrustedCA = "/etc/ssl/certs/ca-certificates.crt"

// Options are the proxy- and zone-dependent inputs of the collector cluster.
type Options struct {
	// IPv6 is set for proxies whose address is IPv6: a collector host name is
	// then resolved with dns_lookup_family AUTO instead of V4_ONLY (as Kuma).
	IPv6 bool
	// TrustedCA is the CA bundle file (on the proxy's file system) an https
	// collector's certificate is verified against; "" means DefaultTrustedCA.
	TrustedCA string
	// SkipVerify turns certificate verification of https collectors off.
	SkipVerify bool
}

// Cluster returns the Envoy cluster for collector c: STATIC for an IP,
// STRICT_DNS for a host name (dns_lookup_family V4_ONLY, AUTO for IPv6
// proxies), a 5 s connect timeout, HTTP/2 for OpenTelemetry (OTLP over gRPC)
// and for https an upstream TLS transport socket with SNI = host that verifies
// the collector's certificate against opts.TrustedCA and its name (unless
// opts.SkipVerify).
func Cluster(c meshtrace.Collector, opts Options) (*clusterv3.Cluster, error) {
	name := c.ClusterName()
	cl := &clusterv3.Cluster{
		Name:           name,
		ConnectTimeout: durationpb.New(collectorTimeout),
		LoadAssignment: &endpointv3.ClusterLoadAssignment{
			ClusterName: name,
			Endpoints: []*endpointv3.LocalityLbEndpoints{{
				LbEndpoints: []*endpointv3.LbEndpoint{{
					HostIdentifier: &endpointv3.LbEndpoint_Endpoint{
						Endpoint: &endpointv3.Endpoint{Address: SocketAddress(c.Host, c.Port)},
					},
				}},
			}},
		},
	}
	typ := clusterv3.Cluster_STRICT_DNS
	if net.ParseIP(c.Host) != nil {
		typ = clusterv3.Cluster_STATIC
	} else if opts.IPv6 {
		cl.DnsLookupFamily = clusterv3.Cluster_AUTO
	} else {
		cl.DnsLookupFamily = clusterv3.Cluster_V4_ONLY
	}
	cl.ClusterDiscoveryType = &clusterv3.Cluster_Type{Type: typ}
	if c.Type == resource.BackendOpenTelemetry {
		opts, err := anypb.New(&upstreamhttpv3.HttpProtocolOptions{
			UpstreamProtocolOptions: &upstreamhttpv3.HttpProtocolOptions_ExplicitHttpConfig_{
				ExplicitHttpConfig: &upstreamhttpv3.HttpProtocolOptions_ExplicitHttpConfig{
					ProtocolConfig: &upstreamhttpv3.HttpProtocolOptions_ExplicitHttpConfig_Http2ProtocolOptions{
						Http2ProtocolOptions: &corev3.Http2ProtocolOptions{},
					},
				},
			},
		})
		if err != nil {
			return nil, err
		}
		cl.TypedExtensionProtocolOptions = map[string]*anypb.Any{httpProtocolOptions: opts}
	}
	if c.TLS {
		tls, err := anypb.New(upstreamTLS(c.Host, opts))
		if err != nil {
			return nil, err
		}
		cl.TransportSocket = &corev3.TransportSocket{
			Name:       transportSocketTLS,
			ConfigType: &corev3.TransportSocket_TypedConfig{TypedConfig: tls},
		}
	}
	return cl, cl.ValidateAll()
}

func upstreamTLS(host string, opts Options) *tlsv3.UpstreamTlsContext {
	ctx := &tlsv3.UpstreamTlsContext{Sni: host}
	if opts.SkipVerify {
		return ctx
	}
	san := tlsv3.SubjectAltNameMatcher_DNS
	if net.ParseIP(host) != nil {
		san = tlsv3.SubjectAltNameMatcher_IP_ADDRESS
	}
	ctx.CommonTlsContext = &tlsv3.CommonTlsContext{
		ValidationContextType: &tlsv3.CommonTlsContext_ValidationContext{ValidationContext: &tlsv3.CertificateValidationContext{
			TrustedCa: &corev3.DataSource{Specifier: &corev3.DataSource_Filename{Filename: cmp.Or(opts.TrustedCA, DefaultTrustedCA)}},
			MatchTypedSubjectAltNames: []*tlsv3.SubjectAltNameMatcher{{
				SanType: san,
				Matcher: &matcherv3.StringMatcher{MatchPattern: &matcherv3.StringMatcher_Exact{Exact: host}},
			}},
		}},
	}
	return ctx
}

// SocketAddress returns a TCP socket address.
func SocketAddress(host string, port uint32) *corev3.Address {
	return &corev3.Address{Address: &corev3.Address_SocketAddress{SocketAddress: &corev3.SocketAddress{
		Protocol:      corev3.SocketAddress_TCP,
		Address:       host,
		PortSpecifier: &corev3.SocketAddress_PortValue{PortValue: port},
	}}}
}

// Direction is the traffic direction of the listener being traced.
type Direction int

const (
	// Inbound listeners receive traffic for one of the proxy's own services.
	Inbound Direction = iota
	// Outbound listeners forward the proxy's traffic to Destination.
	Outbound
	// Gateway is a builtin gateway's listener; it is traced like an inbound
	// and opens an upstream span for each request.
	Gateway
)

// Listener says which listener a tracing block is for.
type Listener struct {
	Direction Direction
	// Service is the proxy's identifying service (see
	// resource.DataplaneSpec.IdentifyingService), for every listener of the
	// proxy as in Kuma 2.7.
	Service string
	// Destination is the kuma.io/service an outbound forwards to.
	Destination string
}

// Tracer builds the Envoy tracing configuration of one proxy from a merged
// MeshTrace configuration. Build it once per proxy with NewTracer; its
// messages may be shared by many listeners and proxies and must not be
// modified. A Tracer is safe for concurrent use.
type Tracer struct {
	backend   resource.Backend
	collector meshtrace.Collector
	cluster   *clusterv3.Cluster
	overall   *typev3.Percent
	random    *typev3.Percent
	client    *typev3.Percent
	tags      []*tracingtypev3.CustomTag

	mu        sync.Mutex
	providers map[blockKey]*tracev3.Tracing_Http
	blocks    map[blockKey]*hcmv3.HttpConnectionManager_Tracing
}

type blockKey struct {
	service string
	gateway bool
}

// NewTracer prepares the tracing configuration for conf. It returns nil and no
// error when conf turns tracing off (no backends, or `backends: []`). Only the
// first backend is used, as in Kuma.
func NewTracer(conf resource.MeshTraceConf, opts Options) (*Tracer, error) {
	if !meshtrace.Enabled(conf) {
		return nil, nil
	}
	t := &Tracer{backend: (*conf.Backends)[0], providers: map[blockKey]*tracev3.Tracing_Http{},
		blocks: map[blockKey]*hcmv3.HttpConnectionManager_Tracing{}}
	var err error
	if t.collector, err = meshtrace.ParseBackend(t.backend); err != nil {
		return nil, err
	}
	if t.cluster, err = Cluster(t.collector, opts); err != nil {
		return nil, fmt.Errorf("collector cluster: %w", err)
	}
	if s := conf.Sampling; s != nil {
		if t.overall, err = percent("overall", s.Overall); err != nil {
			return nil, err
		}
		if t.random, err = percent("random", s.Random); err != nil {
			return nil, err
		}
		if t.client, err = percent("client", s.Client); err != nil {
			return nil, err
		}
	}
	if conf.Tags != nil {
		if t.tags, err = customTags(*conf.Tags); err != nil {
			return nil, err
		}
	}
	return t, nil
}

// Collector returns the parsed collector address.
func (t *Tracer) Collector() meshtrace.Collector { return t.collector }

// Cluster returns the collector cluster. It must be served with every
// listener whose tracing block names it.
func (t *Tracer) Cluster() *clusterv3.Cluster { return t.cluster }

func percent(field string, v *resource.IntOrString) (*typev3.Percent, error) {
	if v == nil {
		return nil, nil
	}
	f, err := v.Float()
	if err != nil || f < 0 || f > 100 {
		return nil, fmt.Errorf("sampling.%s: %q is not a percentage between 0 and 100", field, v.String())
	}
	return &typev3.Percent{Value: f}, nil
}

func customTags(tags []resource.TraceTag) ([]*tracingtypev3.CustomTag, error) {
	out := make([]*tracingtypev3.CustomTag, 0, len(tags))
	for i, tag := range tags {
		ct := &tracingtypev3.CustomTag{Tag: tag.Name}
		switch {
		case tag.Literal != nil:
			ct.Type = &tracingtypev3.CustomTag_Literal_{Literal: &tracingtypev3.CustomTag_Literal{Value: *tag.Literal}}
		case tag.Header != nil:
			h := &tracingtypev3.CustomTag_Header{Name: tag.Header.Name}
			if tag.Header.Default != nil {
				h.DefaultValue = *tag.Header.Default
			}
			ct.Type = &tracingtypev3.CustomTag_RequestHeader{RequestHeader: h}
		default:
			return nil, fmt.Errorf("tags[%d]: neither literal nor header is set", i)
		}
		if err := ct.ValidateAll(); err != nil {
			return nil, fmt.Errorf("tags[%d]: %w", i, err)
		}
		out = append(out, ct)
	}
	return out, nil
}

// HTTP returns the HttpConnectionManager tracing block for listener l.
// Sampling fields the policy leaves unset stay unset, so Envoy's defaults
// (100 % random and client, 100 % overall) apply.
func (t *Tracer) HTTP(l Listener) (*hcmv3.HttpConnectionManager_Tracing, error) {
	service := t.serviceName(l)
	gw := l.Direction == Gateway
	t.mu.Lock()
	defer t.mu.Unlock()
	if tr, ok := t.blocks[blockKey{service, gw}]; ok {
		return tr, nil
	}
	provider, err := t.provider(service, gw)
	if err != nil {
		return nil, err
	}
	tr := &hcmv3.HttpConnectionManager_Tracing{
		OverallSampling: t.overall,
		RandomSampling:  t.random,
		ClientSampling:  t.client,
		CustomTags:      t.tags,
		Provider:        provider,
		// Set explicitly either way, as Kuma 2.7 does: gateways open an
		// upstream span per request, sidecars do not.
		SpawnUpstreamSpan: wrapperspb.Bool(gw),
	}
	t.blocks[blockKey{service, gw}] = tr
	return tr, nil
}

// serviceName is the name spans are reported under. Datadog's splitService
// names inbound spans <svc>_INBOUND and outbound ones <svc>_OUTBOUND_<dest>.
func (t *Tracer) serviceName(l Listener) string {
	if t.collector.Type != resource.BackendDatadog || !t.backend.Datadog.SplitService {
		return l.Service
	}
	if l.Direction == Outbound {
		return l.Service + datadogOutboundInfix + l.Destination
	}
	return l.Service + datadogInboundSuffix
}

func (t *Tracer) provider(service string, gw bool) (*tracev3.Tracing_Http, error) {
	if p, ok := t.providers[blockKey{service, gw}]; ok {
		return p, nil
	}
	var name string
	var cfg proto.Message
	switch t.collector.Type {
	case resource.BackendZipkin:
		z := t.backend.Zipkin
		version := tracev3.ZipkinConfig_HTTP_JSON
		if z.APIVersion == resource.ZipkinAPIHTTPProto {
			version = tracev3.ZipkinConfig_HTTP_PROTO
		}
		shared := true
		if z.SharedSpanContext != nil {
			shared = *z.SharedSpanContext
		}
		name, cfg = TracerZipkin, &tracev3.ZipkinConfig{
			CollectorCluster:         t.cluster.Name,
			CollectorEndpoint:        t.collector.Path,
			CollectorHostname:        t.collector.Authority,
			TraceId_128Bit:           z.TraceID128Bit,
			SharedSpanContext:        wrapperspb.Bool(shared),
			CollectorEndpointVersion: version,
			// Builtin gateways report the downstream and upstream spans of a
			// request separately (Kuma 2.7).
			SplitSpansForRequest: gw,
		}
	case resource.BackendDatadog:
		if service == "" {
			return nil, errors.New("datadog backend needs the proxy's kuma.io/service as service name")
		}
		name, cfg = TracerDatadog, &tracev3.DatadogConfig{
			CollectorCluster: t.cluster.Name,
			ServiceName:      service,
		}
	case resource.BackendOpenTelemetry:
		name, cfg = TracerOpenTelemetry, &tracev3.OpenTelemetryConfig{
			GrpcService: &corev3.GrpcService{TargetSpecifier: &corev3.GrpcService_EnvoyGrpc_{
				EnvoyGrpc: &corev3.GrpcService_EnvoyGrpc{ClusterName: t.cluster.Name},
			}},
			ServiceName: service,
		}
	default:
		return nil, fmt.Errorf("unknown backend type %q", t.collector.Type)
	}
	if v, ok := cfg.(interface{ ValidateAll() error }); ok {
		if err := v.ValidateAll(); err != nil {
			return nil, fmt.Errorf("%s config: %w", name, err)
		}
	}
	a, err := anypb.New(cfg)
	if err != nil {
		return nil, err
	}
	p := &tracev3.Tracing_Http{Name: name, ConfigType: &tracev3.Tracing_Http_TypedConfig{TypedConfig: a}}
	t.providers[blockKey{service, gw}] = p
	return p, nil
}
