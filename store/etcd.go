package store

import (
	"context"
	"errors"
	"fmt"
	"net/url"
	"os"
	"path/filepath"
	"sync"
	"sync/atomic"
	"time"

	"github.com/hashicorp/go-hclog"
	"github.com/prometheus/client_golang/prometheus"
	"go.etcd.io/etcd/client/pkg/v3/transport"
	clientv3 "go.etcd.io/etcd/client/v3"
	"go.etcd.io/etcd/server/v3/embed"
	"go.etcd.io/etcd/server/v3/etcdserver/api/v3client"
	"go.etcd.io/etcd/server/v3/storage"
	"go.uber.org/zap"
)

// Options are the settings shared by embedded and external stores.
type Options struct {
	// Prefix is the key prefix of everything meshtrace stores; default "/meshtrace/".
	Prefix string
	// MaxValueBytes caps one stored value; default 512 KiB.
	MaxValueBytes int
	// WatchBuffer is the number of responses a watcher may fall behind before it
	// is dropped with ErrWatchOverflow; default 1024.
	WatchBuffer int
	// Registerer receives meshtrace_store_operation_duration_seconds; nil
	// registers nothing.
	Registerer prometheus.Registerer
	Logger     hclog.Logger
}

// EmbeddedConfig starts an etcd server inside this process.
type EmbeddedConfig struct {
	// Dir holds etcd's data; required.
	Dir string
	// SocketDir holds the unix sockets etcd serves its clients and its
	// (unused, single-member) peer port on, each 0600; default Dir, or a
	// private temporary dir when Dir's path is too long for a socket. Nothing
	// listens on TCP: the sockets are the only way in, and only this user
	// can open them.
	SocketDir string
	// Name is the etcd member name; default "meshtrace".
	Name string
	// UnsafeNoFsync disables fsync: fast, and loses data on a crash. Tests and
	// benchmarks only.
	UnsafeNoFsync bool
	// AutoCompactionRetention keeps that much history (etcd periodic mode,
	// e.g. "1h"); default "1h". "0" disables automatic compaction.
	AutoCompactionRetention string
	// StartTimeout bounds how long the server may take to become ready; default 60s.
	StartTimeout time.Duration
	Options
}

// ExternalConfig connects to an etcd cluster.
type ExternalConfig struct {
	Endpoints []string
	// CertFile and KeyFile are the client certificate; CAFile verifies the
	// servers. Any of them set means TLS.
	CertFile, KeyFile, CAFile string
	// DialTimeout bounds the first connection; default 5s.
	DialTimeout time.Duration
	Options
}

// EtcdStore is a Store backed by etcd.
type EtcdStore struct {
	client    *clientv3.Client
	server    *embed.Etcd
	quota     storage.Quota // the embedded server's backend quota (see txn)
	release   func()        // after an embedded server stopped: drop the dir lock and socket dir
	closing   *atomic.Bool  // set when Close begins, to quiet etcd's shutdown noise
	endpoints []string
	ks        keyspace
	maxBytes  int
	buffer    int
	log       hclog.Logger
	latency   *prometheus.HistogramVec
	hints     hints
	meshes    meshChecks
	corrupt   corruptSet
	group     committer
	decoded   decodedValues // watch event values, decoded once for every hub
	gate      gate          // every key-value call passes; Close shuts it before stopping the server

	mu     sync.Mutex
	shared map[string]*hub   // running shared hubs by prefix
	all    map[*hub]struct{} // every running hub, shared or private
	closed bool
	ctx    context.Context // cancelled by Close; parent of every watch
	cancel context.CancelFunc
}

var _ Store = (*EtcdStore)(nil)

// OpenEmbedded starts an embedded single-member etcd in cfg.Dir and calls it
// in-process.
func OpenEmbedded(ctx context.Context, cfg EmbeddedConfig) (*EtcdStore, error) {
	if cfg.Dir == "" {
		return nil, errors.New("store: embedded etcd needs a data dir")
	}
	// Before anything else: a second process on the same dir would otherwise
	// wait forever on etcd's own file lock.
	lock, err := LockDir(cfg.Dir)
	if err != nil {
		return nil, fmt.Errorf("store: embedded etcd: %w", err)
	}
	// etcd panics when it cannot write its files: say so plainly first.
	if err := checkFreeSpace(cfg.Dir, MinFreeBytes); err != nil {
		lock.Unlock()
		return nil, fmt.Errorf("store: embedded etcd: %w", err)
	}
	sockets, cleanup, err := socketDir(cfg)
	if err != nil {
		lock.Unlock()
		return nil, err
	}
	release := func() { cleanup(); lock.Unlock() }
	ec := embed.NewConfig()
	ec.Dir = cfg.Dir
	ec.Name = orDefault(cfg.Name, "meshtrace")
	curl := url.URL{Scheme: "unix", Path: filepath.Join(sockets, "client.sock")}
	// etcd binds a unix peer listener to the URL's host, not its path.
	purl := url.URL{Scheme: "unix", Host: filepath.Join(sockets, "peer.sock")}
	ec.ListenClientUrls, ec.AdvertiseClientUrls = []url.URL{curl}, []url.URL{curl}
	// The advertised form is only ever compared (a single member never dials
	// itself), and must parse back.
	ec.ListenPeerUrls, ec.AdvertisePeerUrls = []url.URL{purl}, []url.URL{{Scheme: "unix", Path: purl.Host}}
	ec.InitialCluster = ec.InitialClusterFromName(ec.Name)
	log := cfg.Logger
	if log == nil {
		log = hclog.NewNullLogger()
	}
	closing := new(atomic.Bool)
	ec.Logger = "zap"
	ec.LogLevel = "error"
	ec.ZapLoggerBuilder = embed.NewZapLoggerBuilder(newEtcdZapLogger(log.Named("etcd"), closing))
	ec.UnsafeNoFsync = cfg.UnsafeNoFsync
	// One member and no peers: nothing can compete in an election, so waiting
	// out etcd's default 1 s election timeout (up to 2 s, randomized) only
	// delays start-up. etcd fast-forwards a single member to between one
	// tick and ElectionMs/TickMs ticks before its election, and wants that
	// ratio at least 5: with 10 ms ticks and a 50 ms timeout it elects
	// itself within 50 ms. Heartbeats go nowhere, but every tick wakes the
	// raft goroutines: an idle global used 25.6 ms of CPU a second with 5 ms
	// ticks (as before), 15 with these, 6.7 with 50 ms ticks (whose election
	// would delay start-up by up to 0.25 s).
	ec.TickMs, ec.ElectionMs = 10, 50
	ec.AutoCompactionMode = embed.CompactorModePeriodic
	ec.AutoCompactionRetention = orDefault(cfg.AutoCompactionRetention, "1h")
	maxBytes := cfg.MaxValueBytes
	if maxBytes <= 0 {
		maxBytes = DefaultMaxValueBytes
	}
	// Room for a Txn chunk (see txnChunkBytes) plus overhead.
	if need := uint(max(txnChunkBytes, maxBytes) + 256*1024); need > ec.MaxRequestBytes {
		ec.MaxRequestBytes = need
	}

	start := time.Now()
	e, err := embed.StartEtcd(ec)
	if err != nil {
		release()
		return nil, fmt.Errorf("store: start embedded etcd: %w", err)
	}
	fail := func(err error) (*EtcdStore, error) {
		e.Close()
		release()
		return nil, err
	}
	timeout := cfg.StartTimeout
	if timeout <= 0 {
		timeout = 60 * time.Second
	}
	select {
	case <-e.Server.ReadyNotify():
	case err := <-e.Err():
		return fail(fmt.Errorf("store: embedded etcd: %w", err))
	case <-time.After(timeout):
		e.Server.Stop()
		return fail(fmt.Errorf("store: embedded etcd not ready after %s", timeout))
	case <-ctx.Done():
		return fail(ctx.Err())
	}
	for _, p := range []string{curl.Path, purl.Host} {
		if err := os.Chmod(p, 0o600); err != nil {
			return fail(fmt.Errorf("store: embedded etcd socket: %w", err))
		}
	}
	eps := []string{curl.String()}
	// The store calls its server in-process: requests, responses and watch
	// events pass as Go values, with no protobuf encoding, HTTP/2 or socket
	// in between. The socket stays for the operator's tools. Close shuts the
	// store's gate before it stops the server (see gate).
	client := v3client.New(e.Server)
	s := newEtcdStore(client, eps, cfg.Options)
	s.server, s.closing, s.release = e, closing, release
	// The quota etcd's gRPC layer checks writes against (see txn).
	s.quota = storage.NewBackendQuota(e.Server.Logger(), e.Server.Cfg.QuotaBackendBytes, e.Server.Backend(), "kv")
	s.log.Info("embedded etcd started", "dir", cfg.Dir, "endpoints", eps, "took", time.Since(start))
	return s, nil
}

// OpenExternal connects to an etcd cluster and checks it answers.
func OpenExternal(ctx context.Context, cfg ExternalConfig) (*EtcdStore, error) {
	if len(cfg.Endpoints) == 0 {
		return nil, errors.New("store: no etcd endpoints")
	}
	cc := clientv3.Config{
		Endpoints:   cfg.Endpoints,
		DialTimeout: cfg.DialTimeout,
		Logger:      zap.NewNop(),
		Context:     context.Background(),
	}
	if cc.DialTimeout <= 0 {
		cc.DialTimeout = 5 * time.Second
	}
	if cfg.CertFile != "" || cfg.KeyFile != "" || cfg.CAFile != "" {
		tlsInfo := transport.TLSInfo{CertFile: cfg.CertFile, KeyFile: cfg.KeyFile, TrustedCAFile: cfg.CAFile}
		tc, err := tlsInfo.ClientConfig()
		if err != nil {
			return nil, fmt.Errorf("store: etcd TLS: %w", err)
		}
		cc.TLS = tc
	}
	client, err := clientv3.New(cc)
	if err != nil {
		return nil, fmt.Errorf("store: connect to etcd %v: %w", cfg.Endpoints, err)
	}
	// clientv3.New does not wait for a connection; one read proves it.
	pctx, cancel := context.WithTimeout(ctx, cc.DialTimeout)
	defer cancel()
	if _, err := client.Get(pctx, "health-probe", clientv3.WithCountOnly()); err != nil {
		client.Close()
		return nil, fmt.Errorf("store: etcd %v not reachable: %w", cfg.Endpoints, err)
	}
	return newEtcdStore(client, cfg.Endpoints, cfg.Options), nil
}

var (
	latencyMu sync.Mutex
	latencies = map[prometheus.Registerer]*prometheus.HistogramVec{}
)

// latencyVec returns the histogram registered on reg, sharing it between
// stores that use the same registerer.
func latencyVec(reg prometheus.Registerer) *prometheus.HistogramVec {
	h := prometheus.NewHistogramVec(prometheus.HistogramOpts{
		Name:    "meshtrace_store_operation_duration_seconds",
		Help:    "Latency of store operations, by operation.",
		Buckets: prometheus.ExponentialBuckets(0.0005, 2, 14),
	}, []string{"op"})
	if reg == nil {
		return h
	}
	latencyMu.Lock()
	defer latencyMu.Unlock()
	if h, ok := latencies[reg]; ok {
		return h
	}
	if err := reg.Register(h); err != nil {
		var are prometheus.AlreadyRegisteredError
		if errors.As(err, &are) {
			if existing, ok := are.ExistingCollector.(*prometheus.HistogramVec); ok {
				h = existing
			}
		}
	}
	latencies[reg] = h
	return h
}

func newEtcdStore(client *clientv3.Client, eps []string, o Options) *EtcdStore {
	s := &EtcdStore{
		client:    client,
		endpoints: eps,
		ks:        newKeyspace(o.Prefix),
		maxBytes:  o.MaxValueBytes,
		buffer:    o.WatchBuffer,
		log:       o.Logger,
		latency:   latencyVec(o.Registerer),
		shared:    map[string]*hub{},
		all:       map[*hub]struct{}{},
	}
	if s.maxBytes <= 0 {
		s.maxBytes = DefaultMaxValueBytes
	}
	if s.buffer <= 0 {
		s.buffer = 1024
	}
	if s.log == nil {
		s.log = hclog.NewNullLogger()
	}
	s.log = s.log.Named("store")
	s.corrupt.log = s.log
	s.corrupt.register(o.Registerer)
	if o.Registerer != nil {
		_ = o.Registerer.Register(prometheus.NewGaugeFunc(prometheus.GaugeOpts{
			Name: "meshtrace_store_watches", Help: "etcd watches the store runs (on global: one for KDS, whatever the number of zones).",
		}, func() float64 { return float64(s.Watches()) }))
	}
	s.ctx, s.cancel = context.WithCancel(context.Background())
	client.KV = gatedKV{kv: client.KV, gate: &s.gate}
	return s
}

// Watches is the number of etcd watches the store runs (shared and
// private), also exported as meshtrace_store_watches.
func (s *EtcdStore) Watches() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return len(s.all)
}

// Corrupt lists the stored values reads skip (undecodable, or naming
// another resource than their key), until they are rewritten or deleted.
func (s *EtcdStore) Corrupt() []CorruptValue { return s.corrupt.list() }

// Endpoints returns the etcd client URLs.
func (s *EtcdStore) Endpoints() []string { return append([]string(nil), s.endpoints...) }

// Client returns the etcd client, for tools that need etcd itself.
func (s *EtcdStore) Client() *clientv3.Client { return s.client }

// Close ends every watch with ErrClosed, closes the client and stops an
// embedded server.
func (s *EtcdStore) Close() error {
	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		return nil
	}
	s.closed = true
	if s.closing != nil {
		s.closing.Store(true)
	}
	hubs := make([]*hub, 0, len(s.all))
	for h := range s.all {
		hubs = append(hubs, h)
	}
	s.mu.Unlock()

	s.cancel()
	if !s.gate.close(closeDrainTimeout) {
		s.log.Warn("etcd calls still running at close", "waited", closeDrainTimeout)
	}
	for _, h := range hubs {
		h.wait()
	}
	err := s.client.Close()
	if s.server != nil {
		s.server.Close()
		select {
		case <-s.server.Server.StopNotify():
		case <-time.After(10 * time.Second):
		}
		s.release()
	}
	if errors.Is(err, context.Canceled) {
		err = nil
	}
	return err
}

// closeDrainTimeout bounds how long Close waits for calls into etcd that
// are already running (a commit waiting on its fsync, a long list).
const closeDrainTimeout = 10 * time.Second

// observe records the latency of one operation.
func (s *EtcdStore) observe(op string, start time.Time) {
	s.latency.WithLabelValues(op).Observe(time.Since(start).Seconds())
}

func (s *EtcdStore) isClosed() bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.closed
}

// maxSocketPath keeps socket paths under the kernel's limit (108 bytes on
// Linux, 104 on macOS, including the terminating NUL).
const maxSocketPath = 100

// socketDir returns where the embedded etcd's sockets go and how to clean
// that up: cfg.SocketDir, else cfg.Dir (0700, created by LockDir), else,
// when the socket paths would be too long, a private temporary dir.
func socketDir(cfg EmbeddedConfig) (string, func(), error) {
	dir := cfg.SocketDir
	if dir == "" {
		dir = cfg.Dir
	}
	abs, err := filepath.Abs(dir)
	if err != nil {
		return "", nil, fmt.Errorf("store: socket dir: %w", err)
	}
	if len(filepath.Join(abs, "client.sock")) <= maxSocketPath {
		if err := os.MkdirAll(abs, 0o700); err != nil {
			return "", nil, fmt.Errorf("store: socket dir: %w", err)
		}
		return abs, func() {}, nil
	}
	tmp, err := os.MkdirTemp("", "meshtrace-etcd-")
	if err != nil {
		return "", nil, fmt.Errorf("store: socket dir: %w", err)
	}
	return tmp, func() { os.RemoveAll(tmp) }, nil
}

func orDefault(v, def string) string {
	if v == "" {
		return def
	}
	return v
}
