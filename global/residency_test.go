package global

import (
	"context"
	"encoding/json"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/meshtrace/meshtrace/residency"
	"github.com/meshtrace/meshtrace/resource"
	"github.com/meshtrace/meshtrace/store"
)

// uploadDataplane stores a Dataplane as KDS does for a zone's upload.
func uploadDataplane(t testing.TB, st store.Store, zone, name, service string) int64 {
	t.Helper()
	r, err := resource.Decode([]byte(fmt.Sprintf(`{"type":"Dataplane","mesh":"default","name":"%s.%s",
"labels":{"kuma.io/zone":%q,"kuma.io/origin":"zone","kuma.io/display-name":%q},
"networking":{"address":"10.0.0.1","inbound":[{"port":8080,"tags":{"kuma.io/service":%q,"kuma.io/zone":%q,"kuma.io/protocol":"http"}}]}}`,
		zone, name, zone, name, service, zone)))
	if err != nil {
		t.Fatal(err)
	}
	resource.Prepare(r)
	rev, err := st.Put(context.Background(), r, store.AnyVersion)
	if err != nil {
		t.Fatal(err)
	}
	return rev
}

func meshTrace(name, target, url string) string {
	return fmt.Sprintf("type: MeshTrace\nmesh: default\nname: %s\nspec:\n  targetRef: %s\n  default:\n    backends:\n    - zipkin:\n        url: %s\n", name, target, url)
}

type apiError struct {
	Status int    `json:"status"`
	Detail string `json:"detail"`
	Causes []struct {
		Field   string `json:"field"`
		Message string `json:"message"`
	} `json:"causes"`
	Details struct {
		Residency struct {
			Total      int                 `json:"total"`
			Violations []residency.Verdict `json:"violations"`
		} `json:"residency"`
	} `json:"details"`
}

func decodeError(t testing.TB, body string) apiError {
	t.Helper()
	var e apiError
	if err := json.Unmarshal([]byte(body), &e); err != nil {
		t.Fatalf("error body: %v\n%s", err, body)
	}
	return e
}

func TestResidencyAdmissionAPI(t *testing.T) {
	g, err := New(testConfig(t.TempDir()), nil)
	if err != nil {
		t.Fatal(err)
	}
	start(t, g)
	api, tok := "http://"+g.APIAddr(), g.AdminToken()
	put := func(path, body string) (int, string) { return call(t, "PUT", api+path, tok, body) }

	// Zones declare their residency through the API; bad input names the field.
	code, body := put("/zones/west", "type: Zone\nname: west\nresidency:\n  mode: Enforce\n  allowedCollectors: ['*.west.svc', 'http://x']\n")
	if code != 400 || !strings.Contains(body, `"field":"residency.allowedCollectors[1]"`) {
		t.Fatalf("bad zone: %d %s", code, body)
	}
	if code, body = put("/zones/west", "type: Zone\nname: west\nresidency:\n  mode: Enforce\n  allowedCollectors: ['*.west.svc']\n"); code != 201 {
		t.Fatalf("zone west: %d %s", code, body)
	}
	if code, body = put("/zones/east", "apiVersion: kuma.io/v1alpha1\nkind: Zone\nmetadata:\n  name: east\nspec:\n  residency:\n    mode: Audit\n    allowedCollectors: ['*.east.svc']\n"); code != 201 {
		t.Fatalf("zone east: %d %s", code, body)
	}
	uploadDataplane(t, g.Store(), "west", "web-1", "web")
	uploadDataplane(t, g.Store(), "west", "db-1", "db")
	rev := uploadDataplane(t, g.Store(), "east", "web-1", "web")
	if err := g.Residency().WaitFor(context.Background(), rev); err != nil {
		t.Fatal(err)
	}

	for _, p := range []string{
		meshTrace("trace-west", "{kind: MeshSubset, tags: {kuma.io/zone: west}}", "http://jaeger.west.svc:9411/api/v2/spans"),
		meshTrace("trace-east", "{kind: MeshSubset, tags: {kuma.io/zone: east}}", "http://jaeger.east.svc:9411/api/v2/spans"),
		meshTrace("fallback", "{kind: Mesh}", "http://jaeger.central:9411/api/v2/spans"),
	} {
		if code, body := put("/meshes/default/meshtraces/"+strings.Fields(p)[5], p); code != 201 {
			t.Fatalf("seed policy: %d %s", code, body)
		}
	}

	// A MeshService policy sending web to central: refused for west's proxy.
	central := meshTrace("web-central", "{kind: MeshService, name: web}", "http://jaeger.central:9411/api/v2/spans")
	for _, dry := range []string{"?dry-run=true", ""} {
		code, body = put("/meshes/default/meshtraces/web-central"+dry, central)
		if code != 409 {
			t.Fatalf("web-central%s: %d %s", dry, code, body)
		}
		e := decodeError(t, body)
		if len(e.Causes) != 1 || e.Causes[0].Field != "spec.default.backends" ||
			e.Causes[0].Message != `zone "west": proxy "web-1" (mesh "default") would export Zipkin spans to http://jaeger.central:9411/api/v2/spans, brought in by MeshTrace "web-central" in mesh "default": jaeger.central:9411 is not in zone "west"'s allowed collectors [*.west.svc]` {
			t.Fatalf("causes: %+v", e.Causes)
		}
		if !strings.Contains(e.Detail, `writing MeshTrace "web-central" in mesh "default" would make 1 proxies of 1 zones in residency Enforce mode export`) {
			t.Fatalf("detail: %s", e.Detail)
		}
		if r := e.Details.Residency; r.Total != 1 || r.Violations[0].Zone != "west" || r.Violations[0].Proxy != "web-1" || r.Violations[0].Host != "jaeger.central" {
			t.Fatalf("details: %+v", r)
		}
	}
	if code, _ = call(t, "GET", api+"/meshes/default/meshtraces/web-central", "", ""); code != 404 {
		t.Fatalf("refused policy was stored: %d", code)
	}

	// Deleting trace-west lets the Mesh-wide fallback take over in west: refused, also as a dry run.
	for _, dry := range []string{"?dry-run=true", ""} {
		code, body = call(t, "DELETE", api+"/meshes/default/meshtraces/trace-west"+dry, tok, "")
		e := decodeError(t, body)
		if code != 409 || len(e.Causes) != 2 || e.Causes[0].Field != "" || !strings.Contains(e.Causes[0].Message, `proxy "db-1"`) ||
			!strings.Contains(e.Causes[0].Message, `brought in by MeshTrace "fallback"`) || !strings.HasPrefix(e.Detail, "deleting MeshTrace") {
			t.Fatalf("delete trace-west%s: %d %s", dry, code, body)
		}
	}
	// Retargeting trace-west by a typo makes the fallback win: the cause is the targetRef.
	code, body = put("/meshes/default/meshtraces/trace-west", meshTrace("trace-west", "{kind: MeshSubset, tags: {kuma.io/zone: wset}}", "http://jaeger.west.svc:9411/api/v2/spans"))
	if e := decodeError(t, body); code != 409 || len(e.Causes) != 2 || e.Causes[0].Field != "spec.targetRef" {
		t.Fatalf("typo: %d %s", code, body)
	}

	// Deleting trace-east in Audit mode is admitted with a warning, and recorded.
	code, body = call(t, "DELETE", api+"/meshes/default/meshtraces/trace-east?dry-run=true", tok, "")
	if code != 200 || !strings.Contains(body, `residency (Audit, admitted and recorded): zone \"east\": proxy \"web-1\"`) {
		t.Fatalf("dry-run delete trace-east: %d %s", code, body)
	}
	if code, _ = call(t, "GET", api+"/meshes/default/meshtraces/trace-east", "", ""); code != 200 {
		t.Fatal("dry run deleted")
	}
	if code, body = call(t, "DELETE", api+"/meshes/default/meshtraces/trace-east", tok, ""); code != 200 || !strings.Contains(body, "Audit") {
		t.Fatalf("delete trace-east: %d %s", code, body)
	}
	waitFor(t, func() bool { return len(g.Residency().Violations()) == 1 })
	code, body = call(t, "GET", api+"/residency", "", "")
	var rep residency.Report
	if err := json.Unmarshal([]byte(body), &rep); err != nil || code != 200 {
		t.Fatalf("GET /residency: %d %v %s", code, err, body)
	}
	if len(rep.Zones) != 2 || rep.Zones[0].Zone != "east" || rep.Zones[0].Mode != "Audit" || len(rep.Zones[0].Violations) != 1 ||
		rep.Zones[0].Violations[0].Policy.Name != "fallback" || rep.Zones[1].Proxies != 2 || len(rep.Zones[1].Violations) != 0 {
		t.Fatalf("report: %s", body)
	}
	if code, metrics := call(t, "GET", "http://"+g.DiagnosticsAddr()+"/metrics", "", ""); code != 200 ||
		!strings.Contains(metrics, `meshtrace_residency_violations{zone="east"} 1`) || !strings.Contains(metrics, `meshtrace_residency_violations{zone="west"} 0`) {
		t.Fatalf("metrics: %d", code)
	}

	// Documents of one bulk apply are checked together: each passes alone, together they send west out.
	bulk := `{"items":[` + jsonDoc(t, meshTrace("trace-west", "{kind: MeshSubset, tags: {kuma.io/zone: wset}}", "http://jaeger.west.svc:9411/api/v2/spans")) + `,` +
		jsonDoc(t, meshTrace("fallback", "{kind: Mesh}", "http://jaeger.central:9411/api/v2/spans")) + `]}`
	code, body = call(t, "POST", api+"/_apply", tok, bulk)
	if code != 409 || !strings.Contains(body, `\"west\": proxy \"web-1\"`) || !strings.Contains(body, "no item was applied") {
		t.Fatalf("bulk apply violating together: %d %s", code, body)
	}

	// Switching east to Enforce is admitted, with the current violation as a warning.
	code, body = put("/zones/east?dry-run=true", "type: Zone\nname: east\nresidency:\n  mode: Enforce\n  allowedCollectors: ['*.east.svc']\n")
	if code != 200 || !strings.Contains(body, `residency: currently violating: zone \"east\": proxy \"web-1\"`) {
		t.Fatalf("zone east to Enforce: %d %s", code, body)
	}
}

// jsonDoc turns a YAML document into the JSON a bulk apply carries.
func jsonDoc(t testing.TB, doc string) string {
	t.Helper()
	r, err := resource.Decode([]byte(doc))
	if err != nil {
		t.Fatal(err)
	}
	b, err := json.Marshal(r)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

func waitFor(t testing.TB, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatal("condition not met within 10s")
		}
		time.Sleep(10 * time.Millisecond)
	}
}
