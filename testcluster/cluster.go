// Package testcluster runs a whole meshtrace deployment in one process for
// tests and benchmarks: a global control plane and zones, each on its own
// embedded etcd, talking real KDS over TLS on loopback, with Envoy stand-ins
// on real ADS streams.
package testcluster

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/hashicorp/go-hclog"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/meshtrace/meshtrace/cli"
	"github.com/meshtrace/meshtrace/config"
	"github.com/meshtrace/meshtrace/demo"
	"github.com/meshtrace/meshtrace/global"
	"github.com/meshtrace/meshtrace/kds"
	"github.com/meshtrace/meshtrace/resource"
	"github.com/meshtrace/meshtrace/store"
	"github.com/meshtrace/meshtrace/zone"
)

// Cluster is a running deployment.
type Cluster struct {
	tb     testing.TB
	dir    string
	log    hclog.Logger
	Global *global.Global
	API    *cli.Client
	Zones  map[string]*Zone

	gst        store.Store
	gcfg       global.Config
	stopGlobal func()

	mu     sync.Mutex
	stops  []func()
	tokens map[string]string

	durable bool
}

func (c *Cluster) startGlobal() {
	g, err := global.New(c.gcfg, c.log.Named("global"))
	if err != nil {
		c.tb.Fatal(err)
	}
	if c.gst == nil {
		// The first global's registry shows the store's metrics.
		gst := c.openStore(filepath.Join(c.dir, "global-etcd"), g.Registry())
		c.onStop(func() { gst.Close() })
		c.gst = gst
	}
	g.SetStore(c.gst)
	c.stopGlobal = run(c.tb, "global", g.Run, g.Started(), g.KDSStarted())
	c.onStop(c.stopGlobal)
	c.Global = g
	c.API = &cli.Client{Address: "http://" + g.APIAddr(), Token: g.AdminToken()}
	// Restarts keep the addresses zones and clients know.
	c.gcfg.API.Address, c.gcfg.KDS.Address = g.APIAddr(), g.KDSAddr()
}

// StopGlobal stops the global CP; its store and addresses stay for RestartGlobal.
func (c *Cluster) StopGlobal() { c.stopGlobal() }

// RestartGlobal starts global again on the same store and addresses.
func (c *Cluster) RestartGlobal() { c.startGlobal() }

// Zone is a running zone CP.
type Zone struct {
	*zone.Zone
	API  *cli.Client
	stop func()
	// refused receives the error of a zone that exited because global
	// refused it (kds.ErrRefused); such an exit does not fail the test.
	refused chan error
}

// Refused receives the error of the zone's exit when global refused it.
func (z *Zone) Refused() <-chan error { return z.refused }

// Options shape a cluster.
type Options struct {
	Zones []string
	// Logger receives every control plane's logs; nil discards them.
	Logger hclog.Logger
	// Global, when set, adjusts global's configuration (addresses and dirs
	// are set already).
	Global func(*global.Config)
	// Durable keeps etcd's fsync on, as in production; by default the
	// cluster's embedded etcds skip it (fast, and tests need no crash safety).
	Durable bool
}

func (c *Cluster) openStore(dir string, reg prometheus.Registerer) *store.EtcdStore {
	tb := c.tb
	tb.Helper()
	st, err := store.OpenEmbedded(context.Background(), store.EmbeddedConfig{Dir: dir, UnsafeNoFsync: !c.durable,
		Options: store.Options{Registerer: reg}})
	if err != nil {
		tb.Fatal(err)
	}
	return st
}

func run(tb testing.TB, name string, runFn func(context.Context) error, started ...<-chan struct{}) func() {
	tb.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- runFn(ctx) }()
	for _, ch := range started {
		select {
		case <-ch:
		case err := <-done:
			cancel()
			tb.Fatalf("%s stopped before it started: %v", name, err)
		case <-time.After(60 * time.Second):
			cancel()
			tb.Fatalf("%s did not start within 60s", name)
		}
	}
	var once sync.Once
	return func() {
		once.Do(func() {
			cancel()
			select {
			case err := <-done:
				if err != nil {
					tb.Errorf("%s: %v", name, err)
				}
			case <-time.After(30 * time.Second):
				tb.Errorf("%s did not stop within 30s", name)
			}
		})
	}
}

// Start runs global and the zones, and stops them when the test ends.
func Start(tb testing.TB, opts Options) *Cluster {
	tb.Helper()
	log := opts.Logger
	if log == nil {
		log = hclog.NewNullLogger()
		if os.Getenv("MESHTRACE_TEST_LOG") != "" {
			log = hclog.New(&hclog.LoggerOptions{Level: hclog.Debug, Output: os.Stderr})
		}
	}
	c := &Cluster{tb: tb, dir: tb.TempDir(), log: log, Zones: map[string]*Zone{}, tokens: map[string]string{}, durable: opts.Durable}
	tb.Cleanup(c.Stop)

	gcfg := global.DefaultConfig()
	gcfg.DataDir = filepath.Join(c.dir, "global")
	gcfg.API.Address, gcfg.KDS.Address, gcfg.Diagnostics.Address = "127.0.0.1:0", "127.0.0.1:0", "127.0.0.1:0"
	if opts.Global != nil {
		opts.Global(&gcfg)
	}
	c.gcfg = gcfg
	c.startGlobal()
	for _, name := range opts.Zones {
		c.StartZone(name)
	}
	return c
}

// StartZone runs (or runs again, on the same state) the zone called name and
// waits until the default mesh reached it.
func (c *Cluster) StartZone(name string) *Zone {
	z := c.startZone(name)
	if err := demo.WaitMesh(context.Background(), z.Zone, 30*time.Second); err != nil {
		c.tb.Fatal(err)
	}
	return z
}

// StartZoneOffline runs a zone again without waiting for global.
func (c *Cluster) StartZoneOffline(name string) *Zone { return c.startZone(name) }

func (c *Cluster) startZone(name string) *Zone {
	tb := c.tb
	tb.Helper()
	c.mu.Lock()
	token := c.tokens[name]
	c.mu.Unlock()
	if token == "" {
		var err error
		if token, err = c.Global.IssueZoneToken(context.Background(), name); err != nil {
			tb.Fatal(err)
		}
		c.mu.Lock()
		c.tokens[name] = token
		c.mu.Unlock()
	}
	cfg := zone.DefaultConfig()
	cfg.Name = name
	cfg.DataDir = filepath.Join(c.dir, name)
	cfg.API.Address, cfg.XDS.Address, cfg.Diagnostics.Address = "127.0.0.1:0", "127.0.0.1:0", "127.0.0.1:0"
	cfg.Global.Addresses = []string{c.Global.KDSAddr()}
	cfg.Global.Token = token
	cfg.Global.CAFile = filepath.Join(c.gcfg.DataDir, global.KDSTLSDir, "ca.crt")
	cfg.Global.Heartbeat = config.Duration(time.Second)
	cfg.Global.AuthGrace = config.Duration(time.Second)
	cfg.API.Token = "zone-api-" + name // zone-local policy writes need one
	z, err := zone.New(cfg, c.log.Named(name))
	if err != nil {
		tb.Fatal(err)
	}
	zst := c.openStore(filepath.Join(c.dir, name+"-etcd"), z.Registry())
	z.SetStore(zst)
	zz := &Zone{Zone: z, refused: make(chan error, 1)}
	stopZone := run(tb, "zone "+name, func(ctx context.Context) error {
		err := z.Run(ctx)
		if errors.Is(err, kds.ErrRefused) {
			zz.refused <- err
			return nil
		}
		return err
	}, z.Started())
	zz.API = &cli.Client{Address: "http://" + z.APIAddr(), Token: cfg.API.Token}
	zz.stop = func() { stopZone(); zst.Close() }
	c.mu.Lock()
	c.Zones[name] = zz
	c.mu.Unlock()
	c.onStop(zz.stop)
	return zz
}

// StopZone stops a zone CP (its state stays for StartZone).
func (c *Cluster) StopZone(name string) {
	c.mu.Lock()
	z := c.Zones[name]
	delete(c.Zones, name)
	c.mu.Unlock()
	if z != nil {
		z.stop()
	}
}

func (c *Cluster) onStop(f func()) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.stops = append(c.stops, f)
}

// Stop stops everything, zones first.
func (c *Cluster) Stop() {
	c.mu.Lock()
	stops := c.stops
	c.stops = nil
	c.mu.Unlock()
	for i := len(stops) - 1; i >= 0; i-- {
		stops[i]()
	}
}

// Apply PUTs a Universal or Kubernetes YAML document on global.
func (c *Cluster) Apply(doc string) error {
	items, err := resource.DecodeAll([]byte(doc))
	if err != nil {
		return err
	}
	for _, r := range items {
		d, _ := resource.Lookup(r.Type)
		if _, err := c.API.Do(context.Background(), "PUT", cli.ResourcePath(d, r.Mesh, r.Name), nil, r, nil); err != nil {
			return fmt.Errorf("%s %s: %w", r.Type, r.Name, err)
		}
	}
	return nil
}

// RegisterProxy registers a sidecar Dataplane for service in the zone.
func (z *Zone) RegisterProxy(tb testing.TB, name, service string) {
	tb.Helper()
	if err := demo.RegisterProxy(context.Background(), z.API, name, service, "10.1.0.1"); err != nil {
		tb.Fatal(err)
	}
}

// Eventually retries f every few milliseconds until it returns nil.
func Eventually(tb testing.TB, timeout time.Duration, f func() error) {
	tb.Helper()
	deadline := time.Now().Add(timeout)
	for {
		err := f()
		if err == nil {
			return
		}
		if time.Now().After(deadline) {
			tb.Fatalf("not true after %s: %v", timeout, err)
		}
		time.Sleep(2 * time.Millisecond)
	}
}
