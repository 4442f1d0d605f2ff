package global

import (
	"context"
	"errors"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/meshtrace/meshtrace/resource"
	"github.com/meshtrace/meshtrace/store"
)

// testConfig is a config on free ports with everything under dir.
func testConfig(dir string) Config {
	cfg := DefaultConfig()
	cfg.DataDir = dir
	cfg.Store.Embedded.Dir = filepath.Join(dir, "etcd")
	cfg.API.Address = "127.0.0.1:0"
	cfg.Diagnostics.Address = "127.0.0.1:0"
	cfg.KDS.Address = "127.0.0.1:0"
	return cfg
}

type running struct {
	g    *Global
	stop func() error
}

// start runs g until the test ends (or stop is called) and waits for it to
// be started.
func start(t testing.TB, g *Global) *running {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- g.Run(ctx) }()
	select {
	case <-g.Started():
	case err := <-done:
		cancel()
		t.Fatalf("Run ended before start: %v", err)
	case <-time.After(60 * time.Second):
		cancel()
		t.Fatal("global did not start within 60s")
	}
	stopped := false
	var result error
	stop := func() error {
		if !stopped {
			stopped = true
			cancel()
			select {
			case result = <-done:
			case <-time.After(30 * time.Second):
				result = errors.New("Run did not return within 30s of cancel")
			}
		}
		return result
	}
	t.Cleanup(func() { _ = stop() })
	return &running{g: g, stop: stop}
}

func call(t testing.TB, method, url, token, body string) (int, string) {
	t.Helper()
	var rdr io.Reader
	if body != "" {
		rdr = strings.NewReader(body)
	}
	req, err := http.NewRequest(method, url, rdr)
	if err != nil {
		t.Fatal(err)
	}
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b)
}

const traceBody = "type: MeshTrace\nmesh: prod\nname: t1\nspec:\n  default:\n    backends:\n    - zipkin:\n        url: http://zipkin:9411/api/v2/spans\n"

func TestRunWithEmbeddedEtcdAndRestart(t *testing.T) {
	dir := t.TempDir()
	g, err := New(testConfig(dir), nil)
	if err != nil {
		t.Fatal(err)
	}
	var runnerSawStore atomic.Bool
	g.AddRunner(func(ctx context.Context) error {
		runnerSawStore.Store(g.Store() != nil)
		<-ctx.Done()
		return nil
	})
	r := start(t, g)
	api := "http://" + g.APIAddr()
	diag := "http://" + g.DiagnosticsAddr()

	// The admin token was generated into the data dir, private.
	tokPath := filepath.Join(dir, AdminTokenFile)
	st, err := os.Stat(tokPath)
	if err != nil || st.Mode().Perm() != 0o600 {
		t.Fatalf("admin token file: %v %v", st, err)
	}
	tok := g.AdminToken()
	if b, _ := os.ReadFile(tokPath); strings.TrimSpace(string(b)) != tok || len(tok) < 32 {
		t.Fatalf("token file %q vs token %q", b, tok)
	}

	if code, body := call(t, "GET", api+"/", "", ""); code != 200 || !strings.Contains(body, `"mode":"global"`) || !strings.Contains(body, g.ClusterID()) {
		t.Fatalf("GET / = %d %s", code, body)
	}
	if code, body := call(t, "GET", api+"/meshes/default", "", ""); code != 200 {
		t.Fatalf("default mesh = %d %s", code, body)
	}
	if code, _ := call(t, "PUT", api+"/meshes/prod", "", `{"type":"Mesh","name":"prod"}`); code != 401 {
		t.Fatalf("write without token = %d", code)
	}
	if code, body := call(t, "PUT", api+"/meshes/prod", tok, `{"type":"Mesh","name":"prod"}`); code != 201 {
		t.Fatalf("create mesh = %d %s", code, body)
	}
	if code, body := call(t, "PUT", api+"/meshes/prod/meshtraces/t1", tok, traceBody); code != 201 {
		t.Fatalf("create policy = %d %s", code, body)
	}
	if code, body := call(t, "DELETE", api+"/meshes/default", tok, ""); code != 200 {
		t.Fatalf("delete default mesh = %d %s", code, body)
	}
	for _, p := range []string{"/healthz", "/readyz"} {
		if code, body := call(t, "GET", diag+p, "", ""); code != 200 {
			t.Fatalf("%s = %d %s", p, code, body)
		}
	}
	code, metrics := call(t, "GET", diag+"/metrics", "", "")
	for _, m := range []string{`meshtrace_http_requests_total{code="201",method="PUT",route="PUT /meshes/{mesh}/meshtraces/{name}"} 1`,
		"meshtrace_http_request_duration_seconds_bucket", "meshtrace_store_operation_duration_seconds", "go_goroutines", "process_"} {
		if code != 200 || !strings.Contains(metrics, m) {
			t.Errorf("/metrics lacks %s", m)
		}
	}
	if !runnerSawStore.Load() {
		t.Error("the runner started before the store was open")
	}
	cluster := g.ClusterID()
	if err := r.stop(); err != nil {
		t.Fatalf("Run after cancel: %v", err)
	}
	if err := g.Run(context.Background()); err == nil {
		t.Fatal("a second Run must fail")
	}

	// Restart on the same data dir: nothing is lost, the deleted default mesh
	// stays deleted, and the token and cluster id are kept.
	g2, err := New(testConfig(dir), nil)
	if err != nil {
		t.Fatal(err)
	}
	start(t, g2)
	api = "http://" + g2.APIAddr()
	if g2.AdminToken() != tok || g2.ClusterID() != cluster {
		t.Fatalf("token or cluster id changed across restart")
	}
	code, body := call(t, "GET", api+"/meshes/prod/meshtraces/t1", "", "")
	if code != 200 || !strings.Contains(body, "zipkin:9411") {
		t.Fatalf("policy after restart = %d %s", code, body)
	}
	if code, _ := call(t, "GET", api+"/meshes/default", "", ""); code != 404 {
		t.Fatalf("deleted default mesh came back: %d", code)
	}
	if code, body := call(t, "GET", api+"/meshes", "", ""); code != 200 || !strings.Contains(body, `"total":1`) {
		t.Fatalf("meshes after restart = %d %s", code, body)
	}
}

// flakyStore fails Revision, as a store whose etcd went away does.
type flakyStore struct{ store.Store }

func (flakyStore) Revision(context.Context) (int64, error) {
	return 0, errors.New("etcdserver: request timed out")
}

func TestReadyzFailsWhenStoreUnreachable(t *testing.T) {
	cfg := testConfig(t.TempDir())
	cfg.API.AdminToken = "configured-token"
	g, err := New(cfg, nil)
	if err != nil {
		t.Fatal(err)
	}
	g.SetStore(flakyStore{store.NewMemory()})
	start(t, g)
	if _, err := os.Stat(filepath.Join(cfg.DataDir, AdminTokenFile)); !os.IsNotExist(err) {
		t.Fatalf("a configured token must not write the token file: %v", err)
	}
	if g.AdminToken() != "configured-token" {
		t.Fatalf("token = %q", g.AdminToken())
	}
	code, body := call(t, "GET", "http://"+g.DiagnosticsAddr()+"/readyz", "", "")
	if code != 503 || !strings.Contains(body, "request timed out") {
		t.Fatalf("readyz = %d %s", code, body)
	}
	if code, _ := call(t, "GET", "http://"+g.DiagnosticsAddr()+"/healthz", "", ""); code != 200 {
		t.Fatalf("healthz = %d", code)
	}
}

func TestRunnerErrorStopsGlobal(t *testing.T) {
	g, err := New(testConfig(t.TempDir()), nil)
	if err != nil {
		t.Fatal(err)
	}
	mem := store.NewMemory()
	g.SetStore(mem)
	boom := errors.New("kds: boom")
	g.AddRunner(func(ctx context.Context) error { return boom })
	other := make(chan error, 1)
	g.AddRunner(func(ctx context.Context) error { <-ctx.Done(); other <- ctx.Err(); return nil })
	g.AddRoute("GET /_extra", http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { w.WriteHeader(204) }))
	done := make(chan error, 1)
	go func() { done <- g.Run(context.Background()) }()
	select {
	case err := <-done:
		if !errors.Is(err, boom) {
			t.Fatalf("Run = %v, want the runner's error", err)
		}
	case <-time.After(20 * time.Second):
		t.Fatal("a failing runner did not stop Run")
	}
	if err := <-other; !errors.Is(err, context.Canceled) {
		t.Fatalf("other runner saw %v", err)
	}
	// Bootstrap wrote the default mesh into the injected store.
	if _, _, err := mem.Get(context.Background(), resource.Key{Type: resource.TypeMesh, Name: "default"}); err != nil {
		t.Fatalf("default mesh: %v", err)
	}
}

func TestNewRejectsInvalidConfig(t *testing.T) {
	cfg := DefaultConfig()
	cfg.Log.Level = "chatty"
	if _, err := New(cfg, nil); err == nil || !strings.Contains(err.Error(), "log.level") {
		t.Fatalf("New = %v", err)
	}
}

func TestListenFailure(t *testing.T) {
	g1, err := New(testConfig(t.TempDir()), nil)
	if err != nil {
		t.Fatal(err)
	}
	g1.SetStore(store.NewMemory())
	start(t, g1)
	cfg := testConfig(t.TempDir())
	cfg.API.Address = g1.APIAddr()
	g2, err := New(cfg, nil)
	if err != nil {
		t.Fatal(err)
	}
	g2.SetStore(store.NewMemory())
	if err := g2.Run(context.Background()); err == nil || !strings.Contains(err.Error(), "api.address") {
		t.Fatalf("Run on a taken port = %v", err)
	}
}

func TestInspectRoutes(t *testing.T) {
	cfg := testConfig(t.TempDir())
	cfg.API.AdminToken = "tok"
	g, err := New(cfg, nil)
	if err != nil {
		t.Fatal(err)
	}
	mem := store.NewMemory()
	g.SetStore(mem)
	start(t, g)
	api := "http://" + g.APIAddr()
	if code, body := call(t, "PUT", api+"/meshes/default/meshtraces/t1", "tok", strings.ReplaceAll(traceBody, "mesh: prod", "mesh: default")); code != 201 {
		t.Fatalf("create policy = %d %s", code, body)
	}
	// Dataplanes reach global from zones; store two with the same local name.
	for _, zone := range []string{"east", "west"} {
		dp, err := resource.Decode([]byte("type: Dataplane\nmesh: default\nname: " + zone + ".web-1\nlabels:\n  kuma.io/zone: " + zone +
			"\n  kuma.io/display-name: web-1\nnetworking:\n  address: 10.0.0.1\n  inbound:\n  - port: 8080\n    tags:\n      kuma.io/service: web\n"))
		if err != nil {
			t.Fatal(err)
		}
		if _, err := mem.Put(context.Background(), dp, store.AnyVersion); err != nil {
			t.Fatal(err)
		}
	}
	code, body := call(t, "GET", api+"/meshes/default/dataplanes/east.web-1/_rules", "", "")
	if code != 200 || !strings.Contains(body, `"name":"t1"`) || !strings.Contains(body, "zipkin:9411") {
		t.Fatalf("_rules = %d %s", code, body)
	}
	if code, body = call(t, "GET", api+"/meshes/default/dataplanes/web-1/_rules", "", ""); code != 400 || !strings.Contains(body, "several zones") {
		t.Fatalf("ambiguous _rules = %d %s", code, body)
	}
	if code, body = call(t, "GET", api+"/meshes/default/dataplanes/nope/_rules", "", ""); code != 404 {
		t.Fatalf("unknown _rules = %d %s", code, body)
	}
	code, body = call(t, "GET", api+"/meshes/default/meshtraces/t1/_resources/dataplanes", "", "")
	if code != 200 || !strings.Contains(body, `"total":2`) || strings.Count(body, `"type":"Dataplane"`) != 2 {
		t.Fatalf("_resources/dataplanes = %d %s", code, body)
	}
	// A policy west synced up applies to west's proxies only.
	local, err := resource.Decode([]byte(strings.ReplaceAll(traceBody, "mesh: prod", "mesh: default")))
	if err != nil {
		t.Fatal(err)
	}
	local.Name = "from-west"
	local.Labels = map[string]string{resource.LabelOrigin: resource.OriginZone, resource.LabelZone: "west"}
	if _, err := mem.Put(context.Background(), local, store.AnyVersion); err != nil {
		t.Fatal(err)
	}
	code, body = call(t, "GET", api+"/meshes/default/meshtraces/from-west/_resources/dataplanes", "", "")
	if code != 200 || !strings.Contains(body, `"total":1`) || !strings.Contains(body, `"zone":"west"`) {
		t.Fatalf("_resources/dataplanes of west's policy = %d %s", code, body)
	}
	if code, body = call(t, "GET", api+"/meshes/default/dataplanes/east.web-1/_rules", "", ""); code != 200 || strings.Contains(body, "from-west") {
		t.Fatalf("east's _rules name west's policy: %d %s", code, body)
	}
}
