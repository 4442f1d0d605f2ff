package kds

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"os"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/hashicorp/go-hclog"
	"github.com/prometheus/client_golang/prometheus"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/keepalive"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"

	kdsv1 "github.com/meshtrace/meshtrace/proto/kds/v1"
	"github.com/meshtrace/meshtrace/resource"
	"github.com/meshtrace/meshtrace/store"
)

// Defaults shared by both halves.
const (
	DefaultMaxMessageBytes = 4 << 20
	DefaultHeartbeat       = 5 * time.Second
	DefaultStallIntervals  = 3
	DefaultInsightInterval = time.Second
	DefaultBatchGap        = 20 * time.Millisecond
	DefaultBatchStretch    = 100 * time.Millisecond
	DefaultRevocationCheck = 10 * time.Second
)

// Stream errors, as causes of a torn-down stream.
var (
	ErrStalled        = errors.New("kds: stream stalled")
	ErrReplaced       = errors.New("kds: zone connected again; older stream closed")
	ErrServerStopping = errors.New("kds: server stopping")
	// ErrZoneMismatch: the zone's configured name is not its token's zone.
	ErrZoneMismatch = errors.New("kds: zone name does not match the token")
	// ErrZoneDisabled: an operator disabled the zone (Zone enabled: false).
	ErrZoneDisabled = errors.New("kds: zone disabled")
	// ErrReleased: an operator released the zone's held deletes; the zone
	// reconnects to apply them.
	ErrReleased = errors.New("kds: held deletes released; reconnect for a snapshot")
)

// ServerConfig configures global's half. Zero values take the defaults.
type ServerConfig struct {
	// Store is global's store; every replica of global shares it.
	Store  store.Store
	Logger hclog.Logger
	// Instance names this replica in ZoneInsight.GlobalInstance; default
	// hostname plus a random suffix.
	Instance string
	// MaxMessageBytes caps one message; batches are cut to fit.
	MaxMessageBytes int
	// Heartbeat is the interval of heartbeats; a stream with no message, or
	// with an unacknowledged batch, for StallIntervals intervals is cut.
	Heartbeat      time.Duration
	StallIntervals int
	// BatchGap is the least time between two batches of changes to a zone
	// when changes piled up while the first was in flight or the first
	// carried several (0: none; global's default is DefaultBatchGap). A
	// change made when the zone has nothing pending after a batch of one
	// change goes out at once; a stream of changes goes out in
	// fewer, larger batches, each one transaction and fsync in the zone's
	// store and one reconcile and xDS push for its proxies.
	BatchGap time.Duration
	// BatchStretch is the longest a held batch waits while changes keep
	// coming (each within BatchGap of the previous): a burst of writes goes
	// to a zone as a few large batches, the last one BatchGap after the
	// burst's last change; a stretch ends early once a zone transaction's
	// worth of changes is pending (see pusher). At most BatchGap: none.
	BatchStretch time.Duration
	// InsightInterval is the least time between two ZoneInsight writes of a zone.
	InsightInterval time.Duration
	// RevocationCheck is how often live streams' tokens are checked again
	// (revoked, expired, signed with a retired key).
	RevocationCheck time.Duration
	Registerer      prometheus.Registerer
	// OnNACK is called for every resource a zone rejects, every oversized
	// resource and every refused snapshot delete.
	OnNACK func(zone string, n resource.NACK)
}

func (c *ServerConfig) setDefaults() {
	if c.Logger == nil {
		c.Logger = hclog.NewNullLogger()
	}
	if c.Instance == "" {
		host, _ := os.Hostname()
		c.Instance = host + "-" + randomID(3)
	}
	setDefault(&c.MaxMessageBytes, DefaultMaxMessageBytes)
	setDefault(&c.Heartbeat, DefaultHeartbeat)
	setDefault(&c.StallIntervals, DefaultStallIntervals)
	setDefault(&c.InsightInterval, DefaultInsightInterval)

	setDefault(&c.RevocationCheck, DefaultRevocationCheck)
}

// setDefault sets a config value that is zero or negative to def.
func setDefault[T int | float64 | time.Duration](v *T, def T) {
	if *v <= 0 {
		*v = def
	}
}

// Server is global's half of KDS. Nothing in it is replica-local except the
// live streams: cursors come from zones, history and insights from the store.
type Server struct {
	kdsv1.UnimplementedKDSServer

	cfg     ServerConfig
	log     hclog.Logger
	metrics *serverMetrics
	tokens  *verifier

	mu      sync.Mutex
	streams map[string]*serverStream // by zone
	stopped bool

	idMu sync.Mutex
	id   string // store id, once read

	wires *wireCache
	feed  *broadcaster
}

// NewServer returns a server; Register it on a grpc.Server and Run it.
func NewServer(cfg ServerConfig) (*Server, error) {
	if cfg.Store == nil {
		return nil, errors.New("kds: ServerConfig.Store is required")
	}
	cfg.setDefaults()
	m, err := newServerMetrics(cfg.Registerer)
	if err != nil {
		return nil, fmt.Errorf("kds: metrics: %w", err)
	}
	s := &Server{
		cfg:     cfg,
		log:     cfg.Logger.Named("kds"),
		metrics: m,
		tokens:  &verifier{st: cfg.Store},
		streams: map[string]*serverStream{},
		wires:   newWireCache(),
	}
	s.feed = newBroadcaster(cfg.Store, typesSynced(resource.SyncGlobalToZone), s.wires, s.log.Named("feed"))
	return s, nil
}

// Register adds the KDS service to g.
func (s *Server) Register(g *grpc.Server) { kdsv1.RegisterKDSServer(g, s) }

// GRPCServerOptions are the options the grpc.Server serving KDS needs: message
// size limits matching MaxMessageBytes, a keepalive policy that lets zones
// ping, and the proto codec with finer buffers (wireCodec). Add
// grpc.Creds(ServerCredentials(...)) for TLS.
func (s *Server) GRPCServerOptions() []grpc.ServerOption {
	limit := s.cfg.MaxMessageBytes + 64<<10
	return []grpc.ServerOption{
		grpc.MaxRecvMsgSize(limit),
		grpc.MaxSendMsgSize(limit),
		grpc.KeepaliveEnforcementPolicy(keepalive.EnforcementPolicy{MinTime: 5 * time.Second, PermitWithoutStream: true}),
		grpc.ForceServerCodecV2(wireCodec{}),
	}
}

// Instance is this replica's name.
func (s *Server) Instance() string { return s.cfg.Instance }

// ConnectedZones lists the zones with a live stream on this replica.
func (s *Server) ConnectedZones() []string {
	s.mu.Lock()
	defer s.mu.Unlock()
	out := make([]string, 0, len(s.streams))
	for z := range s.streams {
		out = append(out, z)
	}
	slices.Sort(out)
	return out
}

// Run feeds every zone stream from one store watch and checks live streams'
// tokens against the revocation list until ctx ends, then closes every stream (call it before grpc.Server.GracefulStop so
// streams end).
func (s *Server) Run(ctx context.Context) error {
	t := time.NewTicker(s.cfg.RevocationCheck)
	defer t.Stop()
	feedDone := make(chan struct{})
	go func() { defer close(feedDone); s.feed.run(ctx) }()
	defer func() { <-feedDone }()
	defer s.stopAll()
	for {
		select {
		case <-ctx.Done():
			return nil
		case <-t.C:
			s.checkRevocations(ctx)
		}
	}
}

func (s *Server) stopAll() {
	s.mu.Lock()
	s.stopped = true
	streams := make([]*serverStream, 0, len(s.streams))
	for _, st := range s.streams {
		streams = append(streams, st)
	}
	s.mu.Unlock()
	for _, st := range streams {
		st.fail(ErrServerStopping)
	}
}

// checkRevocations runs on every live stream the checks that can change
// while it is open: its token revoked, expired or signed with a retired key, its Zone disabled, its held deletes
// released. A store that cannot be read cuts nothing.
func (s *Server) checkRevocations(ctx context.Context) {
	s.mu.Lock()
	live := make([]*serverStream, 0, len(s.streams))
	for _, st := range s.streams {
		live = append(live, st)
	}
	s.mu.Unlock()
	for _, st := range live {
		if err := s.checkLive(ctx, st); err != nil {
			if ctx.Err() == nil && !errors.Is(err, errCut) {
				s.log.Warn("cannot check a live stream", "zone", st.zone, "error", err)
			}
			continue
		}
	}
}

var errCut = errors.New("stream cut")

func (s *Server) checkLive(ctx context.Context, st *serverStream) error {
	if err := s.tokens.stillValid(ctx, st.claims); err != nil {
		if !isAuthError(err) {
			return err
		}
		st.log.Warn("zone token no longer valid; closing stream", "token", st.claims.ID, "error", err)
		st.fail(err)
		return errCut
	}
	if err := s.checkZoneEnabled(ctx, st.zone); err != nil {
		if status.Code(err) == codes.PermissionDenied {
			st.log.Warn("zone disabled; closing stream")
			st.fail(fmt.Errorf("%w: %s", ErrZoneDisabled, st.zone))
			return errCut
		}
		return err
	}
	rel, err := releaseID(ctx, s.cfg.Store, st.zone)
	if err != nil {
		return err
	}
	s.mu.Lock()
	sent := st.release
	s.mu.Unlock()
	if rel != sent && sent != releaseUnknown {
		st.log.Info("held deletes released; closing stream so the zone takes a snapshot", "release", rel)
		st.fail(ErrReleased)
		return errCut
	}
	return nil
}

// ReleaseDeletes releases the snapshot deletes zone holds (see the package
// function) and cuts the zone's stream on this replica at once.
func (s *Server) ReleaseDeletes(ctx context.Context, zone string) (string, error) {
	id, err := ReleaseDeletes(ctx, s.cfg.Store, zone)
	if err != nil {
		return "", err
	}
	s.mu.Lock()
	st := s.streams[zone]
	s.mu.Unlock()
	if st != nil {
		st.fail(ErrReleased)
	}
	return id, nil
}

// Sync serves one zone's stream.
func (s *Server) Sync(stream kdsv1.KDS_SyncServer) error {
	ctx := stream.Context()
	claims, err := s.authenticate(ctx)
	if err != nil {
		if !isAuthError(err) {
			// The store could not say (outage): the zone retries.
			s.log.Warn("cannot check a zone token", "error", err)
			return status.Error(codes.Unavailable, "cannot check the zone token now: "+err.Error())
		}
		s.log.Warn("zone refused", "error", err)
		return status.Error(codes.Unauthenticated, err.Error())
	}
	if err := s.checkZoneEnabled(ctx, claims.Zone); err != nil {
		return err
	}
	st := newServerStream(s, stream, claims)
	err = st.run() // attaches the stream once its Hello passed the checks
	switch {
	case isAuthError(err):
		return status.Error(codes.Unauthenticated, err.Error())
	case errors.Is(err, ErrZoneMismatch), errors.Is(err, ErrZoneDisabled):
		return status.Error(codes.PermissionDenied, err.Error())
	case errors.Is(err, ErrServerStopping), errors.Is(err, ErrReleased):
		return status.Error(codes.Unavailable, err.Error())
	case status.Code(err) != codes.Unknown:
		return err
	}
	if err != nil && !errors.Is(err, context.Canceled) {
		return status.Error(codes.Aborted, err.Error())
	}
	return nil
}

func (s *Server) authenticate(ctx context.Context) (ZoneTokenClaims, error) {
	md, _ := metadata.FromIncomingContext(ctx)
	vals := md.Get("authorization")
	if len(vals) != 1 {
		return ZoneTokenClaims{}, fmt.Errorf("%w: missing bearer token", ErrInvalidToken)
	}
	token, ok := strings.CutPrefix(vals[0], "Bearer ")
	if !ok {
		return ZoneTokenClaims{}, fmt.Errorf("%w: authorization is not a bearer token", ErrInvalidToken)
	}
	return s.tokens.verify(ctx, strings.TrimSpace(token))
}

// checkZoneEnabled creates the Zone resource on first connect and refuses a
// zone an operator disabled.
func (s *Server) checkZoneEnabled(ctx context.Context, zone string) error {
	z, _, err := s.cfg.Store.Get(ctx, resource.Key{Type: resource.TypeZone, Name: zone})
	switch {
	case errors.Is(err, store.ErrNotFound):
		r, err := resource.New(resource.TypeZone, "", zone)
		if err != nil {
			return status.Error(codes.Internal, err.Error())
		}
		resource.Prepare(r)
		now := time.Now().UTC()
		r.CreationTime, r.ModificationTime = now, now
		if _, err := s.cfg.Store.Put(ctx, r, store.MustNotExist); err != nil && !errors.Is(err, store.ErrAlreadyExists) {
			return status.Error(codes.Unavailable, fmt.Sprintf("register zone: %v", err))
		}
		return nil
	case err != nil:
		return status.Error(codes.Unavailable, fmt.Sprintf("read zone: %v", err))
	}
	if spec, ok := z.Spec.(*resource.ZoneSpec); ok && spec.Enabled != nil && !*spec.Enabled {
		return status.Error(codes.PermissionDenied, fmt.Sprintf("zone %s is disabled", zone))
	}
	return nil
}

// attach makes st the zone's stream on this replica, closing an older one.
func (s *Server) attach(st *serverStream) error {
	s.mu.Lock()
	if s.stopped {
		s.mu.Unlock()
		return status.Error(codes.Unavailable, ErrServerStopping.Error())
	}
	old := s.streams[st.zone]
	s.streams[st.zone] = st
	s.mu.Unlock()
	if old != nil {
		old.fail(ErrReplaced)
	}
	s.metrics.streams.Inc()
	return nil
}

func (s *Server) detach(st *serverStream) {
	s.mu.Lock()
	if s.streams[st.zone] == st {
		delete(s.streams, st.zone)
		s.metrics.forget(st.zone)
	}
	s.mu.Unlock()
	s.metrics.streams.Dec()
}

// storeID returns the id of the store's history, creating it on first use
// (put-if-absent, so replicas starting together on a fresh store agree).
func (s *Server) storeID(ctx context.Context) (string, error) {
	s.idMu.Lock()
	defer s.idMu.Unlock()
	if s.id != "" {
		return s.id, nil
	}
	b, err := s.cfg.Store.GetValue(ctx, valueStoreID)
	if errors.Is(err, store.ErrNotFound) {
		b, err = s.cfg.Store.CreateValue(ctx, valueStoreID, []byte(randomID(16)))
	}
	if err != nil {
		return "", err
	}
	s.id = string(b)
	return s.id, nil
}

func (s *Server) nack(zone string, n resource.NACK) {
	s.metrics.nacks.WithLabelValues(zone).Inc()
	if s.cfg.OnNACK != nil {
		s.cfg.OnNACK(zone, n)
	}
}

func randomID(n int) string {
	b := make([]byte, n)
	_, _ = rand.Read(b)
	return hex.EncodeToString(b)
}

// typesSynced returns the registered types synced in direction dir. ZoneInsight
// is written by global from the stream, never uploaded.
func typesSynced(dir resource.SyncDirection) []resource.Type {
	var out []resource.Type
	for _, d := range resource.Types() {
		if d.Sync.Has(dir) && d.Type != resource.TypeZoneInsight {
			out = append(out, d.Type)
		}
	}
	return out
}

// orderTypes puts global-scoped types (Mesh) before mesh-scoped ones, so a
// receiver sees a mesh before its policies.
func orderTypes(ts []resource.Type) []resource.Type {
	out := slices.Clone(ts)
	slices.SortStableFunc(out, func(a, b resource.Type) int {
		return scopeRank(a) - scopeRank(b)
	})
	return out
}

func scopeRank(t resource.Type) int {
	if d, ok := resource.Lookup(t); ok && d.Scope == resource.ScopeGlobal {
		return 0
	}
	return 1
}
