package testcluster

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/meshtrace/meshtrace/resource"
)

// A MeshGateway applied on global reaches the zones like the policies, and a
// builtin gateway there gets its listener and the tracing of a MeshTrace
// that targets the MeshGateway.
func TestMeshGatewaySyncsAndShapesTheGateway(t *testing.T) {
	c := Start(t, Options{Zones: []string{"east"}})
	z := c.Zones["east"]
	if err := c.Apply(`type: MeshGateway
mesh: default
name: edge-gateway
selectors:
- match:
    kuma.io/service: edge
conf:
  listeners:
  - port: 8080
    protocol: HTTP
    hostname: foo.example.com
---
type: MeshTrace
mesh: default
name: gateway-traces
spec:
  targetRef:
    kind: MeshGateway
    name: edge-gateway
  default:
    backends:
    - zipkin:
        url: http://gw.zipkincollector:9411/api/v2/spans
`); err != nil {
		t.Fatal(err)
	}
	Eventually(t, 20*time.Second, func() error {
		_, _, err := z.Store().Get(context.Background(), resource.Key{Type: resource.TypeMeshGateway, Mesh: "default", Name: "edge-gateway"})
		return err
	})
	gw, _ := resource.New(resource.TypeDataplane, "default", "edge-1")
	gw.Spec.(*resource.DataplaneSpec).Networking = resource.DataplaneNetworking{Address: "10.1.0.9",
		Gateway: &resource.Gateway{Type: resource.GatewayBuiltin, Tags: map[string]string{resource.TagService: "edge"}}}
	if _, err := z.API.Do(context.Background(), "PUT", "/meshes/default/dataplanes/edge-1", nil, gw, nil); err != nil {
		t.Fatal(err)
	}
	envoy := ConnectEnvoy(t, z.XDSAddr(), "default.edge-1")
	envoy.WaitCollectors(t, 20*time.Second, "meshtrace:zipkin:gw.zipkincollector_9411")
	Eventually(t, 10*time.Second, func() error {
		snap, ok := z.Reconciler().Snapshot("default", "edge-1")
		if !ok {
			return fmt.Errorf("no snapshot")
		}
		if _, ok := snap.GetResources("type.googleapis.com/envoy.config.listener.v3.Listener")["gateway:10.1.0.9:8080"]; !ok {
			return fmt.Errorf("no gateway listener on 8080")
		}
		return nil
	})
}
