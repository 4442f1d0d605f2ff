// Package global is the global control plane: the store (embedded etcd by
// default), the REST API, diagnostics, and whatever long-running parts are
// added as runners (the KDS server). Build it with New and start it with Run:
//
//	cfg, err := global.LoadConfig(path) // then apply flags
//	if err == nil { err = cfg.Validate() }
//	g, err := global.New(cfg, cfg.Log.Logger("global", os.Stderr))
//	g.AddRunner(func(ctx context.Context) error { return kdsServer(g.Store()).Run(ctx) })
//	err = g.Run(ctx) // returns after ctx is cancelled and everything stopped
package global

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"time"

	"github.com/hashicorp/go-hclog"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"golang.org/x/sync/errgroup"

	"github.com/meshtrace/meshtrace/diag"
	"github.com/meshtrace/meshtrace/inspect"
	"github.com/meshtrace/meshtrace/kds"
	"github.com/meshtrace/meshtrace/listen"
	"github.com/meshtrace/meshtrace/overview"
	"github.com/meshtrace/meshtrace/residency"
	"github.com/meshtrace/meshtrace/resource"
	"github.com/meshtrace/meshtrace/restapi"
	"github.com/meshtrace/meshtrace/store"
)

// Keys of control-plane state kept with store.PutValue.
const (
	valueDefaultMeshCreated = "global/bootstrap/default-mesh"
	valueClusterID          = "global/cluster-id"
)

// AdminTokenFile is the name of the generated token file under DataDir.
const AdminTokenFile = "admin-token"

// ShutdownTimeout bounds how long servers drain on shutdown, so that a
// SIGTERM stops the process within a few seconds.
const ShutdownTimeout = 2 * time.Second

// Global is one global control plane instance.
type Global struct {
	cfg Config
	log hclog.Logger
	reg *prometheus.Registry

	mu       sync.Mutex
	runners  []func(ctx context.Context) error
	routes   map[string]http.Handler
	ran      bool
	st       store.Store
	ownStore bool
	apiAddr  string
	diagAddr string
	token    string
	cluster  string

	started chan struct{}
	kds     *kdsState
	res     *residency.Index
}

// New checks cfg and returns a Global ready to Run. A nil logger discards logs.
func New(cfg Config, logger hclog.Logger) (*Global, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	if logger == nil {
		logger = hclog.NewNullLogger()
	}
	reg := prometheus.NewRegistry()
	reg.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	listen.Register(reg)
	g := &Global{
		cfg:     cfg,
		log:     logger,
		reg:     reg,
		routes:  map[string]http.Handler{},
		started: make(chan struct{}),
	}
	g.setupKDS()
	g.AddRoute("GET /residency", residency.Handler(g.Residency, g.zoneEnforcement))
	return g, nil
}

// AddRunner adds a long-running part (e.g. the KDS gRPC server) to Run's
// errgroup. It must be called before Run. Runners start once the store is
// open and the listeners are bound, so they may call Store(); they must
// return when ctx is cancelled, and an error from one stops the whole Global.
func (g *Global) AddRunner(fn func(ctx context.Context) error) {
	g.mu.Lock()
	defer g.mu.Unlock()
	g.runners = append(g.runners, fn)
}

// AddRoute adds a REST API route by ServeMux pattern (e.g. an inspect
// endpoint) with the API's auth and metrics. It must be called before Run.
func (g *Global) AddRoute(pattern string, h http.Handler) {
	g.mu.Lock()
	defer g.mu.Unlock()
	g.routes[pattern] = h
}

// SetStore makes Run use s instead of opening the configured store; Run then
// neither opens nor closes it. For tests and single-process demos.
func (g *Global) SetStore(s store.Store) {
	g.mu.Lock()
	defer g.mu.Unlock()
	g.st = s
}

// Config returns the configuration the Global was built with (runners read
// their section, e.g. KDS, from it).
func (g *Global) Config() Config { return g.cfg }

// Logger returns the Global's logger; runners should use a Named child.
func (g *Global) Logger() hclog.Logger { return g.log }

// Registry is where the Global's metrics live (served on /metrics); runners
// register theirs here.
func (g *Global) Registry() *prometheus.Registry { return g.reg }

// Started is closed once the store is open, bootstrapping is done and the
// listeners are bound.
func (g *Global) Started() <-chan struct{} { return g.started }

// Store returns the store; nil before Run opened it.
func (g *Global) Store() store.Store {
	g.mu.Lock()
	defer g.mu.Unlock()
	return g.st
}

// APIAddr returns the REST API's bound address (useful with port 0); "" before start.
func (g *Global) APIAddr() string {
	g.mu.Lock()
	defer g.mu.Unlock()
	return g.apiAddr
}

// DiagnosticsAddr returns the diagnostics server's bound address; "" before start.
func (g *Global) DiagnosticsAddr() string {
	g.mu.Lock()
	defer g.mu.Unlock()
	return g.diagAddr
}

// AdminToken returns the token writes need; "" before start.
func (g *Global) AdminToken() string {
	g.mu.Lock()
	defer g.mu.Unlock()
	return g.token
}

// ClusterID returns the cluster's persistent id; "" before start.
func (g *Global) ClusterID() string {
	g.mu.Lock()
	defer g.mu.Unlock()
	return g.cluster
}

// Run opens the store, bootstraps it, serves the API and diagnostics and runs
// the added runners until ctx is cancelled or one of them fails. It returns
// nil after a clean shutdown. Run may be called once.
func (g *Global) Run(ctx context.Context) (err error) {
	g.mu.Lock()
	if g.ran {
		g.mu.Unlock()
		return errors.New("global: Run called twice")
	}
	g.ran = true
	runners := append([]func(context.Context) error(nil), g.runners...)
	g.mu.Unlock()

	began := time.Now()
	if err := os.MkdirAll(g.cfg.DataDir, 0o700); err != nil {
		return fmt.Errorf("global: data dir: %w", err)
	}
	if note, err := listen.FitFDLimit(
		listen.Cap{Key: "api.maxConnections", Max: &g.cfg.API.MaxConnections},
		listen.Cap{Key: "kds.maxConnections", Max: &g.cfg.KDS.MaxConnections},
		listen.Cap{Key: "diagnostics.maxConnections", Max: &g.cfg.Diagnostics.MaxConnections},
	); err != nil {
		return fmt.Errorf("global: %w", err)
	} else if note != "" {
		g.log.Warn(note)
	}
	st, closeStore, err := g.openStore(ctx)
	if err != nil {
		return err
	}
	storeOpen := time.Since(began)
	defer func() {
		if cerr := closeStore(); cerr != nil && err == nil {
			err = fmt.Errorf("global: close store: %w", cerr)
		}
	}()
	cluster, err := g.clusterID(ctx, st)
	if err != nil {
		return err
	}
	token, err := g.adminToken()
	if err != nil {
		return err
	}
	res, err := residency.NewIndex(residency.Config{Store: st, Logger: g.log.Named("residency"), Registerer: g.reg})
	if err != nil {
		return fmt.Errorf("global: %w", err)
	}
	g.mu.Lock()
	g.res = res
	g.mu.Unlock()

	api, err := restapi.New(restapi.Config{
		Store:      st,
		Logger:     g.log.Named("api"),
		Mode:       restapi.ModeGlobal,
		ClusterID:  cluster,
		Token:      token,
		Registerer: g.reg,
		Routes:     g.apiRoutes(),
		Writable:   writableTypes(),
		Admit:      residency.Admission(g.Residency),
		AdmitBatch: residency.AdmissionBatch(g.Residency),
		// Policies a zone synced up are read-only here, as in Kuma 2.7.
		ReadOnly: func(r *resource.Resource) bool { return r.Labels[resource.LabelOrigin] == resource.OriginZone },
		// Refuse what KDS could never send to a zone.
		MaxResourceBytes: kds.MaxResourceBytes(g.cfg.KDS.MaxMessageBytes),
	})
	if err != nil {
		return fmt.Errorf("global: %w", err)
	}
	apiLn, err := listen.TCP("api", g.cfg.API.Address, g.cfg.API.MaxConnections)
	if err != nil {
		return fmt.Errorf("global: api.address: %w", err)
	}
	diagLn, err := listen.TCP("diagnostics", g.cfg.Diagnostics.Address, g.cfg.Diagnostics.MaxConnections)
	if err != nil {
		apiLn.Close()
		return fmt.Errorf("global: diagnostics.address: %w", err)
	}
	booted := make(chan struct{})
	apiSrv := listen.HTTPServer(writesAfter(booted, api), apiLn)
	diagSrv := listen.HTTPServer(diag.Handler(g.reg, diag.StoreCheck(st)), diagLn)

	g.mu.Lock()
	g.apiAddr, g.diagAddr, g.token, g.cluster = apiLn.Addr().String(), diagLn.Addr().String(), token, cluster
	g.mu.Unlock()

	// The API answers reads from here on; writes wait for the bootstrap.
	rctx, cancelRun := context.WithCancel(ctx)
	defer cancelRun()
	eg, ectx := errgroup.WithContext(rctx)
	serve := func(name string, srv *http.Server, ln net.Listener) {
		eg.Go(func() error {
			if err := srv.Serve(ln); err != nil && !errors.Is(err, http.ErrServerClosed) {
				return fmt.Errorf("%s server: %w", name, err)
			}
			return nil
		})
	}
	serve("api", apiSrv, apiLn)
	serve("diagnostics", diagSrv, diagLn)
	eg.Go(func() error {
		<-ectx.Done()
		sctx, cancel := context.WithTimeout(context.Background(), ShutdownTimeout)
		defer cancel()
		return errors.Join(apiSrv.Shutdown(sctx), diagSrv.Shutdown(sctx))
	})
	serving := time.Since(began)
	if err := g.bootstrap(ectx, st); err != nil {
		cancelRun()
		return errors.Join(err, eg.Wait())
	}
	close(booted)
	// Where start-up time goes, measured from Run: store open (embedded
	// etcd: its own start and election), serving reads, bootstrap writes done.
	g.log.Info("global control plane started", "api", g.APIAddr(), "diagnostics", g.DiagnosticsAddr(), "cluster", cluster,
		"store_open", storeOpen, "serving", serving, "bootstrapped", time.Since(began))
	close(g.started)

	eg.Go(func() error { return res.Run(ectx) })
	for _, run := range runners {
		eg.Go(func() error { return run(ectx) })
	}
	err = eg.Wait()
	g.log.Info("global control plane stopped", "error", err)
	return err
}

// writableTypes are the types the global API accepts writes of: Mesh, Zone
// (enabled, residency) and every policy type.
func writableTypes() []resource.Type {
	out := []resource.Type{resource.TypeMesh, resource.TypeZone, resource.TypeMeshGateway}
	for _, d := range resource.Types() {
		if d.IsPolicy {
			out = append(out, d.Type)
		}
	}
	return out
}

// apiRoutes are the inspect endpoints answered from the store plus the
// routes added with AddRoute (which win on the same pattern).
func (g *Global) apiRoutes() map[string]http.Handler {
	routes := inspect.Routes(storeSource{g: g})
	for p, h := range overview.Routes(overview.Config{Store: g.Store(), Proxies: g.proxyLookup}) {
		routes[p] = h
	}
	g.mu.Lock()
	defer g.mu.Unlock()
	for p, h := range g.routes {
		routes[p] = h
	}
	return routes
}

// openStore returns the store to use and how to close it.
func (g *Global) openStore(ctx context.Context) (store.Store, func() error, error) {
	g.mu.Lock()
	injected := g.st
	g.mu.Unlock()
	if injected != nil {
		return injected, func() error { return nil }, nil
	}
	st, err := store.Open(ctx, g.cfg.Store, store.Options{Registerer: g.reg, Logger: g.log.Named("store")})
	if err != nil {
		return nil, nil, fmt.Errorf("global: open store: %w", err)
	}
	g.mu.Lock()
	g.st = st
	g.mu.Unlock()
	return st, st.Close, nil
}

// clusterID returns the persistent cluster id, creating it on the very
// first start (put-if-absent: replicas starting together agree on one id).
func (g *Global) clusterID(ctx context.Context, st store.Store) (string, error) {
	if id, err := st.GetValue(ctx, valueClusterID); err == nil {
		return string(id), nil
	} else if !errors.Is(err, store.ErrNotFound) {
		return "", fmt.Errorf("global: cluster id: %w", err)
	}
	id, err := st.CreateValue(ctx, valueClusterID, []byte(randomHex(16)))
	if err != nil {
		return "", fmt.Errorf("global: cluster id: %w", err)
	}
	return string(id), nil
}

// bootstrap creates the default Mesh on the very first start (a deleted
// default mesh stays deleted).
func (g *Global) bootstrap(ctx context.Context, st store.Store) error {
	if _, err := st.GetValue(ctx, valueDefaultMeshCreated); errors.Is(err, store.ErrNotFound) {
		mesh, err := resource.New(resource.TypeMesh, "", resource.DefaultMesh)
		if err != nil {
			return err
		}
		now := time.Now().UTC()
		mesh.CreationTime, mesh.ModificationTime = now, now
		if _, err := st.Put(ctx, mesh, store.MustNotExist); err != nil && !errors.Is(err, store.ErrAlreadyExists) {
			return fmt.Errorf("global: create default mesh: %w", err)
		} else if err == nil {
			g.log.Info("created the default mesh", "mesh", mesh.Name)
		}
		if _, err := st.PutValue(ctx, valueDefaultMeshCreated, []byte(now.Format(time.RFC3339))); err != nil {
			return fmt.Errorf("global: bootstrap: %w", err)
		}
	} else if err != nil {
		return fmt.Errorf("global: bootstrap: %w", err)
	}
	return nil
}

// writesAfter holds every write (any method but GET, HEAD and OPTIONS) until
// ready is closed, so the API can answer reads while bootstrapping.
func writesAfter(ready <-chan struct{}, h http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		switch r.Method {
		case http.MethodGet, http.MethodHead, http.MethodOptions:
		default:
			select {
			case <-ready:
			default:
				// Only while bootstrapping: asking a request's context for
				// its Done channel allocates one.
				select {
				case <-ready:
				case <-r.Context().Done():
					return
				}
			}
		}
		h.ServeHTTP(w, r)
	})
}

// adminToken returns the configured token, or the one in <DataDir>/admin-token,
// generating that file (0600) on first start. The file is written to a
// temporary file and renamed into place, so a failed write (a full disk)
// never leaves an empty or partial token behind; an empty file (from an
// older version) is replaced.
func (g *Global) adminToken() (string, error) {
	if g.cfg.API.AdminToken != "" {
		return g.cfg.API.AdminToken, nil
	}
	path := filepath.Join(g.cfg.DataDir, AdminTokenFile)
	b, err := os.ReadFile(path)
	if err == nil {
		if tok := strings.TrimSpace(string(b)); tok != "" {
			return tok, nil
		}
		g.log.Warn("admin token file is empty; generating a new token", "path", path)
	} else if !errors.Is(err, os.ErrNotExist) {
		return "", fmt.Errorf("global: admin token: %w", err)
	}
	tok := randomHex(32)
	if err := writeFileAtomic(path, []byte(tok+"\n"), 0o600); err != nil {
		return "", fmt.Errorf("global: write admin token: %w", err)
	}
	g.log.Info("generated the admin token", "path", path)
	return tok, nil
}

// writeFileAtomic writes data to a temporary file beside path, syncs it and
// renames it over path: readers see the old file or the whole new one.
func writeFileAtomic(path string, data []byte, perm os.FileMode) (err error) {
	f, err := os.CreateTemp(filepath.Dir(path), "."+filepath.Base(path)+".tmp-*")
	if err != nil {
		return err
	}
	defer func() {
		if err != nil {
			f.Close()
			os.Remove(f.Name())
		}
	}()
	if err := f.Chmod(perm); err != nil {
		return err
	}
	if _, err := f.Write(data); err != nil {
		return err
	}
	if err := f.Sync(); err != nil {
		return err
	}
	if err := f.Close(); err != nil {
		return err
	}
	return os.Rename(f.Name(), path)
}

func randomHex(n int) string {
	b := make([]byte, n)
	_, _ = rand.Read(b) // crypto/rand.Read never fails on supported platforms
	return hex.EncodeToString(b)
}
