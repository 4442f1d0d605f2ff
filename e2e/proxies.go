//go:build e2e

package e2e

import (
	"encoding/json"
	"fmt"
	"net/http"
	"sort"
	"strings"
	"testing"
	"time"
)

// ProxyConfig mirrors GET /config of e2e/cmd/adsclient.
type ProxyConfig struct {
	Node         string            `json:"node"`
	Connected    bool              `json:"connected"`
	Streams      int               `json:"streams"`
	Versions     map[string]string `json:"versions"`
	ClusterNames []string          `json:"clusterNames"`
	Clusters     []struct {
		Name      string   `json:"name"`
		EDS       bool     `json:"eds"`
		HTTP2     bool     `json:"http2"`
		Endpoints []string `json:"endpoints"`
	} `json:"clusters"`
	Listeners []struct {
		Name             string `json:"name"`
		Provider         string `json:"provider"`
		CollectorCluster string `json:"collectorCluster"`
		Tracers          []struct {
			Provider         string `json:"provider"`
			CollectorCluster string `json:"collectorCluster"`
		} `json:"tracers"`
		HTTP     bool     `json:"http"`
		TCPProxy bool     `json:"tcpProxy"`
		Clusters []string `json:"clusters"`
	} `json:"listeners"`
	ACKs      int       `json:"acks"`
	NACKs     int       `json:"nacks"`
	LastNACK  string    `json:"lastNack"`
	LastError string    `json:"lastError"`
	UpdatedAt time.Time `json:"updatedAt"`
}

func proxyConfig(t testing.TB, p *Node) (ProxyConfig, error) {
	t.Helper()
	var c ProxyConfig
	err := getJSON(p.URL(t, adsclientPort)+"/config", &c)
	return c, err
}

// Tracing is what a proxy's listeners trace to: the provider and the
// endpoints of the collector cluster, e.g. "envoy.tracers.zipkin ->
// east.zipkincollector:9411". "" means no HTTP listener traces.
func (c ProxyConfig) Tracing() (string, error) {
	endpoints := map[string][]string{}
	for _, cl := range c.Clusters {
		endpoints[cl.Name] = cl.Endpoints
	}
	seen := map[string]bool{}
	untraced := 0
	for _, l := range c.Listeners {
		if !l.HTTP {
			continue
		}
		if len(l.Tracers) == 0 {
			untraced++
			continue
		}
		for _, tr := range l.Tracers {
			eps, ok := endpoints[tr.CollectorCluster]
			if !ok {
				return "", fmt.Errorf("listener %s traces to cluster %q which is not among the clusters %v",
					l.Name, tr.CollectorCluster, c.ClusterNames)
			}
			sorted := append([]string{}, eps...)
			sort.Strings(sorted)
			seen[tr.Provider+" -> "+strings.Join(sorted, ",")] = true
		}
	}
	if len(seen) == 0 {
		return "", nil
	}
	if untraced > 0 {
		return "", fmt.Errorf("%d HTTP listeners without tracing beside traced ones %v", untraced, seen)
	}
	var all []string
	for k := range seen {
		all = append(all, k)
	}
	sort.Strings(all)
	return strings.Join(all, " | "), nil
}

const zipkin = "envoy.tracers.zipkin"

// zipkinTo is the Tracing() of a proxy whose listeners send Zipkin spans to
// hostPort.
func zipkinTo(hostPort string) string { return zipkin + " -> " + hostPort }

// expectTracing waits until every proxy of every zone in want traces as
// want[zone] says ("" = not at all), is connected and has no NACK since start.
func expectTracing(t testing.TB, tp *Topology, want map[string]string, timeout time.Duration) map[string]ProxyConfig {
	t.Helper()
	out := map[string]ProxyConfig{}
	waitFor(t, timeout, fmt.Sprintf("proxies tracing %v", want), func() error {
		for _, z := range tp.Zones {
			w, ok := want[z.Name]
			if !ok {
				continue
			}
			for _, p := range z.Proxies {
				c, err := proxyConfig(t, p)
				if err != nil {
					return err
				}
				if !c.Connected {
					return fmt.Errorf("%s not connected: %s", p.Name, c.LastError)
				}
				got, err := c.Tracing()
				if err != nil {
					return fmt.Errorf("%s: %w", p.Name, err)
				}
				if got != w {
					return fmt.Errorf("%s traces %q, want %q", p.Name, got, w)
				}
				if c.LastNACK != "" {
					return fmt.Errorf("%s NACKed: %s", p.Name, c.LastNACK)
				}
				out[p.Name] = c
			}
		}
		return nil
	})
	return out
}

// Received mirrors GET /received of e2e/cmd/collector.
type Received struct {
	Name     string `json:"name"`
	Total    int    `json:"total"`
	Spans    int    `json:"spans"`
	Requests []struct {
		Method     string   `json:"method"`
		Path       string   `json:"path"`
		Spans      int      `json:"spans"`
		Services   []string `json:"services"`
		Operations []string `json:"operations"`
	} `json:"requests"`
}

// Services are the span service names the collector received, sorted.
func (r Received) Services() []string {
	var out []string
	for _, req := range r.Requests {
		out = append(out, req.Services...)
	}
	sort.Strings(out)
	return out
}

// emitSpans makes a proxy stand-in post one Zipkin span to each collector its
// config names, as Envoy would for a sampled request.
func emitSpans(t testing.TB, p *Node) {
	t.Helper()
	if n := emit(t, p); n == 0 {
		t.Fatalf("%s had no Zipkin collector to send a span to", p.Name)
	}
}

// emit asks the stand-in to post a span from each traced HTTP listener and
// returns how many it sent; failed posts fail the test.
func emit(t testing.TB, p *Node) int {
	t.Helper()
	resp, err := httpClient.Post(p.URL(t, adsclientPort)+"/emit", "application/json", nil)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var sent []struct {
		URL    string `json:"url"`
		Status int    `json:"status"`
		Error  string `json:"error"`
	}
	if err := json.NewDecoder(resp.Body).Decode(&sent); err != nil {
		t.Fatalf("emit on %s: %v", p.Name, err)
	}
	for _, s := range sent {
		if s.Error != "" || s.Status/100 != 2 {
			t.Errorf("%s: span to %s: status %d %s", p.Name, s.URL, s.Status, s.Error)
		}
	}
	return len(sent)
}

func received(t testing.TB, col *Node) Received {
	t.Helper()
	var r Received
	if err := getJSON(col.URL(t, collectorPort)+"/received", &r); err != nil {
		t.Fatal(err)
	}
	return r
}

func resetCollector(t testing.TB, col *Node) {
	t.Helper()
	req, err := http.NewRequest(http.MethodDelete, col.URL(t, collectorPort)+"/received", nil)
	if err != nil {
		t.Fatal(err)
	}
	resp, err := httpClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
}
