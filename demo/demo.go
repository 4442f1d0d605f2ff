// Package demo runs global and zones east and west in one process on embedded
// etcd, registers proxies in each zone, applies the seed's trace-west and
// trace-east policies through global's API and prints which collector every
// proxy sends its traces to.
package demo

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"path/filepath"
	"slices"
	"sort"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/hashicorp/go-hclog"
	"golang.org/x/sync/errgroup"

	"github.com/meshtrace/meshtrace/cli"
	"github.com/meshtrace/meshtrace/config"
	"github.com/meshtrace/meshtrace/global"
	"github.com/meshtrace/meshtrace/resource"
	"github.com/meshtrace/meshtrace/zone"
)

// Config sets where the demo keeps state and listens.
type Config struct {
	// Dir keeps all state; "" means a fresh temporary directory removed on exit.
	Dir       string
	LogLevel  string
	GlobalAPI string
	GlobalKDS string
	// Zones to start, with their addresses.
	Zones []ZoneConfig
	// ConvergeTimeout bounds the wait for every proxy to get its collector.
	ConvergeTimeout time.Duration
	// Exit returns once the table is printed instead of serving until ctx ends.
	Exit bool
	// FreePortFallback: when one of the addresses above cannot be bound, every
	// listener gets a free port instead (and the printed commands use them).
	FreePortFallback bool
}

// ZoneConfig is one demo zone.
type ZoneConfig struct {
	Name, API, XDS, Diagnostics string
	// Proxies are registered as Dataplanes, one service each.
	Proxies []string
}

// DefaultConfig uses the well-known ports so meshtracectl's default address works.
func DefaultConfig() Config {
	return Config{
		LogLevel:  "warn",
		GlobalAPI: "127.0.0.1:5681",
		GlobalKDS: "127.0.0.1:5685",
		Zones: []ZoneConfig{
			{Name: "east", API: "127.0.0.1:5682", XDS: "127.0.0.1:5678", Diagnostics: "127.0.0.1:5692", Proxies: []string{"frontend", "backend", "payments"}},
			{Name: "west", API: "127.0.0.1:5683", XDS: "127.0.0.1:5679", Diagnostics: "127.0.0.1:5693", Proxies: []string{"frontend", "backend", "inventory"}},
		},
		ConvergeTimeout:  30 * time.Second,
		FreePortFallback: true,
	}
}

// addrs returns pointers to every listen address of cfg.
func (cfg *Config) addrs() []*string {
	out := []*string{&cfg.GlobalAPI, &cfg.GlobalKDS}
	for i := range cfg.Zones {
		z := &cfg.Zones[i]
		out = append(out, &z.API, &z.XDS, &z.Diagnostics)
	}
	return out
}

// busyAddress returns the first address of cfg that cannot be bound now, and why.
func (cfg *Config) busyAddress() (string, error) {
	for _, a := range cfg.addrs() {
		ln, err := net.Listen("tcp", *a)
		if err != nil {
			return *a, err
		}
		ln.Close()
	}
	return "", nil
}

// useFreePorts moves every listener to a free port on its host.
func (cfg *Config) useFreePorts() {
	for _, a := range cfg.addrs() {
		host, _, err := net.SplitHostPort(*a)
		if err != nil || host == "" {
			host = "127.0.0.1"
		}
		*a = net.JoinHostPort(host, "0")
	}
}

// Policies applied by the demo: the seed page's west-only and east-only examples.
const Policies = `type: MeshTrace
name: trace-west
mesh: default
spec:
  targetRef:
    kind: MeshSubset
    tags:
      kuma.io/zone: west
  default:
    backends:
    - type: Zipkin
      zipkin:
        url: http://west.zipkincollector:9411/api/v2/spans
        apiVersion: httpJson
---
type: MeshTrace
name: trace-east
mesh: default
spec:
  targetRef:
    kind: MeshSubset
    tags:
      kuma.io/zone: east
  default:
    backends:
    - zipkin:
        url: http://east.zipkincollector:9411/api/v2/spans
        apiVersion: httpJson
`

// Row is one line of the demo's table.
type Row struct {
	Zone, Proxy, Service, Backend, Collector string
}

// Run starts everything, applies the policies, prints the table, then serves
// until ctx ends (or returns at once when cfg.Exit).
func Run(ctx context.Context, cfg Config, out io.Writer, log hclog.Logger) (err error) {
	dir := cfg.Dir
	if dir == "" {
		dir, err = os.MkdirTemp("", "meshtrace-demo-")
		if err != nil {
			return err
		}
		defer os.RemoveAll(dir)
	}
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	eg, ectx := errgroup.WithContext(ctx)
	defer func() {
		cancel()
		if werr := eg.Wait(); werr != nil && !errors.Is(werr, context.Canceled) && err == nil {
			err = werr
		}
	}()

	fmt.Fprintf(out, "meshtrace demo: state in %s\n", dir)
	if cfg.FreePortFallback {
		cfg.Zones = slices.Clone(cfg.Zones)
		if addr, err := cfg.busyAddress(); err != nil {
			fmt.Fprintf(out, "%s is not available (%v): every listener uses a free port instead\n", addr, err)
			cfg.useFreePorts()
		}
	}
	gcfg := global.DefaultConfig()
	gcfg.DataDir = filepath.Join(dir, "global")
	gcfg.Store.Embedded.Dir = filepath.Join(dir, "global", "etcd")
	gcfg.API.Address = cfg.GlobalAPI
	gcfg.KDS.Address = cfg.GlobalKDS
	gcfg.Diagnostics.Address = "127.0.0.1:0"
	gcfg.Log.Level = cfg.LogLevel
	g, err := global.New(gcfg, log.Named("global"))
	if err != nil {
		return err
	}
	eg.Go(func() error { return g.Run(ectx) })
	if err := waitStarted(ectx, g.Started()); err != nil {
		return fmt.Errorf("global did not start: %w", err)
	}
	if err := waitStarted(ectx, g.KDSStarted()); err != nil {
		return fmt.Errorf("global's KDS server did not start: %w", err)
	}
	fmt.Fprintf(out, "global: API http://%s, KDS %s\n", g.APIAddr(), g.KDSAddr())

	zones := make([]*zone.Zone, 0, len(cfg.Zones))
	registered := 0
	for _, zc := range cfg.Zones {
		token, err := g.IssueZoneToken(ectx, zc.Name)
		if err != nil {
			return fmt.Errorf("zone token for %s: %w", zc.Name, err)
		}
		c := zone.DefaultConfig()
		c.Name = zc.Name
		c.DataDir = filepath.Join(dir, zc.Name)
		c.Store.Embedded.Dir = filepath.Join(dir, zc.Name, "etcd")
		c.API.Address, c.XDS.Address, c.Diagnostics.Address = zc.API, zc.XDS, zc.Diagnostics
		c.Global.Addresses = []string{g.KDSAddr()}
		c.Global.Token = token
		c.Global.CAFile = g.KDSCAFile()
		c.Global.Heartbeat = config.Duration(2 * time.Second)
		c.Log.Level = cfg.LogLevel
		z, err := zone.New(c, log.Named(zc.Name))
		if err != nil {
			return err
		}
		eg.Go(func() error { return z.Run(ectx) })
		if err := waitStarted(ectx, z.Started()); err != nil {
			return fmt.Errorf("zone %s did not start: %w", zc.Name, err)
		}
		fmt.Fprintf(out, "zone %s: API http://%s, xDS %s\n", zc.Name, z.APIAddr(), z.XDSAddr())
		zones = append(zones, z)
		if err := WaitMesh(ectx, z, cfg.ConvergeTimeout); err != nil {
			return err
		}
		zapi := &cli.Client{Address: "http://" + z.APIAddr()}
		for i, svc := range zc.Proxies {
			if err := RegisterProxy(ectx, zapi, fmt.Sprintf("%s-%s", svc, zc.Name), svc, fmt.Sprintf("10.0.0.%d", i+1)); err != nil {
				return fmt.Errorf("register proxy in %s: %w", zc.Name, err)
			}
			registered++
		}
	}

	gapi := &cli.Client{Address: "http://" + g.APIAddr(), Token: g.AdminToken()}
	start := time.Now()
	items, err := resource.DecodeAll([]byte(Policies))
	if err != nil {
		return err
	}
	for _, r := range items {
		if _, err := gapi.Do(ectx, "PUT", "/meshes/"+r.Mesh+"/meshtraces/"+r.Name, nil, r, nil); err != nil {
			return fmt.Errorf("apply %s: %w", r.Name, err)
		}
		fmt.Fprintf(out, "applied meshtrace/%s on global\n", r.Name)
	}
	rows, err := converge(ectx, zones, registered, cfg.ConvergeTimeout)
	if err != nil {
		return err
	}
	fmt.Fprintf(out, "every proxy in every zone has its collector %s after the policies were applied\n\n", time.Since(start).Round(time.Millisecond))
	if err := PrintTable(out, rows); err != nil {
		return err
	}
	if bad := CrossRegion(rows); len(bad) > 0 {
		return fmt.Errorf("traces would leave their region: %s", strings.Join(bad, "; "))
	}
	fmt.Fprintln(out, "\nOK: every west proxy sends to west's collector, every east proxy to east's.")
	if cfg.Exit {
		return nil
	}
	tokenFile := filepath.Join(gcfg.DataDir, global.AdminTokenFile)
	fmt.Fprintf(out, `
Point meshtracectl at global (saves the address and the admin token in ~/.meshtracectl.yaml):
  go run ./cmd/meshtracectl config set --address http://%[1]s --token "$(cat %[2]s)"
Then try:
  go run ./cmd/meshtracectl get meshtraces
  go run ./cmd/meshtracectl get zone-insights
  go run ./cmd/meshtracectl inspect meshtrace trace-west
  go run ./cmd/meshtracectl --address http://%[3]s inspect dataplane backend-west
  go run ./cmd/meshtracectl delete meshtrace trace-east
  go run ./cmd/meshtracectl residency set west --allow 'west.zipkincollector:9411' --mode Enforce
  go run ./cmd/meshtracectl residency
or with kumactl 2.7:
  kumactl config control-planes add --name meshtrace-demo --address http://%[1]s --auth-type=tokens --auth-conf token="$(cat %[2]s)"
Ctrl-C stops the demo.
`, g.APIAddr(), tokenFile, zones[len(zones)-1].APIAddr())
	<-ctx.Done()
	fmt.Fprintln(out, "stopping")
	return nil
}

func waitStarted(ctx context.Context, started <-chan struct{}) error {
	select {
	case <-started:
		return nil
	case <-ctx.Done():
		return context.Cause(ctx)
	}
}

// WaitMesh waits until the default mesh has synced from global to z.
func WaitMesh(ctx context.Context, z *zone.Zone, timeout time.Duration) error {
	deadline := time.Now().Add(timeout)
	key := resource.Key{Type: resource.TypeMesh, Name: resource.DefaultMesh}
	for {
		if _, _, err := z.Store().Get(ctx, key); err == nil {
			return nil
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("zone %s: mesh %q not synced from global after %s", z.Name(), resource.DefaultMesh, timeout)
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(5 * time.Millisecond):
		}
	}
}

// RegisterProxy registers a sidecar Dataplane for service through a zone's API:
// one HTTP inbound on 8080 (service port 80) and an outbound to backend.
func RegisterProxy(ctx context.Context, c *cli.Client, name, service, address string) error {
	dp, err := resource.New(resource.TypeDataplane, resource.DefaultMesh, name)
	if err != nil {
		return err
	}
	spec := dp.Spec.(*resource.DataplaneSpec)
	spec.Networking.Address = address
	spec.Networking.Inbound = []resource.Inbound{{
		Port: 8080, ServicePort: 80,
		Tags: map[string]string{resource.TagService: service, resource.TagProtocol: "http"},
	}}
	spec.Networking.Outbound = []resource.Outbound{{Port: 10001, Tags: map[string]string{resource.TagService: "backend"}}}
	_, err = c.Do(ctx, "PUT", "/meshes/"+dp.Mesh+"/dataplanes/"+dp.Name, nil, dp, nil)
	return err
}

// converge waits until every proxy of every zone has a collector. A zone's
// reconciler learns of a registered Dataplane from its store watch, after the
// API answered: until all registered proxies are known, the answer is not in.
func converge(ctx context.Context, zones []*zone.Zone, registered int, timeout time.Duration) ([]Row, error) {
	deadline := time.Now().Add(timeout)
	for {
		var rows []Row
		missing := 0
		for _, z := range zones {
			for _, p := range z.Reconciler().Proxies() {
				if p.Collector == "" {
					missing++
				}
				rows = append(rows, Row{Zone: z.Name(), Proxy: p.Name, Service: p.Service, Backend: p.Backend, Collector: p.Collector})
			}
		}
		missing += max(registered-len(rows), 0)
		if missing == 0 && len(rows) > 0 {
			sort.Slice(rows, func(i, j int) bool {
				if rows[i].Zone != rows[j].Zone {
					return rows[i].Zone < rows[j].Zone
				}
				return rows[i].Proxy < rows[j].Proxy
			})
			return rows, nil
		}
		if time.Now().After(deadline) {
			return rows, fmt.Errorf("after %s, %d proxies still have no collector", timeout, missing)
		}
		select {
		case <-ctx.Done():
			return nil, ctx.Err()
		case <-time.After(5 * time.Millisecond):
		}
	}
}

// PrintTable writes zone -> proxy -> collector.
func PrintTable(w io.Writer, rows []Row) error {
	tw := tabwriter.NewWriter(w, 0, 0, 3, ' ', 0)
	fmt.Fprintln(tw, "ZONE\tPROXY\tSERVICE\tBACKEND\tCOLLECTOR")
	for _, r := range rows {
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\n", r.Zone, r.Proxy, r.Service, r.Backend, r.Collector)
	}
	return tw.Flush()
}

// CrossRegion lists proxies whose collector is not in their own zone (the demo
// collectors are named <zone>.zipkincollector).
func CrossRegion(rows []Row) []string {
	var bad []string
	for _, r := range rows {
		if !strings.Contains(r.Collector, "//"+r.Zone+".") {
			bad = append(bad, fmt.Sprintf("%s/%s -> %s", r.Zone, r.Proxy, r.Collector))
		}
	}
	return bad
}
