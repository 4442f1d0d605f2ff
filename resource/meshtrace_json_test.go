package resource

import (
	"bytes"
	"encoding/json"
	"math/rand/v2"
	"testing"
)

// appendMeshTraceJSON writes what json.Marshal writes: for random specs
// (nil, empty and filled maps, slices and pointers; strings JSON escapes
// or that are not UTF-8) and for the cases omitempty treats apart.
func TestMeshTraceJSONMatchesEncodingJSON(t *testing.T) {
	check := func(s *MeshTraceSpec) {
		t.Helper()
		want, err := json.Marshal(s)
		if err != nil {
			t.Fatal(err)
		}
		if got := appendMeshTraceJSON(nil, s); !bytes.Equal(got, want) {
			t.Fatalf("got  %s\nwant %s", got, want)
		}
	}
	str := func(s string) *string { return &s }
	yes := true
	var nilTags []TraceTag
	var nilBackends []Backend
	for _, s := range []*MeshTraceSpec{
		{},
		{TargetRef: &TargetRef{}},
		{TargetRef: &TargetRef{Kind: "Mesh", Tags: map[string]string{}, ProxyTypes: []string{}}},
		{TargetRef: &TargetRef{Kind: "MeshSubset", Tags: map[string]string{"b": "<&>", "a": "\u2028", "": "\x00"}, ProxyTypes: []string{"Sidecar", "Gateway"}}},
		{Default: &MeshTraceConf{}},
		{Default: &MeshTraceConf{Tags: &nilTags, Backends: &nilBackends}},
		{Default: &MeshTraceConf{Tags: &[]TraceTag{}, Backends: &[]Backend{}, Sampling: &Sampling{}}},
		{Default: &MeshTraceConf{
			Tags:     &[]TraceTag{{}, {Name: "n", Literal: str("")}, {Name: "h", Header: &HeaderTag{}}, {Header: &HeaderTag{Name: "x-h", Default: str("d\"q")}}},
			Sampling: &Sampling{Overall: &IntOrString{IntVal: -9223372036854775808}, Client: &IntOrString{IsString: true, StrVal: "12.5"}, Random: &IntOrString{IsString: true}},
			Backends: &[]Backend{{}, {Type: "Zipkin", Zipkin: &ZipkinBackend{}}, {Zipkin: &ZipkinBackend{URL: "u", TraceID128Bit: true, APIVersion: "httpProto", SharedSpanContext: &yes}},
				{Datadog: &DatadogBackend{}}, {Type: "Datadog", Datadog: &DatadogBackend{URL: "http://d:8126", SplitService: true}},
				{OpenTelemetry: &OpenTelemetryBackend{}}, {Type: "OpenTelemetry", OpenTelemetry: &OpenTelemetryBackend{Endpoint: "otel:4317"}},
				{Type: "x", Zipkin: &ZipkinBackend{}, Datadog: &DatadogBackend{}, OpenTelemetry: &OpenTelemetryBackend{}}},
		}},
	} {
		check(s)
	}
	rng := rand.New(rand.NewPCG(7, 8))
	for range 20000 {
		check(randomMeshTrace(rng))
	}
}

// FuzzMeshTraceJSONMatchesEncodingJSON: for any spec encoding/json reads
// from a document, appendMeshTraceJSON writes what json.Marshal writes.
func FuzzMeshTraceJSONMatchesEncodingJSON(f *testing.F) {
	f.Add([]byte(`{"targetRef":{"kind":"MeshService","name":"svc","tags":{"b":"1","a":"<"}},"default":{"tags":[{"name":"t","literal":"l"},{"name":"h","header":{"name":"x","default":"d"}}],"sampling":{"overall":10,"client":"50.5"},"backends":[{"type":"Zipkin","zipkin":{"url":"http://z:9411","sharedSpanContext":false}}]}}`))
	f.Add([]byte(`{"default":{"backends":[{"datadog":{"url":"u","splitService":true}},{"openTelemetry":{"endpoint":"e"}}]}}`))
	f.Add([]byte(`{"targetRef":{"kind":"Mesh","proxyTypes":["Sidecar","\u2028\ud800"]},"default":{"tags":[],"backends":[]}}`))
	f.Fuzz(func(t *testing.T, doc []byte) {
		var s MeshTraceSpec
		if json.Unmarshal(doc, &s) != nil {
			return
		}
		want, err := json.Marshal(&s)
		if err != nil {
			t.Fatal(err)
		}
		if got := appendMeshTraceJSON(nil, &s); !bytes.Equal(got, want) {
			t.Fatalf("got  %s\nwant %s", got, want)
		}
	})
}

// BenchmarkMarshalSpec: a MeshTrace spec as the burst writes it.
func BenchmarkMarshalSpec(b *testing.B) {
	r, err := Decode([]byte(`{"type":"MeshTrace","mesh":"default","name":"t","spec":{"targetRef":{"kind":"MeshService","name":"svc-1"},"default":{"sampling":{"overall":10},"backends":[{"zipkin":{"url":"http://zipkin-burst:9411/api/v2/spans"}}]}}}`))
	if err != nil {
		b.Fatal(err)
	}
	b.ReportAllocs()
	for b.Loop() {
		if _, err := MarshalSpec(r); err != nil {
			b.Fatal(err)
		}
	}
}
