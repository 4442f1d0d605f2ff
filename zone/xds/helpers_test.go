package xds

import (
	"net"
	"os"
	"path/filepath"
	"testing"

	listenerv3 "github.com/envoyproxy/go-control-plane/envoy/config/listener/v3"
	"github.com/envoyproxy/go-control-plane/pkg/cache/v3"
	resourcev3 "github.com/envoyproxy/go-control-plane/pkg/resource/v3"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/reflect/protoreflect"
	"google.golang.org/protobuf/types/known/anypb"
	"sigs.k8s.io/yaml"

	"github.com/meshtrace/meshtrace/resource"
)

// Builders for resources: the codec is written elsewhere, so tests construct
// resources directly.

func meshTrace(name string, ref *resource.TargetRef, conf *resource.MeshTraceConf) *resource.Resource {
	return &resource.Resource{
		Meta: resource.Meta{Type: resource.TypeMeshTrace, Mesh: "default", Name: name},
		Spec: &resource.MeshTraceSpec{TargetRef: ref, Default: conf},
	}
}

func meshRef() *resource.TargetRef { return &resource.TargetRef{Kind: resource.KindMesh} }

func serviceRef(svc string) *resource.TargetRef {
	return &resource.TargetRef{Kind: resource.KindMeshService, Name: svc}
}

func subsetRef(tags map[string]string) *resource.TargetRef {
	return &resource.TargetRef{Kind: resource.KindMeshSubset, Tags: tags}
}

func backends(bs ...resource.Backend) *[]resource.Backend { return &bs }

func zipkinBackend(url string) resource.Backend {
	return resource.Backend{Type: resource.BackendZipkin, Zipkin: &resource.ZipkinBackend{URL: url, APIVersion: resource.ZipkinAPIHTTPJSON}}
}

func withZipkin(url string) *resource.MeshTraceConf {
	return &resource.MeshTraceConf{Backends: backends(zipkinBackend(url))}
}

// sidecar is a proxy with one inbound for service (tags added) and outbounds
// to the given services on ports 10001, 10002, ...
func sidecar(name, service string, extra map[string]string, outbounds ...string) *resource.Resource {
	tags := map[string]string{resource.TagService: service, resource.TagProtocol: "http"}
	for k, v := range extra {
		tags[k] = v
	}
	spec := &resource.DataplaneSpec{Networking: resource.DataplaneNetworking{
		Address: "192.168.0.2",
		Inbound: []resource.Inbound{{Port: 8080, ServicePort: 8081, Tags: tags}},
	}}
	for i, o := range outbounds {
		spec.Networking.Outbound = append(spec.Networking.Outbound, resource.Outbound{
			Port: uint32(10001 + i), Tags: map[string]string{resource.TagService: o},
		})
	}
	return &resource.Resource{Meta: resource.Meta{Type: resource.TypeDataplane, Mesh: "default", Name: name}, Spec: spec}
}

func builtinGateway(name, service string, port uint32) *resource.Resource {
	spec := &resource.DataplaneSpec{Networking: resource.DataplaneNetworking{
		Address: "192.168.0.9",
		Gateway: &resource.Gateway{Type: resource.GatewayBuiltin, Tags: map[string]string{resource.TagService: service}},
	}}
	if port != 0 {
		spec.Networking.Inbound = []resource.Inbound{{Port: port, Tags: map[string]string{resource.TagService: service}}}
	}
	return &resource.Resource{Meta: resource.Meta{Type: resource.TypeDataplane, Mesh: "default", Name: name}, Spec: spec}
}

// withProtocol sets (or with "" removes) kuma.io/protocol on every inbound.
func withProtocol(dp *resource.Resource, protocol string) *resource.Resource {
	for i := range dp.Spec.(*resource.DataplaneSpec).Networking.Inbound {
		tags := dp.Spec.(*resource.DataplaneSpec).Networking.Inbound[i].Tags
		if protocol == "" {
			delete(tags, resource.TagProtocol)
		} else {
			tags[resource.TagProtocol] = protocol
		}
	}
	return dp
}

// at moves a Dataplane to address (and mesh, when given).
func at(dp *resource.Resource, address string, mesh ...string) *resource.Resource {
	dp.Spec.(*resource.DataplaneSpec).Networking.Address = address
	if len(mesh) > 0 {
		dp.Mesh = mesh[0]
	}
	return dp
}

// multiInbound is a proxy with one http inbound per service, in order.
func multiInbound(name string, services []string, outbounds ...string) *resource.Resource {
	dp := sidecar(name, services[0], nil, outbounds...)
	nw := &dp.Spec.(*resource.DataplaneSpec).Networking
	for i, svc := range services[1:] {
		nw.Inbound = append(nw.Inbound, resource.Inbound{Port: uint32(8090 + i), ServicePort: uint32(8091 + i),
			Tags: map[string]string{resource.TagService: svc, resource.TagProtocol: "http"}})
	}
	return dp
}

// edgeGateway is the MeshGateway of builtinGateway(..., "edge", ...): HTTP on
// 8080 for two hostnames and any, TCP on 9000 (no listener: no routes).
func edgeGateway() *resource.Resource {
	return &resource.Resource{
		Meta: resource.Meta{Type: resource.TypeMeshGateway, Mesh: "default", Name: "edge-gateway"},
		Spec: &resource.MeshGatewaySpec{
			Selectors: []resource.Selector{{Match: map[string]string{resource.TagService: "edge"}}},
			Conf: &resource.MeshGatewayConf{Listeners: []resource.GatewayListener{
				{Port: 8080, Protocol: resource.GatewayHTTP, Hostname: "foo.example.com"},
				{Port: 8080, Protocol: resource.GatewayHTTP},
				{Port: 8080, Protocol: resource.GatewayHTTP, Hostname: "*.bar.example.com"},
				{Port: 9000, Protocol: resource.GatewayTCP},
			}},
		},
	}
}

type validator interface{ ValidateAll() error }

// validateDeep runs ValidateAll on m and on every message packed in an Any
// inside it, recursively (protoc-gen-validate does not look inside Any).
func validateDeep(t testing.TB, m proto.Message) {
	t.Helper()
	if v, ok := m.(validator); ok {
		if err := v.ValidateAll(); err != nil {
			t.Fatalf("%T: %v", m, err)
		}
	}
	var walk func(protoreflect.Message)
	walk = func(msg protoreflect.Message) {
		if a, ok := msg.Interface().(*anypb.Any); ok {
			inner, err := a.UnmarshalNew()
			if err != nil {
				t.Fatalf("unpack %s: %v", a.GetTypeUrl(), err)
			}
			validateDeep(t, inner)
			return
		}
		msg.Range(func(fd protoreflect.FieldDescriptor, v protoreflect.Value) bool {
			switch {
			case fd.IsList() && fd.Message() != nil:
				for i := 0; i < v.List().Len(); i++ {
					walk(v.List().Get(i).Message())
				}
			case fd.IsMap() && fd.MapValue().Message() != nil:
				v.Map().Range(func(_ protoreflect.MapKey, mv protoreflect.Value) bool {
					walk(mv.Message())
					return true
				})
			case fd.Message() != nil && !fd.IsList() && !fd.IsMap():
				walk(v.Message())
			}
			return true
		})
	}
	walk(m.ProtoReflect())
}

// checkSnapshot validates every resource of snap, its consistency, and that
// every cluster a listener's tracing names is in the snapshot.
func checkSnapshot(t testing.TB, snap *cache.Snapshot) {
	t.Helper()
	if err := snap.Consistent(); err != nil {
		t.Fatalf("inconsistent: %v", err)
	}
	// The version hashes listeners field by field (see builder.snapshot): a
	// listener field it does not know would escape the version.
	for _, r := range snap.GetResources(resourcev3.ListenerType) {
		// Envoy binds listeners to IPs only.
		if a := r.(*listenerv3.Listener).GetAddress().GetSocketAddress().GetAddress(); net.ParseIP(a) == nil {
			t.Fatalf("listener %s binds to %q, not an IP", r.(*listenerv3.Listener).GetName(), a)
		}
		r.(proto.Message).ProtoReflect().Range(func(fd protoreflect.FieldDescriptor, _ protoreflect.Value) bool {
			switch fd.Name() {
			case "name", "address", "traffic_direction", "filter_chains":
			default:
				t.Fatalf("listener field %s is not covered by the version hash", fd.Name())
			}
			return true
		})
		for _, fc := range r.(*listenerv3.Listener).GetFilterChains() {
			fc.ProtoReflect().Range(func(fd protoreflect.FieldDescriptor, _ protoreflect.Value) bool {
				if fd.Name() != "filters" {
					t.Fatalf("filter chain field %s is not covered by the version hash", fd.Name())
				}
				return true
			})
		}
	}
	for _, typ := range []string{resourcev3.ListenerType, resourcev3.ClusterType, resourcev3.EndpointType} {
		for _, r := range snap.GetResources(typ) {
			validateDeep(t, r)
		}
	}
}

func golden(t *testing.T, name string, got []byte) {
	t.Helper()
	path := filepath.Join("testdata", name+".golden.yaml")
	if os.Getenv("UPDATE_GOLDEN") != "" {
		if err := os.WriteFile(path, got, 0o644); err != nil {
			t.Fatal(err)
		}
		return
	}
	want, err := os.ReadFile(path)
	if err != nil {
		t.Fatalf("%v (run with UPDATE_GOLDEN=1 to create it)", err)
	}
	if string(want) != string(got) {
		t.Fatalf("%s differs from the golden file; run with UPDATE_GOLDEN=1 and review the diff\n--- got ---\n%s", path, got)
	}
}

func dumpYAML(t testing.TB, snap *cache.Snapshot) []byte {
	t.Helper()
	j, err := Dump(snap)
	if err != nil {
		t.Fatal(err)
	}
	y, err := yaml.JSONToYAML(j)
	if err != nil {
		t.Fatal(err)
	}
	return y
}

func clusterNames(snap *cache.Snapshot) map[string]bool {
	out := map[string]bool{}
	for n := range snap.GetResources(resourcev3.ClusterType) {
		out[n] = true
	}
	return out
}

func key(typ resource.Type, name string) resource.Key {
	return resource.Key{Type: typ, Mesh: "default", Name: name}
}

func str(s string) *string { return &s }
