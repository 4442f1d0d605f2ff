package xds

import (
	"testing"

	"github.com/meshtrace/meshtrace/policy/meshtrace"
	"github.com/meshtrace/meshtrace/resource"
)

// FuzzBuild: every Dataplane the API accepts builds a snapshot whose
// resources pass Envoy validation, with itself as an endpoint of its own
// services and with tracing on.
func FuzzBuild(f *testing.F) {
	f.Add(`{"type":"Dataplane","mesh":"default","name":"dp","networking":{"address":"10.0.0.1","inbound":[{"port":8080,"servicePort":80,"tags":{"kuma.io/service":"a","kuma.io/protocol":"http"}}],"outbound":[{"port":10001,"tags":{"kuma.io/service":"a"}}]}}`)
	f.Add(`{"type":"Dataplane","mesh":"default","name":"dp","networking":{"address":"fd00::1","inbound":[{"port":5432,"serviceAddress":"10.0.0.9","tags":{"kuma.io/service":"db","kuma.io/protocol":"tcp"}},{"port":9090,"tags":{"kuma.io/service":"g","kuma.io/protocol":"grpc"}}]}}`)
	f.Add(`{"type":"Dataplane","mesh":"default","name":"gw","networking":{"address":"gw.local","gateway":{"type":"BUILTIN","tags":{"kuma.io/service":"edge"}}}}`)
	pol := meshTrace("default", meshRef(), withZipkin("https://zipkin.example.com/api/v2/spans"))
	gws := []*resource.Resource{edgeGateway()}
	f.Fuzz(func(t *testing.T, doc string) {
		dp, err := resource.Decode([]byte(doc))
		if err != nil || dp.Type != resource.TypeDataplane {
			return
		}
		resource.Prepare(dp)
		if resource.Validate(dp) != nil {
			return
		}
		dp.Mesh = "default"
		rules := meshtrace.Compute(dp, []*resource.Resource{pol}, meshtrace.SelectGateway(dp, gws))
		snap, err := Build(dp, rules, Env{Dataplanes: []*resource.Resource{dp}, Gateways: gws})
		if err != nil {
			t.Fatalf("a valid Dataplane does not build: %v\n%s", err, doc)
		}
		checkSnapshot(t, snap)
	})
}
