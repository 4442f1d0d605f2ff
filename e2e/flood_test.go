//go:build e2e

package e2e

import (
	"context"
	"io"
	"net/http"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/testcontainers/testcontainers-go/wait"
)

// testFloodedGlobal floods global-0's API and KDS ports from a container
// (idle connections, and TLS handshakes that never present a token) while a
// policy change still reaches both zones through global-0's API; global-0
// stays up and its listeners report the connections they closed.
func testFloodedGlobal(t *testing.T, tp *Topology) {
	ctx := context.Background()
	flood, err := startNode(ctx, spec{
		name:  "flood",
		image: imageFlood.Ref(t),
		cmd: []string{"-conns", "1500",
			"-targets", "global-0:" + port(globalAPIPort) + ",global-0:" + port(globalKDSPort),
			"-tls-targets", "global-0:" + port(globalKDSPort)},
		nets: map[*Net][]string{tp.GlobalNet: {"flood"}},
		wait: wait.ForLog("flood:").WithStartupTimeout(time.Minute),
	})
	if err != nil {
		t.Fatalf("flood container: %v", err)
	}
	defer flood.terminate()
	// Let the flood reach the caps before the change.
	waitMetric(t, tp.Globals[0], `meshtrace_listener_evicted_connections_total{listener="api"}`, 1, time.Minute)
	waitMetric(t, tp.Globals[0], `meshtrace_listener_evicted_connections_total{listener="kds"}`, 1, time.Minute)

	put(t, tp, zonePolicy("east", "east.zipkincollector:9412"))
	put(t, tp, zonePolicy("west", "west.zipkincollector:9412"))
	expectTracing(t, tp, map[string]string{
		"east": zipkinTo("east.zipkincollector:9412"),
		"west": zipkinTo("west.zipkincollector:9412"),
	}, converge)
	if st, err := tp.Globals[0].c.State(ctx); err != nil || !st.Running {
		t.Fatalf("global-0 after the flood: %+v %v", st, err)
	}
}

// waitMetric waits until the Prometheus sample named series (with its
// labels, as exposed) on n's diagnostics port is at least min.
func waitMetric(t *testing.T, n *Node, series string, min float64, timeout time.Duration) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	last := "no answer"
	for time.Now().Before(deadline) {
		resp, err := http.Get(n.URL(t, globalDiagPort) + "/metrics")
		if err == nil {
			b, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			last = "series absent"
			for _, line := range strings.Split(string(b), "\n") {
				if v, ok := strings.CutPrefix(line, series+" "); ok {
					last = line
					if f, err := strconv.ParseFloat(strings.TrimSpace(v), 64); err == nil && f >= min {
						return
					}
				}
			}
		}
		time.Sleep(time.Second)
	}
	t.Fatalf("%s did not reach %v within %s (%s)", series, min, timeout, last)
}
