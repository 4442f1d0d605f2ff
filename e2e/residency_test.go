//go:build e2e

package e2e

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"os"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/testcontainers/testcontainers-go/wait"
)

const (
	jaegerQueryPort  = "16686/tcp"
	jaegerHealthPort = "13133/tcp"
	// otlpSpanName is the operation of the stand-in's OTLP spans (Zipkin ones are e2e-emit).
	otlpSpanName = "e2e-emit-otlp"
)

// jaegerEnv turns on real Jaeger collectors for the Residency scenario.
// Off by default: a cold build of Jaeger compiles about five times the code
// of etcd (over ten minutes on a 2-core machine), which CI cannot afford.
const jaegerEnv = "MESHTRACE_E2E_JAEGER"

func useJaeger() bool {
	v, _ := strconv.ParseBool(os.Getenv(jaegerEnv))
	return v
}

// sinkHost is the zone-local name of the collector the Residency scenario
// gives each zone.
func sinkHost(zone string) string { return "traces." + zone + ".svc" }

// traceSinks are each zone's collector for the Residency scenario: a real
// Jaeger (all-in-one: Zipkin on 9411, OTLP/gRPC on 4317, memory storage,
// query API on 16686) with MESHTRACE_E2E_JAEGER=1, else the suite's test
// collector (Zipkin on 9411, OTLP/gRPC on 4317), as traces.<zone>.svc.
type traceSinks struct {
	jaeger bool
	nodes  map[string]*Node
}

func startSink(ctx context.Context, t testing.TB, zone string, net *Net, jaeger bool) (*Node, error) {
	if jaeger {
		return startNode(ctx, spec{
			name:  zone + "-jaeger",
			image: imageJaeger.Ref(t),
			env:   map[string]string{"JAEGER_LISTEN_HOST": "0.0.0.0"},
			ports: []string{jaegerQueryPort, jaegerHealthPort},
			nets:  map[*Net][]string{net: {sinkHost(zone)}},
			wait: wait.ForAll(
				wait.ForHTTP("/status").WithPort(jaegerHealthPort),
				wait.ForHTTP("/api/services").WithPort(jaegerQueryPort),
			).WithDeadline(2 * time.Minute),
		})
	}
	return startNode(ctx, spec{
		name:  zone + "-traces",
		image: imageCollector.Ref(t),
		cmd:   []string{"--listen=:9411", "--otlp=:4317", "--name=" + sinkHost(zone)},
		ports: []string{collectorPort},
		nets:  map[*Net][]string{net: {sinkHost(zone)}},
		wait:  wait.ForHTTP("/healthz").WithPort(collectorPort).WithStartupTimeout(time.Minute),
	})
}

// operations says which services a zone's collector holds spans of, and
// each service's operations (span names).
func (s traceSinks) operations(t testing.TB, zone string) (map[string][]string, error) {
	if s.jaeger {
		return jaegerOperations(t, s.nodes[zone])
	}
	out := map[string][]string{}
	for _, req := range received(t, s.nodes[zone]).Requests {
		for i, svc := range req.Services {
			if i < len(req.Operations) && !slices.Contains(out[svc], req.Operations[i]) {
				out[svc] = append(out[svc], req.Operations[i])
			}
		}
	}
	return out, nil
}

// jaegerOperations asks a Jaeger's query API which services it holds spans
// of, and each service's operations.
func jaegerOperations(t testing.TB, j *Node) (map[string][]string, error) {
	var services struct {
		Data []string `json:"data"`
	}
	if err := getJSON(j.URL(t, jaegerQueryPort)+"/api/services", &services); err != nil {
		return nil, err
	}
	out := map[string][]string{}
	for _, s := range services.Data {
		var ops struct {
			Data []string `json:"data"`
		}
		if err := getJSON(j.URL(t, jaegerQueryPort)+"/api/services/"+s+"/operations", &ops); err != nil {
			return nil, err
		}
		slices.Sort(ops.Data)
		out[s] = ops.Data
	}
	return out, nil
}

func setResidency(t testing.TB, tp *Topology, zone, mode string, allowed ...string) Response {
	t.Helper()
	return tp.GlobalAPI(0).Must(t, http.MethodPut, "/zones/"+zone, map[string]any{
		"type": "Zone", "name": zone,
		"residency": map[string]any{"mode": mode, "allowedCollectors": allowed},
	}, http.StatusOK, http.StatusCreated)
}

// waitSpans emits from every proxy of the zones and waits until each zone's
// collector holds, for each of its own proxies, a span of operation ops[zone];
// then it checks that no collector holds a span of another zone's proxy.
func waitSpans(t *testing.T, tp *Topology, sinks traceSinks, ops map[string]string) {
	t.Helper()
	for _, z := range tp.Zones {
		for _, p := range z.Proxies {
			emitSpans(t, p)
		}
	}
	for _, z := range tp.Zones {
		op := ops[z.Name]
		waitFor(t, converge, z.Name+"'s collector holding its proxies' "+op+" spans", func() error {
			got, err := sinks.operations(t, z.Name)
			if err != nil {
				return err
			}
			for _, dp := range z.Dataplanes {
				if !slices.Contains(got[mesh+"."+dp], op) {
					return fmt.Errorf("no %s span of %s in %v", op, dp, got)
				}
			}
			return nil
		})
	}
	expectSpansHome(t, tp, sinks)
}

// expectSpansHome checks that each zone's collector holds spans of its own
// zone's proxies only.
func expectSpansHome(t *testing.T, tp *Topology, sinks traceSinks) {
	t.Helper()
	for _, z := range tp.Zones {
		got, err := sinks.operations(t, z.Name)
		if err != nil {
			t.Fatal(err)
		}
		for svc := range got {
			if !strings.HasPrefix(svc, mesh+"."+z.Name+"-") && !strings.HasPrefix(svc, "jaeger") {
				t.Errorf("%s's collector holds spans of %s, a proxy of another zone", z.Name, svc)
			}
		}
	}
}

type residencyReport struct {
	Zones []struct {
		Zone       string `json:"zone"`
		Mode       string `json:"mode"`
		Violations []struct {
			Proxy     string `json:"proxy"`
			Collector string `json:"collector"`
			Policy    struct {
				Name string `json:"name"`
			} `json:"policy"`
		} `json:"violations"`
		ZoneReported []struct {
			Proxy   string `json:"proxy"`
			Blocked bool   `json:"blocked"`
		} `json:"zoneReported"`
	} `json:"zones"`
}

func getResidency(t testing.TB, tp *Topology) (residencyReport, error) {
	var r residencyReport
	resp, err := tp.GlobalAPI(0).Do(t, http.MethodGet, "/residency", nil)
	if err == nil && resp.Status != http.StatusOK {
		err = fmt.Errorf("GET /residency: %d %s", resp.Status, resp.Body)
	}
	if err == nil {
		err = json.Unmarshal(resp.Body, &r)
	}
	return r, err
}

// testResidency: each zone gets its own collector (a real Jaeger with
// MESHTRACE_E2E_JAEGER=1) and declares it its only allowed collector
// (Enforce). West's spans land in west's collector and no other, over Zipkin
// and over OTLP. A policy sending west's proxies to east's collector is
// refused; in Audit it lands and GET /residency lists it; back in Enforce
// west's own check serves those proxies tracing off, so their spans stay
// home.
func testResidency(t *testing.T, tp *Topology) {
	ctx, cancel := context.WithTimeout(context.Background(), 15*time.Minute)
	defer cancel()
	sinks := traceSinks{jaeger: useJaeger(), nodes: map[string]*Node{}}
	logf("residency collectors: jaeger=%v (set %s=1 for real Jaeger)", sinks.jaeger, jaegerEnv)
	var mu sync.Mutex
	var wg sync.WaitGroup
	errs := make(chan error, len(tp.Zones))
	for _, z := range tp.Zones {
		wg.Go(func() {
			n, err := startSink(ctx, t, z.Name, z.Net, sinks.jaeger)
			if err != nil {
				errs <- err
				return
			}
			mu.Lock()
			sinks.nodes[z.Name] = n
			mu.Unlock()
		})
	}
	wg.Wait()
	t.Cleanup(func() {
		for _, n := range sinks.nodes {
			n.terminate()
		}
	})
	close(errs)
	for err := range errs {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		_, _ = tp.GlobalAPI(0).Do(t, http.MethodDelete, policyPath("west-web-out"), nil)
		for _, z := range zoneNames {
			setResidency(t, tp, z, "Off")
		}
	})

	// Each zone's policy names its own collector (Zipkin), then each zone enforces it.
	for _, z := range zoneNames {
		put(t, tp, zonePolicy(z, sinkHost(z)+":9411"))
	}
	for _, z := range zoneNames {
		resp := setResidency(t, tp, z, "Enforce", "*."+z+".svc")
		if strings.Contains(string(resp.Body), "warnings") {
			t.Fatalf("zone %s: the policies in place should pass: %s", z, resp.Body)
		}
	}
	expectTracing(t, tp, map[string]string{
		"east": zipkinTo(sinkHost("east") + ":9411"),
		"west": zipkinTo(sinkHost("west") + ":9411"),
	}, converge)
	waitSpans(t, tp, sinks, map[string]string{"east": "e2e-emit", "west": "e2e-emit"})

	// OpenTelemetry: west exports OTLP/gRPC to its collector's 4317.
	otelWest := meshTrace("trace-west", map[string]any{
		"targetRef": map[string]any{"kind": "MeshSubset", "tags": map[string]any{"kuma.io/zone": "west"}},
		"default": map[string]any{"backends": []any{map[string]any{
			"type": "OpenTelemetry", "openTelemetry": map[string]any{"endpoint": sinkHost("west") + ":4317"}}}},
	})
	put(t, tp, otelWest)
	expectTracing(t, tp, map[string]string{"west": "envoy.tracers.opentelemetry -> " + sinkHost("west") + ":4317"}, converge)
	waitSpans(t, tp, sinks, map[string]string{"east": "e2e-emit", "west": otlpSpanName})

	// Enforce: a policy sending west's web proxies to east's collector is refused.
	out := meshTrace("west-web-out", map[string]any{
		"targetRef": map[string]any{"kind": "MeshService", "name": "web-west"},
		"default":   map[string]any{"backends": []any{zipkinBackend("http://" + sinkHost("east") + ":9411/api/v2/spans")}},
	})
	resp := tp.GlobalAPI(0).Must(t, http.MethodPut, policyPath("west-web-out"), out, http.StatusConflict)
	for _, want := range []string{`zone \"west\": proxy \"west-dp-0\"`, `proxy \"west-dp-1\"`,
		"would export Zipkin spans to http://traces.east.svc:9411/api/v2/spans", `brought in by MeshTrace \"west-web-out\"`} {
		if !strings.Contains(string(resp.Body), want) {
			t.Errorf("409 body lacks %s: %s", want, resp.Body)
		}
	}
	tp.GlobalAPI(0).Must(t, http.MethodGet, policyPath("west-web-out"), nil, http.StatusNotFound)

	// Audit: it lands (with warnings), west's proxies point at east, the violation is listed.
	setResidency(t, tp, "west", "Audit", "*.west.svc")
	resp = tp.GlobalAPI(0).Must(t, http.MethodPut, policyPath("west-web-out"), out, http.StatusCreated)
	if !strings.Contains(string(resp.Body), "residency (Audit, admitted and recorded)") {
		t.Errorf("no audit warning: %s", resp.Body)
	}
	expectTracing(t, tp, map[string]string{"west": zipkinTo(sinkHost("east") + ":9411")}, converge)
	waitFor(t, converge, "GET /residency listing west's violations", func() error {
		r, err := getResidency(t, tp)
		if err != nil {
			return err
		}
		for _, z := range r.Zones {
			if z.Zone == "west" && z.Mode == "Audit" && len(z.Violations) == len(tp.Zone("west").Proxies) &&
				z.Violations[0].Policy.Name == "west-web-out" {
				return nil
			}
		}
		return fmt.Errorf("report %+v", r)
	})

	// Enforce again: west's own check turns those proxies' tracing off; their
	// spans go nowhere, east's collector never sees them.
	setResidency(t, tp, "west", "Enforce", "*.west.svc")
	expectTracing(t, tp, map[string]string{"west": "", "east": zipkinTo(sinkHost("east") + ":9411")}, converge)
	for _, p := range tp.Zone("west").Proxies {
		if n := emit(t, p); n != 0 {
			t.Errorf("%s sent %d spans with tracing off", p.Name, n)
		}
	}
	for _, p := range tp.Zone("east").Proxies {
		emitSpans(t, p)
	}
	expectSpansHome(t, tp, sinks)
	waitFor(t, converge, "west reporting the proxies it keeps home", func() error {
		r, err := getResidency(t, tp)
		if err != nil {
			return err
		}
		for _, z := range r.Zones {
			if z.Zone == "west" && len(z.ZoneReported) == len(tp.Zone("west").Proxies) && z.ZoneReported[0].Blocked {
				return nil
			}
		}
		return fmt.Errorf("report %+v", r)
	})
	// Deleting the violating policy is admitted: west goes back to its own collector.
	del(t, tp, "west-web-out")
	expectTracing(t, tp, map[string]string{"west": "envoy.tracers.opentelemetry -> " + sinkHost("west") + ":4317"}, converge)
}
