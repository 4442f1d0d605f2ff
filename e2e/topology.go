//go:build e2e

package e2e

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"os"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/moby/moby/api/types/network"
	"github.com/moby/moby/client"
	"github.com/testcontainers/testcontainers-go"
	tcnetwork "github.com/testcontainers/testcontainers-go/network"
	"github.com/testcontainers/testcontainers-go/wait"
	"golang.org/x/sync/errgroup"
)

// Every container and network of the suite carries labelSuite, and labelPID
// says which test process made it, so leftovers of a crashed run can be told
// apart from those of a run still going on.
const (
	labelSuite = "io.meshtrace.e2e"
	labelPID   = "io.meshtrace.e2e.pid"
	labelHost  = "io.meshtrace.e2e.host"
)

var hostname, _ = os.Hostname()

func labels() map[string]string {
	return map[string]string{labelSuite: "true", labelPID: strconv.Itoa(os.Getpid()), labelHost: hostname}
}

func logf(format string, args ...any) {
	fmt.Fprintf(os.Stderr, "%s e2e: %s\n", time.Now().UTC().Format("15:04:05.000"), fmt.Sprintf(format, args...))
}

// runID makes names unique per test process.
var runID = strconv.Itoa(os.Getpid())

// Net is a docker network of the topology.
type Net struct {
	Name string
	nw   *testcontainers.DockerNetwork
}

func newNet(ctx context.Context, name string) (*Net, error) {
	nw, err := tcnetwork.New(ctx, tcnetwork.WithLabels(labels()), tcnetwork.WithDriver("bridge"))
	if err != nil {
		return nil, fmt.Errorf("network %s: %w", name, err)
	}
	return &Net{Name: name, nw: nw}, nil
}

// ID is the docker network name (unique per run).
func (n *Net) ID() string { return n.nw.Name }

// Node is one container of the topology.
type Node struct {
	Name string
	c    *testcontainers.DockerContainer
	// aliases per docker network name, so a partition can be healed with the
	// same names.
	aliases map[string][]string
}

// spec describes a container to start.
type spec struct {
	name  string
	image string
	cmd   []string
	env   map[string]string
	ports []string
	// nets maps each network to the aliases the node has on it.
	nets  map[*Net][]string
	files map[string]string // path in container -> content
	wait  wait.Strategy
}

func startNode(ctx context.Context, s spec) (*Node, error) {
	req := testcontainers.ContainerRequest{
		Image:          s.image,
		Name:           "meshtrace-e2e-" + runID + "-" + s.name,
		Cmd:            s.cmd,
		Env:            s.env,
		ExposedPorts:   s.ports,
		Labels:         labels(),
		WaitingFor:     s.wait,
		NetworkAliases: map[string][]string{},
	}
	aliases := map[string][]string{}
	for n, a := range s.nets {
		req.Networks = append(req.Networks, n.ID())
		req.NetworkAliases[n.ID()] = a
		aliases[n.ID()] = a
	}
	for path, content := range s.files {
		req.Files = append(req.Files, testcontainers.ContainerFile{
			Reader: strings.NewReader(content), ContainerFilePath: path, FileMode: 0o644})
	}
	c, err := testcontainers.GenericContainer(ctx, testcontainers.GenericContainerRequest{ContainerRequest: req, Started: true})
	n := &Node{Name: s.name, aliases: aliases}
	if dc, ok := c.(*testcontainers.DockerContainer); ok {
		n.c = dc
	}
	if err != nil {
		if n.c != nil {
			logTail(context.Background(), n, 40)
			_ = n.c.Terminate(context.Background())
		}
		return nil, fmt.Errorf("start %s: %w", s.name, err)
	}
	return n, nil
}

// ID is the docker container id.
func (n *Node) ID() string { return n.c.GetContainerID() }

// Addr is "127.0.0.1:<host port>" of a container port such as "5681/tcp".
// Host ports change when a container restarts: never cache the result.
func (n *Node) Addr(t testing.TB, port string) string {
	t.Helper()
	a, err := n.addr(port)
	if err != nil {
		t.Fatal(err)
	}
	return a
}

// addr is Addr for callers outside the test goroutine.
func (n *Node) addr(port string) (string, error) {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	var last error
	for ctx.Err() == nil {
		p, err := n.c.MappedPort(ctx, port)
		if err == nil {
			return "127.0.0.1:" + strconv.Itoa(int(p.Num())), nil
		}
		last = err
		time.Sleep(200 * time.Millisecond)
	}
	return "", fmt.Errorf("%s: mapped port %s: %w", n.Name, port, last)
}

// URL is "http://127.0.0.1:<host port>" of a container port.
func (n *Node) URL(t testing.TB, port string) string { return "http://" + n.Addr(t, port) }

// Stop stops the container gracefully (SIGTERM, then SIGKILL after 10s).
func (n *Node) Stop(t testing.TB) {
	t.Helper()
	timeout := 10 * time.Second
	logf("stop %s", n.Name)
	if err := n.c.Stop(context.Background(), &timeout); err != nil {
		t.Fatalf("stop %s: %v", n.Name, err)
	}
}

// Kill sends SIGKILL: the process gets no chance to say goodbye.
func (n *Node) Kill(t testing.TB) {
	t.Helper()
	logf("kill %s", n.Name)
	cli := dockerClient(t)
	if _, err := cli.ContainerKill(context.Background(), n.ID(), client.ContainerKillOptions{Signal: "KILL"}); err != nil {
		t.Fatalf("kill %s: %v", n.Name, err)
	}
	// Wait until docker reports it exited, so a Start right after works.
	waitFor(t, 30*time.Second, n.Name+" exited", func() error {
		st, err := n.c.State(context.Background())
		if err != nil {
			return err
		}
		if st.Running {
			return fmt.Errorf("still running")
		}
		return nil
	})
}

// Start starts a stopped or killed container and waits until it is ready.
func (n *Node) Start(t testing.TB) {
	t.Helper()
	logf("start %s", n.Name)
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	if err := n.c.Start(ctx); err != nil {
		logTail(ctx, n, 40)
		t.Fatalf("start %s: %v", n.Name, err)
	}
}

// Disconnect removes the container from a network: a network partition.
func (n *Node) Disconnect(t testing.TB, net *Net) {
	t.Helper()
	logf("disconnect %s from %s", n.Name, net.Name)
	_, err := dockerClient(t).NetworkDisconnect(context.Background(), net.ID(),
		client.NetworkDisconnectOptions{Container: n.ID(), Force: true})
	if err != nil {
		t.Fatalf("disconnect %s from %s: %v", n.Name, net.Name, err)
	}
}

// Connect attaches the container to a network again, with its aliases there.
func (n *Node) Connect(t testing.TB, net *Net) {
	t.Helper()
	logf("connect %s to %s", n.Name, net.Name)
	_, err := dockerClient(t).NetworkConnect(context.Background(), net.ID(), client.NetworkConnectOptions{
		Container:      n.ID(),
		EndpointConfig: &network.EndpointSettings{Aliases: n.aliases[net.ID()]},
	})
	if err != nil {
		t.Fatalf("connect %s to %s: %v", n.Name, net.Name, err)
	}
}

// terminate removes the container; safe on nil.
func (n *Node) terminate() {
	if n == nil || n.c == nil {
		return
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	if err := n.c.Terminate(ctx, testcontainers.StopTimeout(2*time.Second)); err != nil {
		logf("terminate %s: %v", n.Name, err)
	}
}

// logTail prints the last lines of a container's output, to explain a failure.
func logTail(ctx context.Context, n *Node, lines int) {
	if n == nil || n.c == nil {
		return
	}
	rc, err := n.c.Logs(ctx)
	if err != nil {
		logf("logs of %s: %v", n.Name, err)
		return
	}
	defer rc.Close()
	var all []string
	sc := bufio.NewScanner(io.LimitReader(rc, 8<<20))
	sc.Buffer(make([]byte, 1<<20), 1<<20)
	for sc.Scan() {
		all = append(all, sc.Text())
	}
	if len(all) > lines {
		all = all[len(all)-lines:]
	}
	fmt.Fprintf(os.Stderr, "----- last %d log lines of %s -----\n%s\n----- end of %s -----\n",
		len(all), n.Name, strings.Join(all, "\n"), n.Name)
}

var (
	dockerOnce sync.Once
	dockerCli  *testcontainers.DockerClient
	dockerErr  error
)

func dockerClient(t testing.TB) *testcontainers.DockerClient {
	t.Helper()
	dockerOnce.Do(func() {
		dockerCli, dockerErr = testcontainers.NewDockerClientWithOpts(context.Background())
	})
	if dockerErr != nil {
		t.Fatalf("docker client: %v", dockerErr)
	}
	return dockerCli
}

// dockerReachable says why Docker cannot be used, or "" when it can.
func dockerReachable() string {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	cli, err := testcontainers.NewDockerClientWithOpts(ctx)
	if err != nil {
		return err.Error()
	}
	defer cli.Close()
	if _, err := cli.Ping(ctx, client.PingOptions{}); err != nil {
		return err.Error()
	}
	return ""
}

// removeLabeled removes the containers and networks of this suite made by
// process pid, or, when pid is 0, by any process of this host that is no
// longer alive (those of other hosts sharing the daemon are left alone).
func removeLabeled(pid int) {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	cli, err := testcontainers.NewDockerClientWithOpts(ctx)
	if err != nil {
		logf("cleanup: %v", err)
		return
	}
	defer cli.Close()
	mine := func(l map[string]string) bool {
		if l[labelSuite] != "true" {
			return false
		}
		owner, _ := strconv.Atoi(l[labelPID])
		if pid != 0 {
			return owner == pid
		}
		return l[labelHost] == hostname && owner != 0 && syscall.Kill(owner, 0) == syscall.ESRCH
	}
	filter := client.Filters{}.Add("label", labelSuite+"=true")
	cs, err := cli.ContainerList(ctx, client.ContainerListOptions{All: true, Filters: filter})
	if err != nil {
		logf("cleanup: list containers: %v", err)
	}
	for _, c := range cs.Items {
		if !mine(c.Labels) {
			continue
		}
		if _, err := cli.ContainerRemove(ctx, c.ID, client.ContainerRemoveOptions{Force: true, RemoveVolumes: true}); err != nil {
			logf("cleanup: remove container %s: %v", c.ID[:12], err)
		} else {
			logf("cleanup: removed container %s %v", c.ID[:12], c.Names)
		}
	}
	ns, err := cli.NetworkList(ctx, client.NetworkListOptions{Filters: filter})
	if err != nil {
		logf("cleanup: list networks: %v", err)
	}
	for _, n := range ns.Items {
		if !mine(n.Labels) {
			continue
		}
		if _, err := cli.NetworkRemove(ctx, n.ID, client.NetworkRemoveOptions{}); err != nil {
			logf("cleanup: remove network %s: %v", n.Name, err)
		} else {
			logf("cleanup: removed network %s", n.Name)
		}
	}
}

// EtcdCluster is a static three-member etcd cluster on one network.
type EtcdCluster struct {
	Nodes []*Node
}

const etcdClientPort = "2379/tcp"

// startEtcd starts n members concurrently: a member is healthy only once a
// quorum has formed, so they cannot be waited for one by one.
func startEtcd(ctx context.Context, t testing.TB, net *Net, n int) (*EtcdCluster, error) {
	img := imageEtcd.Ref(t)
	var peers []string
	for i := range n {
		peers = append(peers, fmt.Sprintf("etcd-%d=http://etcd-%d:2380", i, i))
	}
	cl := &EtcdCluster{Nodes: make([]*Node, n)}
	g, gctx := errgroup.WithContext(ctx)
	for i := range n {
		name := fmt.Sprintf("etcd-%d", i)
		g.Go(func() error {
			node, err := startNode(gctx, spec{
				name:  name,
				image: img,
				cmd: []string{
					"--name=" + name,
					"--data-dir=/etcd-data",
					"--listen-client-urls=http://0.0.0.0:2379",
					"--advertise-client-urls=http://" + name + ":2379",
					"--listen-peer-urls=http://0.0.0.0:2380",
					"--initial-advertise-peer-urls=http://" + name + ":2380",
					"--initial-cluster=" + strings.Join(peers, ","),
					"--initial-cluster-state=new",
					"--initial-cluster-token=meshtrace-e2e-" + runID,
					"--heartbeat-interval=100",
					"--election-timeout=1000",
				},
				ports: []string{etcdClientPort},
				nets:  map[*Net][]string{net: {name}},
				wait: wait.ForHTTP("/health").WithPort(etcdClientPort).
					WithStartupTimeout(2 * time.Minute).
					WithResponseMatcher(func(body io.Reader) bool {
						b, _ := io.ReadAll(body)
						return strings.Contains(string(b), `"health":"true"`)
					}),
			})
			cl.Nodes[i] = node
			return err
		})
	}
	if err := g.Wait(); err != nil {
		for _, node := range cl.Nodes {
			node.terminate()
		}
		return nil, err
	}
	return cl, nil
}

// Endpoints are the members' client URLs inside the docker network.
func (e *EtcdCluster) Endpoints() []string {
	out := make([]string, len(e.Nodes))
	for i, n := range e.Nodes {
		out[i] = "http://" + n.Name + ":2379"
	}
	return out
}

// HostEndpoints are the members' client addresses from the test process.
func (e *EtcdCluster) HostEndpoints(t testing.TB) []string {
	out := make([]string, len(e.Nodes))
	for i, n := range e.Nodes {
		out[i] = n.Addr(t, etcdClientPort)
	}
	return out
}

const (
	collectorPort = "9411/tcp"
	adsclientPort = "9901/tcp"
)

// startCollector starts a zone's trace collector, reachable in its zone as
// <zone>.zipkincollector:9411, the name the seed's policies use.
func startCollector(ctx context.Context, t testing.TB, zone string, net *Net) (*Node, error) {
	return startNode(ctx, spec{
		name:  zone + "-collector",
		image: imageCollector.Ref(t),
		cmd:   []string{"--listen=:9411", "--name=" + zone},
		ports: []string{collectorPort},
		nets:  map[*Net][]string{net: {zone + ".zipkincollector", "collector"}},
		wait:  wait.ForHTTP("/healthz").WithPort(collectorPort).WithStartupTimeout(time.Minute),
	})
}

// startADSClient starts an Envoy stand-in for dataplane name in mesh, talking
// ADS to xdsAddr (host:port inside the zone network). instance tells apart
// several stand-ins for one dataplane.
func startADSClient(ctx context.Context, t testing.TB, zone, mesh, name, instance, xdsAddr string, net *Net) (*Node, error) {
	cname := zone + "-" + name
	if instance != "" {
		cname += "-" + instance
	}
	return startNode(ctx, spec{
		name:  cname,
		image: imageADSClient.Ref(t),
		cmd:   []string{"--xds=" + xdsAddr, "--node=" + mesh + "." + name, "--listen=:9901", "--max-backoff=1s"},
		ports: []string{adsclientPort},
		nets:  map[*Net][]string{net: {name}},
		wait:  wait.ForHTTP("/healthz").WithPort(adsclientPort).WithStartupTimeout(time.Minute),
	})
}

// poll calls f until it returns nil or timeout passes, and returns f's last
// error; unlike waitFor it may run outside the test goroutine.
func poll(timeout time.Duration, f func() error) error {
	deadline := time.Now().Add(timeout)
	for {
		err := f()
		if err == nil || time.Now().After(deadline) {
			return err
		}
		time.Sleep(250 * time.Millisecond)
	}
}

// waitFor polls f until it returns nil or timeout passes, then fails the
// test with f's last error.
func waitFor(t testing.TB, timeout time.Duration, what string, f func() error) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	start := time.Now()
	var err error
	for {
		if err = f(); err == nil {
			logf("%s after %s", what, time.Since(start).Round(10*time.Millisecond))
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %s waiting for %s: %v", timeout, what, err)
		}
		time.Sleep(250 * time.Millisecond)
	}
}
