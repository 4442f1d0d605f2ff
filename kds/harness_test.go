package kds_test

import (
	"context"
	"fmt"
	"net"
	"os"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/hashicorp/go-hclog"
	"github.com/prometheus/client_golang/prometheus"
	"google.golang.org/grpc"

	"github.com/meshtrace/meshtrace/kds"
	"github.com/meshtrace/meshtrace/resource"
	"github.com/meshtrace/meshtrace/store"
)

// Fast liveness for tests: a stall is detected after 20 x 100 ms (loose
// enough for the race detector on a loaded 2-core machine).
const (
	testHeartbeat = 100 * time.Millisecond
	testStall     = 20
)

func testLogger(t testing.TB, name string) hclog.Logger {
	level := hclog.Off
	if os.Getenv("KDS_TEST_LOG") != "" {
		level = hclog.Debug
	}
	return hclog.New(&hclog.LoggerOptions{Name: name, Level: level, Output: os.Stderr})
}

// env is a TLS setup shared by the globals and zones of one test.
type env struct {
	t     testing.TB
	certs kds.CertFiles
}

func newEnv(t testing.TB) *env {
	t.Helper()
	certs, err := kds.EnsureCerts(t.TempDir(), []string{"localhost", "127.0.0.1"})
	if err != nil {
		t.Fatal(err)
	}
	return &env{t: t, certs: certs}
}

// global is one global replica: a kds.Server on a TLS gRPC server.
type global struct {
	srv     *kds.Server
	addr    string
	reg     *prometheus.Registry
	stopped chan struct{}
	cancel  context.CancelFunc
	grpc    *grpc.Server

	mu    sync.Mutex
	nacks []resource.NACK
}

type globalOpt func(*kds.ServerConfig)

// startGlobal starts a replica on addr ("" for any free port).
func (e *env) startGlobal(st store.Store, addr string, opts ...globalOpt) *global {
	t := e.t
	t.Helper()
	g := &global{reg: prometheus.NewRegistry(), stopped: make(chan struct{})}
	cfg := kds.ServerConfig{
		Store:           st,
		Logger:          testLogger(t, "global"),
		Heartbeat:       testHeartbeat,
		StallIntervals:  testStall,
		InsightInterval: 50 * time.Millisecond,
		RevocationCheck: 100 * time.Millisecond,
		Registerer:      g.reg,
		OnNACK: func(zone string, n resource.NACK) {
			g.mu.Lock()
			g.nacks = append(g.nacks, n)
			g.mu.Unlock()
		},
	}
	for _, o := range opts {
		o(&cfg)
	}
	srv, err := kds.NewServer(cfg)
	if err != nil {
		t.Fatal(err)
	}
	creds, err := kds.ServerCredentials(e.certs.Cert, e.certs.Key)
	if err != nil {
		t.Fatal(err)
	}
	if addr == "" {
		addr = "127.0.0.1:0"
	}
	var lis net.Listener
	for range 50 { // the port of a stopped replica may take a moment to free
		if lis, err = net.Listen("tcp", addr); err == nil {
			break
		}
		time.Sleep(20 * time.Millisecond)
	}
	if err != nil {
		t.Fatal(err)
	}
	g.srv, g.addr = srv, lis.Addr().String()
	g.grpc = grpc.NewServer(append(srv.GRPCServerOptions(), grpc.Creds(creds))...)
	srv.Register(g.grpc)
	ctx, cancel := context.WithCancel(context.Background())
	g.cancel = cancel
	go func() { _ = g.grpc.Serve(lis) }()
	go func() {
		defer close(g.stopped)
		_ = srv.Run(ctx)
	}()
	t.Cleanup(g.stop)
	return g
}

// stop kills the replica: streams are cut at once.
func (g *global) stop() {
	g.cancel()
	<-g.stopped
	g.grpc.Stop()
}

func (g *global) nackList() []resource.NACK {
	g.mu.Lock()
	defer g.mu.Unlock()
	return append([]resource.NACK(nil), g.nacks...)
}

// zone is one zone CP's KDS client with its own store.
type zone struct {
	name   string
	store  store.Store
	client *kds.Client
	cancel context.CancelFunc
	done   chan struct{}
	exit   chan error // Run's result, when refused is set
}

type zoneOpt func(*kds.ClientConfig)

func (e *env) startZone(name string, st store.Store, token string, addrs []string, opts ...zoneOpt) *zone {
	return e.runZone(name, st, token, addrs, false, opts...)
}

// startRefusedZone starts a zone that global is expected to refuse: Run's
// error is on z.exit instead of failing the test.
func (e *env) startRefusedZone(name string, st store.Store, token string, addrs []string, opts ...zoneOpt) *zone {
	opts = append([]zoneOpt{func(c *kds.ClientConfig) { c.AuthGrace = time.Millisecond }}, opts...)
	return e.runZone(name, st, token, addrs, true, opts...)
}

// exitErr waits for the Run of a zone started with startRefusedZone.
func (z *zone) exitErr(t testing.TB, timeout time.Duration) error {
	t.Helper()
	select {
	case err := <-z.exit:
		return err
	case <-time.After(timeout):
		t.Fatalf("zone %s still running after %s", z.name, timeout)
		return nil
	}
}

func (e *env) runZone(name string, st store.Store, token string, addrs []string, refused bool, opts ...zoneOpt) *zone {
	t := e.t
	t.Helper()
	cfg := kds.ClientConfig{
		Zone:           name,
		Addresses:      addrs,
		Token:          token,
		CAFile:         e.certs.CA,
		Store:          st,
		Logger:         testLogger(t, "zone-"+name),
		Heartbeat:      testHeartbeat,
		StallIntervals: testStall,
		BackoffMin:     20 * time.Millisecond,
		BackoffMax:     200 * time.Millisecond,
		ReportInterval: 50 * time.Millisecond,
		Registerer:     prometheus.NewRegistry(),
	}
	for _, o := range opts {
		o(&cfg)
	}
	c, err := kds.NewClient(cfg)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	z := &zone{name: name, store: st, client: c, cancel: cancel, done: make(chan struct{}), exit: make(chan error, 1)}
	go func() {
		defer close(z.done)
		err := c.Run(ctx)
		if refused {
			z.exit <- err
			return
		}
		if err != nil {
			t.Errorf("zone %s: Run: %v", name, err)
		}
	}()
	t.Cleanup(z.stop)
	return z
}

func (z *zone) stop() {
	z.cancel()
	<-z.done
}

func token(t testing.TB, st store.Store, zone string) string {
	t.Helper()
	tok, err := kds.IssueZoneToken(context.Background(), st, zone)
	if err != nil {
		t.Fatal(err)
	}
	return tok
}

// meshTrace returns a valid MeshTrace; v varies its content.
func meshTrace(mesh, name string, v int) *resource.Resource {
	backends := []resource.Backend{{
		Type:   resource.BackendZipkin,
		Zipkin: &resource.ZipkinBackend{URL: fmt.Sprintf("http://zipkin.%s:9411/api/v2/spans", mesh)},
	}}
	return &resource.Resource{
		Meta: resource.Meta{Type: resource.TypeMeshTrace, Mesh: mesh, Name: name},
		Spec: &resource.MeshTraceSpec{
			TargetRef: &resource.TargetRef{Kind: resource.KindMesh},
			Default: &resource.MeshTraceConf{
				Backends: &backends,
				Sampling: &resource.Sampling{Overall: resource.Int(int64(v % 101))},
			},
		},
	}
}

func mesh(name string) *resource.Resource {
	return &resource.Resource{Meta: resource.Meta{Type: resource.TypeMesh, Name: name}, Spec: &resource.MeshSpec{}}
}

func dataplane(mesh, name, service string) *resource.Resource {
	return &resource.Resource{
		Meta: resource.Meta{Type: resource.TypeDataplane, Mesh: mesh, Name: name},
		Spec: &resource.DataplaneSpec{Networking: resource.DataplaneNetworking{
			Address: "10.0.0.1",
			Inbound: []resource.Inbound{{Port: 8080, Tags: map[string]string{resource.TagService: service}}},
		}},
	}
}

func put(t testing.TB, st store.Store, r *resource.Resource) int64 {
	t.Helper()
	rev, err := st.Put(context.Background(), r, store.AnyVersion)
	if err != nil {
		t.Fatalf("put %s: %v", r.Key(), err)
	}
	return rev
}

// putBurst writes policies p-0..p-(n-1) in mesh m with content v in
// transactions, as fast as the store takes them, and returns the last revision.
func putBurst(t testing.TB, st store.Store, m string, n, v int) int64 {
	t.Helper()
	ops := make([]store.Op, 0, n)
	for i := range n {
		r := meshTrace(m, fmt.Sprintf("p-%d", i), v+i)
		ops = append(ops, store.Op{Key: r.Key(), Resource: r})
	}
	rev, err := st.Txn(context.Background(), ops)
	if err != nil {
		t.Fatal(err)
	}
	return rev
}

func list(t testing.TB, st store.Store, typ resource.Type) map[string]*resource.Resource {
	t.Helper()
	res, err := st.List(context.Background(), typ, store.ListOptions{})
	if err != nil {
		t.Fatal(err)
	}
	out := map[string]*resource.Resource{}
	for _, r := range res.Items {
		out[r.Key().String()] = r
	}
	return out
}

func waitFor(t testing.TB, what string, timeout time.Duration, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %s waiting for %s", timeout, what)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// waitApplied waits until every zone applied revision rev.
func waitApplied(t testing.TB, rev int64, timeout time.Duration, zones ...*zone) {
	t.Helper()
	for _, z := range zones {
		waitFor(t, fmt.Sprintf("zone %s to apply revision %d", z.name, rev), timeout, func() bool {
			return z.client.LastAppliedRevision() >= rev
		})
	}
}

// sameContent fails unless the zone holds exactly global's resources of typ.
func sameContent(t testing.TB, global, zoneStore store.Store, typ resource.Type) {
	t.Helper()
	g, z := list(t, global, typ), list(t, zoneStore, typ)
	if len(g) != len(z) {
		t.Fatalf("%s: global has %d, zone has %d", typ, len(g), len(z))
	}
	for k, gr := range g {
		zr, ok := z[k]
		if !ok {
			t.Fatalf("%s missing on zone", k)
		}
		if zr.Labels[resource.LabelOrigin] != resource.OriginGlobal {
			t.Fatalf("%s on zone lacks %s=global: %v", k, resource.LabelOrigin, zr.Labels)
		}
		want := *gr
		want.Labels = map[string]string{resource.LabelOrigin: resource.OriginGlobal}
		for lk, lv := range gr.Labels {
			want.Labels[lk] = lv
		}
		if resource.Hash(&want) != resource.Hash(zr) {
			t.Fatalf("%s differs on zone", k)
		}
	}
}

func newMemory(t testing.TB) *store.MemoryStore {
	m := store.NewMemory()
	t.Cleanup(func() { _ = m.Close() })
	return m
}

func openEtcd(t testing.TB) *store.EtcdStore {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	s, err := store.OpenEmbedded(ctx, store.EmbeddedConfig{Dir: t.TempDir(), UnsafeNoFsync: true, AutoCompactionRetention: "0"})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = s.Close() })
	return s
}

// metricValue returns the value of the series of name whose zone label is
// zone ("" for a series without labels), or 0.
func metricValue(t testing.TB, reg *prometheus.Registry, name, zone string) float64 {
	t.Helper()
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	var sum float64
	for _, mf := range mfs {
		if mf.GetName() != name {
			continue
		}
		for _, m := range mf.GetMetric() {
			z := ""
			for _, l := range m.GetLabel() {
				if l.GetName() == "zone" {
					z = l.GetValue()
				}
			}
			if zone != "" && z != zone {
				continue
			}
			switch {
			case m.Counter != nil:
				sum += m.Counter.GetValue()
			case m.Gauge != nil:
				sum += m.Gauge.GetValue()
			}
		}
	}
	return sum
}

var settleN atomic.Int64

// settle waits until the zones applied everything global has written so far:
// a positive marker (a Dataplane written on global, a type not synced down)
// reaches their cursors once nothing before it is pending.
func settle(t testing.TB, gs store.Store, zones ...*zone) {
	t.Helper()
	marker := put(t, gs, dataplane("default", fmt.Sprintf("settle-%d", settleN.Add(1)), "settle"))
	waitApplied(t, marker, 10*time.Second, zones...)
}
