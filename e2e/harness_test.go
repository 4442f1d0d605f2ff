//go:build e2e

package e2e

import (
	"context"
	"fmt"
	"net/http"
	"strings"
	"testing"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"
)

// TestHarnessEtcdSurvivesMemberLoss checks the etcd cluster the global
// replicas share: with one member killed, writes still commit; the member
// rejoins when started again.
func TestHarnessEtcdSurvivesMemberLoss(t *testing.T) {
	tp := baseTopology(t)
	cli, err := clientv3.New(clientv3.Config{
		Endpoints:   tp.Etcd.HostEndpoints(t),
		DialTimeout: 5 * time.Second,
	})
	if err != nil {
		t.Fatal(err)
	}
	defer cli.Close()
	put := func(key string) error {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		_, err := cli.Put(ctx, key, time.Now().String())
		return err
	}
	waitFor(t, 30*time.Second, "first etcd write", func() error { return put("/e2e/harness/before") })

	victim := tp.Etcd.Nodes[0]
	victim.Kill(t)
	waitFor(t, 30*time.Second, "etcd write with one member down", func() error { return put("/e2e/harness/during") })

	victim.Start(t)
	waitFor(t, time.Minute, "restarted member healthy", func() error {
		var h struct {
			Health string `json:"health"`
		}
		if err := getJSON(victim.URL(t, etcdClientPort)+"/health", &h); err != nil {
			return err
		}
		if h.Health != "true" {
			return fmt.Errorf("health %q", h.Health)
		}
		return nil
	})
	// The restarted member serves what was written while it was down.
	rc, err := clientv3.New(clientv3.Config{Endpoints: []string{victim.Addr(t, etcdClientPort)}, DialTimeout: 5 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	defer rc.Close()
	waitFor(t, 30*time.Second, "restarted member caught up", func() error {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		resp, err := rc.Get(ctx, "/e2e/harness/during")
		if err != nil {
			return err
		}
		if len(resp.Kvs) != 1 {
			return fmt.Errorf("key written during the outage not found")
		}
		return nil
	})
}

// TestHarnessCollectorAndProxy checks the test collector records spans, and
// that a proxy stand-in with no control plane reports itself disconnected
// with no configuration.
func TestHarnessCollectorAndProxy(t *testing.T) {
	tp := baseTopology(t)
	col := tp.Zone("east").Collector
	spans := `[{"traceId":"0123456789abcdef","id":"0123456789abcdef","name":"get /"},` +
		`{"traceId":"0123456789abcdef","id":"1123456789abcdef","name":"get /x"}]`
	resp, err := http.Post(col.URL(t, collectorPort)+"/api/v2/spans", "application/json", strings.NewReader(spans))
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusAccepted {
		t.Fatalf("POST spans: %d", resp.StatusCode)
	}
	got := received(t, col)
	if got.Name != "east" || got.Spans != 2 || got.Total != 1 {
		t.Fatalf("collector received %+v, want 2 spans in 1 request named east", got)
	}
	resetCollector(t, col)
	if got := received(t, col); got.Total != 0 {
		t.Fatalf("after reset the collector still holds %d requests", got.Total)
	}

	z := tp.Zone("east")
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	p, err := startADSClient(ctx, t, z.Name, mesh, "lonely", "", "nowhere:5678", z.Net)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(p.terminate)
	waitFor(t, 30*time.Second, "proxy stand-in reports its failed dial", func() error {
		cfg, err := proxyConfig(t, p)
		if err != nil {
			return err
		}
		if cfg.Connected || cfg.Node != mesh+".lonely" || len(cfg.Listeners) != 0 || cfg.LastError == "" {
			return fmt.Errorf("proxy with no control plane: %+v", cfg)
		}
		return nil
	})
}
