package meshtrace

import (
	"encoding/json"
	"reflect"
	"strings"
	"testing"

	"github.com/meshtrace/meshtrace/resource"
)

func policy(name string, ref *resource.TargetRef, conf *resource.MeshTraceConf, labels ...string) *resource.Resource {
	r := &resource.Resource{
		Meta: resource.Meta{Type: resource.TypeMeshTrace, Mesh: "default", Name: name},
		Spec: &resource.MeshTraceSpec{TargetRef: ref, Default: conf},
	}
	for i := 0; i+1 < len(labels); i += 2 {
		if r.Labels == nil {
			r.Labels = map[string]string{}
		}
		r.Labels[labels[i]] = labels[i+1]
	}
	return r
}

func sidecar(name string, tags ...map[string]string) *resource.Resource {
	spec := &resource.DataplaneSpec{Networking: resource.DataplaneNetworking{Address: "10.0.0.1"}}
	for i, t := range tags {
		spec.Networking.Inbound = append(spec.Networking.Inbound, resource.Inbound{Port: uint32(10000 + i), Tags: t})
	}
	return &resource.Resource{Meta: resource.Meta{Type: resource.TypeDataplane, Mesh: "default", Name: name}, Spec: spec}
}

func gateway(name, typ string, tags map[string]string) *resource.Resource {
	spec := &resource.DataplaneSpec{Networking: resource.DataplaneNetworking{
		Address: "10.0.0.2", Gateway: &resource.Gateway{Type: typ, Tags: tags},
	}}
	return &resource.Resource{Meta: resource.Meta{Type: resource.TypeDataplane, Mesh: "default", Name: name}, Spec: spec}
}

func meshGateway(name string, match map[string]string) *resource.Resource {
	return &resource.Resource{
		Meta: resource.Meta{Type: resource.TypeMeshGateway, Mesh: "default", Name: name},
		Spec: &resource.MeshGatewaySpec{Selectors: []resource.Selector{{Match: match}},
			Conf: &resource.MeshGatewayConf{Listeners: []resource.GatewayListener{{Port: 8080, Protocol: resource.GatewayHTTP}}}},
	}
}

func zipkin(url string) *resource.MeshTraceConf {
	return &resource.MeshTraceConf{Backends: &[]resource.Backend{{Type: resource.BackendZipkin, Zipkin: &resource.ZipkinBackend{URL: url}}}}
}

func TestAffects(t *testing.T) {
	backend := sidecar("backend-1", map[string]string{"kuma.io/service": "backend", "version": "v1", "kuma.io/zone": "east"})
	multi := sidecar("multi", map[string]string{"kuma.io/service": "a", "version": "v1"}, map[string]string{"kuma.io/service": "b", "version": "v2"})
	builtin := gateway("gw", resource.GatewayBuiltin, map[string]string{"kuma.io/service": "edge", "kuma.io/zone": "east"})
	delegated := gateway("kong", resource.GatewayDelegated, map[string]string{"kuma.io/service": "kong"})
	other := sidecar("other", map[string]string{"kuma.io/service": "backend"})
	other.Mesh = "other"

	edgeGW := meshGateway("edge-gateway", map[string]string{"kuma.io/service": "edge"})
	gateways := []*resource.Resource{meshGateway("other-gateway", map[string]string{"kuma.io/service": "other"}), edgeGW}

	ref := func(kind, name string, tags map[string]string, proxyTypes ...string) *resource.TargetRef {
		return &resource.TargetRef{Kind: kind, Name: name, Tags: tags, ProxyTypes: proxyTypes}
	}
	tests := []struct {
		name string
		ref  *resource.TargetRef
		dp   *resource.Resource
		want bool
	}{
		{"Mesh Sidecar selects sidecar", ref("Mesh", "", nil, "Sidecar"), backend, true},
		{"Mesh Sidecar skips gateway", ref("Mesh", "", nil, "Sidecar"), builtin, false},
		{"Mesh Gateway selects builtin", ref("Mesh", "", nil, "Gateway"), builtin, true},
		{"Mesh Gateway selects delegated", ref("Mesh", "", nil, "Gateway"), delegated, true},
		{"Mesh Gateway skips sidecar", ref("Mesh", "", nil, "Gateway"), backend, false},
		{"Mesh both", ref("Mesh", "", nil, "Sidecar", "Gateway"), builtin, true},
		{"MeshSubset Gateway", ref("MeshSubset", "", map[string]string{"kuma.io/zone": "east"}, "Gateway"), builtin, true},
		{"MeshSubset Gateway skips sidecar", ref("MeshSubset", "", map[string]string{"kuma.io/zone": "east"}, "Gateway"), backend, false},
		{"omitted targetRef is Mesh", nil, backend, true},
		{"Mesh", ref("Mesh", "", nil), backend, true},
		{"Mesh selects builtin gateway", ref("Mesh", "", nil), builtin, true},
		{"other mesh", ref("Mesh", "", nil), other, false},
		{"MeshSubset subset", ref("MeshSubset", "", map[string]string{"kuma.io/zone": "east"}), backend, true},
		{"MeshSubset empty tags", ref("MeshSubset", "", nil), backend, true},
		{"MeshSubset mismatch", ref("MeshSubset", "", map[string]string{"kuma.io/zone": "west"}), backend, false},
		{"MeshSubset missing tag", ref("MeshSubset", "", map[string]string{"team": "x"}), backend, false},
		{"MeshSubset second inbound", ref("MeshSubset", "", map[string]string{"version": "v2"}), multi, true},
		{"MeshSubset tags across inbounds", ref("MeshSubset", "", map[string]string{"kuma.io/service": "a", "version": "v2"}), multi, false},
		{"MeshSubset gateway tags", ref("MeshSubset", "", map[string]string{"kuma.io/zone": "east"}), builtin, true},
		{"MeshService", ref("MeshService", "backend", nil), backend, true},
		{"MeshService other", ref("MeshService", "web", nil), backend, false},
		{"MeshService second inbound", ref("MeshService", "b", nil), multi, true},
		{"MeshService delegated gateway", ref("MeshService", "kong", nil), delegated, true},
		{"MeshServiceSubset", ref("MeshServiceSubset", "backend", map[string]string{"version": "v1"}), backend, true},
		{"MeshServiceSubset wrong version", ref("MeshServiceSubset", "backend", map[string]string{"version": "v2"}), backend, false},
		{"MeshServiceSubset same inbound only", ref("MeshServiceSubset", "a", map[string]string{"version": "v2"}), multi, false},
		{"MeshServiceSubset b v2", ref("MeshServiceSubset", "b", map[string]string{"version": "v2"}), multi, true},
		{"MeshGateway builtin", ref("MeshGateway", "edge-gateway", nil), builtin, true},
		{"MeshGateway by service name is not enough", ref("MeshGateway", "edge", nil), builtin, false},
		{"MeshGateway other name", ref("MeshGateway", "other-gateway", nil), builtin, false},
		{"MeshGateway delegated", ref("MeshGateway", "kong", nil), delegated, false},
		{"MeshGateway sidecar", ref("MeshGateway", "backend", nil), backend, false},
		{"unknown kind", ref("MeshHTTPRoute", "backend", nil), backend, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			p := policy("p", tt.ref, nil)
			if got := Affects(p, tt.dp, SelectGateway(tt.dp, gateways)); got != tt.want {
				t.Fatalf("Affects = %v, want %v", got, tt.want)
			}
		})
	}
	if Affects(backend, backend) {
		t.Fatal("a Dataplane is not a policy")
	}
	if Affects(policy("p", ref("MeshGateway", "edge-gateway", nil), nil), builtin) {
		t.Fatal("a MeshGateway target needs the MeshGateway")
	}
	if g := SelectGateway(builtin, gateways); g != edgeGW {
		t.Fatalf("selected %v", g)
	}
	if g := SelectGateway(delegated, gateways); g != nil {
		t.Fatalf("a delegated gateway has no MeshGateway, got %v", g)
	}
}

func names(rs []*resource.Resource) []string {
	var out []string
	for _, r := range rs {
		out = append(out, r.Name)
	}
	return out
}

func TestMatchOrder(t *testing.T) {
	dp := sidecar("backend-1", map[string]string{"kuma.io/service": "backend", "version": "v1"})
	policies := []*resource.Resource{
		policy("svc-subset", &resource.TargetRef{Kind: "MeshServiceSubset", Name: "backend", Tags: map[string]string{"version": "v1"}}, nil),
		policy("svc", &resource.TargetRef{Kind: "MeshService", Name: "backend"}, nil),
		policy("bb", &resource.TargetRef{Kind: "Mesh"}, nil),
		policy("zone-mesh", nil, nil, resource.LabelOrigin, resource.OriginZone),
		policy("aa", nil, nil),
		policy("subset", &resource.TargetRef{Kind: "MeshSubset", Tags: map[string]string{"version": "v1"}}, nil),
		policy("global-mesh", nil, nil, resource.LabelOrigin, resource.OriginGlobal),
		policy("web", &resource.TargetRef{Kind: "MeshService", Name: "web"}, nil),
	}
	got := names(Match(dp, policies))
	want := []string{"global-mesh", "bb", "aa", "zone-mesh", "subset", "svc", "svc-subset"}
	if !reflect.DeepEqual(got, want) {
		t.Fatalf("order = %v, want %v", got, want)
	}

	gw := gateway("gw", resource.GatewayBuiltin, map[string]string{"kuma.io/service": "edge"})
	gwPolicies := []*resource.Resource{
		policy("gw", &resource.TargetRef{Kind: "MeshGateway", Name: "edge"}, nil),
		policy("mesh", nil, nil),
		policy("svc", &resource.TargetRef{Kind: "MeshService", Name: "edge"}, nil),
		policy("subset", &resource.TargetRef{Kind: "MeshSubset"}, nil),
	}
	if got, want := names(Match(gw, gwPolicies, meshGateway("edge", map[string]string{"kuma.io/service": "edge"}))), []string{"mesh", "subset", "gw", "svc"}; !reflect.DeepEqual(got, want) {
		t.Fatalf("gateway order = %v, want %v", got, want)
	}
}

func TestMerge(t *testing.T) {
	str := func(s string) *string { return &s }
	base := &resource.MeshTraceConf{
		Tags:     &[]resource.TraceTag{{Name: "team", Literal: str("core")}},
		Sampling: &resource.Sampling{Overall: resource.Int(80), Random: resource.Int(60)},
		Backends: zipkin("http://zipkin:9411/api/v2/spans").Backends,
	}
	override := &resource.MeshTraceConf{
		Sampling: &resource.Sampling{Random: resource.Str("12.5"), Client: resource.Int(40)},
		Tags:     &[]resource.TraceTag{{Name: "env", Header: &resource.HeaderTag{Name: "x-env"}}},
	}
	dp := sidecar("backend-1", map[string]string{"kuma.io/service": "backend"})
	rules := Compute(dp, []*resource.Resource{
		policy("svc", &resource.TargetRef{Kind: "MeshService", Name: "backend"}, override),
		policy("default", nil, base),
	})
	want := resource.MeshTraceConf{
		Tags:     &[]resource.TraceTag{{Name: "env", Header: &resource.HeaderTag{Name: "x-env"}}},
		Sampling: &resource.Sampling{Overall: resource.Int(80), Random: resource.Str("12.5"), Client: resource.Int(40)},
		Backends: base.Backends,
	}
	gotJSON, _ := json.Marshal(rules.Conf)
	wantJSON, _ := json.Marshal(want)
	if string(gotJSON) != string(wantJSON) {
		t.Fatalf("merged:\n got %s\nwant %s", gotJSON, wantJSON)
	}
	if len(rules.Policies) != 2 || rules.Policies[0].Name != "default" || rules.Policies[1].Name != "svc" {
		t.Fatalf("policies = %v", rules.Policies)
	}
	// The merge result must not alias the policies.
	(*rules.Conf.Backends)[0].Zipkin.URL = "changed"
	if (*base.Backends)[0].Zipkin.URL == "changed" {
		t.Fatal("merged conf aliases the policy's backends")
	}

	// backends: [] turns tracing off.
	off := Compute(dp, []*resource.Resource{
		policy("default", nil, base),
		policy("svc", &resource.TargetRef{Kind: "MeshService", Name: "backend"}, &resource.MeshTraceConf{Backends: &[]resource.Backend{}}),
	})
	if off.Enabled() {
		t.Fatal("backends: [] must turn tracing off")
	}
	if typ, c := EffectiveCollector(off.Conf); typ != "" || c != "" {
		t.Fatalf("collector of disabled conf = %q %q", typ, c)
	}

	// Two Mesh policies: the lexicographically smallest name wins.
	won := Compute(dp, []*resource.Resource{policy("aa", nil, zipkin("http://aa:9411")), policy("bb", nil, zipkin("http://bb:9411"))})
	if _, c := EffectiveCollector(won.Conf); c != "http://aa:9411" {
		t.Fatalf("aa must win, got %s", c)
	}
}

func TestParseBackend(t *testing.T) {
	tests := []struct {
		b       resource.Backend
		want    Collector
		cluster string
		err     string
	}{
		{b: resource.Backend{Zipkin: &resource.ZipkinBackend{URL: "http://west.zipkincollector:9411/api/v2/spans"}},
			want:    Collector{Type: "Zipkin", Host: "west.zipkincollector", Port: 9411, Path: "/api/v2/spans", Authority: "west.zipkincollector:9411"},
			cluster: "meshtrace:zipkin:west.zipkincollector_9411"},
		{b: resource.Backend{Type: "Zipkin", Zipkin: &resource.ZipkinBackend{URL: "https://zipkin.example.com"}},
			want:    Collector{Type: "Zipkin", Host: "zipkin.example.com", Port: 443, Path: "/api/v2/spans", Authority: "zipkin.example.com", TLS: true},
			cluster: "meshtrace:zipkin-tls:zipkin.example.com_443"},
		{b: resource.Backend{Type: "Zipkin", Zipkin: &resource.ZipkinBackend{URL: "http://10.1.1.1/spans"}},
			want:    Collector{Type: "Zipkin", Host: "10.1.1.1", Port: 80, Path: "/spans", Authority: "10.1.1.1"},
			cluster: "meshtrace:zipkin:10.1.1.1_80"},
		{b: resource.Backend{Type: "Datadog", Datadog: &resource.DatadogBackend{URL: "http://127.0.0.1:8126"}},
			want:    Collector{Type: "Datadog", Host: "127.0.0.1", Port: 8126, Authority: "127.0.0.1:8126"},
			cluster: "meshtrace:datadog:127.0.0.1_8126"},
		{b: resource.Backend{Type: "Datadog", Datadog: &resource.DatadogBackend{URL: "http://agent"}},
			want:    Collector{Type: "Datadog", Host: "agent", Port: 8126, Authority: "agent"},
			cluster: "meshtrace:datadog:agent_8126"},
		{b: resource.Backend{Type: "OpenTelemetry", OpenTelemetry: &resource.OpenTelemetryBackend{Endpoint: "otel-collector.com:4317"}},
			want:    Collector{Type: "OpenTelemetry", Host: "otel-collector.com", Port: 4317, Authority: "otel-collector.com:4317"},
			cluster: "meshtrace:opentelemetry:otel-collector.com_4317"},
		{b: resource.Backend{Type: "OpenTelemetry", OpenTelemetry: &resource.OpenTelemetryBackend{Endpoint: "otel"}},
			want:    Collector{Type: "OpenTelemetry", Host: "otel", Port: 4317, Authority: "otel"},
			cluster: "meshtrace:opentelemetry:otel_4317"},
		{b: resource.Backend{Type: "OpenTelemetry", OpenTelemetry: &resource.OpenTelemetryBackend{Endpoint: "[::1]:4318"}},
			want:    Collector{Type: "OpenTelemetry", Host: "::1", Port: 4318, Authority: "[::1]:4318"},
			cluster: "meshtrace:opentelemetry:::1_4318"},
		{b: resource.Backend{Type: "Zipkin", Zipkin: &resource.ZipkinBackend{URL: "ftp://x"}}, err: "scheme"},
		{b: resource.Backend{Type: "Zipkin", Zipkin: &resource.ZipkinBackend{URL: "http://x:99999"}}, err: "port"},
		{b: resource.Backend{Type: "Zipkin"}, err: "no matching section"},
		{b: resource.Backend{}, err: "has no zipkin"},
	}
	for _, tt := range tests {
		got, err := ParseBackend(tt.b)
		if tt.err != "" {
			if err == nil || !strings.Contains(err.Error(), tt.err) {
				t.Errorf("%+v: error %v, want %q", tt.b, err, tt.err)
			}
			continue
		}
		if err != nil {
			t.Errorf("%+v: %v", tt.b, err)
			continue
		}
		if got != tt.want {
			t.Errorf("parsed %+v, want %+v", got, tt.want)
		}
		if got.ClusterName() != tt.cluster {
			t.Errorf("cluster name %s, want %s", got.ClusterName(), tt.cluster)
		}
	}
}
