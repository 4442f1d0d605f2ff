//go:build e2e

package e2e

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"sync"
	"testing"
	"time"

	"golang.org/x/sync/errgroup"
)

// Zones of the topology and the proxies in each.
var (
	zoneNames      = []string{"east", "west"}
	proxiesPerZone = 2
)

const mesh = "default"

// Topology is the shared multi-zone deployment:
//
//	global net: etcd-0..2, global-0, global-1, zone CPs (as zone-<name>)
//	<zone> net: zone CP (as zone-cp), collector (<zone>.zipkincollector), proxies
type Topology struct {
	GlobalNet *Net
	Etcd      *EtcdCluster
	Globals   []*Node
	Zones     []*Zone

	nets  []*Net
	nodes []*Node
}

// Zone is one zone: its network, control plane, collector and proxies.
type Zone struct {
	Name      string
	Net       *Net
	CP        *Node
	Collector *Node
	Proxies   []*Node
	// Dataplanes are the proxies' dataplane names, index-aligned.
	Dataplanes []string
}

// Zone returns the zone called name.
func (tp *Topology) Zone(name string) *Zone {
	for _, z := range tp.Zones {
		if z.Name == name {
			return z
		}
	}
	panic("no zone " + name)
}

// GlobalAPI is the REST API of global replica i.
func (tp *Topology) GlobalAPI(i int) API {
	return API{Node: tp.Globals[i], Port: globalAPIPort, Token: adminToken}
}

// API is the zone's REST API.
func (z *Zone) API() API { return API{Node: z.CP, Port: zoneAPIPort, Token: zoneAPIToken} }

var shared struct {
	mu       sync.Mutex
	topo     *Topology
	baseErr  error
	baseDone bool
	cpErr    error
	cpDone   bool
}

// baseTopology returns the networks, etcd cluster and collectors, started on
// first use and shared by every test.
func baseTopology(t testing.TB) *Topology {
	t.Helper()
	needDocker(t)
	shared.mu.Lock()
	defer shared.mu.Unlock()
	if !shared.baseDone {
		shared.baseDone = true
		shared.topo = &Topology{}
		start := time.Now()
		// Stays the error if start-up ends the test (t.Fatal) midway.
		shared.baseErr = errors.New("set-up did not finish: see the first test's failure")
		shared.baseErr = shared.topo.startBase(t)
		logf("base topology (networks, etcd, collectors) up in %s", time.Since(start).Round(time.Second))
	}
	if shared.baseErr != nil {
		t.Fatalf("base topology: %v", shared.baseErr)
	}
	return shared.topo
}

// fullTopology adds the control planes and proxies to the base topology.
func fullTopology(t testing.TB) *Topology {
	t.Helper()
	if !cpAvailable() {
		t.Skip("cmd/meshtrace-cp has no Go files yet: the control plane scenarios need it")
	}
	tp := baseTopology(t)
	shared.mu.Lock()
	defer shared.mu.Unlock()
	if !shared.cpDone {
		shared.cpDone = true
		start := time.Now()
		shared.cpErr = errors.New("set-up did not finish: see the first test's failure")
		shared.cpErr = tp.startControlPlanes(t)
		logf("control planes and proxies up in %s", time.Since(start).Round(time.Second))
	}
	if shared.cpErr != nil {
		t.Fatalf("control planes: %v", shared.cpErr)
	}
	return tp
}

func (tp *Topology) net(ctx context.Context, name string) (*Net, error) {
	n, err := newNet(ctx, name)
	if err == nil {
		tp.nets = append(tp.nets, n)
	}
	return n, err
}

func (tp *Topology) keep(ns ...*Node) {
	for _, n := range ns {
		if n != nil {
			tp.nodes = append(tp.nodes, n)
		}
	}
}

func (tp *Topology) startBase(t testing.TB) error {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Minute)
	defer cancel()
	// Build the images concurrently before anything runs; errors are
	// reported by the Ref calls that need each image.
	images := []*image{imageEtcd, imageCollector, imageADSClient}
	if cpAvailable() {
		images = append(images, imageCP)
	}
	var wg sync.WaitGroup
	for _, im := range images {
		wg.Go(func() { _ = im.ensure() })
	}
	wg.Wait()
	for _, im := range images[:3] {
		im.Ref(t) // fails the test here, not in a goroutine below
	}
	var err error
	if tp.GlobalNet, err = tp.net(ctx, "global"); err != nil {
		return err
	}
	for _, name := range zoneNames {
		zn, err := tp.net(ctx, name)
		if err != nil {
			return err
		}
		tp.Zones = append(tp.Zones, &Zone{Name: name, Net: zn})
	}
	if tp.Etcd, err = startEtcd(ctx, t, tp.GlobalNet, 3); err != nil {
		return err
	}
	tp.keep(tp.Etcd.Nodes...)
	for _, z := range tp.Zones {
		if z.Collector, err = startCollector(ctx, t, z.Name, z.Net); err != nil {
			return err
		}
		tp.keep(z.Collector)
	}
	return nil
}

func (tp *Topology) startControlPlanes(t testing.TB) error {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Minute)
	defer cancel()
	imageCP.Ref(t)
	globals := []string{"global-0", "global-1"}
	tls, err := newKDSTLS(append([]string{"global"}, globals...))
	if err != nil {
		return fmt.Errorf("kds certificates: %w", err)
	}
	tp.Globals = make([]*Node, len(globals))
	g, gctx := errgroup.WithContext(ctx)
	for i := range globals {
		g.Go(func() error {
			n, err := startGlobal(gctx, t, i, tp.GlobalNet, tp.Etcd, tls)
			tp.Globals[i] = n
			return err
		})
	}
	err = g.Wait()
	tp.keep(tp.Globals...)
	if err != nil {
		return err
	}
	// The default mesh; global may create it itself.
	if resp, err := tp.GlobalAPI(0).Do(t, http.MethodPut, "/meshes/"+mesh,
		map[string]any{"type": "Mesh", "name": mesh}); err != nil || resp.Status >= 300 && resp.Status != http.StatusConflict {
		return fmt.Errorf("create mesh %s: %v %d %s", mesh, err, resp.Status, resp.Body)
	}
	g, gctx = errgroup.WithContext(ctx)
	for _, z := range tp.Zones {
		g.Go(func() error {
			token, err := issueZoneToken(t, tp.GlobalAPI(0), z.Name)
			if err != nil {
				return fmt.Errorf("zone token for %s: %w", z.Name, err)
			}
			if z.CP, err = startZone(gctx, t, z.Name, token, z.Net, tp.GlobalNet, globals, tls); err != nil {
				return err
			}
			// Dataplanes need their mesh, which comes from global.
			if err := poll(2*time.Minute, func() error {
				resp, err := z.API().Do(t, http.MethodGet, "/meshes/"+mesh, nil)
				if err == nil && resp.Status != http.StatusOK {
					err = fmt.Errorf("GET /meshes/%s: %d %s", mesh, resp.Status, resp.Body)
				}
				return err
			}); err != nil {
				return fmt.Errorf("zone %s never got mesh %s from global: %w", z.Name, mesh, err)
			}
			for i := range proxiesPerZone {
				dp := fmt.Sprintf("%s-dp-%d", z.Name, i)
				z.Dataplanes = append(z.Dataplanes, dp)
				resp, err := z.API().Do(t, http.MethodPut, "/meshes/"+mesh+"/dataplanes/"+dp,
					dataplaneJSON(mesh, dp, "web-"+z.Name))
				if err != nil || resp.Status >= 300 {
					return fmt.Errorf("register dataplane %s: %v %d %s", dp, err, resp.Status, resp.Body)
				}
				p, err := startADSClient(gctx, t, z.Name, mesh, dp, "", zoneXDSAddr(), z.Net)
				if err != nil {
					return err
				}
				z.Proxies = append(z.Proxies, p)
			}
			return nil
		})
	}
	err = g.Wait()
	for _, z := range tp.Zones {
		tp.keep(z.CP)
		tp.keep(z.Proxies...)
	}
	return err
}

// teardown removes every container and network of the topology.
func (tp *Topology) teardown() {
	if tp == nil {
		return
	}
	var wg sync.WaitGroup
	for _, n := range tp.nodes {
		wg.Add(1)
		go func() { defer wg.Done(); n.terminate() }()
	}
	wg.Wait()
	for _, n := range tp.nets {
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		if err := n.nw.Remove(ctx); err != nil {
			logf("remove network %s: %v", n.Name, err)
		}
		cancel()
	}
}

// dumpLogs prints the tail of every control plane's log, to explain a failure.
func (tp *Topology) dumpLogs() {
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	for _, n := range tp.Globals {
		logTail(ctx, n, 60)
	}
	for _, z := range tp.Zones {
		logTail(ctx, z.CP, 80)
	}
}
