package testcluster

import (
	"crypto/tls"
	"net"
	"os"
	"sync"
	"testing"
	"time"

	"github.com/meshtrace/meshtrace/global"
)

// flood opens n connections to addr and keeps them open, idle, until the
// test ends; withTLS completes a TLS handshake first (and then says nothing,
// as a client that never presents a token).
func flood(t *testing.T, addr string, n int, withTLS bool) int {
	t.Helper()
	var mu sync.Mutex
	var conns []net.Conn
	t.Cleanup(func() {
		mu.Lock()
		defer mu.Unlock()
		for _, c := range conns {
			c.Close()
		}
	})
	var wg sync.WaitGroup
	for range n {
		wg.Add(1)
		go func() {
			defer wg.Done()
			c, err := net.DialTimeout("tcp", addr, 5*time.Second)
			if err != nil {
				return
			}
			if withTLS {
				tc := tls.Client(c, &tls.Config{InsecureSkipVerify: true, NextProtos: []string{"h2"}})
				tc.SetDeadline(time.Now().Add(5 * time.Second))
				_ = tc.Handshake()
				c = tc
			}
			mu.Lock()
			conns = append(conns, c)
			mu.Unlock()
		}()
	}
	wg.Wait()
	mu.Lock()
	defer mu.Unlock()
	return len(conns)
}

func openFDs(t *testing.T) int {
	fds, err := os.ReadDir("/proc/self/fd")
	if err != nil {
		t.Skipf("no /proc: %v", err)
	}
	return len(fds)
}

// Idle connection floods on global's API and KDS ports stay within each
// listener's cap, and while they last a policy change still reaches both
// zones, a zone can reconnect, and the store keeps working.
func TestFloodedListenersKeepServing(t *testing.T) {
	const capN = 16
	c := Start(t, Options{Zones: []string{"east", "west"}, Global: func(g *global.Config) {
		g.API.MaxConnections, g.KDS.MaxConnections, g.Diagnostics.MaxConnections = capN, capN, capN
	}})
	envoys := map[string]*Envoy{}
	for _, zn := range []string{"east", "west"} {
		c.Zones[zn].RegisterProxy(t, "backend-"+zn, "backend")
		envoys[zn] = ConnectEnvoy(t, c.Zones[zn].XDSAddr(), "default.backend-"+zn)
	}

	before := openFDs(t)
	clients := flood(t, c.Global.APIAddr(), 10*capN, false)
	clients += flood(t, c.Global.KDSAddr(), 5*capN, false)
	clients += flood(t, c.Global.KDSAddr(), 5*capN, true)
	// The client ends of the flood are in this process too: what is left is
	// the servers' side, bounded by the caps (plus some slack for the rest).
	if server := openFDs(t) - before - clients; server > 2*capN+32 {
		t.Fatalf("the flood holds %d server-side descriptors, want at most the caps (2 x %d)", server, capN)
	}

	if err := c.Apply(seed(t, "trace-west.universal.yaml") + "---\n" + seed(t, "trace-east.k8s.yaml")); err != nil {
		t.Fatalf("apply during the flood: %v", err)
	}
	envoys["east"].WaitCollectors(t, 20*time.Second, eastCollector)
	envoys["west"].WaitCollectors(t, 20*time.Second, westCollector)

	// A zone reconnecting during the flood gets a connection: idle ones make room.
	c.StopZone("west")
	flood(t, c.Global.KDSAddr(), 2*capN, true)
	c.StartZone("west")
}
