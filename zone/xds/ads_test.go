package xds

import (
	"context"
	"net"
	"strconv"
	"sync/atomic"
	"testing"
	"time"

	"github.com/envoyproxy/go-control-plane/pkg/cache/v3"
	resourcev3 "github.com/envoyproxy/go-control-plane/pkg/resource/v3"
	"github.com/hashicorp/go-hclog"

	"github.com/meshtrace/meshtrace/resource"
)

// adsHarness is a real ADS server on a loopback port that golden snapshots
// are served through.
type adsHarness struct {
	srv  *Server
	addr string
	ctx  context.Context
	seq  atomic.Int64
}

func startADS(t *testing.T) *adsHarness {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	log := hclog.New(&hclog.LoggerOptions{Level: hclog.Warn, Output: testWriter{t}})
	srv := NewServer(log, WithStopTimeout(time.Second))
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- srv.Run(ctx, lis) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("ADS server: %v", err)
		}
	})
	return &adsHarness{srv: srv, addr: lis.Addr().String(), ctx: ctx}
}

// serveAndACK serves snap to a fresh Envoy stand-in for dp, which asks for
// clusters, then the load assignments of its EDS clusters, then listeners,
// validating each resource (ValidateAll, Any contents included) and ACKing
// each response. The server must record an ACK of every version and no NACK.
func (a *adsHarness) serveAndACK(t *testing.T, dp *resource.Resource, snap *cache.Snapshot) {
	t.Helper()
	node := NodeID(dp.Mesh, dp.Name) + "." + strconv.FormatInt(a.seq.Add(1), 10)
	if err := a.srv.Cache().SetSnapshot(a.ctx, node, snap); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(a.ctx)
	defer cancel()
	envoy := newEnvoyStub(t, ctx, a.addr, node)
	fetch := func(typeURL string, names []string) {
		t.Helper()
		req := envoy.request(typeURL, names)
		r := envoy.recv()
		if r.GetTypeUrl() != typeURL || r.GetVersionInfo() != snap.GetVersion(typeURL) || len(r.GetResources()) != len(snap.GetResources(typeURL)) {
			t.Fatalf("%s: got %s version %s with %d resources, snapshot has version %s with %d", typeURL, r.GetTypeUrl(),
				r.GetVersionInfo(), len(r.GetResources()), snap.GetVersion(typeURL), len(snap.GetResources(typeURL)))
		}
		req.VersionInfo, req.ResponseNonce = r.GetVersionInfo(), r.GetNonce()
		if err := envoy.stream.Send(req); err != nil {
			t.Fatal(err)
		}
	}
	fetch(resourcev3.ClusterType, nil)
	var eds []string
	for name := range snap.GetResources(resourcev3.EndpointType) {
		eds = append(eds, name)
	}
	if len(eds) > 0 {
		fetch(resourcev3.EndpointType, eds)
	}
	fetch(resourcev3.ListenerType, nil)
	types := []string{resourcev3.ClusterType, resourcev3.ListenerType}
	if len(eds) > 0 {
		types = append(types, resourcev3.EndpointType)
	}
	deadline := time.Now().Add(10 * time.Second)
	for _, typ := range types {
		for {
			if v, ok := a.srv.ACKed(node, typ); ok && v == snap.GetVersion(typ) {
				break
			}
			if time.Now().After(deadline) {
				t.Fatalf("%s: the server saw no ACK of version %s", typ, snap.GetVersion(typ))
			}
			time.Sleep(5 * time.Millisecond)
		}
	}
	for _, n := range a.srv.NACKs() {
		if n.Node == node {
			t.Fatalf("NACK: %+v", n)
		}
	}
}
