package resource

import (
	"fmt"
	"testing"
)

// BenchmarkValidate measures validating a full MeshTrace, as every write and
// every resource a zone receives is checked.
func BenchmarkValidate(b *testing.B) {
	benchmarkValidate(b, `type: MeshTrace
name: t
mesh: default
spec:
  targetRef: {kind: MeshSubset, tags: {kuma.io/zone: west}}
  default:
    tags:
    - {name: team, literal: core}
    - {name: env, header: {name: x-env, default: prod}}
    sampling: {overall: 80, client: 40, random: 60}
    backends:
    - zipkin: {url: "http://jaeger-collector:9411/api/v2/spans"}
`)
}

// BenchmarkDecode measures the strict decoder on one MeshTrace: the JSON
// body of an API PUT (Decode) and a resource read back from its own JSON
// (UnmarshalJSON, as zones decode what KDS sends them).
func BenchmarkDecode(b *testing.B) {
	doc := []byte(`{"type":"MeshTrace","mesh":"default","name":"burst-1","labels":{"team":"a"},"spec":{"targetRef":{"kind":"MeshService","name":"svc-1"},"default":{"sampling":{"overall":10},"tags":[{"name":"env","literal":"prod"}],"backends":[{"zipkin":{"url":"http://zipkin-burst:9411/api/v2/spans"}}]}}}`)
	b.Run("json", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			if _, err := Decode(doc); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("unmarshal", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			var r Resource
			if err := r.UnmarshalJSON(doc); err != nil {
				b.Fatal(err)
			}
		}
	})
}

// BenchmarkDecodeDocuments1000 measures what `meshtracectl apply -f` does
// with a file of 1000 MeshTraces before it sends them: the YAML stream
// split and every document decoded strictly (on every core).
func BenchmarkDecodeDocuments1000(b *testing.B) {
	var doc []byte
	for j := range 1000 {
		if j > 0 {
			doc = append(doc, "---\n"...)
		}
		doc = fmt.Appendf(doc, "type: MeshTrace\nname: bulk-%d\nmesh: default\nspec:\n  targetRef:\n    kind: MeshService\n    name: svc-%d\n  default:\n    sampling:\n      overall: 10\n    backends:\n    - zipkin:\n        url: http://zipkin-burst:9411/api/v2/spans\n", j, j)
	}
	b.ReportAllocs()
	for b.Loop() {
		for _, d := range DecodeDocuments(doc) {
			if d.Err != nil {
				b.Fatal(d.Err)
			}
		}
	}
}

// BenchmarkValidateDataplane measures validating a valid Dataplane with two
// inbounds, two outbounds and an admin port, as a zone does when a proxy
// registers or updates itself.
func BenchmarkValidateDataplane(b *testing.B) {
	benchmarkValidate(b, `type: Dataplane
name: web-1
mesh: default
networking:
  address: 10.0.0.7
  inbound:
  - {port: 8080, servicePort: 80, tags: {kuma.io/service: web, kuma.io/protocol: http, version: v1}}
  - {port: 9090, tags: {kuma.io/service: web-metrics}}
  outbound:
  - {port: 10001, tags: {kuma.io/service: backend}}
  - {port: 10002, address: 127.0.0.2, tags: {kuma.io/service: db}}
  admin: {port: 9901}
`)
}

// benchmarkValidate measures Validate of the resource doc decodes to.
func benchmarkValidate(b *testing.B, doc string) {
	r, err := Decode([]byte(doc))
	if err != nil {
		b.Fatal(err)
	}
	b.ReportAllocs()
	for b.Loop() {
		if err := Validate(r); err != nil {
			b.Fatal(err)
		}
	}
}
