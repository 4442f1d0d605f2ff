package xds

import (
	"strings"
	"testing"

	listenerv3 "github.com/envoyproxy/go-control-plane/envoy/config/listener/v3"
	routev3 "github.com/envoyproxy/go-control-plane/envoy/config/route/v3"
	hcmv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/network/http_connection_manager/v3"
	"github.com/envoyproxy/go-control-plane/pkg/cache/types"
	resourcev3 "github.com/envoyproxy/go-control-plane/pkg/resource/v3"
	"google.golang.org/protobuf/proto"

	"github.com/meshtrace/meshtrace/policy/meshtrace"
	"github.com/meshtrace/meshtrace/policy/meshtrace/envoy"
	"github.com/meshtrace/meshtrace/resource"
)

func fullConf(b resource.Backend) *resource.MeshTraceConf {
	return &resource.MeshTraceConf{
		Tags: &[]resource.TraceTag{
			{Name: "team", Literal: str("core")},
			{Name: "env", Header: &resource.HeaderTag{Name: "x-env", Default: str("prod")}},
			{Name: "version", Header: &resource.HeaderTag{Name: "x-version"}},
		},
		Sampling: &resource.Sampling{Overall: resource.Int(80), Random: resource.Int(60), Client: resource.Int(40)},
		Backends: backends(b),
	}
}

func datadog(split bool) resource.Backend {
	return resource.Backend{Type: resource.BackendDatadog, Datadog: &resource.DatadogBackend{URL: "http://127.0.0.1:8126", SplitService: split}}
}

// TestBuildGolden compares each case's snapshot with its golden file, checks
// every resource with ValidateAll, and serves it through the ADS server to
// the Envoy stand-in, which must ACK every type.
func TestBuildGolden(t *testing.T) {
	ads := startADS(t)
	backend := sidecar("backend-1", "backend", nil, "db1", "db2")
	tests := []struct {
		name     string
		dp       *resource.Resource
		policies []*resource.Resource
		// collector is the collector cluster expected in the snapshot, "" for none.
		collector string
		env       Env
	}{
		{
			name:      "zipkin",
			dp:        backend,
			policies:  []*resource.Resource{meshTrace("default", meshRef(), fullConf(zipkinBackend("http://jaeger-collector:9411/api/v2/spans")))},
			collector: "meshtrace:zipkin:jaeger-collector_9411",
		},
		{
			name: "zipkin-https-proto",
			dp:   backend,
			policies: []*resource.Resource{meshTrace("default", meshRef(), &resource.MeshTraceConf{Backends: backends(resource.Backend{
				Type: resource.BackendZipkin,
				Zipkin: &resource.ZipkinBackend{URL: "https://zipkin.example.com/api/v2/spans", TraceID128Bit: true,
					APIVersion: resource.ZipkinAPIHTTPProto, SharedSpanContext: new(false)},
			})})},
			collector: "meshtrace:zipkin-tls:zipkin.example.com_443",
		},
		{
			name:      "datadog",
			dp:        backend,
			policies:  []*resource.Resource{meshTrace("default", meshRef(), &resource.MeshTraceConf{Backends: backends(datadog(false))})},
			collector: "meshtrace:datadog:127.0.0.1_8126",
		},
		{
			name:      "datadog-split-service",
			dp:        backend,
			policies:  []*resource.Resource{meshTrace("default", meshRef(), fullConf(datadog(true)))},
			collector: "meshtrace:datadog:127.0.0.1_8126",
		},
		{
			name: "opentelemetry",
			dp:   backend,
			policies: []*resource.Resource{meshTrace("default", meshRef(), fullConf(resource.Backend{
				Type: resource.BackendOpenTelemetry, OpenTelemetry: &resource.OpenTelemetryBackend{Endpoint: "otel-collector.com:4317"},
			}))},
			collector: "meshtrace:opentelemetry:otel-collector.com_4317",
		},
		{
			name: "empty-sampling",
			dp:   backend,
			policies: []*resource.Resource{meshTrace("default", meshRef(), &resource.MeshTraceConf{
				Sampling: &resource.Sampling{}, Backends: backends(zipkinBackend("http://zipkin:9411/api/v2/spans")),
			})},
			collector: "meshtrace:zipkin:zipkin_9411",
		},
		{
			name: "backends-empty",
			dp:   backend,
			policies: []*resource.Resource{
				meshTrace("default", meshRef(), fullConf(zipkinBackend("http://zipkin:9411/api/v2/spans"))),
				meshTrace("backend-off", serviceRef("backend"), &resource.MeshTraceConf{Backends: backends()}),
			},
		},
		{
			name: "header-tags",
			dp:   backend,
			policies: []*resource.Resource{meshTrace("default", meshRef(), &resource.MeshTraceConf{
				Tags: &[]resource.TraceTag{
					{Name: "env", Header: &resource.HeaderTag{Name: "x-env", Default: str("prod")}},
					{Name: "version", Header: &resource.HeaderTag{Name: "x-version"}},
				},
				Backends: backends(zipkinBackend("http://zipkin:9411/api/v2/spans")),
			})},
			collector: "meshtrace:zipkin:zipkin_9411",
		},
		{
			name: "builtin-gateway",
			dp:   builtinGateway("edge-1", "edge", 0),
			policies: []*resource.Resource{
				meshTrace("gw", &resource.TargetRef{Kind: resource.KindMeshGateway, Name: "edge-gateway"}, withZipkin("http://zipkin:9411/api/v2/spans")),
				meshTrace("sidecars", &resource.TargetRef{Kind: resource.KindMesh, ProxyTypes: []string{resource.ProxyTypeSidecar}}, withZipkin("http://other:9411/api/v2/spans")),
			},
			collector: "meshtrace:zipkin:zipkin_9411",
			env:       Env{Gateways: []*resource.Resource{edgeGateway()}},
		},
		{
			// proxyTypes: Gateway selects the gateway, Sidecar the sidecar.
			name: "proxytypes-sidecar",
			dp:   sidecar("backend-1", "backend", nil),
			policies: []*resource.Resource{
				meshTrace("gateways", &resource.TargetRef{Kind: resource.KindMesh, ProxyTypes: []string{resource.ProxyTypeGateway}}, withZipkin("http://gw-zipkin:9411/api/v2/spans")),
				meshTrace("sidecars", &resource.TargetRef{Kind: resource.KindMeshSubset, Tags: map[string]string{resource.TagService: "backend"}, ProxyTypes: []string{resource.ProxyTypeSidecar}}, withZipkin("http://sc-zipkin:9411/api/v2/spans")),
			},
			collector: "meshtrace:zipkin:sc-zipkin_9411",
		},
		{
			// A proxy known by a host name listens on every interface.
			name:      "hostname-proxy",
			dp:        at(sidecar("backend-h", "backend", nil, "db1"), "backend-h.svc"),
			policies:  []*resource.Resource{meshTrace("default", meshRef(), withZipkin("http://zipkin:9411/api/v2/spans"))},
			collector: "meshtrace:zipkin:zipkin_9411",
		},
		{
			// An IPv6 proxy resolves a collector host name with AUTO.
			name:      "ipv6-proxy",
			dp:        at(sidecar("backend-6", "backend", nil), "fd00::2"),
			policies:  []*resource.Resource{meshTrace("default", meshRef(), withZipkin("http://zipkin:9411/api/v2/spans"))},
			collector: "meshtrace:zipkin:zipkin_9411",
		},
		{
			name:      "tcp-inbound",
			dp:        withProtocol(sidecar("db-1", "db", nil, "backend"), "tcp"),
			policies:  []*resource.Resource{meshTrace("default", meshRef(), withZipkin("http://zipkin:9411/api/v2/spans"))},
			collector: "", // no HTTP listener, no tracing
			env:       Env{Dataplanes: []*resource.Resource{withProtocol(sidecar("backend-2", "backend", nil), "tcp")}},
		},
		{
			name:      "no-protocol-inbound",
			dp:        withProtocol(sidecar("db-1", "db", nil), ""),
			policies:  []*resource.Resource{meshTrace("default", meshRef(), withZipkin("http://zipkin:9411/api/v2/spans"))},
			collector: "",
		},
		{
			name:      "http2-and-grpc",
			dp:        withProtocol(sidecar("api-1", "api", nil, "grpc-svc", "h2-svc", "mixed"), "http2"),
			policies:  []*resource.Resource{meshTrace("default", meshRef(), withZipkin("http://zipkin:9411/api/v2/spans"))},
			collector: "meshtrace:zipkin:zipkin_9411",
			env: Env{Dataplanes: []*resource.Resource{
				at(withProtocol(sidecar("grpc-1", "grpc-svc", nil), "grpc"), "10.0.0.11"),
				at(withProtocol(sidecar("h2-1", "h2-svc", nil), "http2"), "10.0.0.12"),
				// grpc and http2 endpoints of one service agree on http2
				at(withProtocol(sidecar("mixed-1", "mixed", nil), "grpc"), "10.0.0.13"),
				at(withProtocol(sidecar("mixed-2", "mixed", nil), "http2"), "10.0.0.14"),
			}},
		},
		{
			name:      "grpc-inbound",
			dp:        withProtocol(sidecar("grpc-1", "grpc-svc", nil), "grpc"),
			policies:  []*resource.Resource{meshTrace("default", meshRef(), fullConf(resource.Backend{Type: resource.BackendOpenTelemetry, OpenTelemetry: &resource.OpenTelemetryBackend{Endpoint: "otel:4317"}}))},
			collector: "meshtrace:opentelemetry:otel_4317",
		},
		{
			// The identifying service (alphabetically first) names every
			// listener's spans, inbound and outbound.
			name:      "multi-inbound-identifying-service",
			dp:        multiInbound("multi-1", []string{"zeta", "alpha"}, "db1"),
			policies:  []*resource.Resource{meshTrace("default", meshRef(), fullConf(datadog(true)))},
			collector: "meshtrace:datadog:127.0.0.1_8126",
		},
		{
			name:      "https-collector-verified",
			dp:        backend,
			policies:  []*resource.Resource{meshTrace("default", meshRef(), withZipkin("https://zipkin.example.com/api/v2/spans"))},
			collector: "meshtrace:zipkin-tls:zipkin.example.com_443",
			env:       Env{Collector: CollectorTLS{TrustedCA: "/etc/meshtrace/collector-ca.pem"}},
		},
		{
			name:      "https-collector-unverified",
			dp:        backend,
			policies:  []*resource.Resource{meshTrace("default", meshRef(), withZipkin("https://zipkin.example.com/api/v2/spans"))},
			collector: "meshtrace:zipkin-tls:zipkin.example.com_443",
			env:       Env{Collector: CollectorTLS{SkipVerify: true}},
		},
		{
			name:      "endpoints-from-dataplanes",
			dp:        backend,
			policies:  []*resource.Resource{meshTrace("default", meshRef(), withZipkin("http://zipkin:9411/api/v2/spans"))},
			collector: "meshtrace:zipkin:zipkin_9411",
			env: Env{Dataplanes: []*resource.Resource{
				at(sidecar("db1-a", "db1", map[string]string{"version": "v1"}), "10.0.1.1"),
				at(sidecar("db1-b", "db1", map[string]string{"version": "v2"}), "10.0.1.2"),
				// one of db2's endpoints is tcp: db2's listeners are tcp
				at(withProtocol(sidecar("db2-a", "db2", nil), "tcp"), "10.0.2.1"),
				at(sidecar("db2-b", "db2", nil), "10.0.2.2"),
				at(sidecar("other-mesh", "db1", nil), "10.0.9.9", "other"),
			}},
		},
		{
			name: "merge-mesh-and-service",
			dp:   backend,
			policies: []*resource.Resource{
				meshTrace("default", meshRef(), fullConf(zipkinBackend("http://zipkin:9411/api/v2/spans"))),
				meshTrace("backend", serviceRef("backend"), &resource.MeshTraceConf{
					Sampling: &resource.Sampling{Overall: resource.Str("12.5")},
					Backends: backends(resource.Backend{Type: resource.BackendOpenTelemetry, OpenTelemetry: &resource.OpenTelemetryBackend{Endpoint: "10.0.0.7"}}),
				}),
			},
			collector: "meshtrace:opentelemetry:10.0.0.7_4317",
		},
		{
			name: "two-mesh-policies",
			dp:   backend,
			policies: []*resource.Resource{
				meshTrace("bb", meshRef(), withZipkin("http://bb-zipkin:9411/api/v2/spans")),
				meshTrace("aa", meshRef(), withZipkin("http://aa-zipkin:9411/api/v2/spans")),
			},
			collector: "meshtrace:zipkin:aa-zipkin_9411",
		},
	}
	// By default db1 and db2, backend's destinations, have an http endpoint each.
	dbs := []*resource.Resource{at(sidecar("db1-1", "db1", nil), "10.0.1.1"), at(sidecar("db2-1", "db2", nil), "10.0.2.1")}
	for _, tt := range tests {
		if tt.env.Dataplanes == nil {
			tt.env.Dataplanes = dbs
		}
		t.Run(tt.name, func(t *testing.T) {
			gw := meshtrace.SelectGateway(tt.dp, tt.env.Gateways)
			rules := meshtrace.Compute(tt.dp, tt.policies, gw)
			snap, err := Build(tt.dp, rules, tt.env)
			if err != nil {
				t.Fatal(err)
			}
			checkSnapshot(t, snap)
			var collectors []string
			for n := range clusterNames(snap) {
				if strings.HasPrefix(n, "meshtrace:") {
					collectors = append(collectors, n)
				}
			}
			switch {
			case tt.collector == "" && len(collectors) != 0:
				t.Fatalf("tracing off but collector clusters %v", collectors)
			case tt.collector != "" && (len(collectors) != 1 || collectors[0] != tt.collector):
				t.Fatalf("collector clusters %v, want [%s]", collectors, tt.collector)
			}
			again, err := Build(tt.dp, meshtrace.Compute(tt.dp, tt.policies, gw), tt.env)
			if err != nil {
				t.Fatal(err)
			}
			if v1, v2 := Version(snap), Version(again); v1 != v2 {
				t.Fatalf("equal inputs gave versions %s and %s", v1, v2)
			}
			golden(t, tt.name, dumpYAML(t, snap))
			ads.serveAndACK(t, tt.dp, snap)
		})
	}
}

// The seed's example: each zone's proxies send spans only to their zone's collector.
func TestBuildEastWest(t *testing.T) {
	ads := startADS(t)
	policies := []*resource.Resource{
		meshTrace("trace-west", subsetRef(map[string]string{resource.TagZone: "west"}), withZipkin("http://west.zipkincollector:9411/api/v2/spans")),
		meshTrace("trace-east", subsetRef(map[string]string{resource.TagZone: "east"}), &resource.MeshTraceConf{Backends: backends(resource.Backend{
			Zipkin: &resource.ZipkinBackend{URL: "http://east.zipkincollector:9411/api/v2/spans", APIVersion: resource.ZipkinAPIHTTPJSON},
		})}),
	}
	for _, zone := range []string{"east", "west"} {
		other := map[string]string{"east": "west", "west": "east"}[zone]
		dp := sidecar("backend-"+zone, "backend", map[string]string{resource.TagZone: zone}, "web")
		rules := meshtrace.Compute(dp, policies)
		if len(rules.Policies) != 1 || rules.Policies[0].Name != "trace-"+zone {
			t.Fatalf("%s: policies %v", zone, rules.Policies)
		}
		snap, err := Build(dp, rules, Env{})
		if err != nil {
			t.Fatal(err)
		}
		checkSnapshot(t, snap)
		names := clusterNames(snap)
		if !names["meshtrace:zipkin:"+zone+".zipkincollector_9411"] || names["meshtrace:zipkin:"+other+".zipkincollector_9411"] {
			t.Fatalf("%s: clusters %v", zone, names)
		}
		golden(t, "zone-"+zone, dumpYAML(t, snap))
		ads.serveAndACK(t, dp, snap)
	}
	// A proxy in neither zone gets no tracing.
	dp := sidecar("backend-north", "backend", map[string]string{resource.TagZone: "north"})
	snap, err := Build(dp, meshtrace.Compute(dp, policies), Env{})
	if err != nil {
		t.Fatal(err)
	}
	for n := range clusterNames(snap) {
		if strings.HasPrefix(n, "meshtrace:") {
			t.Fatalf("north proxy got collector %s", n)
		}
	}
}

// A builtin gateway's listeners follow its MeshGateway: none without one (as
// Kuma), one per HTTP port with one, and they change with it.
func TestBuildGatewayListeners(t *testing.T) {
	gw := builtinGateway("edge-1", "edge", 0)
	pols := []*resource.Resource{meshTrace("default", nil, withZipkin("http://10.0.0.5:9411"))}
	listeners := func(env Env) map[string]types.Resource {
		t.Helper()
		snap, err := Build(gw, meshtrace.Compute(gw, pols), env)
		if err != nil {
			t.Fatal(err)
		}
		checkSnapshot(t, snap)
		return snap.GetResources(resourcev3.ListenerType)
	}
	if ls := listeners(Env{}); len(ls) != 0 {
		t.Fatalf("without a MeshGateway: listeners %v", ls)
	}
	mg := edgeGateway()
	if ls := listeners(Env{Gateways: []*resource.Resource{mg}}); len(ls) != 1 || ls["gateway:192.168.0.9:8080"] == nil {
		t.Fatalf("listeners %v", ls)
	}
	for i, l := range mg.Spec.(*resource.MeshGatewaySpec).Conf.Listeners {
		if l.Port == 8080 {
			mg.Spec.(*resource.MeshGatewaySpec).Conf.Listeners[i].Port = 9090
		}
	}
	if ls := listeners(Env{Gateways: []*resource.Resource{mg}}); len(ls) != 1 || ls["gateway:192.168.0.9:9090"] == nil {
		t.Fatalf("after the port change: listeners %v", ls)
	}
}

func TestBuildErrors(t *testing.T) {
	dp := sidecar("backend-1", "backend", nil)
	if _, err := Build(meshTrace("x", nil, nil), meshtrace.Rules{}, Env{}); err == nil {
		t.Fatal("a policy is not a dataplane")
	}
	rules := meshtrace.Rules{Conf: resource.MeshTraceConf{Backends: backends(zipkinBackend("gopher://x"))}}
	if _, err := Build(dp, rules, Env{}); err == nil {
		t.Fatal("expected an error for a bad collector url")
	}
}

// The concatenated HttpConnectionManager encoding must decode to the whole message.
func TestConcatenatedHCM(t *testing.T) {
	dp := sidecar("backend-1", "backend", nil, "db1")
	rules := meshtrace.Compute(dp, []*resource.Resource{meshTrace("default", meshRef(), fullConf(zipkinBackend("http://zipkin:9411")))})
	prep, err := prepare(rules.Conf, envoy.Options{})
	if err != nil {
		t.Fatal(err)
	}
	own := map[string][]byte{}
	b := &builder{tr: prep, own: own, seen: map[string]bool{}}
	l := envoy.Listener{Service: "backend"}
	tr, _ := prep.tracer.HTTP(l)
	for _, name := range []string{"inbound:1.2.3.4:80", "outbound:127.0.0.1:1000", "inbound:1.2.3.4:80"} {
		if err := b.listener(name, "1.2.3.4", 80, 0, "c", resource.ProtocolHTTP, l); err != nil {
			t.Fatal(err)
		}
		want := &hcmv3.HttpConnectionManager{
			StatPrefix:     statPrefix(name),
			RouteSpecifier: &hcmv3.HttpConnectionManager_RouteConfig{RouteConfig: &routev3.RouteConfiguration{Name: name, VirtualHosts: []*routev3.VirtualHost{routeTo("c")}}},
			HttpFilters:    routerFilters,
			Tracing:        tr,
		}
		lis := b.listeners[len(b.listeners)-1].(*listenerv3.Listener)
		var got hcmv3.HttpConnectionManager
		if err := lis.GetFilterChains()[0].GetFilters()[0].GetTypedConfig().UnmarshalTo(&got); err != nil {
			t.Fatal(err)
		}
		if !proto.Equal(&got, want) {
			t.Fatalf("decoded %v\nwant %v", &got, want)
		}
	}
	if len(prep.shared) != 1 || len(own) != 2 {
		t.Fatalf("shared parts %d (want 1), own encodings %d (want 2)", len(prep.shared), len(own))
	}
}
