package resource

import "testing"

// BenchmarkValidate measures validating a full MeshTrace, which checks the
// spec with its defaults filled in on a copy (Effective), as every write and
// every resource a zone receives is checked.
func BenchmarkValidate(b *testing.B) {
	r, err := Decode([]byte(`type: MeshTrace
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
`))
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
