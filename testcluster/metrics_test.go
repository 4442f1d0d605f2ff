package testcluster

import (
	"fmt"
	"io"
	"net/http"
	"strings"
	"testing"
	"time"
)

func scrape(t *testing.T, addr string) string {
	t.Helper()
	resp, err := http.Get("http://" + addr + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return string(b)
}

func TestMetricsExposeNamedSeries(t *testing.T) {
	c := Start(t, Options{Zones: []string{"west"}})
	west := c.Zones["west"]
	west.RegisterProxy(t, "backend-west", "backend")
	e := ConnectEnvoy(t, west.XDSAddr(), "default.backend-west")
	if err := c.Apply(seed(t, "trace-west.universal.yaml")); err != nil {
		t.Fatal(err)
	}
	e.WaitCollectors(t, 10*time.Second, westCollector)

	globalWant := []string{
		"meshtrace_kds_streams 1",
		`meshtrace_kds_sync_lag_revisions{zone="west"}`,
		`meshtrace_kds_sync_lag_seconds{zone="west"}`,
		`meshtrace_kds_nacks_total{zone="west"} 0`,
		"meshtrace_kds_messages_sent_total",
		`meshtrace_store_operation_duration_seconds_bucket{op="put"`,
		`meshtrace_http_requests_total{code="201",method="PUT"`,
		"meshtrace_http_request_duration_seconds",
	}
	zoneWant := []string{
		"meshtrace_kds_zone_connected 1",
		"meshtrace_kds_zone_applied_revision",
		"meshtrace_xds_snapshot_pushes_total",
		"meshtrace_xds_streams 1",
		"meshtrace_xds_ack_latency_seconds_count",
		"meshtrace_xds_nacks_total 0",
		"meshtrace_store_operation_duration_seconds_bucket",
	}
	check := func(addr string, want []string) func() error {
		return func() error {
			body := scrape(t, addr)
			for _, w := range want {
				if !strings.Contains(body, w) {
					return fmt.Errorf("%s/metrics lacks %q", addr, w)
				}
			}
			return nil
		}
	}
	Eventually(t, 10*time.Second, check(c.Global.DiagnosticsAddr(), globalWant))
	Eventually(t, 10*time.Second, check(west.DiagnosticsAddr(), zoneWant))
	for _, addr := range []string{c.Global.DiagnosticsAddr(), west.DiagnosticsAddr()} {
		for _, path := range []string{"/healthz", "/readyz"} {
			resp, err := http.Get("http://" + addr + path)
			if err != nil {
				t.Fatal(err)
			}
			resp.Body.Close()
			if resp.StatusCode != http.StatusOK {
				t.Errorf("%s%s: %d", addr, path, resp.StatusCode)
			}
		}
	}
	// A zone cut off from global says so on /healthz and /readyz, and stays
	// ready: it keeps serving the last good configuration.
	c.StopGlobal()
	for _, path := range []string{"/healthz", "/readyz"} {
		Eventually(t, 10*time.Second, func() error {
			resp, err := http.Get("http://" + west.DiagnosticsAddr() + path)
			if err != nil {
				return err
			}
			defer resp.Body.Close()
			b, _ := io.ReadAll(resp.Body)
			if resp.StatusCode != http.StatusOK || !strings.Contains(string(b), "not connected to global") {
				return fmt.Errorf("%s %d %s", path, resp.StatusCode, b)
			}
			return nil
		})
	}
}
