package kds

import (
	"context"
	"crypto/tls"
	"encoding/json"
	"errors"
	"fmt"
	"math/rand/v2"
	"sync"
	"sync/atomic"
	"time"

	"github.com/hashicorp/go-hclog"
	"github.com/prometheus/client_golang/prometheus"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/keepalive"
	"google.golang.org/grpc/status"

	"github.com/meshtrace/meshtrace/resource"
	"github.com/meshtrace/meshtrace/store"
)

// Client defaults.
const (
	DefaultBackoffMin     = 100 * time.Millisecond
	DefaultBackoffMax     = 30 * time.Second
	DefaultReportInterval = 10 * time.Second
	DefaultAuthGrace      = 15 * time.Second
)

// ClientConfig configures a zone's half. Zero values take the defaults.
type ClientConfig struct {
	// Zone is for logs only: global takes the zone's identity from the token.
	Zone string
	// Addresses of global replicas (host:port); each attempt dials the next
	// one afresh, so names are resolved again every time.
	Addresses []string
	// Token is the zone token global issued (IssueZoneToken).
	Token string
	// CAFile is the CA that signed global's certificate (EnsureCerts' ca.crt);
	// TLS, when set, is used instead. Insecure dials without TLS (tests only).
	CAFile   string
	TLS      *tls.Config
	Insecure bool
	// Store is the zone's store: synced copies are written there and the
	// zone's own resources of upward types are read from it.
	Store  store.Store
	Logger hclog.Logger
	// ProxyReport returns the zone's proxies and their effective tracing
	// backends, sent to global every ReportInterval when changed.
	ProxyReport    func() []resource.ProxyTracing
	ReportInterval time.Duration
	// Inspect answers global's forwarded GET of a zone inspect path with an
	// HTTP status and body; nil answers 404.
	Inspect func(ctx context.Context, path string) (int, []byte)
	// OnApplied is called after a batch up to revision rev is applied and persisted.
	OnApplied func(rev int64)
	// MaxMessageBytes is the largest message the zone accepts; it is
	// announced in the Hello and global cuts its batches to fit.
	MaxMessageBytes int
	Heartbeat       time.Duration
	StallIntervals  int
	BackoffMin      time.Duration
	BackoffMax      time.Duration
	// AuthGrace is how long the zone keeps retrying while global answers
	// Unauthenticated (a replica may not know a just-rotated signing key
	// yet) before it gives up and Run returns ErrRefused. PermissionDenied
	// (a name that is not the token's zone, a disabled zone) ends Run at once.
	AuthGrace time.Duration
	// Version is the zone CP's version, shown on global.
	Version    string
	Registerer prometheus.Registerer
}

func (c *ClientConfig) setDefaults() {
	if c.Logger == nil {
		c.Logger = hclog.NewNullLogger()
	}
	setDefault(&c.ReportInterval, DefaultReportInterval)
	setDefault(&c.MaxMessageBytes, DefaultMaxMessageBytes)
	setDefault(&c.Heartbeat, DefaultHeartbeat)
	setDefault(&c.StallIntervals, DefaultStallIntervals)
	setDefault(&c.BackoffMin, DefaultBackoffMin)
	setDefault(&c.BackoffMax, DefaultBackoffMax)
	setDefault(&c.AuthGrace, DefaultAuthGrace)
	c.BackoffMax = max(c.BackoffMax, c.BackoffMin)
}

// Client is a zone's half of KDS.
type Client struct {
	cfg     ClientConfig
	log     hclog.Logger
	creds   credentials.TransportCredentials
	metrics *clientMetrics

	connected atomic.Bool
	applied   atomic.Int64

	mu      sync.Mutex
	storeID string
	held    *heldDeletes // nil when no snapshot deletes are held
	stats   ClientStats
	// revisions, only when recordRevisions was on at NewClient, maps each
	// copy this client applied to the global revision it was sent at
	// (tests check convergence revision for revision; nothing reads it
	// otherwise, so production clients do not keep it).
	revisions map[resource.Key]int64
}

// recordRevisions makes new clients keep Client.revisions (tests).
var recordRevisions atomic.Bool

// noteRevision records that the zone's copy of k is global's revision rev
// (0: the copy is gone).
func (c *Client) noteRevision(k resource.Key, rev int64) {
	c.mu.Lock()
	defer c.mu.Unlock()
	switch {
	case c.revisions == nil:
	case rev == 0:
		delete(c.revisions, k)
	default:
		c.revisions[k] = rev
	}
}

// ClientStats count what the client did since it started (for tests and
// diagnostics).
type ClientStats struct {
	Dials          int   // connection attempts
	Sessions       int   // streams that got a Welcome
	Snapshots      int   // snapshots received
	Batches        int   // batches received
	Writes         int   // resource writes (puts and deletes) to the zone store
	Rejected       int   // resources from global rejected
	RefusedDeletes int   // snapshots whose deletes were held (refused)
	Uploaded       int   // resources sent up
	CursorWrites   int   // sync cursor writes to the zone store
	LastRevision   int64 // last applied revision
}

// NewClient returns a zone client; Run it.
func NewClient(cfg ClientConfig) (*Client, error) {
	if cfg.Store == nil {
		return nil, errors.New("kds: ClientConfig.Store is required")
	}
	if len(cfg.Addresses) == 0 {
		return nil, errors.New("kds: ClientConfig.Addresses is empty")
	}
	if cfg.Token == "" {
		return nil, errors.New("kds: ClientConfig.Token is required")
	}
	cfg.setDefaults()
	var creds credentials.TransportCredentials
	switch {
	case cfg.TLS != nil:
		creds = credentials.NewTLS(cfg.TLS.Clone())
	case cfg.CAFile != "":
		tc, err := clientTLS(cfg.CAFile)
		if err != nil {
			return nil, err
		}
		creds = credentials.NewTLS(tc)
	case cfg.Insecure:
		creds = insecure.NewCredentials()
	default:
		return nil, errors.New("kds: ClientConfig needs CAFile or TLS (or Insecure for tests)")
	}
	m, err := newClientMetrics(cfg.Registerer)
	if err != nil {
		return nil, fmt.Errorf("kds: metrics: %w", err)
	}
	log := cfg.Logger.Named("kds")
	if cfg.Zone != "" {
		log = log.With("zone", cfg.Zone)
	}
	c := &Client{cfg: cfg, log: log, creds: creds, metrics: m}
	if recordRevisions.Load() {
		c.revisions = map[resource.Key]int64{}
	}
	return c, nil
}

// Connected reports whether a stream to global is open.
func (c *Client) Connected() bool { return c.connected.Load() }

// LastAppliedRevision is the global revision the zone applied last.
func (c *Client) LastAppliedRevision() int64 { return c.applied.Load() }

// Stats returns a copy of the client's counters.
func (c *Client) Stats() ClientStats {
	c.mu.Lock()
	defer c.mu.Unlock()
	s := c.stats
	s.LastRevision = c.applied.Load()
	return s
}

func (c *Client) count(f func(*ClientStats)) {
	c.mu.Lock()
	f(&c.stats)
	c.mu.Unlock()
}

// cursor is what the zone persists after applying a batch.
type cursor struct {
	StoreID  string       `json:"storeId"`
	Revision int64        `json:"revision"`
	Held     *heldDeletes `json:"held,omitempty"`
}

// heldDeletes is the state of a zone refusing a snapshot's deletes because
// global looked like it lost its data. It survives restarts; while it lasts
// the zone asks for a full snapshot on every connect and judges each one
// against the cursor it had before (FromStoreID, FromRevision).
type heldDeletes struct {
	Reason       string    `json:"reason"`
	Since        time.Time `json:"since"`
	Deletes      int       `json:"deletes"`
	FromStoreID  string    `json:"fromStoreId"`
	FromRevision int64     `json:"fromRevision"`
	// Release is global's release id when the deletes were first held; a
	// different one, announced in a Welcome, releases them.
	Release string `json:"release,omitempty"`
}

// Held returns why the zone holds snapshot deletes and how many, or "" and 0.
func (c *Client) Held() (reason string, deletes int) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.held == nil {
		return "", 0
	}
	return c.held.Reason, c.held.Deletes
}

func (c *Client) loadCursor(ctx context.Context) error {
	b, err := c.cfg.Store.GetValue(ctx, valueCursor)
	if errors.Is(err, store.ErrNotFound) {
		return nil
	}
	if err != nil {
		return err
	}
	var cur cursor
	if err := json.Unmarshal(b, &cur); err != nil {
		c.log.Warn("unreadable sync cursor; starting over", "error", err)
		return nil
	}
	c.mu.Lock()
	c.storeID = cur.StoreID
	c.held = cur.Held
	c.mu.Unlock()
	if cur.Held != nil {
		c.metrics.held.Set(float64(cur.Held.Deletes))
	}
	c.applied.Store(cur.Revision)
	return nil
}

func (c *Client) saveCursor(ctx context.Context, storeID string, rev int64) error {
	op, err := c.cursorOp(storeID, rev)
	if err != nil {
		return err
	}
	if _, err := c.cfg.Store.PutValue(ctx, op.ValueKey, op.Value); err != nil {
		return fmt.Errorf("kds: persist cursor: %w", err)
	}
	c.cursorSaved(storeID, rev)
	return nil
}

// cursorOp is the store op that persists the cursor at rev: written alone by
// saveCursor, or in the transaction of the batch that reaches rev.
func (c *Client) cursorOp(storeID string, rev int64) (*store.Op, error) {
	c.mu.Lock()
	held := c.held
	c.mu.Unlock()
	b, err := json.Marshal(cursor{StoreID: storeID, Revision: rev, Held: held})
	if err != nil {
		return nil, err
	}
	return &store.Op{ValueKey: valueCursor, Value: b}, nil
}

// cursorSaved records that the cursor at rev is in the store.
func (c *Client) cursorSaved(storeID string, rev int64) {
	c.mu.Lock()
	c.storeID = storeID
	c.stats.CursorWrites++
	c.mu.Unlock()
	c.applied.Store(rev)
	c.metrics.applied.Set(float64(rev))
}

// Run keeps a stream to global open until ctx ends, redialling with jittered
// exponential backoff and rotating through Addresses. It returns nil when ctx
// ends; an error when the zone's store cannot be read at start, or when
// global refuses the zone (Unauthenticated or PermissionDenied: a bad,
// revoked or foreign token, a name that is not the token's zone, a disabled
// zone), which retrying cannot fix. The backoff starts over only after a
// stream applied a batch: a stream that dies before that (a message global
// cannot send, a zone global cuts at once) keeps backing off.
func (c *Client) Run(ctx context.Context) error {
	if err := c.loadCursor(ctx); err != nil {
		if ctx.Err() != nil {
			return nil
		}
		return fmt.Errorf("kds: read sync cursor: %w", err)
	}
	backoff := c.cfg.BackoffMin
	var refusedSince time.Time
	for attempt := 0; ; attempt++ {
		addr := c.cfg.Addresses[attempt%len(c.cfg.Addresses)]
		progressed, err := c.dialAndSync(ctx, addr)
		if ctx.Err() != nil {
			return nil
		}
		code := status.Code(err)
		if code == codes.Unauthenticated && refusedSince.IsZero() {
			refusedSince = time.Now()
		} else if code != codes.Unauthenticated {
			refusedSince = time.Time{}
		}
		if code == codes.PermissionDenied || (code == codes.Unauthenticated && time.Since(refusedSince) >= c.cfg.AuthGrace) {
			c.log.Error("global refused the zone; not retrying", "addr", addr, "error", err)
			return fmt.Errorf("%w: %s", ErrRefused, status.Convert(err).Message())
		}
		if progressed {
			backoff = c.cfg.BackoffMin
		}
		wait := backoff/2 + rand.N(backoff/2+1)
		c.log.Warn("stream to global ended; redialling", "addr", addr, "error", err, "in", wait)
		if !progressed {
			backoff = min(backoff*2, c.cfg.BackoffMax)
		}
		t := time.NewTimer(wait)
		select {
		case <-ctx.Done():
			t.Stop()
			return nil
		case <-t.C:
		}
	}
}

// ErrRefused: global refused the zone for good (authentication or
// authorization); Run returns it instead of retrying.
var ErrRefused = errors.New("kds: global refused the zone")

// dialAndSync runs one stream on a fresh connection to addr; progressed says
// whether it applied a batch.
func (c *Client) dialAndSync(ctx context.Context, addr string) (progressed bool, err error) {
	c.metrics.dials.Inc()
	c.count(func(s *ClientStats) { s.Dials++ })
	limit := c.cfg.MaxMessageBytes + 64<<10
	conn, err := grpc.NewClient(addr,
		grpc.WithTransportCredentials(c.creds),
		grpc.WithDefaultCallOptions(grpc.MaxCallRecvMsgSize(limit), grpc.MaxCallSendMsgSize(limit), grpc.ForceCodecV2(wireCodec{})),
		grpc.WithKeepaliveParams(keepalive.ClientParameters{Time: 30 * time.Second, Timeout: 10 * time.Second}),
	)
	if err != nil {
		return false, err
	}
	defer conn.Close()
	s := newSession(c, conn)
	return s.run(ctx)
}
