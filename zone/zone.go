// Package zone is the zone control plane: it keeps the policies synced from
// global and its own Dataplanes in a local store, evaluates every MeshTrace
// targetRef for every proxy and serves the result as Envoy xDS.
package zone

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"os"
	"sync"
	"sync/atomic"
	"time"

	"github.com/hashicorp/go-hclog"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"golang.org/x/sync/errgroup"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials"

	"github.com/meshtrace/meshtrace/config"
	"github.com/meshtrace/meshtrace/diag"
	"github.com/meshtrace/meshtrace/kds"
	"github.com/meshtrace/meshtrace/listen"
	"github.com/meshtrace/meshtrace/residency"
	"github.com/meshtrace/meshtrace/resource"
	"github.com/meshtrace/meshtrace/restapi"
	"github.com/meshtrace/meshtrace/store"
	"github.com/meshtrace/meshtrace/zone/xds"
)

// ShutdownTimeout bounds how long servers drain on shutdown, so that a
// SIGTERM stops the process within a few seconds.
const ShutdownTimeout = 2 * time.Second

// xdsMaxStreams caps concurrent streams on one xDS connection (Envoy opens
// one ADS stream).
const xdsMaxStreams = 16

// Zone is one zone control plane.
type Zone struct {
	cfg Config
	log hclog.Logger
	reg *prometheus.Registry

	xds *xds.Server
	rec *xds.Reconciler

	mu        sync.Mutex
	st        store.Store
	runners   []func(ctx context.Context, st store.Store) error
	globalUp  func() bool
	kds       *kds.Client
	api       http.Handler
	apiAddr   string
	xdsAddr   string
	diagAddr  string
	ran       bool
	started   chan struct{}
	syncedRev atomic.Int64
	res       *residency.Index
}

// New checks cfg and returns a Zone ready to Run. A nil logger discards logs.
func New(cfg Config, logger hclog.Logger) (*Zone, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	if logger == nil {
		logger = hclog.NewNullLogger()
	}
	log := logger.With("zone", cfg.Name)
	reg := prometheus.NewRegistry()
	reg.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	listen.Register(reg)
	srv := xds.NewServer(log, xds.WithRegisterer(reg), xds.WithInstance(cfg.Name), xds.WithStopTimeout(ShutdownTimeout))
	if cfg.XDS.Collector.SkipVerify {
		log.Warn("https tracing collectors' certificates are not verified (xds.collector.skipVerify)")
	}
	rec, err := xds.NewReconciler(log, srv.Cache(), reg, xds.WithCollectorTLS(xds.CollectorTLS{
		TrustedCA: cfg.XDS.Collector.TrustedCAFile, SkipVerify: cfg.XDS.Collector.SkipVerify,
	}))
	if err != nil {
		return nil, fmt.Errorf("zone: %w", err)
	}
	z := &Zone{cfg: cfg, log: log, reg: reg, xds: srv, rec: rec, started: make(chan struct{})}
	z.setupKDS()
	return z, nil
}

// Name is the zone's name.
func (z *Zone) Name() string { return z.cfg.Name }

// Registry is where the zone's metrics live.
func (z *Zone) Registry() *prometheus.Registry { return z.reg }

// Reconciler gives read access to every proxy's computed configuration.
func (z *Zone) Reconciler() *xds.Reconciler { return z.rec }

// SetStore makes Run use s instead of opening the configured store.
func (z *Zone) SetStore(s store.Store) {
	z.mu.Lock()
	defer z.mu.Unlock()
	z.st = s
}

// AddRunner adds a long-running part started once the store is open (the KDS
// client). It must be called before Run.
func (z *Zone) AddRunner(fn func(ctx context.Context, st store.Store) error) {
	z.mu.Lock()
	defer z.mu.Unlock()
	z.runners = append(z.runners, fn)
}

// SetGlobalConnected tells readiness how to ask whether global is reachable.
func (z *Zone) SetGlobalConnected(f func() bool) {
	z.mu.Lock()
	defer z.mu.Unlock()
	z.globalUp = f
}

// Started is closed once the store is open and the listeners are bound.
func (z *Zone) Started() <-chan struct{} { return z.started }

// Store returns the zone's store (nil before Run opened it).
func (z *Zone) Store() store.Store {
	z.mu.Lock()
	defer z.mu.Unlock()
	return z.st
}

// APIAddr, XDSAddr and DiagnosticsAddr return bound addresses after start.
func (z *Zone) APIAddr() string         { z.mu.Lock(); defer z.mu.Unlock(); return z.apiAddr }
func (z *Zone) XDSAddr() string         { z.mu.Lock(); defer z.mu.Unlock(); return z.xdsAddr }
func (z *Zone) DiagnosticsAddr() string { z.mu.Lock(); defer z.mu.Unlock(); return z.diagAddr }

// SyncedRevision is the zone store revision the proxies' configuration reflects.
func (z *Zone) SyncedRevision() int64 { return z.syncedRev.Load() }

// Run serves until ctx ends or a part fails.
func (z *Zone) Run(ctx context.Context) (err error) {
	z.mu.Lock()
	if z.ran {
		z.mu.Unlock()
		return errors.New("zone: Run called twice")
	}
	z.ran = true
	st := z.st
	runners := append([]func(context.Context, store.Store) error(nil), z.runners...)
	z.mu.Unlock()

	began := time.Now()
	if err := os.MkdirAll(z.cfg.DataDir, 0o700); err != nil {
		return fmt.Errorf("zone: data dir: %w", err)
	}
	if note, err := listen.FitFDLimit(
		listen.Cap{Key: "api.maxConnections", Max: &z.cfg.API.MaxConnections},
		listen.Cap{Key: "xds.maxConnections", Max: &z.cfg.XDS.MaxConnections},
		listen.Cap{Key: "diagnostics.maxConnections", Max: &z.cfg.Diagnostics.MaxConnections},
	); err != nil {
		return fmt.Errorf("zone: %w", err)
	} else if note != "" {
		z.log.Warn(note)
	}
	xdsCreds, err := z.xdsCredentials()
	if err != nil {
		return err
	}
	if st == nil {
		est, err := store.Open(ctx, z.cfg.Store, store.Options{Registerer: z.reg, Logger: z.log.Named("store")})
		if err != nil {
			return fmt.Errorf("zone: %w", err)
		}
		defer func() {
			if cerr := est.Close(); cerr != nil && err == nil {
				err = fmt.Errorf("zone: close store: %w", cerr)
			}
		}()
		st = est
		z.SetStore(st)
	}
	storeOpen := time.Since(began)

	res, err := residency.NewIndex(residency.Config{Store: st, Logger: z.log.Named("residency"), Registerer: z.reg, LocalZone: z.cfg.Name})
	if err != nil {
		return fmt.Errorf("zone: %w", err)
	}
	z.mu.Lock()
	z.res = res
	z.mu.Unlock()
	routes := z.inspectRoutes()
	routes["GET /residency"] = residency.Handler(z.Residency, nil)
	api, err := restapi.New(restapi.Config{
		Store:      st,
		Logger:     z.log.Named("api"),
		Mode:       restapi.ModeZone,
		Zone:       z.cfg.Name,
		Writable:   []resource.Type{resource.TypeDataplane, resource.TypeMeshTrace},
		ReadOnly:   isSynced,
		Mutate:     z.mutate,
		Token:      z.cfg.API.Token,
		OpenWrites: []resource.Type{resource.TypeDataplane},
		Registerer: z.reg,
		Routes:     routes,
		// Local MeshTraces (zone-originated) meet the same residency check
		// as global's, against this zone's own proxies.
		Admit:      residency.Admission(z.Residency),
		AdmitBatch: residency.AdmissionBatch(z.Residency),
		// Local policies sync up to global: refuse what one KDS message
		// could not carry.
		MaxResourceBytes: kds.MaxResourceBytes(z.cfg.Global.MaxMessageBytes),
	})
	if err != nil {
		return fmt.Errorf("zone: %w", err)
	}
	var lns []net.Listener
	open := func(name, key, addr string, max int) (*listen.Listener, error) {
		ln, err := listen.TCP(name, addr, max)
		if err != nil {
			for _, l := range lns {
				l.Close()
			}
			return nil, fmt.Errorf("zone: %s: %w", key, err)
		}
		lns = append(lns, ln)
		return ln, nil
	}
	apiLn, err := open("api", "api.address", z.cfg.API.Address, z.cfg.API.MaxConnections)
	if err != nil {
		return err
	}
	xdsLn, err := open("xds", "xds.address", z.cfg.XDS.Address, z.cfg.XDS.MaxConnections)
	if err != nil {
		return err
	}
	diagLn, err := open("diagnostics", "diagnostics.address", z.cfg.Diagnostics.Address, z.cfg.Diagnostics.MaxConnections)
	if err != nil {
		return err
	}
	z.xds.AddGRPCOptions(xdsLn.GRPCServerOptions(xdsMaxStreams)...)
	if xdsCreds != nil {
		z.xds.AddGRPCOptions(grpc.Creds(xdsCreds))
	} else if !config.IsLoopback(z.cfg.XDS.Address) {
		z.log.Warn("xDS is served without TLS on a non-loopback address: proxies' configuration and node ids travel in clear; set xds.tlsCertFile and xds.tlsKeyFile", "address", z.cfg.XDS.Address)
	}
	apiSrv := listen.HTTPServer(api, apiLn)
	diagSrv := listen.HTTPServer(diag.Handler(z.reg, diag.StoreCheck(st), z.servingCheck(), z.globalCheck()), diagLn)
	z.mu.Lock()
	z.api = api
	z.apiAddr, z.xdsAddr, z.diagAddr = apiLn.Addr().String(), xdsLn.Addr().String(), diagLn.Addr().String()
	z.mu.Unlock()
	// Where start-up time goes, measured from Run: store open (embedded
	// etcd: its own start and election), listeners.
	z.log.Info("zone control plane started", "api", z.APIAddr(), "xds", z.XDSAddr(), "diagnostics", z.DiagnosticsAddr(),
		"store_open", storeOpen, "listening", time.Since(began))
	close(z.started)

	eg, ectx := errgroup.WithContext(ctx)
	for _, s := range []struct {
		name string
		srv  *http.Server
		ln   net.Listener
	}{{"api", apiSrv, apiLn}, {"diagnostics", diagSrv, diagLn}} {
		eg.Go(func() error {
			if err := s.srv.Serve(s.ln); err != nil && !errors.Is(err, http.ErrServerClosed) {
				return fmt.Errorf("%s server: %w", s.name, err)
			}
			return nil
		})
	}
	eg.Go(func() error {
		<-ectx.Done()
		sctx, cancel := context.WithTimeout(context.Background(), ShutdownTimeout)
		defer cancel()
		return errors.Join(apiSrv.Shutdown(sctx), diagSrv.Shutdown(sctx))
	})
	eg.Go(func() error { return z.xds.Run(ectx, xdsLn) })
	eg.Go(func() error { return res.Run(ectx) })
	eg.Go(func() error {
		return feed(ectx, z.log.Named("feed"), st, z.cfg.Name, z.rec, func(rev int64) { z.syncedRev.Store(rev) })
	})
	for _, run := range runners {
		eg.Go(func() error { return run(ectx, st) })
	}
	err = eg.Wait()
	z.log.Info("zone control plane stopped", "error", err)
	return err
}

// Residency is the zone's residency index (nil before Run opened the store).
func (z *Zone) Residency() *residency.Index {
	z.mu.Lock()
	defer z.mu.Unlock()
	return z.res
}

// isSynced reports whether r is a read-only copy of a global resource.
func isSynced(r *resource.Resource) bool {
	return r.Labels[resource.LabelOrigin] == resource.OriginGlobal
}

// mutate stamps the zone on what is written through the zone API.
func (z *Zone) mutate(r *resource.Resource) {
	if r.Labels == nil {
		r.Labels = map[string]string{}
	}
	r.Labels[resource.LabelZone] = z.cfg.Name
	if dp, ok := r.Spec.(*resource.DataplaneSpec); ok {
		dp.SetZone(z.cfg.Name)
	}
}

// servingCheck is ready once the proxies' configuration reflects the zone
// store (the last good state, whether or not global is reachable).
func (z *Zone) servingCheck() diag.Check {
	return diag.Check{Name: "configLoadedAtRevision", Probe: func(ctx context.Context) (any, error) {
		rev := z.SyncedRevision()
		if rev <= 0 {
			return nil, errors.New("xDS configuration not computed from the store yet")
		}
		return rev, nil
	}}
}

// globalCheck reports the connection to global on /healthz and /readyz; it
// never makes the zone unready: proxies keep being served the last good
// configuration while global is away.
func (z *Zone) globalCheck() diag.Check {
	return diag.Check{Name: "globalConnected", Info: true, Probe: func(ctx context.Context) (any, error) {
		z.mu.Lock()
		up := z.globalUp
		z.mu.Unlock()
		if up == nil && len(z.cfg.Global.Addresses) == 0 {
			return "standalone", nil
		}
		// With global addresses, up is nil until the KDS client has
		// started: not connected yet, not standalone.
		if up == nil || !up() {
			return nil, errors.New("not connected to global (proxies keep their last good configuration)")
		}
		return true, nil
	}}
}

// xdsCredentials are the TLS credentials of the xDS server, nil without
// xds.tlsCertFile.
func (z *Zone) xdsCredentials() (credentials.TransportCredentials, error) {
	c := z.cfg.XDS
	if c.TLSCertFile == "" {
		return nil, nil
	}
	creds, err := credentials.NewServerTLSFromFile(c.TLSCertFile, c.TLSKeyFile)
	if err != nil {
		return nil, fmt.Errorf("zone: xds.tlsCertFile: %w", err)
	}
	return creds, nil
}
