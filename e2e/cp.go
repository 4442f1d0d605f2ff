//go:build e2e

package e2e

// Everything that depends on how meshtrace-cp is configured and started lives
// in this file: config files, ports, tokens. Adjust here when the binary's
// flags or keys change.

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/testcontainers/testcontainers-go/wait"

	"github.com/meshtrace/meshtrace/kds"
)

// Container ports of the control planes.
const (
	globalAPIPort  = "5681/tcp"
	globalKDSPort  = "5685/tcp"
	globalDiagPort = "5680/tcp"
	zoneAPIPort    = "5682/tcp"
	zoneXDSPort    = "5678/tcp"
	zoneDiagPort   = "5692/tcp"
)

// Tokens the suite configures, so the test process can write.
const (
	adminToken   = "e2e-admin-token"
	zoneAPIToken = "e2e-zone-api-token"
)

func port(p string) string { return strings.TrimSuffix(p, "/tcp") }

// cpAvailable reports whether cmd/meshtrace-cp has a main package yet, so the
// suite can skip, rather than fail, the scenarios that need it.
func cpAvailable() bool {
	m, _ := filepath.Glob(filepath.Join(repoRoot(), "cmd", "meshtrace-cp", "*.go"))
	return len(m) > 0
}

func globalConfig(etcd []string) string {
	var b strings.Builder
	fmt.Fprintf(&b, "dataDir: /data\n")
	fmt.Fprintf(&b, "store:\n  external:\n    endpoints:\n")
	for _, e := range etcd {
		fmt.Fprintf(&b, "    - %s\n", e)
	}
	fmt.Fprintf(&b, "api:\n  address: 0.0.0.0:%s\n  adminToken: %s\n", port(globalAPIPort), adminToken)
	fmt.Fprintf(&b, "kds:\n  address: 0.0.0.0:%s\n  heartbeat: 2s\n", port(globalKDSPort))
	fmt.Fprintf(&b, "  tlsCertFile: /kds-tls.crt\n  tlsKeyFile: /kds-tls.key\n")
	fmt.Fprintf(&b, "diagnostics:\n  address: 0.0.0.0:%s\n", port(globalDiagPort))
	fmt.Fprintf(&b, "log:\n  level: debug\n")
	return b.String()
}

func zoneConfig(zone, token string, globals []string) string {
	var b strings.Builder
	fmt.Fprintf(&b, "name: %s\ndataDir: /data\n", zone)
	fmt.Fprintf(&b, "api:\n  address: 0.0.0.0:%s\n  token: %s\n", port(zoneAPIPort), zoneAPIToken)
	fmt.Fprintf(&b, "xds:\n  address: 0.0.0.0:%s\n", port(zoneXDSPort))
	fmt.Fprintf(&b, "diagnostics:\n  address: 0.0.0.0:%s\n", port(zoneDiagPort))
	fmt.Fprintf(&b, "global:\n  caFile: /kds-ca.crt\n  heartbeat: 2s\n  token: %q\n  addresses:\n", token)
	for _, g := range globals {
		fmt.Fprintf(&b, "  - %s:%s\n", g, port(globalKDSPort))
	}
	fmt.Fprintf(&b, "log:\n  level: debug\n")
	return b.String()
}

// startGlobal starts global replica i, reachable on the global network as
// global-<i>.
func startGlobal(ctx context.Context, t testing.TB, i int, net *Net, etcd *EtcdCluster, tls kdsTLS) (*Node, error) {
	name := fmt.Sprintf("global-%d", i)
	return startNode(ctx, spec{
		name:  name,
		image: imageCP.Ref(t),
		cmd:   []string{"global", "--config", "/config.yaml"},
		ports: []string{globalAPIPort, globalKDSPort, globalDiagPort},
		nets:  map[*Net][]string{net: {name, "global"}},
		files: map[string]string{
			"/config.yaml": globalConfig(etcd.Endpoints()),
			"/kds-tls.crt": tls.Cert,
			"/kds-tls.key": tls.Key,
		},
		wait: wait.ForHTTP("/readyz").WithPort(globalDiagPort).WithStartupTimeout(2 * time.Minute),
	})
}

// startZone starts zone's control plane: "zone-cp" on its zone network for
// its proxies, "zone-<name>" on the global network.
func startZone(ctx context.Context, t testing.TB, zone, token string, zoneNet, globalNet *Net, globals []string, tls kdsTLS) (*Node, error) {
	return startNode(ctx, spec{
		name:  zone + "-cp",
		image: imageCP.Ref(t),
		cmd:   []string{"zone", "--config", "/config.yaml"},
		ports: []string{zoneAPIPort, zoneXDSPort, zoneDiagPort},
		nets: map[*Net][]string{
			zoneNet:   {"zone-cp"},
			globalNet: {"zone-" + zone},
		},
		files: map[string]string{"/config.yaml": zoneConfig(zone, token, globals), "/kds-ca.crt": tls.CA},
		// /healthz, not /readyz: a zone may be ready only once synced, and a
		// zone restarted while global is down must still start.
		wait: wait.ForHTTP("/healthz").WithPort(zoneDiagPort).WithStartupTimeout(2 * time.Minute),
	})
}

// zoneXDSAddr is the address proxies in a zone dial.
func zoneXDSAddr() string { return "zone-cp:" + port(zoneXDSPort) }

// issueZoneToken asks global for a zone token, as
// `meshtrace-cp global token zone --name <zone>` does.
func issueZoneToken(t testing.TB, api API, zone string) (string, error) {
	resp, err := api.Do(t, http.MethodPost, "/tokens/zone", map[string]string{"zone": zone})
	if err != nil {
		return "", err
	}
	tok := strings.TrimSpace(string(resp.Body))
	if resp.Status != http.StatusOK || tok == "" {
		return "", fmt.Errorf("POST /tokens/zone: %d %s", resp.Status, resp.Body)
	}
	return tok, nil
}

// kdsTLS is one CA and a server certificate valid for every global replica,
// so a zone pins one CA whichever replica it reaches.
type kdsTLS struct{ CA, Cert, Key string }

func newKDSTLS(hosts []string) (kdsTLS, error) {
	dir, err := os.MkdirTemp("", "meshtrace-e2e-kds-tls-")
	if err != nil {
		return kdsTLS{}, err
	}
	defer os.RemoveAll(dir)
	files, err := kds.EnsureCerts(dir, hosts)
	if err != nil {
		return kdsTLS{}, err
	}
	var out kdsTLS
	for _, f := range []struct {
		dst  *string
		path string
	}{{&out.CA, files.CA}, {&out.Cert, files.Cert}, {&out.Key, files.Key}} {
		b, err := os.ReadFile(f.path)
		if err != nil {
			return kdsTLS{}, err
		}
		*f.dst = string(b)
	}
	return out, nil
}

// runOnce runs a container to completion and returns its output.
func runOnce(ctx context.Context, t testing.TB, s spec) (string, error) {
	s.wait = wait.ForExit().WithExitTimeout(time.Minute)
	n, err := startNode(ctx, s)
	if err != nil {
		return "", err
	}
	defer n.terminate()
	st, err := n.c.State(ctx)
	if err != nil {
		return "", err
	}
	rc, err := n.c.Logs(ctx)
	if err != nil {
		return "", err
	}
	defer rc.Close()
	var b strings.Builder
	sc := bufio.NewScanner(io.LimitReader(rc, 1<<20))
	for sc.Scan() {
		b.WriteString(sc.Text())
		b.WriteByte('\n')
	}
	if st.ExitCode != 0 {
		return b.String(), fmt.Errorf("%s exited with %d:\n%s", s.name, st.ExitCode, b.String())
	}
	return b.String(), nil
}

// dataplaneJSON is a Universal Dataplane of service svc with one HTTP inbound.
func dataplaneJSON(mesh, name, svc string) string {
	return fmt.Sprintf(`{"type":"Dataplane","mesh":%q,"name":%q,"networking":{"address":"10.0.0.10",`+
		`"inbound":[{"port":8080,"servicePort":80,"tags":{"kuma.io/service":%q,"kuma.io/protocol":"http"}}]}}`,
		mesh, name, svc)
}
