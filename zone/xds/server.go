package xds

import (
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"sort"
	"sync"
	"time"

	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	discoveryv3 "github.com/envoyproxy/go-control-plane/envoy/service/discovery/v3"
	"github.com/envoyproxy/go-control-plane/pkg/cache/v3"
	serverv3 "github.com/envoyproxy/go-control-plane/pkg/server/v3"
	"github.com/hashicorp/go-hclog"
	"github.com/prometheus/client_golang/prometheus"
	"google.golang.org/grpc"
)

// DefaultStopTimeout bounds the graceful stop of the gRPC server.
const DefaultStopTimeout = 5 * time.Second

// NACK is the last configuration a proxy rejected.
type NACK struct {
	Node    string    `json:"node"`
	TypeURL string    `json:"typeUrl"`
	Version string    `json:"version"` // the version the proxy still runs
	Nonce   string    `json:"nonce"`
	Reason  string    `json:"reason"`
	Time    time.Time `json:"time"`
}

// Server serves a snapshot cache to Envoy proxies over ADS (node id
// <mesh>.<dataplane name>) on a gRPC server.
type Server struct {
	log         hclog.Logger
	cache       cache.SnapshotCache
	stopTimeout time.Duration
	grpcOpts    []grpc.ServerOption
	nacks       prometheus.Counter
	streams     prometheus.Gauge
	ackLatency  prometheus.Histogram

	sessions *sessions

	mu       sync.Mutex
	lastNACK map[string]NACK
	acked    map[ackKey]string     // last version each node ACKed, per type
	sent     map[sentKey]time.Time // responses awaiting their ACK
}

type ackKey struct{ node, typeURL string }

// sentKey names one response on one stream.
type sentKey struct {
	stream int64
	nonce  string
}

// Option configures a Server.
type Option func(*Server)

// WithRegisterer registers the server's metrics with reg.
func WithRegisterer(reg prometheus.Registerer) Option {
	return func(s *Server) {
		if reg == nil {
			return
		}
		for _, c := range []prometheus.Collector{s.nacks, s.streams, s.ackLatency} {
			if err := reg.Register(c); err != nil {
				s.log.Warn("cannot register metric", "error", err)
			}
		}
	}
}

// WithStopTimeout sets how long Run waits for streams to end before it stops
// the gRPC server hard.
func WithStopTimeout(d time.Duration) Option { return func(s *Server) { s.stopTimeout = d } }

// WithGRPCOptions adds gRPC server options (TLS credentials, keepalive, ...).
func WithGRPCOptions(opts ...grpc.ServerOption) Option {
	return func(s *Server) { s.grpcOpts = append(s.grpcOpts, opts...) }
}

// AddGRPCOptions adds gRPC server options before Run (e.g. those of the
// listener it will serve on).
func (s *Server) AddGRPCOptions(opts ...grpc.ServerOption) {
	s.grpcOpts = append(s.grpcOpts, opts...)
}

// NewServer returns a Server with an empty ADS snapshot cache keyed by node id.
func NewServer(logger hclog.Logger, opts ...Option) *Server {
	if logger == nil {
		logger = hclog.NewNullLogger()
	}
	s := &Server{
		log:         logger.Named("xds"),
		stopTimeout: DefaultStopTimeout,
		nacks: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "meshtrace_xds_nacks_total",
			Help: "xDS responses rejected by proxies.",
		}),
		ackLatency: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name:    "meshtrace_xds_ack_latency_seconds",
			Help:    "Time from an xDS response to the proxy's ACK or NACK of it.",
			Buckets: prometheus.ExponentialBuckets(0.0005, 2, 16),
		}),
		sent: map[sentKey]time.Time{},
		streams: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "meshtrace_xds_streams",
			Help: "Open xDS streams.",
		}),
		lastNACK: map[string]NACK{},
		acked:    map[ackKey]string{},
	}
	host, _ := os.Hostname()
	s.sessions = newSessions(host)
	s.cache = cache.NewSnapshotCache(true, cache.IDHash{}, cacheLogger{s.log.Named("cache")})
	for _, o := range opts {
		o(s)
	}
	return s
}

// Cache returns the snapshot cache the server serves; give it to NewReconciler.
func (s *Server) Cache() cache.SnapshotCache { return s.cache }

// NACKs returns the last rejection of each proxy that rejected something, by node id.
func (s *Server) NACKs() []NACK {
	s.mu.Lock()
	defer s.mu.Unlock()
	out := make([]NACK, 0, len(s.lastNACK))
	for _, n := range s.lastNACK {
		out = append(out, n)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Node < out[j].Node })
	return out
}

func (s *Server) callbacks() serverv3.Callbacks {
	return serverv3.CallbackFuncs{
		StreamOpenFunc: func(_ context.Context, id int64, typeURL string) error {
			s.streams.Inc()
			s.log.Debug("stream opened", "stream", id, "type", typeURL)
			return nil
		},
		StreamResponseFunc: func(_ context.Context, id int64, _ *discoveryv3.DiscoveryRequest, resp *discoveryv3.DiscoveryResponse) {
			s.mu.Lock()
			s.sent[sentKey{id, resp.GetNonce()}] = time.Now()
			s.mu.Unlock()
			s.sessions.response(id, time.Now())
		},
		StreamClosedFunc: func(id int64, node *corev3.Node) {
			s.streams.Dec()
			s.mu.Lock()
			for k := range s.sent {
				if k.stream == id {
					delete(s.sent, k)
				}
			}
			s.mu.Unlock()
			s.sessions.closed(id, time.Now())
			s.log.Debug("stream closed", "stream", id, "node", node.GetId())
		},
		StreamRequestFunc: func(id int64, req *discoveryv3.DiscoveryRequest) error {
			s.sessions.request(id, req, time.Now())
			if nonce := req.GetResponseNonce(); nonce != "" {
				s.mu.Lock()
				if at, ok := s.sent[sentKey{id, nonce}]; ok {
					delete(s.sent, sentKey{id, nonce})
					s.ackLatency.Observe(time.Since(at).Seconds())
				}
				s.mu.Unlock()
			}
			if req.GetErrorDetail() == nil {
				if req.GetResponseNonce() != "" {
					s.mu.Lock()
					s.acked[ackKey{req.GetNode().GetId(), req.GetTypeUrl()}] = req.GetVersionInfo()
					s.mu.Unlock()
				}
				return nil
			}
			n := NACK{
				Node:    req.GetNode().GetId(),
				TypeURL: req.GetTypeUrl(),
				Version: req.GetVersionInfo(),
				Nonce:   req.GetResponseNonce(),
				Reason:  req.GetErrorDetail().GetMessage(),
				Time:    time.Now(),
			}
			s.nacks.Inc()
			s.log.Warn("proxy rejected configuration", "node", n.Node, "type", n.TypeURL,
				"version", n.Version, "reason", n.Reason)
			s.mu.Lock()
			s.lastNACK[n.Node] = n
			s.mu.Unlock()
			return nil
		},
	}
}

// ACKed returns the last version of typeURL the proxy node acknowledged.
func (s *Server) ACKed(node, typeURL string) (string, bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	v, ok := s.acked[ackKey{node, typeURL}]
	return v, ok
}

// Run serves ADS on lis until ctx ends, then stops gracefully: open streams
// get the stop timeout to finish before the server stops hard. It returns nil
// after a stop caused by ctx, else the serve error.
func (s *Server) Run(ctx context.Context, lis net.Listener) error {
	gs := grpc.NewServer(s.grpcOpts...)
	xs := serverv3.NewServer(ctx, s.cache, s.callbacks())
	discoveryv3.RegisterAggregatedDiscoveryServiceServer(gs, xs)

	errc := make(chan error, 1)
	go func() { errc <- gs.Serve(lis) }()
	s.log.Info("serving xDS", "address", lis.Addr().String())

	select {
	case err := <-errc:
		if err != nil && !errors.Is(err, grpc.ErrServerStopped) {
			return fmt.Errorf("xds: serve: %w", err)
		}
		return nil
	case <-ctx.Done():
	}
	done := make(chan struct{})
	go func() {
		gs.GracefulStop()
		close(done)
	}()
	timer := time.NewTimer(s.stopTimeout)
	defer timer.Stop()
	select {
	case <-done:
	case <-timer.C:
		s.log.Warn("graceful stop timed out, stopping")
		gs.Stop()
		<-done
	}
	<-errc
	return nil
}

// cacheLogger adapts hclog to go-control-plane's logger.
type cacheLogger struct{ l hclog.Logger }

func (c cacheLogger) Debugf(format string, args ...any) {
	if c.l.IsTrace() {
		c.l.Trace(fmt.Sprintf(format, args...))
	}
}

func (c cacheLogger) Infof(format string, args ...any) {
	if c.l.IsDebug() {
		c.l.Debug(fmt.Sprintf(format, args...))
	}
}

func (c cacheLogger) Warnf(format string, args ...any)  { c.l.Warn(fmt.Sprintf(format, args...)) }
func (c cacheLogger) Errorf(format string, args ...any) { c.l.Error(fmt.Sprintf(format, args...)) }
