package envoy

import (
	"testing"

	clusterv3 "github.com/envoyproxy/go-control-plane/envoy/config/cluster/v3"
	tracev3 "github.com/envoyproxy/go-control-plane/envoy/config/trace/v3"
	tlsv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/transport_sockets/tls/v3"

	"github.com/meshtrace/meshtrace/policy/meshtrace"
	"github.com/meshtrace/meshtrace/resource"
)

func zipkin(url string) *resource.MeshTraceConf {
	return &resource.MeshTraceConf{Backends: &[]resource.Backend{{Type: "Zipkin", Zipkin: &resource.ZipkinBackend{URL: url}}}}
}

// TestCollectorCluster: every parsed collector gives a valid cluster named
// by ClusterName.
func TestCollectorCluster(t *testing.T) {
	for _, b := range []resource.Backend{
		{Zipkin: &resource.ZipkinBackend{URL: "http://west.zipkincollector:9411/api/v2/spans"}},
		{Type: "Zipkin", Zipkin: &resource.ZipkinBackend{URL: "https://zipkin.example.com"}},
		{Type: "Datadog", Datadog: &resource.DatadogBackend{URL: "http://127.0.0.1:8126"}},
		{Type: "OpenTelemetry", OpenTelemetry: &resource.OpenTelemetryBackend{Endpoint: "[::1]:4318"}},
	} {
		c, err := meshtrace.ParseBackend(b)
		if err != nil {
			t.Fatal(err)
		}
		cl, err := Cluster(c, Options{})
		if err != nil {
			t.Errorf("%+v: cluster: %v", b, err)
		} else if cl.GetName() != c.ClusterName() {
			t.Errorf("cluster %s, want %s", cl.GetName(), c.ClusterName())
		}
	}
}

func TestTracerDatadogServiceNames(t *testing.T) {
	conf := resource.MeshTraceConf{Backends: &[]resource.Backend{{Type: "Datadog", Datadog: &resource.DatadogBackend{URL: "http://127.0.0.1:8126", SplitService: true}}}}
	tr, err := NewTracer(conf, Options{})
	if err != nil {
		t.Fatal(err)
	}
	for _, tt := range []struct {
		l    Listener
		want string
	}{
		{Listener{Direction: Inbound, Service: "backend"}, "backend_INBOUND"},
		{Listener{Direction: Outbound, Service: "backend", Destination: "db1"}, "backend_OUTBOUND_db1"},
		{Listener{Direction: Gateway, Service: "edge"}, "edge_INBOUND"},
	} {
		h, err := tr.HTTP(tt.l)
		if err != nil {
			t.Fatal(err)
		}
		var dd tracev3.DatadogConfig
		if err := h.GetProvider().GetTypedConfig().UnmarshalTo(&dd); err != nil {
			t.Fatal(err)
		}
		if dd.ServiceName != tt.want {
			t.Errorf("service name %s, want %s", dd.ServiceName, tt.want)
		}
		if got := h.GetSpawnUpstreamSpan().GetValue(); got != (tt.l.Direction == Gateway) {
			t.Errorf("spawn_upstream_span = %v for %v", got, tt.l.Direction)
		}
	}
}

func TestTracerRejects(t *testing.T) {
	bad := []resource.MeshTraceConf{
		{Backends: zipkin("http://z:9411").Backends, Sampling: &resource.Sampling{Overall: resource.Int(101)}},
		{Backends: zipkin("http://z:9411").Backends, Sampling: &resource.Sampling{Client: resource.Str("abc")}},
		{Backends: zipkin("http://z:9411").Backends, Tags: &[]resource.TraceTag{{Name: "t"}}},
		{Backends: zipkin("http://z:9411").Backends, Tags: &[]resource.TraceTag{{Name: "", Literal: new("x")}}},
		{Backends: zipkin("bad url").Backends},
	}
	for i, c := range bad {
		if _, err := NewTracer(c, Options{}); err == nil {
			t.Errorf("%d: expected an error", i)
		}
	}
	if tr, err := NewTracer(resource.MeshTraceConf{}, Options{}); tr != nil || err != nil {
		t.Fatalf("no backends: %v %v", tr, err)
	}
}

// FuzzParseBackend: any URL or endpoint either fails to parse or gives a
// collector whose cluster passes Envoy validation.
func FuzzParseBackend(f *testing.F) {
	for _, s := range []string{"http://zipkin:9411/api/v2/spans", "https://[::1]/x", "otel:4317", "[fe80::1]", "http://:80", "10.0.0.1:0"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		for _, b := range []resource.Backend{
			{Type: "Zipkin", Zipkin: &resource.ZipkinBackend{URL: s}},
			{Type: "Datadog", Datadog: &resource.DatadogBackend{URL: s}},
			{Type: "OpenTelemetry", OpenTelemetry: &resource.OpenTelemetryBackend{Endpoint: s}},
		} {
			c, err := meshtrace.ParseBackend(b)
			if err != nil {
				continue
			}
			if _, err := Cluster(c, Options{}); err != nil {
				t.Fatalf("%q parsed to %+v but its cluster is invalid: %v", s, c, err)
			}
		}
	})
}

// TestCollectorClusterTLSAndDNS: https collectors are verified against the
// trust bundle and their name unless verification is skipped; host names are
// resolved V4_ONLY, AUTO for IPv6 proxies.
func TestCollectorClusterTLSAndDNS(t *testing.T) {
	c, err := meshtrace.ParseBackend(resource.Backend{Type: "Zipkin", Zipkin: &resource.ZipkinBackend{URL: "https://zipkin.example.com/api/v2/spans"}})
	if err != nil {
		t.Fatal(err)
	}
	for _, tt := range []struct {
		opts   Options
		ca     string
		family clusterv3.Cluster_DnsLookupFamily
	}{
		{Options{}, DefaultTrustedCA, clusterv3.Cluster_V4_ONLY},
		{Options{TrustedCA: "/etc/zone/ca.pem", IPv6: true}, "/etc/zone/ca.pem", clusterv3.Cluster_AUTO},
		{Options{SkipVerify: true}, "", clusterv3.Cluster_V4_ONLY},
	} {
		cl, err := Cluster(c, tt.opts)
		if err != nil {
			t.Fatal(err)
		}
		if cl.GetDnsLookupFamily() != tt.family {
			t.Errorf("%+v: dns_lookup_family %v", tt.opts, cl.GetDnsLookupFamily())
		}
		var tls tlsv3.UpstreamTlsContext
		if err := cl.GetTransportSocket().GetTypedConfig().UnmarshalTo(&tls); err != nil {
			t.Fatal(err)
		}
		vc := tls.GetCommonTlsContext().GetValidationContext()
		if got := vc.GetTrustedCa().GetFilename(); got != tt.ca || tls.GetSni() != "zipkin.example.com" {
			t.Errorf("%+v: trusted CA %q, sni %q", tt.opts, got, tls.GetSni())
		}
		if tt.ca != "" && vc.GetMatchTypedSubjectAltNames()[0].GetMatcher().GetExact() != "zipkin.example.com" {
			t.Errorf("%+v: SAN matcher %v", tt.opts, vc.GetMatchTypedSubjectAltNames())
		}
	}
	ip, _ := meshtrace.ParseBackend(resource.Backend{Type: "Zipkin", Zipkin: &resource.ZipkinBackend{URL: "http://10.0.0.1:9411"}})
	if cl, _ := Cluster(ip, Options{}); cl.GetDnsLookupFamily() != clusterv3.Cluster_AUTO || cl.GetType() != clusterv3.Cluster_STATIC {
		t.Errorf("a STATIC cluster needs no DNS family: %v %v", cl.GetType(), cl.GetDnsLookupFamily())
	}
}

// TestTracerGatewayAndSidecar: sidecars set spawn_upstream_span false, gateways
// true, and Zipkin splits a gateway's spans per request.
func TestTracerGatewayAndSidecar(t *testing.T) {
	tr, err := NewTracer(*zipkin("http://zipkin:9411"), Options{})
	if err != nil {
		t.Fatal(err)
	}
	for _, gw := range []bool{false, true} {
		dir := Inbound
		if gw {
			dir = Gateway
		}
		h, err := tr.HTTP(Listener{Direction: dir, Service: "edge"})
		if err != nil {
			t.Fatal(err)
		}
		if h.GetSpawnUpstreamSpan() == nil || h.GetSpawnUpstreamSpan().GetValue() != gw {
			t.Errorf("gateway=%v: spawn_upstream_span %v", gw, h.GetSpawnUpstreamSpan())
		}
		var z tracev3.ZipkinConfig
		if err := h.GetProvider().GetTypedConfig().UnmarshalTo(&z); err != nil {
			t.Fatal(err)
		}
		if z.GetSplitSpansForRequest() != gw {
			t.Errorf("gateway=%v: split_spans_for_request %v", gw, z.GetSplitSpansForRequest())
		}
	}
}
