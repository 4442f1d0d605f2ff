package envoy

import (
	"testing"

	tracev3 "github.com/envoyproxy/go-control-plane/envoy/config/trace/v3"

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
		cl, err := Cluster(c)
		if err != nil {
			t.Errorf("%+v: cluster: %v", b, err)
		} else if cl.GetName() != c.ClusterName() {
			t.Errorf("cluster %s, want %s", cl.GetName(), c.ClusterName())
		}
	}
}

func TestTracerDatadogServiceNames(t *testing.T) {
	conf := resource.MeshTraceConf{Backends: &[]resource.Backend{{Type: "Datadog", Datadog: &resource.DatadogBackend{URL: "http://127.0.0.1:8126", SplitService: true}}}}
	tr, err := NewTracer(conf)
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
		if _, err := NewTracer(c); err == nil {
			t.Errorf("%d: expected an error", i)
		}
	}
	if tr, err := NewTracer(resource.MeshTraceConf{}); tr != nil || err != nil {
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
			if _, err := Cluster(c); err != nil {
				t.Fatalf("%q parsed to %+v but its cluster is invalid: %v", s, c, err)
			}
		}
	})
}
