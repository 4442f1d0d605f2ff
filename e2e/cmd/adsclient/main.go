// Command adsclient stands in for Envoy in the e2e suite. It opens an ADS
// stream to a zone control plane with node id "<mesh>.<dataplane>", subscribes
// to clusters and listeners, and, as Envoy does, to the load assignments of
// its EDS clusters once it has them; it validates and ACKs (or NACKs) every
// response, keeps its last accepted configuration across disconnects, and
// serves a summary of that configuration on GET /config. POST /emit posts a
// span from every HTTP listener that traces, to the collector its cluster
// resolves to.
package main

import (
	"bytes"
	"context"
	"crypto/tls"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"log"
	"net"
	"net/http"
	"os"
	"os/signal"
	"slices"
	"sort"
	"strconv"
	"sync"
	"syscall"
	"time"

	clusterv3 "github.com/envoyproxy/go-control-plane/envoy/config/cluster/v3"
	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	endpointv3 "github.com/envoyproxy/go-control-plane/envoy/config/endpoint/v3"
	listenerv3 "github.com/envoyproxy/go-control-plane/envoy/config/listener/v3"
	tracev3 "github.com/envoyproxy/go-control-plane/envoy/config/trace/v3"
	hcmv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/network/http_connection_manager/v3"
	tcpproxyv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/network/tcp_proxy/v3"
	upstreamhttpv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/upstreams/http/v3"
	discoveryv3 "github.com/envoyproxy/go-control-plane/envoy/service/discovery/v3"
	rpcstatus "google.golang.org/genproto/googleapis/rpc/status"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/anypb"
)

const (
	typeCluster  = "type.googleapis.com/envoy.config.cluster.v3.Cluster"
	typeListener = "type.googleapis.com/envoy.config.listener.v3.Listener"
	typeEndpoint = "type.googleapis.com/envoy.config.endpoint.v3.ClusterLoadAssignment"
)

// Config is the body of GET /config.
type Config struct {
	Node      string `json:"node"`
	Connected bool   `json:"connected"`
	// Streams counts ADS streams opened successfully, reconnects included.
	Streams int `json:"streams"`
	// Versions is the last accepted version_info per type URL.
	Versions     map[string]string `json:"versions"`
	ClusterNames []string          `json:"clusterNames"`
	Clusters     []Cluster         `json:"clusters"`
	Listeners    []Listener        `json:"listeners"`
	ACKs         int               `json:"acks"`
	NACKs        int               `json:"nacks"`
	LastNACK     string            `json:"lastNack,omitempty"`
	LastError    string            `json:"lastError,omitempty"`
	UpdatedAt    time.Time         `json:"updatedAt,omitzero"`
}

// Cluster is one accepted cluster.
type Cluster struct {
	Name string `json:"name"`
	// EDS is set for clusters whose endpoints come over EDS.
	EDS bool `json:"eds,omitempty"`
	// HTTP2 is set when the cluster speaks HTTP/2 upstream.
	HTTP2 bool `json:"http2,omitempty"`
	// Endpoints are the "host:port" addresses it resolves to: its inline
	// load assignment, or for EDS clusters the last accepted one.
	Endpoints []string `json:"endpoints,omitempty"`
}

// Listener is one accepted listener and the tracing found on its HTTP
// connection managers.
type Listener struct {
	Name string `json:"name"`
	// Provider is the tracer name of the first connection manager with
	// tracing, e.g. envoy.tracers.zipkin; empty when none traces.
	Provider string `json:"provider,omitempty"`
	// CollectorCluster is that tracer's collector cluster.
	CollectorCluster string `json:"collectorCluster,omitempty"`
	// Tracers lists every (provider, cluster) pair found on the listener.
	Tracers []Tracer `json:"tracers,omitempty"`
	// HTTP reports whether any filter chain has an HTTP connection manager.
	HTTP bool `json:"http"`
	// TCPProxy reports whether any filter chain has a tcp_proxy.
	TCPProxy bool `json:"tcpProxy,omitempty"`
	// Clusters are the clusters its routes or tcp_proxy forward to.
	Clusters []string `json:"clusters,omitempty"`
}

// Tracer is the tracing provider of one connection manager.
type Tracer struct {
	Provider         string `json:"provider"`
	CollectorCluster string `json:"collectorCluster,omitempty"`
	// CollectorEndpoint is the Zipkin API path spans are posted to.
	CollectorEndpoint string `json:"collectorEndpoint,omitempty"`
}

type state struct {
	mu  sync.Mutex
	cfg Config
	eds map[string][]string // EDS cluster -> endpoints of its load assignment
}

func (s *state) update(f func(c *Config)) {
	s.mu.Lock()
	defer s.mu.Unlock()
	f(&s.cfg)
}

func (s *state) snapshot() Config {
	s.mu.Lock()
	defer s.mu.Unlock()
	c := s.cfg
	c.Versions = map[string]string{}
	for k, v := range s.cfg.Versions {
		c.Versions[k] = v
	}
	c.Clusters = append([]Cluster(nil), s.cfg.Clusters...)
	for i, cl := range c.Clusters {
		if cl.EDS {
			c.Clusters[i].Endpoints = s.eds[cl.Name]
		}
	}
	return c
}

func main() {
	var (
		xds      = flag.String("xds", "zone-cp:5678", "zone control plane ADS address host:port")
		node     = flag.String("node", "", "node id, <mesh>.<dataplane>")
		listen   = flag.String("listen", ":9901", "address of the /config HTTP server")
		useTLS   = flag.Bool("tls", false, "connect with TLS (certificate not verified)")
		cluster  = flag.String("cluster", "", "node cluster (service name), optional")
		maxRetry = flag.Duration("max-backoff", 2*time.Second, "longest wait between reconnects")
	)
	flag.Parse()
	if *node == "" {
		log.Fatal("--node is required")
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()

	st := &state{cfg: Config{Node: *node, Versions: map[string]string{}}, eds: map[string][]string{}}
	srv := &http.Server{Addr: *listen, Handler: handler(st), ReadHeaderTimeout: 10 * time.Second}
	go func() {
		if err := srv.ListenAndServe(); err != nil && !errors.Is(err, http.ErrServerClosed) {
			log.Fatal(err)
		}
	}()
	c := &client{addr: *xds, node: &corev3.Node{Id: *node, Cluster: *cluster}, tls: *useTLS, st: st, maxBackoff: *maxRetry}
	c.run(ctx)
	shutdown, cancel := context.WithTimeout(context.Background(), 3*time.Second)
	defer cancel()
	_ = srv.Shutdown(shutdown)
}

func handler(st *state) http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("GET /healthz", func(w http.ResponseWriter, _ *http.Request) {
		_, _ = io.WriteString(w, "ok\n")
	})
	mux.HandleFunc("GET /config", func(w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		_ = json.NewEncoder(w).Encode(st.snapshot())
	})
	mux.HandleFunc("POST /emit", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		_ = json.NewEncoder(w).Encode(emit(r.Context(), st.snapshot()))
	})
	return mux
}

// Emitted is one span sent by POST /emit.
type Emitted struct {
	URL    string `json:"url"`
	Status int    `json:"status,omitempty"`
	Error  string `json:"error,omitempty"`
}

// emit does what Envoy does with a sampled request: it posts a Zipkin span
// (service name = node id) to the first endpoint of every Zipkin collector
// cluster the listeners name, at the configured API path, and exports an
// OTLP/gRPC span to every OpenTelemetry collector cluster's.
func emit(ctx context.Context, cfg Config) []Emitted {
	endpoints := map[string][]string{}
	for _, cl := range cfg.Clusters {
		endpoints[cl.Name] = cl.Endpoints
	}
	seen := map[string]bool{}
	out := []Emitted{}
	for _, l := range cfg.Listeners {
		if !l.HTTP { // Envoy traces HTTP connection managers only
			continue
		}
		for _, tr := range l.Tracers {
			eps := endpoints[tr.CollectorCluster]
			if len(eps) == 0 {
				continue
			}
			if tr.Provider == "envoy.tracers.opentelemetry" {
				if !seen["grpc://"+eps[0]] {
					seen["grpc://"+eps[0]] = true
					out = append(out, postOTLP(ctx, eps[0], cfg.Node))
				}
				continue
			}
			if tr.Provider != "envoy.tracers.zipkin" {
				continue
			}
			url := "http://" + eps[0] + tr.CollectorEndpoint
			if seen[url] {
				continue
			}
			seen[url] = true
			out = append(out, postSpan(ctx, url, cfg.Node))
		}
	}
	return out
}

func postSpan(ctx context.Context, url, service string) Emitted {
	now := time.Now()
	id := fmt.Sprintf("%016x", now.UnixNano())
	span := []map[string]any{{
		"traceId":       id,
		"id":            id,
		"name":          "e2e-emit",
		"kind":          "SERVER",
		"timestamp":     now.UnixMicro(),
		"duration":      1000,
		"localEndpoint": map[string]string{"serviceName": service},
	}}
	body, _ := json.Marshal(span)
	ctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, url, bytes.NewReader(body))
	if err != nil {
		return Emitted{URL: url, Error: err.Error()}
	}
	req.Header.Set("Content-Type", "application/json")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return Emitted{URL: url, Error: err.Error()}
	}
	resp.Body.Close()
	return Emitted{URL: url, Status: resp.StatusCode}
}

type client struct {
	addr       string
	node       *corev3.Node
	tls        bool
	st         *state
	maxBackoff time.Duration

	// accepted is the last accepted version and resources per type; it
	// survives reconnects, as Envoy's config does.
	accepted map[string]string
	// edsNames are the EDS clusters of the accepted clusters, whose load
	// assignments are subscribed to.
	edsNames []string
}

func (c *client) run(ctx context.Context) {
	c.accepted = map[string]string{}
	backoff := 100 * time.Millisecond
	for ctx.Err() == nil {
		err := c.stream(ctx)
		c.st.update(func(cfg *Config) {
			cfg.Connected = false
			if err != nil {
				cfg.LastError = err.Error()
			}
		})
		if ctx.Err() != nil {
			return
		}
		log.Printf("ads stream to %s ended: %v; retrying in %s", c.addr, err, backoff)
		select {
		case <-ctx.Done():
			return
		case <-time.After(backoff):
		}
		backoff = min(backoff*2, c.maxBackoff)
	}
}

func (c *client) stream(ctx context.Context) error {
	creds := insecure.NewCredentials()
	if c.tls {
		creds = credentials.NewTLS(&tls.Config{InsecureSkipVerify: true}) //nolint:gosec // test stand-in
	}
	conn, err := grpc.NewClient(c.addr, grpc.WithTransportCredentials(creds))
	if err != nil {
		return fmt.Errorf("dial: %w", err)
	}
	defer conn.Close()
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	ads, err := discoveryv3.NewAggregatedDiscoveryServiceClient(conn).StreamAggregatedResources(ctx)
	if err != nil {
		return fmt.Errorf("open stream: %w", err)
	}
	// Like Envoy, say the versions already held so an unchanged config is
	// not pushed again, and send the node only on the first request.
	for i, typ := range []string{typeCluster, typeListener} {
		req := &discoveryv3.DiscoveryRequest{TypeUrl: typ, VersionInfo: c.accepted[typ]}
		if i == 0 {
			req.Node = c.node
		}
		if err := ads.Send(req); err != nil {
			return fmt.Errorf("subscribe %s: %w", typ, err)
		}
	}
	if len(c.edsNames) > 0 {
		if err := ads.Send(&discoveryv3.DiscoveryRequest{TypeUrl: typeEndpoint, VersionInfo: c.accepted[typeEndpoint], ResourceNames: c.edsNames}); err != nil {
			return fmt.Errorf("subscribe %s: %w", typeEndpoint, err)
		}
	}
	// A stream is created only on a ready connection, so the control plane
	// is reachable now. It may send nothing: a server whose versions equal
	// those just announced has nothing new to say.
	c.st.update(func(cfg *Config) { cfg.Connected = true; cfg.Streams++; cfg.LastError = "" })
	for {
		resp, err := ads.Recv()
		if err != nil {
			if errors.Is(err, io.EOF) {
				return errors.New("stream closed by server")
			}
			return err
		}
		ack := &discoveryv3.DiscoveryRequest{TypeUrl: resp.GetTypeUrl(), ResponseNonce: resp.GetNonce()}
		if resp.GetTypeUrl() == typeEndpoint {
			ack.ResourceNames = c.edsNames
		}
		edsBefore := c.edsNames
		if err := c.apply(resp); err != nil {
			ack.VersionInfo = c.accepted[resp.GetTypeUrl()]
			ack.ErrorDetail = &rpcstatus.Status{Code: int32(codes.InvalidArgument), Message: err.Error()}
			log.Printf("NACK %s version %s: %v", resp.GetTypeUrl(), resp.GetVersionInfo(), err)
			c.st.update(func(cfg *Config) { cfg.NACKs++; cfg.LastNACK = err.Error() })
		} else {
			ack.VersionInfo = resp.GetVersionInfo()
			c.accepted[resp.GetTypeUrl()] = resp.GetVersionInfo()
			c.st.update(func(cfg *Config) { cfg.ACKs++ })
		}
		if err := ads.Send(ack); err != nil {
			return fmt.Errorf("ack: %w", err)
		}
		// New EDS clusters: (re)subscribe to their load assignments, as
		// Envoy does after accepting clusters.
		if resp.GetTypeUrl() == typeCluster && !slices.Equal(edsBefore, c.edsNames) {
			if err := ads.Send(&discoveryv3.DiscoveryRequest{TypeUrl: typeEndpoint, VersionInfo: c.accepted[typeEndpoint], ResourceNames: c.edsNames}); err != nil {
				return fmt.Errorf("subscribe %s: %w", typeEndpoint, err)
			}
		}
	}
}

// apply decodes and validates a whole state-of-the-world response and, only
// when every resource is valid, replaces that type's configuration.
func (c *client) apply(resp *discoveryv3.DiscoveryResponse) error {
	switch resp.GetTypeUrl() {
	case typeCluster:
		var clusters []Cluster
		for _, a := range resp.GetResources() {
			var cl clusterv3.Cluster
			if err := unpack(a, &cl); err != nil {
				return err
			}
			clusters = append(clusters, summarizeCluster(&cl))
		}
		sort.Slice(clusters, func(i, j int) bool { return clusters[i].Name < clusters[j].Name })
		names := make([]string, len(clusters))
		var eds []string
		for i, cl := range clusters {
			names[i] = cl.Name
			if cl.EDS {
				eds = append(eds, cl.Name)
			}
		}
		c.edsNames = eds
		c.st.update(func(cfg *Config) {
			cfg.Clusters, cfg.ClusterNames = clusters, names
			cfg.Versions[typeCluster] = resp.GetVersionInfo()
			cfg.UpdatedAt = time.Now().UTC()
		})
	case typeListener:
		var listeners []Listener
		for _, a := range resp.GetResources() {
			var l listenerv3.Listener
			if err := unpack(a, &l); err != nil {
				return err
			}
			sl, err := summarizeListener(&l)
			if err != nil {
				return err
			}
			listeners = append(listeners, sl)
		}
		sort.Slice(listeners, func(i, j int) bool { return listeners[i].Name < listeners[j].Name })
		c.st.update(func(cfg *Config) {
			cfg.Listeners = listeners
			cfg.Versions[typeListener] = resp.GetVersionInfo()
			cfg.UpdatedAt = time.Now().UTC()
		})
	case typeEndpoint:
		eds := map[string][]string{}
		for _, a := range resp.GetResources() {
			var cla endpointv3.ClusterLoadAssignment
			if err := unpack(a, &cla); err != nil {
				return err
			}
			eds[cla.GetClusterName()] = endpointsOf(&cla)
		}
		c.st.mu.Lock()
		c.st.eds = eds
		c.st.cfg.Versions[typeEndpoint] = resp.GetVersionInfo()
		c.st.cfg.UpdatedAt = time.Now().UTC()
		c.st.mu.Unlock()
	default:
		return fmt.Errorf("unexpected type %q", resp.GetTypeUrl())
	}
	return nil
}

func endpointsOf(cla *endpointv3.ClusterLoadAssignment) []string {
	var out []string
	for _, lep := range cla.GetEndpoints() {
		for _, ep := range lep.GetLbEndpoints() {
			sa := ep.GetEndpoint().GetAddress().GetSocketAddress()
			if sa == nil {
				continue
			}
			out = append(out, net.JoinHostPort(sa.GetAddress(), strconv.Itoa(int(sa.GetPortValue()))))
		}
	}
	return out
}

type validator interface {
	proto.Message
	ValidateAll() error
}

func unpack(a *anypb.Any, m validator) error {
	if err := a.UnmarshalTo(m); err != nil {
		return fmt.Errorf("decode %s: %w", a.GetTypeUrl(), err)
	}
	if err := m.ValidateAll(); err != nil {
		return fmt.Errorf("invalid %s: %w", a.GetTypeUrl(), err)
	}
	return nil
}

func summarizeCluster(cl *clusterv3.Cluster) Cluster {
	out := Cluster{Name: cl.GetName(), EDS: cl.GetType() == clusterv3.Cluster_EDS}
	if !out.EDS {
		out.Endpoints = endpointsOf(cl.GetLoadAssignment())
	}
	if o, ok := cl.GetTypedExtensionProtocolOptions()["envoy.extensions.upstreams.http.v3.HttpProtocolOptions"]; ok {
		var opts upstreamhttpv3.HttpProtocolOptions
		if o.UnmarshalTo(&opts) == nil && opts.GetExplicitHttpConfig().GetHttp2ProtocolOptions() != nil {
			out.HTTP2 = true
		}
	}
	return out
}

func summarizeListener(l *listenerv3.Listener) (Listener, error) {
	out := Listener{Name: l.GetName()}
	chains := append([]*listenerv3.FilterChain{}, l.GetFilterChains()...)
	if l.GetDefaultFilterChain() != nil {
		chains = append(chains, l.GetDefaultFilterChain())
	}
	for _, fc := range chains {
		for _, f := range fc.GetFilters() {
			tc := f.GetTypedConfig()
			if tc != nil && tc.MessageIs(&tcpproxyv3.TcpProxy{}) {
				var tp tcpproxyv3.TcpProxy
				if err := unpack(tc, &tp); err != nil {
					return out, fmt.Errorf("listener %s: %w", l.GetName(), err)
				}
				out.TCPProxy = true
				out.Clusters = append(out.Clusters, tp.GetCluster())
				continue
			}
			if tc == nil || !tc.MessageIs(&hcmv3.HttpConnectionManager{}) {
				continue
			}
			var hcm hcmv3.HttpConnectionManager
			if err := unpack(tc, &hcm); err != nil {
				return out, fmt.Errorf("listener %s: %w", l.GetName(), err)
			}
			out.HTTP = true
			for _, vh := range hcm.GetRouteConfig().GetVirtualHosts() {
				for _, r := range vh.GetRoutes() {
					if c := r.GetRoute().GetCluster(); c != "" {
						out.Clusters = append(out.Clusters, c)
					}
				}
			}
			p := hcm.GetTracing().GetProvider()
			if p == nil {
				continue
			}
			tr, err := tracer(p)
			if err != nil {
				return out, fmt.Errorf("listener %s: %w", l.GetName(), err)
			}
			if out.Provider == "" {
				out.Provider, out.CollectorCluster = tr.Provider, tr.CollectorCluster
			}
			out.Tracers = append(out.Tracers, tr)
		}
	}
	return out, nil
}

func tracer(p *tracev3.Tracing_Http) (Tracer, error) {
	tr := Tracer{Provider: p.GetName()}
	tc := p.GetTypedConfig()
	if tc == nil {
		return tr, nil
	}
	var (
		zipkin  tracev3.ZipkinConfig
		datadog tracev3.DatadogConfig
		otel    tracev3.OpenTelemetryConfig
	)
	switch {
	case tc.MessageIs(&zipkin):
		if err := unpack(tc, &zipkin); err != nil {
			return tr, err
		}
		tr.CollectorCluster = zipkin.GetCollectorCluster()
		tr.CollectorEndpoint = zipkin.GetCollectorEndpoint()
	case tc.MessageIs(&datadog):
		if err := unpack(tc, &datadog); err != nil {
			return tr, err
		}
		tr.CollectorCluster = datadog.GetCollectorCluster()
	case tc.MessageIs(&otel):
		if err := unpack(tc, &otel); err != nil {
			return tr, err
		}
		tr.CollectorCluster = otel.GetGrpcService().GetEnvoyGrpc().GetClusterName()
		if tr.CollectorCluster == "" {
			tr.CollectorCluster = otel.GetHttpService().GetHttpUri().GetCluster()
		}
	}
	return tr, nil
}
