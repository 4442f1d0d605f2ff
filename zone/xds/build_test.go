package xds

import (
	"strings"
	"testing"

	listenerv3 "github.com/envoyproxy/go-control-plane/envoy/config/listener/v3"
	routev3 "github.com/envoyproxy/go-control-plane/envoy/config/route/v3"
	hcmv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/network/http_connection_manager/v3"
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

func TestBuildGolden(t *testing.T) {
	backend := sidecar("backend-1", "backend", nil, "db1", "db2")
	datadog := func(split bool) resource.Backend {
		return resource.Backend{Type: resource.BackendDatadog, Datadog: &resource.DatadogBackend{URL: "http://127.0.0.1:8126", SplitService: split}}
	}
	tests := []struct {
		name     string
		dp       *resource.Resource
		policies []*resource.Resource
		// collector is the collector cluster expected in the snapshot, "" for none.
		collector string
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
			name:      "builtin-gateway",
			dp:        builtinGateway("edge-1", "edge", 8443),
			policies:  []*resource.Resource{meshTrace("gw", &resource.TargetRef{Kind: resource.KindMeshGateway, Name: "edge"}, withZipkin("http://zipkin:9411/api/v2/spans"))},
			collector: "meshtrace:zipkin:zipkin_9411",
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
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			rules := meshtrace.Compute(tt.dp, tt.policies)
			snap, err := Build(tt.dp, rules)
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
			again, err := Build(tt.dp, meshtrace.Compute(tt.dp, tt.policies))
			if err != nil {
				t.Fatal(err)
			}
			if v1, v2 := snap.GetVersion(resourcev3.ListenerType), again.GetVersion(resourcev3.ListenerType); v1 != v2 {
				t.Fatalf("equal inputs gave versions %s and %s", v1, v2)
			}
			golden(t, tt.name, dumpYAML(t, snap))
		})
	}
}

// The seed's example: each zone's proxies send spans only to their zone's collector.
func TestBuildEastWest(t *testing.T) {
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
		snap, err := Build(dp, rules)
		if err != nil {
			t.Fatal(err)
		}
		checkSnapshot(t, snap)
		names := clusterNames(snap)
		if !names["meshtrace:zipkin:"+zone+".zipkincollector_9411"] || names["meshtrace:zipkin:"+other+".zipkincollector_9411"] {
			t.Fatalf("%s: clusters %v", zone, names)
		}
		golden(t, "zone-"+zone, dumpYAML(t, snap))
	}
	// A proxy in neither zone gets no tracing.
	dp := sidecar("backend-north", "backend", map[string]string{resource.TagZone: "north"})
	snap, err := Build(dp, meshtrace.Compute(dp, policies))
	if err != nil {
		t.Fatal(err)
	}
	for n := range clusterNames(snap) {
		if strings.HasPrefix(n, "meshtrace:") {
			t.Fatalf("north proxy got collector %s", n)
		}
	}
}

func TestBuildGatewayDefaults(t *testing.T) {
	gw := builtinGateway("edge-1", "edge", 0)
	snap, err := Build(gw, meshtrace.Compute(gw, []*resource.Resource{meshTrace("default", nil, withZipkin("http://10.0.0.5:9411"))}))
	if err != nil {
		t.Fatal(err)
	}
	checkSnapshot(t, snap)
	ls := snap.GetResources(resourcev3.ListenerType)
	if _, ok := ls["gateway:192.168.0.9:8080"]; !ok || len(ls) != 1 {
		t.Fatalf("listeners %v", ls)
	}
}

func TestBuildErrors(t *testing.T) {
	dp := sidecar("backend-1", "backend", nil)
	if _, err := Build(meshTrace("x", nil, nil), meshtrace.Rules{}); err == nil {
		t.Fatal("a policy is not a dataplane")
	}
	rules := meshtrace.Rules{Conf: resource.MeshTraceConf{Backends: backends(zipkinBackend("gopher://x"))}}
	if _, err := Build(dp, rules); err == nil {
		t.Fatal("expected an error for a bad collector url")
	}
}

// The concatenated HttpConnectionManager encoding must decode to the whole message.
func TestConcatenatedHCM(t *testing.T) {
	dp := sidecar("backend-1", "backend", nil, "db1")
	rules := meshtrace.Compute(dp, []*resource.Resource{meshTrace("default", meshRef(), fullConf(zipkinBackend("http://zipkin:9411")))})
	prep, err := prepare(rules.Conf)
	if err != nil {
		t.Fatal(err)
	}
	own := map[string][]byte{}
	b := &builder{tr: prep, own: own, seen: map[string]bool{}}
	l := envoy.Listener{Service: "backend"}
	tr, _ := prep.tracer.HTTP(l)
	for _, name := range []string{"inbound:1.2.3.4:80", "outbound:127.0.0.1:1000", "inbound:1.2.3.4:80"} {
		if err := b.listener(name, "1.2.3.4", 80, 0, "c", l); err != nil {
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
