package xds

import (
	"fmt"
	"maps"
	"sync"
	"time"

	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	discoveryv3 "github.com/envoyproxy/go-control-plane/envoy/service/discovery/v3"

	"github.com/meshtrace/meshtrace/resource"
)

// sessions tracks every proxy's xDS connection by node id, for the
// DataplaneInsight kumactl shows (online, connected since, responses sent,
// ACKed and rejected, last ACKed version). A proxy that disconnects stays,
// offline, until it reconnects or Forget is called.
type sessions struct {
	instance string

	mu     sync.Mutex
	node   map[int64]string // stream id -> node id, learnt from the first request
	byNode map[string]*session
}

type session struct {
	stream int64 // the stream now serving the node
	status resource.ProxyXDS
}

func newSessions(instance string) *sessions {
	return &sessions{instance: instance, node: map[int64]string{}, byNode: map[string]*session{}}
}

func (s *sessions) request(stream int64, req *discoveryv3.DiscoveryRequest, now time.Time) {
	s.mu.Lock()
	defer s.mu.Unlock()
	id, known := s.node[stream]
	if !known {
		id = req.GetNode().GetId()
		if id == "" {
			return
		}
		s.node[stream] = id
		ss := &session{stream: stream, status: resource.ProxyXDS{
			Online: true, ControlPlane: s.instance, ConnectedTime: now.UTC(),
			EnvoyVersion: envoyVersion(req.GetNode()),
		}}
		s.byNode[id] = ss
	}
	ss := s.byNode[id]
	if ss == nil || ss.stream != stream || req.GetResponseNonce() == "" {
		return
	}
	if req.GetErrorDetail() != nil {
		ss.status.Rejected++
		return
	}
	ss.status.Acked++
	ss.status.AckedVersion = req.GetVersionInfo()
}

func (s *sessions) response(stream int64, now time.Time) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if ss := s.byNode[s.node[stream]]; ss != nil && ss.stream == stream {
		ss.status.Sent++
		ss.status.LastUpdateTime = now.UTC()
	}
}

func (s *sessions) closed(stream int64, now time.Time) {
	s.mu.Lock()
	defer s.mu.Unlock()
	id := s.node[stream]
	delete(s.node, stream)
	if ss := s.byNode[id]; ss != nil && ss.stream == stream {
		ss.status.Online = false
		ss.status.DisconnectedTime = now.UTC()
	}
}

func (s *sessions) snapshot() map[string]resource.ProxyXDS {
	s.mu.Lock()
	defer s.mu.Unlock()
	out := make(map[string]resource.ProxyXDS, len(s.byNode))
	for id, ss := range s.byNode {
		out[id] = ss.status
	}
	return out
}

func (s *sessions) forget(keep func(node string) bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	maps.DeleteFunc(s.byNode, func(id string, ss *session) bool { return !ss.status.Online && !keep(id) })
}

// envoyVersion is the Envoy build version a node reports, if any.
func envoyVersion(n *corev3.Node) string {
	if v := n.GetUserAgentBuildVersion().GetVersion(); v != nil {
		return versionString(v.GetMajorNumber(), v.GetMinorNumber(), v.GetPatch())
	}
	return n.GetUserAgentVersion()
}

func versionString(major, minor, patch uint32) string {
	return fmt.Sprintf("%d.%d.%d", major, minor, patch)
}

// ProxyStatuses returns every proxy's xDS connection by node id
// (<mesh>.<dataplane name>), including proxies that disconnected.
func (s *Server) ProxyStatuses() map[string]resource.ProxyXDS { return s.sessions.snapshot() }

// WithInstance names the control plane instance proxies' statuses report
// (default: the host name).
func WithInstance(name string) Option { return func(s *Server) { s.sessions.instance = name } }

// ForgetOfflineProxies drops the status of disconnected proxies for which
// keep returns false (e.g. whose Dataplane was deleted).
func (s *Server) ForgetOfflineProxies(keep func(node string) bool) { s.sessions.forget(keep) }
