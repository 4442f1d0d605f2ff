package cli

import (
	"bytes"
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/hashicorp/go-hclog"

	"github.com/meshtrace/meshtrace/global"
	"github.com/meshtrace/meshtrace/kds"
	"github.com/meshtrace/meshtrace/resource"
	"github.com/meshtrace/meshtrace/store"
)

// startGlobal runs a real global CP (embedded etcd, real HTTP listener).
func startGlobal(t *testing.T) *global.Global {
	t.Helper()
	dir := t.TempDir()
	cfg := global.DefaultConfig()
	cfg.DataDir = dir
	cfg.Store.Embedded.Dir = filepath.Join(dir, "etcd")
	cfg.API.Address, cfg.KDS.Address, cfg.Diagnostics.Address = "127.0.0.1:0", "127.0.0.1:0", "127.0.0.1:0"
	g, err := global.New(cfg, hclog.NewNullLogger())
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- g.Run(ctx) }()
	select {
	case <-g.Started():
	case err := <-done:
		t.Fatalf("global stopped: %v", err)
	case <-time.After(60 * time.Second):
		t.Fatal("global did not start")
	}
	t.Cleanup(func() {
		cancel()
		<-done
	})
	return g
}

type runner struct {
	t    *testing.T
	g    *global.Global
	conf string
}

// run runs meshtracectl with args against g and returns exit code, stdout, stderr.
func (r runner) run(stdin string, args ...string) (int, string, string) {
	r.t.Helper()
	var out, errb bytes.Buffer
	app := &App{Stdin: strings.NewReader(stdin), Stdout: &out, Stderr: &errb, ConfigPath: r.conf}
	full := append([]string{"--address", "http://" + r.g.APIAddr(), "--token", r.g.AdminToken()}, args...)
	code := app.Run(context.Background(), full)
	return code, out.String(), errb.String()
}

func newRunner(t *testing.T) runner {
	return runner{t: t, g: startGlobal(t), conf: filepath.Join(t.TempDir(), "meshtracectl.yaml")}
}

func TestApplyEverySeedExampleBothForms(t *testing.T) {
	r := newRunner(t)
	files, err := filepath.Glob("../resource/testdata/seed/*.yaml")
	if err != nil || len(files) != 16 {
		t.Fatalf("seed files: %v %d", err, len(files))
	}
	for _, f := range files {
		code, out, errOut := r.run("", "apply", "-f", f)
		if code != 0 {
			t.Fatalf("apply %s: %d %s", f, code, errOut)
		}
		if !strings.Contains(out, "meshtrace/") {
			t.Fatalf("apply %s printed %q", f, out)
		}
	}
	// Kubernetes and Universal forms name the same policies: 4 distinct names.
	code, out, _ := r.run("", "get", "meshtraces")
	if code != 0 {
		t.Fatal(out)
	}
	lines := strings.Split(strings.TrimSpace(out), "\n")
	if len(lines) != 4 || !strings.HasPrefix(lines[0], "MESH") || !strings.Contains(lines[0], "AGE") {
		t.Fatalf("table:\n%s", out)
	}
	for _, name := range []string{"default", "trace-west", "trace-east"} {
		if !strings.Contains(out, name) {
			t.Fatalf("table lacks %s:\n%s", name, out)
		}
	}
	// Columns line up: every row has TARGETREF at the same offset as the header.
	col := strings.Index(lines[0], "TARGETREF")
	for _, l := range lines[1:] {
		if len(l) < col || l[col-1] != ' ' || l[col] == ' ' {
			t.Fatalf("misaligned row %q under %q", l, lines[0])
		}
	}
}

func TestApplyMultiDocumentStdinCreateThenConfigure(t *testing.T) {
	r := newRunner(t)
	doc := `type: MeshTrace
name: a
mesh: default
spec:
  default:
    backends: []
---
apiVersion: kuma.io/v1alpha1
kind: MeshTrace
metadata:
  name: b
  labels:
    kuma.io/mesh: default
spec:
  targetRef:
    kind: MeshService
    name: backend
  default:
    sampling:
      overall: "12.5"
    backends: []
`
	code, out, errOut := r.run(doc, "apply", "-f", "-")
	if code != 0 || out != "meshtrace/a created\nmeshtrace/b created\n" {
		t.Fatalf("first apply: %d %q %q", code, out, errOut)
	}
	code, out, _ = r.run(doc, "apply", "-f", "-")
	if code != 0 || out != "meshtrace/a configured\nmeshtrace/b configured\n" {
		t.Fatalf("second apply: %d %q", code, out)
	}
	code, out, _ = r.run("", "get", "meshtrace", "b", "-o", "yaml")
	if code != 0 || !strings.Contains(out, "overall: \"12.5\"") || strings.Contains(out, "kuma.io/origin") { // global adds no labels
		t.Fatalf("get -o yaml: %d\n%s", code, out)
	}
	code, out, _ = r.run("", "get", "meshtraces", "-o", "json")
	if code != 0 || !strings.Contains(out, `"total": 2`) {
		t.Fatalf("get -o json: %d\n%s", code, out)
	}
}

func TestDryRunValidatesWithoutStoring(t *testing.T) {
	r := newRunner(t)
	doc := "type: MeshTrace\nname: dry\nmesh: default\nspec:\n  default:\n    backends: []\n"
	code, out, errOut := r.run(doc, "apply", "--dry-run", "-f", "-")
	if code != 0 || !strings.Contains(out, "dry run") {
		t.Fatalf("dry run: %d %q %q", code, out, errOut)
	}
	if _, _, err := r.g.Store().Get(context.Background(), resource.Key{Type: resource.TypeMeshTrace, Mesh: "default", Name: "dry"}); err == nil {
		t.Fatal("dry run stored the policy")
	}
	bad := "type: MeshTrace\nname: dry\nmesh: default\nspec:\n  default:\n    sampling:\n      overall: 101\n"
	code, _, errOut = r.run(bad, "apply", "--dry-run", "-f", "-")
	if code == 0 || !strings.Contains(errOut, "spec.default.sampling.overall: must be between 0 and 100") {
		t.Fatalf("dry run of a bad policy: %d %q", code, errOut)
	}
}

func TestErrorsPrintFieldPaths(t *testing.T) {
	r := newRunner(t)
	bad := `type: MeshTrace
name: bad
mesh: default
spec:
  targetRef:
    kind: MeshService
  default:
    backends:
    - datadog:
        url: http://agent:8126/path
`
	code, _, errOut := r.run(bad, "apply", "-f", "-")
	if code == 0 {
		t.Fatal("bad policy applied")
	}
	for _, want := range []string{
		"spec.targetRef.name: must be set with kind MeshService",
		"spec.default.backends[0].datadog.url: path must not be defined",
	} {
		if !strings.Contains(errOut, want) {
			t.Errorf("error output lacks %q:\n%s", want, errOut)
		}
	}
	code, _, errOut = r.run("type: MeshTrace\nname: x\nmesh: default\nspec:\n  defualt: {}\n", "apply", "-f", "-")
	if code == 0 || !strings.Contains(errOut, "spec.defualt: unknown field") {
		t.Fatalf("unknown field: %d %q", code, errOut)
	}
}

func TestDeleteAndNotFound(t *testing.T) {
	r := newRunner(t)
	if code, _, e := r.run("", "apply", "-f", "../resource/testdata/seed/trace-west.universal.yaml"); code != 0 {
		t.Fatal(e)
	}
	code, out, _ := r.run("", "delete", "meshtrace", "trace-west")
	if code != 0 || out != "meshtrace/trace-west deleted\n" {
		t.Fatalf("delete: %d %q", code, out)
	}
	code, _, errOut := r.run("", "delete", "meshtrace", "trace-west")
	if code == 0 || !strings.Contains(errOut, "404") {
		t.Fatalf("second delete: %d %q", code, errOut)
	}
	code, _, errOut = r.run("", "get", "meshtrace", "trace-west")
	if code == 0 || !strings.Contains(errOut, "404") {
		t.Fatalf("get deleted: %d %q", code, errOut)
	}
}

func TestInspectOnGlobal(t *testing.T) {
	r := newRunner(t)
	for _, f := range []string{"trace-west.universal.yaml", "trace-east.k8s.yaml"} {
		if code, _, e := r.run("", "apply", "-f", "../resource/testdata/seed/"+f); code != 0 {
			t.Fatal(e)
		}
	}
	// What KDS writes when zone west reports its proxy.
	dp, _ := resource.New(resource.TypeDataplane, "default", "west.backend-1")
	dp.Labels = map[string]string{resource.LabelZone: "west", resource.LabelDisplayName: "backend-1", resource.LabelOrigin: resource.OriginZone}
	spec := dp.Spec.(*resource.DataplaneSpec)
	spec.Networking.Address = "10.0.0.1"
	spec.Networking.Inbound = []resource.Inbound{{Port: 8080, Tags: map[string]string{resource.TagService: "backend", resource.TagZone: "west"}}}
	resource.Prepare(dp)
	if _, err := r.g.Store().Put(context.Background(), dp, store.AnyVersion); err != nil {
		t.Fatal(err)
	}
	code, out, errOut := r.run("", "inspect", "dataplane", "backend-1")
	if code != 0 {
		t.Fatal(errOut)
	}
	// The inbound has no kuma.io/protocol: inspect warns that it is not traced.
	for _, want := range []string{"zone west", "Effective collector: Zipkin http://west.zipkincollector:9411/api/v2/spans", "MeshTrace trace-west",
		"Warning: networking.inbound[0] (port 8080, kuma.io/service backend): kuma.io/protocol is not set, so this inbound is not traced"} {
		if !strings.Contains(out, want) {
			t.Errorf("inspect dataplane lacks %q:\n%s", want, out)
		}
	}
	if strings.Contains(out, "trace-east") {
		t.Errorf("east policy applies to a west proxy:\n%s", out)
	}
	code, out, _ = r.run("", "inspect", "meshtrace", "trace-west")
	if code != 0 || !strings.Contains(out, "west.backend-1") || !strings.Contains(out, "ZONE") {
		t.Fatalf("inspect meshtrace: %d\n%s", code, out)
	}
	code, out, _ = r.run("", "inspect", "meshtrace", "trace-east")
	if code != 0 || strings.Contains(out, "backend-1") {
		t.Fatalf("inspect meshtrace trace-east: %d\n%s", code, out)
	}
}

func TestConfigSetAndView(t *testing.T) {
	path := filepath.Join(t.TempDir(), "c.yaml")
	var out, errb bytes.Buffer
	app := &App{Stdout: &out, Stderr: &errb, ConfigPath: path}
	if code := app.Run(context.Background(), []string{"config", "set", "--address", "http://cp:5681", "--token", "s3cret"}); code != 0 {
		t.Fatal(errb.String())
	}
	out.Reset()
	if code := app.Run(context.Background(), []string{"config", "view"}); code != 0 {
		t.Fatal(errb.String())
	}
	if !strings.Contains(out.String(), "address: http://cp:5681") {
		t.Fatalf("view: %s", out.String())
	}
	if st, err := os.Stat(path); err != nil || st.Mode().Perm() != 0o600 {
		t.Fatalf("settings file mode: %v %v", st, err)
	}
	if code := app.Run(context.Background(), []string{"config", "set", "--address", "not a url"}); code == 0 {
		t.Fatal("bad address accepted")
	}
	if code := app.Run(context.Background(), []string{"get", "gadgets"}); code == 0 || !strings.Contains(errb.String(), "unknown resource kind") {
		t.Fatalf("unknown kind: %s", errb.String())
	}
}

func TestGenerateZoneToken(t *testing.T) {
	r := newRunner(t)
	code, out, errOut := r.run("", "generate", "zone-token", "--zone", "west")
	if code != 0 {
		t.Fatal(errOut)
	}
	claims, err := kds.ParseZoneToken(strings.TrimSpace(out))
	if err != nil || claims.Zone != "west" {
		t.Fatalf("token %q: %+v %v", out, claims, err)
	}
	code, _, errOut = r.run("", "generate", "zone-token", "--zone", "West_1")
	if code == 0 || !strings.Contains(errOut, "400") {
		t.Fatalf("bad zone name: %d %q", code, errOut)
	}
	var o, e bytes.Buffer
	app := &App{Stdout: &o, Stderr: &e, ConfigPath: r.conf}
	if app.Run(context.Background(), []string{"--address", "http://" + r.g.APIAddr(), "generate", "zone-token", "--zone", "west"}) == 0 || !strings.Contains(e.String(), "401") {
		t.Fatalf("without the admin token: %q", e.String())
	}
}

// get zones shows a zone holding snapshot deletes; zone release-deletes
// records the operator's release on global (admin token required).
func TestHeldZoneAndReleaseDeletes(t *testing.T) {
	r := newRunner(t)
	ctx := context.Background()
	st := r.g.Store()
	z, _ := resource.New(resource.TypeZone, "", "west")
	resource.Prepare(z)
	if _, err := st.Put(ctx, z, store.AnyVersion); err != nil {
		t.Fatal(err)
	}
	ins := &resource.Resource{Meta: resource.Meta{Type: resource.TypeZoneInsight, Name: "west"}, Spec: &resource.ZoneInsightSpec{
		Online: true, Held: &resource.HeldDeletes{Reason: "global's store id changed from a to b", Deletes: 7, Since: time.Now().UTC()},
	}}
	if _, err := st.Put(ctx, ins, store.AnyVersion); err != nil {
		t.Fatal(err)
	}
	code, out, errOut := r.run("", "get", "zones")
	if code != 0 || !strings.Contains(out, "Online, held (7 deletes)") {
		t.Fatalf("get zones: %d %q %q", code, out, errOut)
	}
	var o, e bytes.Buffer
	app := &App{Stdout: &o, Stderr: &e, ConfigPath: r.conf}
	if app.Run(ctx, []string{"--address", "http://" + r.g.APIAddr(), "zone", "release-deletes", "west"}) == 0 || !strings.Contains(e.String(), "401") {
		t.Fatalf("release without the admin token: %q", e.String())
	}
	code, out, errOut = r.run("", "zone", "release-deletes", "west")
	if code != 0 || !strings.Contains(out, "released the held deletes of zone west") {
		t.Fatalf("release: %d %q %q", code, out, errOut)
	}
	if v, err := st.GetValue(ctx, "kds/release-deletes/west"); err != nil || len(v) == 0 {
		t.Fatalf("release not recorded: %q %v", v, err)
	}
	if code, _, errOut = r.run("", "zone", "release-deletes", "West_1"); code == 0 || !strings.Contains(errOut, "400") {
		t.Fatalf("bad zone name: %d %q", code, errOut)
	}
}
