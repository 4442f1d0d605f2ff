package zone

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"net/http"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	discoveryv3 "github.com/envoyproxy/go-control-plane/envoy/service/discovery/v3"
	"github.com/hashicorp/go-hclog"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/status"

	"github.com/meshtrace/meshtrace/kds"
	"github.com/meshtrace/meshtrace/resource"
	"github.com/meshtrace/meshtrace/store"
)

func testDataplane(t *testing.T, name string) *resource.Resource {
	t.Helper()
	dp, _ := resource.New(resource.TypeDataplane, "default", name)
	spec := dp.Spec.(*resource.DataplaneSpec)
	spec.Networking.Address = "10.0.0.1"
	spec.Networking.Inbound = []resource.Inbound{{Port: 8080, ServicePort: 80, Tags: map[string]string{
		resource.TagService: "backend", resource.TagProtocol: "http",
	}}}
	return dp
}

// Without api.token, proxies may register (loopback only) but zone-local
// policies cannot be written; with it, every write needs it.
func TestZoneAPITokenRules(t *testing.T) {
	pol := syncedPolicy(t, "local", "http://west.zipkincollector:9411/api/v2/spans")
	pol.Labels = nil
	withMesh := func(t *testing.T, z *Zone) {
		mesh, _ := resource.New(resource.TypeMesh, "", "default")
		mesh.Labels = map[string]string{resource.LabelOrigin: resource.OriginGlobal}
		if _, err := z.Store().Put(context.Background(), mesh, store.AnyVersion); err != nil {
			t.Fatal(err)
		}
	}
	t.Run("no token", func(t *testing.T) {
		z, stop := startZone(t, t.TempDir(), func(c *Config) { c.API.Token = "" })
		defer stop()
		withMesh(t, z)
		api := "http://" + z.APIAddr()
		if code := call(t, "PUT", api+"/meshes/default/dataplanes/dp-1#notoken", testDataplane(t, "dp-1"), nil); code != http.StatusCreated {
			t.Fatalf("dataplane registration without token: %d", code)
		}
		if code := call(t, "PUT", api+"/meshes/default/meshtraces/local#notoken", pol, nil); code != http.StatusForbidden {
			t.Fatalf("zone-local policy write without a configured token: %d, want 403", code)
		}
		if code := call(t, "DELETE", api+"/meshes/default/meshtraces/local#notoken", nil, nil); code != http.StatusForbidden {
			t.Fatalf("zone-local policy delete without a configured token: %d, want 403", code)
		}
	})
	t.Run("token", func(t *testing.T) {
		z, stop := startZone(t, t.TempDir())
		defer stop()
		withMesh(t, z)
		api := "http://" + z.APIAddr()
		if code := call(t, "PUT", api+"/meshes/default/dataplanes/dp-1#notoken", testDataplane(t, "dp-1"), nil); code != http.StatusUnauthorized {
			t.Fatalf("dataplane write without the token: %d, want 401", code)
		}
		if code := call(t, "PUT", api+"/meshes/default/meshtraces/local#notoken", pol, nil); code != http.StatusUnauthorized {
			t.Fatalf("policy write without the token: %d, want 401", code)
		}
		if code := call(t, "PUT", api+"/meshes/default/meshtraces/local", pol, nil); code != http.StatusCreated {
			t.Fatalf("policy write with the token: %d", code)
		}
	})
}

func TestZoneConfigTokenRules(t *testing.T) {
	for _, tc := range []struct {
		addr, token, xdsCert string
		wantErr              string
	}{
		{addr: "127.0.0.1:5682"},
		{addr: "localhost:5682"},
		{addr: "[::1]:5682"},
		{addr: "0.0.0.0:5682", wantErr: "api.token"},
		{addr: ":5682", wantErr: "api.token"},
		{addr: "10.1.2.3:5682", wantErr: "api.token"},
		{addr: "0.0.0.0:5682", token: "t"},
		{addr: "127.0.0.1:5682", xdsCert: "cert.pem", wantErr: "xds.tlsCertFile"},
	} {
		c := DefaultConfig()
		c.Name = "west"
		c.API.Address, c.API.Token, c.XDS.TLSCertFile = tc.addr, tc.token, tc.xdsCert
		err := c.Validate()
		if tc.wantErr == "" && err != nil {
			t.Errorf("%s token %q: %v", tc.addr, tc.token, err)
		}
		if tc.wantErr != "" && (err == nil || !strings.Contains(err.Error(), tc.wantErr)) {
			t.Errorf("%s token %q: error %v, want one naming %s", tc.addr, tc.token, err, tc.wantErr)
		}
	}
}

// A zone that cannot reach global is ready (it serves the last good
// configuration); /healthz says global is away.
func TestZoneReadyWhileGlobalAway(t *testing.T) {
	z, stop := startZone(t, t.TempDir(), func(c *Config) {
		c.Global.Addresses = []string{"127.0.0.1:1"}
		c.Global.Token = "unused"
		c.Global.Insecure = true
	})
	defer stop()
	diag := "http://" + z.DiagnosticsAddr()
	get := func(path string) (int, map[string]any) {
		resp, err := http.Get(diag + path)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		var m map[string]any
		_ = json.Unmarshal(b, &m)
		return resp.StatusCode, m
	}
	deadline := time.Now().Add(20 * time.Second)
	for {
		code, body := get("/readyz")
		if code == http.StatusOK {
			if _, ok := body["configLoadedAtRevision"]; !ok {
				t.Fatalf("readyz %v does not show the served revision", body)
			}
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("readyz %d %v while global is away, want 200", code, body)
		}
		time.Sleep(50 * time.Millisecond)
	}
	code, body := get("/healthz")
	g, _ := body["globalConnected"].(map[string]any)
	if code != http.StatusOK || g == nil || g["ok"] != false {
		t.Fatalf("healthz %d %v: want globalConnected {ok: false, error}", code, body)
	}
}

// With xds.tlsCertFile, xDS is served over TLS: a TLS client connects, a
// plaintext one does not.
func TestXDSOverTLS(t *testing.T) {
	certs, err := kds.EnsureCerts(t.TempDir(), []string{"127.0.0.1"})
	if err != nil {
		t.Fatal(err)
	}
	z, stop := startZone(t, t.TempDir(), func(c *Config) { c.XDS.TLSCertFile, c.XDS.TLSKeyFile = certs.Cert, certs.Key })
	defer stop()
	ready := func(creds credentials.TransportCredentials) bool {
		conn, err := grpc.NewClient(z.XDSAddr(), grpc.WithTransportCredentials(creds))
		if err != nil {
			t.Fatal(err)
		}
		defer conn.Close()
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		defer cancel()
		stream, err := discoveryv3.NewAggregatedDiscoveryServiceClient(conn).StreamAggregatedResources(ctx)
		if err != nil {
			return false
		}
		if err := stream.Send(&discoveryv3.DiscoveryRequest{Node: &corev3.Node{Id: "default.nobody"}, TypeUrl: "type.googleapis.com/envoy.config.listener.v3.Listener"}); err != nil {
			return false
		}
		_, err = stream.Recv()
		// No snapshot for this node: the stream stays open until the deadline.
		return status.Code(err) == codes.DeadlineExceeded
	}
	tlsCreds, err := credentials.NewClientTLSFromFile(certs.CA, "")
	if err != nil {
		t.Fatal(err)
	}
	if !ready(tlsCreds) {
		t.Fatal("TLS client could not open an ADS stream")
	}
	if ready(insecure.NewCredentials()) {
		t.Fatal("plaintext client opened an ADS stream on a TLS xDS server")
	}
}

// Plaintext xDS off loopback is allowed, with a warning naming the fix.
func TestXDSPlaintextWarning(t *testing.T) {
	for _, tc := range []struct {
		addr string
		warn bool
	}{{"0.0.0.0:0", true}, {"127.0.0.1:0", false}} {
		var logs syncBuffer
		cfg := DefaultConfig()
		cfg.Name, cfg.DataDir = "west", t.TempDir()
		cfg.Store.Embedded.Dir = filepath.Join(cfg.DataDir, "etcd")
		cfg.API.Address, cfg.XDS.Address, cfg.Diagnostics.Address = "127.0.0.1:0", tc.addr, "127.0.0.1:0"
		z, err := New(cfg, hclog.New(&hclog.LoggerOptions{Level: hclog.Warn, Output: &logs}))
		if err != nil {
			t.Fatal(err)
		}
		ctx, cancel := context.WithCancel(context.Background())
		done := make(chan error, 1)
		go func() { done <- z.Run(ctx) }()
		select {
		case <-z.Started():
		case err := <-done:
			t.Fatal(err)
		}
		cancel()
		<-done
		if got := strings.Contains(logs.String(), "xds.tlsCertFile"); got != tc.warn {
			t.Errorf("xds on %s: warning %v, want %v:\n%s", tc.addr, got, tc.warn, logs.String())
		}
	}
}

type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// Before the KDS client has started, a zone with global addresses reports
// global as not connected, not as standalone (CI once caught /healthz saying
// "standalone" in that window); a zone without addresses is standalone.
func TestGlobalCheckBeforeKDSStarts(t *testing.T) {
	for _, tc := range []struct {
		addrs      []string
		standalone bool
	}{{nil, true}, {[]string{"127.0.0.1:1"}, false}} {
		cfg := DefaultConfig()
		cfg.Name = "west"
		cfg.Global.Addresses, cfg.Global.Token, cfg.Global.Insecure = tc.addrs, "unused", true
		z, err := New(cfg, hclog.NewNullLogger())
		if err != nil {
			t.Fatal(err)
		}
		v, err := z.globalCheck().Probe(context.Background())
		if tc.standalone && (v != "standalone" || err != nil) {
			t.Errorf("addresses %v: %v, %v; want standalone", tc.addrs, v, err)
		}
		if !tc.standalone && err == nil {
			t.Errorf("addresses %v: %v, want not connected", tc.addrs, v)
		}
	}
}
