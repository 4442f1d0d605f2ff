package meshtrace

import (
	"errors"
	"fmt"
	"net"
	"net/url"
	"strconv"
	"strings"
	"sync"
	"time"
	"unicode"
	"unicode/utf8"

	clusterv3 "github.com/envoyproxy/go-control-plane/envoy/config/cluster/v3"
	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	endpointv3 "github.com/envoyproxy/go-control-plane/envoy/config/endpoint/v3"
	tracev3 "github.com/envoyproxy/go-control-plane/envoy/config/trace/v3"
	hcmv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/network/http_connection_manager/v3"
	tlsv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/transport_sockets/tls/v3"
	upstreamhttpv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/upstreams/http/v3"
	tracingtypev3 "github.com/envoyproxy/go-control-plane/envoy/type/tracing/v3"
	typev3 "github.com/envoyproxy/go-control-plane/envoy/type/v3"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/anypb"
	"google.golang.org/protobuf/types/known/durationpb"
	"google.golang.org/protobuf/types/known/wrapperspb"

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
	defaultZipkinPath    = "/api/v2/spans"
	defaultDatadogPort   = 8126
	clusterNamePrefix    = "meshtrace:"
	defaultOTelPort      = resource.DefaultOpenTelemetryPort
	defaultHTTPPort      = 80
	defaultHTTPSPort     = 443
	datadogInboundSuffix = "_INBOUND"
	datadogOutboundInfix = "_OUTBOUND_"
)

// ErrNoBackend is returned for a backend none of whose typed sections is set.
var ErrNoBackend = errors.New("backend has no zipkin, datadog or openTelemetry section")

// BackendType returns the backend's type, inferred from the section that is
// set when `type` is omitted (as in the Kong Mesh docs' east/west example).
func BackendType(b resource.Backend) string {
	if b.Type != "" {
		return b.Type
	}
	switch {
	case b.Zipkin != nil:
		return resource.BackendZipkin
	case b.Datadog != nil:
		return resource.BackendDatadog
	case b.OpenTelemetry != nil:
		return resource.BackendOpenTelemetry
	}
	return ""
}

// EffectiveCollector returns the type and the address (URL or endpoint, as
// written in the policy) of the backend conf sends spans to, or two empty
// strings when tracing is off. Like Kuma, only the first backend is used.
func EffectiveCollector(conf resource.MeshTraceConf) (backendType, collector string) {
	if !Enabled(conf) {
		return "", ""
	}
	b := (*conf.Backends)[0]
	switch t := BackendType(b); t {
	case resource.BackendZipkin:
		if b.Zipkin != nil {
			return t, b.Zipkin.URL
		}
	case resource.BackendDatadog:
		if b.Datadog != nil {
			return t, b.Datadog.URL
		}
	case resource.BackendOpenTelemetry:
		if b.OpenTelemetry != nil {
			return t, b.OpenTelemetry.Endpoint
		}
	}
	return BackendType(b), ""
}

// Collector is where a backend sends spans, parsed from its URL or endpoint.
type Collector struct {
	Type string // resource.BackendZipkin, BackendDatadog or BackendOpenTelemetry
	Host string // host name or IP, without brackets
	Port uint32
	// Path is the Zipkin collector endpoint path (default /api/v2/spans).
	Path string
	// Authority is the host[:port] exactly as written in the URL (Zipkin's collector_hostname).
	Authority string
	// TLS is set for https URLs.
	TLS bool
}

// ClusterName is the deterministic name of the collector's Envoy cluster:
// meshtrace:<type>:<host>_<port>, with "-tls" appended to the type for https.
func (c Collector) ClusterName() string {
	t := strings.ToLower(c.Type)
	if c.TLS {
		t += "-tls"
	}
	return clusterNamePrefix + t + ":" + c.Host + "_" + strconv.FormatUint(uint64(c.Port), 10)
}

// ParseBackend parses the backend's URL or endpoint. Zipkin and Datadog URLs
// default their port by scheme (80 for http, 443 for https; Datadog agents
// without a port get 8126); OpenTelemetry endpoints are host[:port] and
// default to port 4317.
func ParseBackend(b resource.Backend) (Collector, error) {
	c := Collector{Type: BackendType(b)}
	var err error
	if addr := backendAddress(b); !utf8.ValidString(addr) || strings.ContainsFunc(addr, unicode.IsSpace) {
		return c, fmt.Errorf("%s backend: address %q is not valid", c.Type, addr)
	}
	switch {
	case c.Type == resource.BackendZipkin && b.Zipkin != nil:
		err = c.parseURL(b.Zipkin.URL, 0)
		if c.Path == "" || c.Path == "/" {
			c.Path = defaultZipkinPath
		}
	case c.Type == resource.BackendDatadog && b.Datadog != nil:
		err = c.parseURL(b.Datadog.URL, defaultDatadogPort)
	case c.Type == resource.BackendOpenTelemetry && b.OpenTelemetry != nil:
		err = c.parseEndpoint(b.OpenTelemetry.Endpoint)
	case c.Type == "":
		return c, ErrNoBackend
	default:
		return c, fmt.Errorf("backend type %q has no matching section", c.Type)
	}
	if err != nil {
		return c, fmt.Errorf("%s backend: %w", c.Type, err)
	}
	return c, nil
}

func backendAddress(b resource.Backend) string {
	switch {
	case b.Zipkin != nil:
		return b.Zipkin.URL
	case b.Datadog != nil:
		return b.Datadog.URL
	case b.OpenTelemetry != nil:
		return b.OpenTelemetry.Endpoint
	}
	return ""
}

func (c *Collector) parseURL(raw string, defaultPort uint32) error {
	u, err := url.Parse(raw)
	if err != nil {
		return fmt.Errorf("invalid url %q: %w", raw, err)
	}
	switch u.Scheme {
	case "http":
	case "https":
		c.TLS = true
	default:
		return fmt.Errorf("url %q: scheme must be http or https", raw)
	}
	c.Host = u.Hostname()
	if c.Host == "" {
		return fmt.Errorf("url %q has no host", raw)
	}
	c.Authority = u.Host
	c.Path = u.EscapedPath()
	switch p := u.Port(); {
	case p != "":
		n, err := strconv.ParseUint(p, 10, 16)
		if err != nil || n == 0 {
			return fmt.Errorf("url %q: invalid port", raw)
		}
		c.Port = uint32(n)
	case defaultPort != 0:
		c.Port = defaultPort
	case c.TLS:
		c.Port = defaultHTTPSPort
	default:
		c.Port = defaultHTTPPort
	}
	return nil
}

func (c *Collector) parseEndpoint(raw string) error {
	ep := raw
	if i := strings.Index(ep, "://"); i >= 0 {
		if ep[:i] == "https" {
			c.TLS = true
		}
		ep = ep[i+3:]
	}
	ep = strings.TrimSuffix(ep, "/")
	host, port, err := net.SplitHostPort(ep)
	if err != nil {
		// No port: the whole endpoint is the host (IPv6 may be bracketed).
		host, port = strings.Trim(ep, "[]"), ""
	}
	if host == "" {
		return fmt.Errorf("endpoint %q has no host", raw)
	}
	c.Host, c.Authority, c.Port = host, ep, defaultOTelPort
	if port != "" {
		n, err := strconv.ParseUint(port, 10, 16)
		if err != nil || n == 0 {
			return fmt.Errorf("endpoint %q: invalid port", raw)
		}
		c.Port = uint32(n)
	}
	return nil
}

// Cluster returns the Envoy cluster for the collector: STATIC for an IP,
// STRICT_DNS for a host name, a 5 s connect timeout, HTTP/2 for OpenTelemetry
// (OTLP over gRPC) and an upstream TLS transport socket (SNI = host) for https.
func (c Collector) Cluster() (*clusterv3.Cluster, error) {
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
		tls, err := anypb.New(&tlsv3.UpstreamTlsContext{Sni: c.Host})
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
	// Service is the proxy's own service: the inbound's kuma.io/service, the
	// gateway's, or for outbounds the proxy's first inbound service.
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
	collector Collector
	cluster   *clusterv3.Cluster
	overall   *typev3.Percent
	random    *typev3.Percent
	client    *typev3.Percent
	tags      []*tracingtypev3.CustomTag

	mu        sync.Mutex
	providers map[string]*tracev3.Tracing_Http // by service name
	blocks    map[blockKey]*hcmv3.HttpConnectionManager_Tracing
}

type blockKey struct {
	service string
	gateway bool
}

// NewTracer prepares the tracing configuration for conf. It returns nil and no
// error when conf turns tracing off (no backends, or `backends: []`). Only the
// first backend is used, as in Kuma.
func NewTracer(conf resource.MeshTraceConf) (*Tracer, error) {
	if !Enabled(conf) {
		return nil, nil
	}
	t := &Tracer{backend: (*conf.Backends)[0], providers: map[string]*tracev3.Tracing_Http{},
		blocks: map[blockKey]*hcmv3.HttpConnectionManager_Tracing{}}
	var err error
	if t.collector, err = ParseBackend(t.backend); err != nil {
		return nil, err
	}
	if t.cluster, err = t.collector.Cluster(); err != nil {
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
func (t *Tracer) Collector() Collector { return t.collector }

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
	provider, err := t.provider(service)
	if err != nil {
		return nil, err
	}
	tr := &hcmv3.HttpConnectionManager_Tracing{
		OverallSampling: t.overall,
		RandomSampling:  t.random,
		ClientSampling:  t.client,
		CustomTags:      t.tags,
		Provider:        provider,
	}
	if gw {
		tr.SpawnUpstreamSpan = wrapperspb.Bool(true)
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

func (t *Tracer) provider(service string) (*tracev3.Tracing_Http, error) {
	if p, ok := t.providers[service]; ok {
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
	t.providers[service] = p
	return p, nil
}
