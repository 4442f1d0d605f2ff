package xds

import (
	"testing"
	"time"

	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	discoveryv3 "github.com/envoyproxy/go-control-plane/envoy/service/discovery/v3"
	rpcstatus "google.golang.org/genproto/googleapis/rpc/status"
)

func TestSessionsTrackConnections(t *testing.T) {
	s := newSessions("west")
	t0 := time.Date(2026, 11, 1, 0, 0, 0, 0, time.UTC)
	node := &corev3.Node{Id: "default.a"}
	s.request(1, &discoveryv3.DiscoveryRequest{Node: node}, t0)
	s.response(1, t0.Add(time.Second))
	s.request(1, &discoveryv3.DiscoveryRequest{ResponseNonce: "1", VersionInfo: "v1"}, t0) // later requests carry no node
	s.response(1, t0.Add(2*time.Second))
	s.request(1, &discoveryv3.DiscoveryRequest{ResponseNonce: "2", VersionInfo: "v1", ErrorDetail: &rpcstatus.Status{Message: "bad"}}, t0)

	st := s.snapshot()["default.a"]
	if !st.Online || st.ControlPlane != "west" || st.Sent != 2 || st.Acked != 1 || st.Rejected != 1 ||
		st.AckedVersion != "v1" || !st.ConnectedTime.Equal(t0) || !st.LastUpdateTime.Equal(t0.Add(2*time.Second)) {
		t.Fatalf("after one ACK and one NACK: %+v", st)
	}

	// The proxy reconnects on stream 2 before stream 1 is seen closing: the
	// late close must not mark it offline.
	s.request(2, &discoveryv3.DiscoveryRequest{Node: node}, t0.Add(time.Minute))
	s.closed(1, t0.Add(time.Minute))
	st = s.snapshot()["default.a"]
	if !st.Online || st.Sent != 0 || !st.ConnectedTime.Equal(t0.Add(time.Minute)) {
		t.Fatalf("after reconnect: %+v", st)
	}
	s.closed(2, t0.Add(2*time.Minute))
	st = s.snapshot()["default.a"]
	if st.Online || !st.DisconnectedTime.Equal(t0.Add(2*time.Minute)) {
		t.Fatalf("after close: %+v", st)
	}
	s.forget(func(string) bool { return true })
	if len(s.snapshot()) != 1 {
		t.Fatal("forget dropped a proxy to keep")
	}
	s.forget(func(string) bool { return false })
	if len(s.snapshot()) != 0 || len(s.node) != 0 {
		t.Fatalf("forget kept %v %v", s.snapshot(), s.node)
	}
}
