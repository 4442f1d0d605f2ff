package zone

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"net/http"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/hashicorp/go-hclog"

	"github.com/meshtrace/meshtrace/inspect"
	"github.com/meshtrace/meshtrace/resource"
	"github.com/meshtrace/meshtrace/store"
)

// startZone runs a standalone zone CP (no global) on an embedded etcd in dir.
// testToken is the zone API token of startZone's zones; call sends it.
const testToken = "zone-api-token"

func startZone(t *testing.T, dir string, mutate ...func(*Config)) (*Zone, func()) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	st, err := store.OpenEmbedded(ctx, store.EmbeddedConfig{Dir: filepath.Join(dir, "etcd"), UnsafeNoFsync: true})
	if err != nil {
		t.Fatal(err)
	}
	cfg := DefaultConfig()
	cfg.Name = "west"
	cfg.DataDir = dir
	cfg.API.Address, cfg.XDS.Address, cfg.Diagnostics.Address = "127.0.0.1:0", "127.0.0.1:0", "127.0.0.1:0"
	cfg.API.Token = testToken
	for _, m := range mutate {
		m(&cfg)
	}
	z, err := New(cfg, hclog.New(&hclog.LoggerOptions{Level: hclog.Warn, Output: io.Discard}))
	if err != nil {
		t.Fatal(err)
	}
	z.SetStore(st)
	done := make(chan error, 1)
	go func() { done <- z.Run(ctx) }()
	select {
	case <-z.Started():
	case err := <-done:
		t.Fatalf("zone stopped: %v", err)
	}
	return z, func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("zone Run: %v", err)
		}
		st.Close()
	}
}

func call(t *testing.T, method, url string, body any, out any) int {
	t.Helper()
	var rdr io.Reader
	if body != nil {
		b, err := json.Marshal(body)
		if err != nil {
			t.Fatal(err)
		}
		rdr = bytes.NewReader(b)
	}
	req, err := http.NewRequest(method, url, rdr)
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Content-Type", "application/json")
	if !strings.Contains(url, "#notoken") {
		req.Header.Set("Authorization", "Bearer "+testToken)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	data, _ := io.ReadAll(resp.Body)
	if resp.StatusCode >= 400 {
		t.Logf("%s %s: %d %s", method, url, resp.StatusCode, data)
	}
	if out != nil && resp.StatusCode < 300 {
		if err := json.Unmarshal(data, out); err != nil {
			t.Fatalf("%s %s: %v in %s", method, url, err, data)
		}
	}
	return resp.StatusCode
}

func syncedPolicy(t *testing.T, name, url string) *resource.Resource {
	t.Helper()
	r, err := resource.Decode([]byte(`type: MeshTrace
name: ` + name + `
mesh: default
labels:
  kuma.io/origin: global
spec:
  targetRef:
    kind: MeshSubset
    tags:
      kuma.io/zone: west
  default:
    backends:
    - zipkin:
        url: ` + url))
	if err != nil {
		t.Fatal(err)
	}
	resource.Prepare(r)
	return r
}

func waitCollector(t *testing.T, z *Zone, name, want string) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for {
		_, got, ok := z.Reconciler().Collector("default", name)
		if ok && got == want {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("proxy %s: collector %q, want %q", name, got, want)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

func TestZoneServesSyncedPolicyToRegisteredProxy(t *testing.T) {
	dir := t.TempDir()
	z, stop := startZone(t, dir)
	api := "http://" + z.APIAddr()
	// Meshes come from global; put the synced copy KDS would write.
	mesh, _ := resource.New(resource.TypeMesh, "", "default")
	mesh.Labels = map[string]string{resource.LabelOrigin: resource.OriginGlobal}
	if _, err := z.Store().Put(context.Background(), mesh, store.AnyVersion); err != nil {
		t.Fatal(err)
	}

	dp, _ := resource.New(resource.TypeDataplane, "default", "backend-1")
	spec := dp.Spec.(*resource.DataplaneSpec)
	spec.Networking.Address = "10.0.0.1"
	spec.Networking.Inbound = []resource.Inbound{{Port: 8080, ServicePort: 80, Tags: map[string]string{
		resource.TagService: "backend", resource.TagProtocol: "http", resource.TagZone: "east", // forged: the zone overwrites it
	}}}
	if code := call(t, "PUT", api+"/meshes/default/dataplanes/backend-1", dp, nil); code != http.StatusCreated {
		t.Fatalf("register dataplane: %d", code)
	}
	var stored resource.Resource
	if code := call(t, "GET", api+"/meshes/default/dataplanes/backend-1", nil, &stored); code != http.StatusOK {
		t.Fatalf("get dataplane: %d", code)
	}
	if got := stored.Spec.(*resource.DataplaneSpec).Networking.Inbound[0].Tags[resource.TagZone]; got != "west" {
		t.Fatalf("kuma.io/zone = %q, want the zone's own name west", got)
	}

	// What KDS would write: a read-only copy of a global policy.
	pol := syncedPolicy(t, "trace-west", "http://west.zipkincollector:9411/api/v2/spans")
	if _, err := z.Store().Put(context.Background(), pol, store.AnyVersion); err != nil {
		t.Fatal(err)
	}
	waitCollector(t, z, "backend-1", "http://west.zipkincollector:9411/api/v2/spans")

	if code := call(t, "PUT", api+"/meshes/default/meshtraces/trace-west", pol, nil); code != http.StatusMethodNotAllowed {
		t.Fatalf("write to a synced policy on the zone: %d, want 405", code)
	}
	if code := call(t, "DELETE", api+"/meshes/default/meshtraces/trace-west", nil, nil); code != http.StatusMethodNotAllowed {
		t.Fatalf("delete of a synced policy on the zone: %d, want 405", code)
	}

	var rules inspect.DataplaneRules
	if code := call(t, "GET", api+"/meshes/default/dataplanes/backend-1/_rules", nil, &rules); code != http.StatusOK {
		t.Fatalf("_rules: %d", code)
	}
	if rules.Zone != "west" || rules.Backend != resource.BackendZipkin || len(rules.Policies) != 1 || rules.Policies[0].Name != "trace-west" {
		t.Fatalf("unexpected rules %+v", rules)
	}
	var aff inspect.AffectedDataplanes
	if code := call(t, "GET", api+"/meshes/default/meshtraces/trace-west/_resources/dataplanes", nil, &aff); code != http.StatusOK {
		t.Fatalf("_resources: %d", code)
	}
	if aff.Total != 1 || aff.Items[0].Name != "backend-1" || aff.Items[0].Service != "backend" {
		t.Fatalf("unexpected affected %+v", aff)
	}
	var dump map[string]any
	if code := call(t, "GET", api+"/meshes/default/dataplanes/backend-1/xds", nil, &dump); code != http.StatusOK {
		t.Fatalf("xds dump: %d", code)
	}
	if b, _ := json.Marshal(dump); !strings.Contains(string(b), "west.zipkincollector") {
		t.Fatalf("xds dump lacks the collector: %s", b)
	}
	if code := call(t, "GET", api+"/meshes/default/dataplanes/nope/_rules", nil, nil); code != http.StatusNotFound {
		t.Fatalf("_rules of unknown proxy: %d", code)
	}
	if len(rules.Warnings) != 0 {
		t.Fatalf("an http inbound needs no warning: %v", rules.Warnings)
	}

	// A TCP inbound the policy matches: _rules says it is not traced.
	db, _ := resource.New(resource.TypeDataplane, "default", "db-1")
	db.Spec.(*resource.DataplaneSpec).Networking = resource.DataplaneNetworking{Address: "10.0.0.2",
		Inbound: []resource.Inbound{{Port: 5432, Tags: map[string]string{resource.TagService: "db", resource.TagProtocol: "tcp"}}}}
	if code := call(t, "PUT", api+"/meshes/default/dataplanes/db-1", db, nil); code != http.StatusCreated {
		t.Fatalf("register db-1: %d", code)
	}
	waitCollector(t, z, "db-1", "http://west.zipkincollector:9411/api/v2/spans")
	var dbRules inspect.DataplaneRules
	if code := call(t, "GET", api+"/meshes/default/dataplanes/db-1/_rules", nil, &dbRules); code != http.StatusOK {
		t.Fatalf("_rules: %d", code)
	}
	if len(dbRules.Warnings) != 1 || !strings.Contains(dbRules.Warnings[0], `kuma.io/protocol is "tcp"`) || !strings.Contains(dbRules.Warnings[0], "networking.inbound[0]") {
		t.Fatalf("db-1 warnings %v", dbRules.Warnings)
	}

	// Two outbounds on one address:port are refused with the field path.
	bad, _ := resource.New(resource.TypeDataplane, "default", "bad-1")
	bad.Spec.(*resource.DataplaneSpec).Networking = resource.DataplaneNetworking{Address: "10.0.0.3",
		Inbound: []resource.Inbound{{Port: 8080, Tags: map[string]string{resource.TagService: "bad"}}},
		Outbound: []resource.Outbound{{Port: 10001, Tags: map[string]string{resource.TagService: "a"}},
			{Port: 10001, Tags: map[string]string{resource.TagService: "b"}}}}
	body, _ := json.Marshal(bad)
	req, _ := http.NewRequest("PUT", api+"/meshes/default/dataplanes/bad-1", bytes.NewReader(body))
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("Authorization", "Bearer "+testToken)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	errBody, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != http.StatusBadRequest || !strings.Contains(string(errBody), `"field":"networking.outbound[1].port"`) {
		t.Fatalf("colliding outbounds: %d %s", resp.StatusCode, errBody)
	}
	var ready map[string]any
	if code := call(t, "GET", "http://"+z.DiagnosticsAddr()+"/readyz", nil, &ready); code != http.StatusOK {
		t.Fatalf("readyz: %d %v", code, ready)
	}

	// What global may forward over KDS: inspect GETs only.
	if code, body := z.answerInspect(context.Background(), "/meshes/default/dataplanes/backend-1/_rules"); code != http.StatusOK || !strings.Contains(string(body), "trace-west") {
		t.Fatalf("forwarded _rules: %d %s", code, body)
	}
	for _, p := range []string{"/meshes/default/dataplanes/backend-1", "/meshes/default/meshtraces", "/meshes/default/dataplanes/backend-1/xds/../../x"} {
		if code, _ := z.answerInspect(context.Background(), p); code != http.StatusForbidden {
			t.Fatalf("forwarded %s: %d, want 403", p, code)
		}
	}

	// Restart with global nowhere in sight: the same config is served.
	stop()
	z2, stop2 := startZone(t, dir)
	defer stop2()
	waitCollector(t, z2, "backend-1", "http://west.zipkincollector:9411/api/v2/spans")
}
