package testcluster

import (
	"context"
	"fmt"
	"sort"
	"strings"
	"sync"
	"testing"
	"time"

	clusterv3 "github.com/envoyproxy/go-control-plane/envoy/config/cluster/v3"
	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	listenerv3 "github.com/envoyproxy/go-control-plane/envoy/config/listener/v3"
	discoveryv3 "github.com/envoyproxy/go-control-plane/envoy/service/discovery/v3"
	resourcev3 "github.com/envoyproxy/go-control-plane/pkg/resource/v3"
	rpcstatus "google.golang.org/genproto/googleapis/rpc/status"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
)

// Envoy stands in for an Envoy proxy: one ADS stream, CDS and LDS
// subscriptions, every response validated and ACKed (NACKed when invalid).
type Envoy struct {
	Node string

	mu       sync.Mutex
	clusters map[string]bool
	versions map[string]string
	nacks    int
	changed  chan struct{}
}

// ConnectEnvoy opens the ADS stream to a zone's xDS address; it closes when
// the test ends.
func ConnectEnvoy(tb testing.TB, addr, nodeID string) *Envoy {
	tb.Helper()
	conn, err := grpc.NewClient(addr, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		tb.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	tb.Cleanup(func() { cancel(); conn.Close() })
	stream, err := discoveryv3.NewAggregatedDiscoveryServiceClient(conn).StreamAggregatedResources(ctx)
	if err != nil {
		tb.Fatal(err)
	}
	e := &Envoy{Node: nodeID, clusters: map[string]bool{}, versions: map[string]string{}, changed: make(chan struct{})}
	node := &corev3.Node{Id: nodeID, Cluster: nodeID}
	for _, typ := range []string{resourcev3.ClusterType, resourcev3.ListenerType} {
		if err := stream.Send(&discoveryv3.DiscoveryRequest{Node: node, TypeUrl: typ}); err != nil {
			tb.Fatal(err)
		}
	}
	go func() {
		for {
			resp, err := stream.Recv()
			if err != nil {
				return
			}
			req := &discoveryv3.DiscoveryRequest{Node: node, TypeUrl: resp.GetTypeUrl(), ResponseNonce: resp.GetNonce()}
			if verr := e.apply(resp); verr != nil {
				req.ErrorDetail = &rpcstatus.Status{Code: 3, Message: verr.Error()}
				e.mu.Lock()
				req.VersionInfo = e.versions[resp.GetTypeUrl()]
				e.mu.Unlock()
			} else {
				req.VersionInfo = resp.GetVersionInfo()
			}
			if err := stream.Send(req); err != nil {
				return
			}
		}
	}()
	return e
}

func (e *Envoy) apply(resp *discoveryv3.DiscoveryResponse) error {
	clusters := map[string]bool{}
	for _, a := range resp.GetResources() {
		switch resp.GetTypeUrl() {
		case resourcev3.ClusterType:
			var c clusterv3.Cluster
			if err := a.UnmarshalTo(&c); err != nil {
				return err
			}
			if err := c.ValidateAll(); err != nil {
				return err
			}
			clusters[c.GetName()] = true
		case resourcev3.ListenerType:
			var l listenerv3.Listener
			if err := a.UnmarshalTo(&l); err != nil {
				return err
			}
			if err := l.ValidateAll(); err != nil {
				return err
			}
		}
	}
	e.mu.Lock()
	defer e.mu.Unlock()
	if resp.GetTypeUrl() == resourcev3.ClusterType {
		e.clusters = clusters
	}
	e.versions[resp.GetTypeUrl()] = resp.GetVersionInfo()
	close(e.changed)
	e.changed = make(chan struct{})
	return nil
}

// Changed is closed at the next accepted response.
func (e *Envoy) Changed() <-chan struct{} {
	e.mu.Lock()
	defer e.mu.Unlock()
	return e.changed
}

// Collectors returns the names of the tracing collector clusters it has.
func (e *Envoy) Collectors() []string {
	e.mu.Lock()
	defer e.mu.Unlock()
	var out []string
	for name := range e.clusters {
		if strings.HasPrefix(name, "meshtrace:") {
			out = append(out, name)
		}
	}
	sort.Strings(out)
	return out
}

// WaitCollectors waits until the collector clusters are exactly want.
func (e *Envoy) WaitCollectors(tb testing.TB, timeout time.Duration, want ...string) {
	tb.Helper()
	sort.Strings(want)
	Eventually(tb, timeout, func() error {
		got := e.Collectors()
		if fmt.Sprint(got) != fmt.Sprint(want) {
			return fmt.Errorf("%s collectors %v, want %v", e.Node, got, want)
		}
		return nil
	})
}
