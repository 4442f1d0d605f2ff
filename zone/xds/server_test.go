package xds

import (
	"context"
	"net"
	"testing"
	"time"

	clusterv3 "github.com/envoyproxy/go-control-plane/envoy/config/cluster/v3"
	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	endpointv3 "github.com/envoyproxy/go-control-plane/envoy/config/endpoint/v3"
	listenerv3 "github.com/envoyproxy/go-control-plane/envoy/config/listener/v3"
	discoveryv3 "github.com/envoyproxy/go-control-plane/envoy/service/discovery/v3"
	resourcev3 "github.com/envoyproxy/go-control-plane/pkg/resource/v3"
	"github.com/hashicorp/go-hclog"
	"google.golang.org/genproto/googleapis/rpc/status"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/protobuf/proto"

	"github.com/meshtrace/meshtrace/resource"
)

// envoyStub speaks the xDS protocol on one ADS stream the way Envoy does.
type envoyStub struct {
	t      *testing.T
	stream discoveryv3.AggregatedDiscoveryService_StreamAggregatedResourcesClient
	node   *corev3.Node
	resps  chan *discoveryv3.DiscoveryResponse
}

func newEnvoyStub(t *testing.T, ctx context.Context, addr, nodeID string) *envoyStub {
	conn, err := grpc.NewClient(addr, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() })
	stream, err := discoveryv3.NewAggregatedDiscoveryServiceClient(conn).StreamAggregatedResources(ctx)
	if err != nil {
		t.Fatal(err)
	}
	e := &envoyStub{t: t, stream: stream, node: &corev3.Node{Id: nodeID, Cluster: "backend"},
		resps: make(chan *discoveryv3.DiscoveryResponse, 16)}
	go func() {
		defer close(e.resps)
		for {
			r, err := stream.Recv()
			if err != nil {
				return
			}
			e.resps <- r
		}
	}()
	return e
}

func (e *envoyStub) send(typeURL, version, nonce string, nack string) {
	e.t.Helper()
	req := &discoveryv3.DiscoveryRequest{Node: e.node, TypeUrl: typeURL, VersionInfo: version, ResponseNonce: nonce}
	if nack != "" {
		req.ErrorDetail = &status.Status{Code: 3, Message: nack}
	}
	if err := e.stream.Send(req); err != nil {
		e.t.Fatal(err)
	}
}

// request asks for resources of typeURL (all when names is empty).
func (e *envoyStub) request(typeURL string, names []string) *discoveryv3.DiscoveryRequest {
	e.t.Helper()
	req := &discoveryv3.DiscoveryRequest{Node: e.node, TypeUrl: typeURL, ResourceNames: names}
	if err := e.stream.Send(req); err != nil {
		e.t.Fatal(err)
	}
	return req
}

func (e *envoyStub) recv() *discoveryv3.DiscoveryResponse {
	e.t.Helper()
	select {
	case r, ok := <-e.resps:
		if !ok {
			e.t.Fatal("stream closed")
		}
		for _, a := range r.GetResources() {
			var m proto.Message
			switch r.GetTypeUrl() {
			case resourcev3.ClusterType:
				m = &clusterv3.Cluster{}
			case resourcev3.ListenerType:
				m = &listenerv3.Listener{}
			case resourcev3.EndpointType:
				m = &endpointv3.ClusterLoadAssignment{}
			default:
				continue
			}
			if err := a.UnmarshalTo(m); err != nil {
				e.t.Fatal(err)
			}
			validateDeep(e.t, m)
		}
		return r
	case <-time.After(10 * time.Second):
		e.t.Fatal("no response within 10s")
	}
	return nil
}

// ack acknowledges r, as Envoy does after applying it.
func (e *envoyStub) ack(r *discoveryv3.DiscoveryResponse) {
	e.send(r.GetTypeUrl(), r.GetVersionInfo(), r.GetNonce(), "")
}

func names(t *testing.T, r *discoveryv3.DiscoveryResponse) map[string]bool {
	out := map[string]bool{}
	for _, a := range r.GetResources() {
		switch r.GetTypeUrl() {
		case resourcev3.ClusterType:
			var c clusterv3.Cluster
			if err := a.UnmarshalTo(&c); err != nil {
				t.Fatal(err)
			}
			out[c.GetName()] = true
		case resourcev3.ListenerType:
			var l listenerv3.Listener
			if err := a.UnmarshalTo(&l); err != nil {
				t.Fatal(err)
			}
			out[l.GetName()] = true
		}
	}
	return out
}

func TestADS(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	log := hclog.New(&hclog.LoggerOptions{Level: hclog.Warn, Output: testWriter{t}})
	srv := NewServer(log, WithStopTimeout(2*time.Second))
	rec, err := NewReconciler(log, srv.Cache(), nil)
	if err != nil {
		t.Fatal(err)
	}
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	runErr := make(chan error, 1)
	go func() { runErr <- srv.Run(ctx, lis) }()

	dp := sidecar("backend-1", "backend", nil, "web")
	if err := rec.Update(ctx, []*resource.Resource{dp}, []*resource.Resource{
		meshTrace("default", meshRef(), withZipkin("http://zipkin-a:9411/api/v2/spans")),
	}); err != nil {
		t.Fatal(err)
	}

	streamCtx, streamCancel := context.WithCancel(ctx)
	defer streamCancel()
	envoy := newEnvoyStub(t, streamCtx, lis.Addr().String(), "default.backend-1")

	// Envoy asks for clusters first, then listeners, ACKing each.
	envoy.send(resourcev3.ClusterType, "", "", "")
	cds := envoy.recv()
	if cds.GetTypeUrl() != resourcev3.ClusterType || !names(t, cds)["meshtrace:zipkin:zipkin-a_9411"] {
		t.Fatalf("CDS %s: %v", cds.GetTypeUrl(), names(t, cds))
	}
	v1 := cds.GetVersionInfo()
	envoy.ack(cds)
	// EDS clusters make Envoy ask for their load assignments by name.
	eds := &discoveryv3.DiscoveryRequest{Node: envoy.node, TypeUrl: resourcev3.EndpointType, ResourceNames: []string{"web"}}
	if err := envoy.stream.Send(eds); err != nil {
		t.Fatal(err)
	}
	if r := envoy.recv(); r.GetTypeUrl() != resourcev3.EndpointType || len(r.GetResources()) != 1 {
		t.Fatalf("EDS response %s with %d resources", r.GetTypeUrl(), len(r.GetResources()))
	} else {
		eds.VersionInfo, eds.ResponseNonce = r.GetVersionInfo(), r.GetNonce()
		if err := envoy.stream.Send(eds); err != nil {
			t.Fatal(err)
		}
	}
	envoy.send(resourcev3.ListenerType, "", "", "")
	lds := envoy.recv()
	if lds.GetTypeUrl() != resourcev3.ListenerType || !names(t, lds)["inbound:192.168.0.2:8080"] || !names(t, lds)["outbound:127.0.0.1:10001"] {
		t.Fatalf("LDS %s: %v", lds.GetTypeUrl(), names(t, lds))
	}
	envoy.ack(lds)

	// A policy change reaches the proxy as a new version.
	if err := rec.Upsert(ctx, meshTrace("default", meshRef(), withZipkin("http://zipkin-b:9411/api/v2/spans"))); err != nil {
		t.Fatal(err)
	}
	got := map[string]*discoveryv3.DiscoveryResponse{}
	for got[resourcev3.ClusterType] == nil || got[resourcev3.ListenerType] == nil {
		r := envoy.recv()
		got[r.GetTypeUrl()] = r
		if r.GetTypeUrl() == resourcev3.EndpointType {
			eds.VersionInfo, eds.ResponseNonce = r.GetVersionInfo(), r.GetNonce()
			if err := envoy.stream.Send(eds); err != nil {
				t.Fatal(err)
			}
		}
	}
	cds2 := got[resourcev3.ClusterType]
	if cds2.GetVersionInfo() == v1 || !names(t, cds2)["meshtrace:zipkin:zipkin-b_9411"] || names(t, cds2)["meshtrace:zipkin:zipkin-a_9411"] {
		t.Fatalf("CDS after change: version %s, %v", cds2.GetVersionInfo(), names(t, cds2))
	}
	envoy.ack(got[resourcev3.ListenerType])

	// Envoy rejects the clusters: the server records the NACK and keeps serving.
	envoy.send(resourcev3.ClusterType, v1, cds2.GetNonce(), "cluster rejected for the test")
	deadline := time.Now().Add(5 * time.Second)
	for len(srv.NACKs()) == 0 && time.Now().Before(deadline) {
		time.Sleep(10 * time.Millisecond)
	}
	nacks := srv.NACKs()
	if len(nacks) != 1 || nacks[0].Node != "default.backend-1" || nacks[0].Reason != "cluster rejected for the test" {
		t.Fatalf("NACKs %+v", nacks)
	}
	// A fixed policy is still delivered after the NACK.
	if err := rec.Upsert(ctx, meshTrace("default", meshRef(), withZipkin("http://zipkin-c:9411/api/v2/spans"))); err != nil {
		t.Fatal(err)
	}
	for {
		r := envoy.recv()
		if r.GetTypeUrl() == resourcev3.EndpointType {
			eds.VersionInfo, eds.ResponseNonce = r.GetVersionInfo(), r.GetNonce()
			if err := envoy.stream.Send(eds); err != nil {
				t.Fatal(err)
			}
			continue
		}
		envoy.ack(r)
		if r.GetTypeUrl() == resourcev3.ClusterType && names(t, r)["meshtrace:zipkin:zipkin-c_9411"] {
			break
		}
	}

	streamCancel()
	cancel()
	select {
	case err := <-runErr:
		if err != nil {
			t.Fatalf("Run: %v", err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("Run did not return after cancel")
	}
}

type testWriter struct{ t *testing.T }

func (w testWriter) Write(p []byte) (int, error) {
	w.t.Log(string(p))
	return len(p), nil
}
