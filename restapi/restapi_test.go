package restapi

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"maps"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/meshtrace/meshtrace/resource"
	"github.com/meshtrace/meshtrace/store"
)

func seedFixtures(t *testing.T, st store.Store) {
	t.Helper()
	putRaw(t, st, &resource.Resource{Meta: resource.Meta{Type: resource.TypeMesh, Name: "other"}})
	putRaw(t, st, &resource.Resource{Meta: resource.Meta{Type: resource.TypeMeshTrace, Mesh: "default", Name: "t1"}})
	putRaw(t, st, &resource.Resource{Meta: resource.Meta{Type: resource.TypeMeshTrace, Mesh: "other", Name: "t2"}})
	putRaw(t, st, &resource.Resource{Meta: resource.Meta{Type: resource.TypeDataplane, Mesh: "default", Name: "dp1"}})
	putRaw(t, st, &resource.Resource{Meta: resource.Meta{Type: resource.TypeZone, Name: "east"}})
	putRaw(t, st, &resource.Resource{Meta: resource.Meta{Type: resource.TypeZoneInsight, Name: "east"}})
}

func TestIndex(t *testing.T) {
	s := newTestServer(t, nil, nil)
	r := s.do(t, "GET", "/", "", "")
	if r.status != 200 {
		t.Fatalf("GET / = %d %s", r.status, r.body)
	}
	m := r.json(t)
	for k, want := range map[string]any{"product": "meshtrace", "tagline": "Kuma", "version": "2.7.29", "basedOnKuma": "2.7.29", "mode": "global", "instanceId": "i-1", "clusterId": "c-1"} {
		if m[k] != want {
			t.Errorf("GET / %s = %v, want %v", k, m[k], want)
		}
	}
	if _, ok := m["hostname"]; !ok {
		t.Error("GET / lacks hostname")
	}
	// kumactl 2.7.29's checks (app/kumactl/pkg/cmd/root_context.go and
	// pkg/config/validate.go): no "server returned version" warning and no
	// "this CLI is for Kuma" refusal.
	const kumactlVersion, kumactlProduct = "2.7.29", "Kuma"
	preview := strings.Contains(fmt.Sprint(m["version"]), "preview")
	if !preview && (m["version"] != kumactlVersion || m["tagline"] != kumactlProduct) {
		t.Errorf("kumactl %s would warn: server returned %v %v", kumactlVersion, m["tagline"], m["version"])
	}
	if m["tagline"] != kumactlProduct && !preview {
		t.Errorf("kumactl config control-planes add would refuse tagline %v", m["tagline"])
	}
	r = s.do(t, "GET", "/_resources", "", "")
	if r.status != 200 || !strings.Contains(string(r.body), `"path":"meshtraces"`) {
		t.Fatalf("GET /_resources = %d %s", r.status, r.body)
	}
}

func TestRoutes(t *testing.T) {
	s := newTestServer(t, nil, nil)
	seedFixtures(t, s.store)
	tests := []struct {
		method, path, body, token string
		want                      int
		contains                  string // in the body
		field                     string // a cause must name this field
	}{
		{method: "GET", path: "/meshes", want: 200, contains: `"total":2`},
		{method: "GET", path: "/meshes/default", want: 200, contains: `"type":"Mesh"`},
		{method: "GET", path: "/meshes/nope", want: 404, contains: `Mesh \"nope\" not found`},
		{method: "GET", path: "/meshes/default/meshtraces/t1", want: 200, contains: `"name":"t1"`},
		{method: "GET", path: "/meshes/default/meshtraces/t2", want: 404, contains: `MeshTrace \"t2\" in mesh \"default\" not found`},
		{method: "GET", path: "/meshes/default/meshtraces", want: 200, contains: `"total":1`},
		{method: "GET", path: "/meshtraces", want: 200, contains: `"total":2`},
		{method: "GET", path: "/meshes/default/dataplanes/dp1", want: 200, contains: `"type":"Dataplane"`},
		{method: "GET", path: "/meshes/default/dataplanes", want: 200, contains: `"total":1`},
		{method: "GET", path: "/dataplanes", want: 200, contains: `"total":1`},
		{method: "GET", path: "/zones", want: 200, contains: `"total":1`},
		{method: "GET", path: "/zones/east", want: 200, contains: `"type":"Zone"`},
		{method: "GET", path: "/zones/west", want: 404, contains: `Zone \"west\" not found`},
		{method: "GET", path: "/zone-insights", want: 200, contains: `"total":1`},
		{method: "GET", path: "/zone-insights/east", want: 200, contains: `"type":"ZoneInsight"`},
		{method: "GET", path: "/nothing/here", want: 404, contains: "no route"},
		{method: "POST", path: "/meshes", token: "ok", want: 404},
		{method: "PUT", path: "/zones/east", token: "ok", body: "type: Zone\nname: east\n", want: 405, contains: "read-only"},
		{method: "DELETE", path: "/zone-insights/east", token: "ok", want: 405},
		{method: "PUT", path: "/meshes/default/dataplanes/dp1", token: "ok", body: "{}", want: 405},
		{method: "PUT", path: "/meshes/default/meshtraces/x", body: meshTrace("default", "x", ""), want: 401},
		{method: "PUT", path: "/meshes/default/meshtraces/x", token: "Bearer wrong", body: meshTrace("default", "x", ""), want: 401},
		{method: "PUT", path: "/meshes/default/meshtraces/x", token: "Basic " + testToken, body: meshTrace("default", "x", ""), want: 401},
		{method: "DELETE", path: "/meshes/default/meshtraces/t1", want: 401},
		{method: "DELETE", path: "/meshes/default/meshtraces/absent", token: "ok", want: 404, contains: `MeshTrace \"absent\" in mesh \"default\" not found`},
		{method: "PUT", path: "/meshes/default/meshtraces/x", token: "ok", body: "type: Mesh\nname: x\n", want: 400, field: "type"},
		{method: "PUT", path: "/meshes/default/meshtraces/x", token: "ok", body: meshTrace("default", "y", ""), want: 400, field: "name"},
		{method: "PUT", path: "/meshes/default/meshtraces/x", token: "ok", body: meshTrace("other", "x", ""), want: 400, field: "mesh"},
		{method: "PUT", path: "/meshes/ghost/meshtraces/x", token: "ok", body: meshTrace("ghost", "x", ""), want: 400, field: "mesh", contains: `mesh \"ghost\" does not exist`},
		{method: "PUT", path: "/meshes/default/meshtraces/x", token: "ok", body: meshTrace("default", "x", "bogus: 1\n"), want: 400, field: "bogus"},
		{method: "PUT", path: "/meshes/default/meshtraces/x", token: "ok", body: "type: MeshTrace\nmesh: default\nname: x\nspec:\n  default:\n    sampling:\n      overall: 250\n", want: 400, field: "spec.default.sampling.overall"},
		{method: "PUT", path: "/meshes/default/meshtraces/x", token: "ok", body: "{not json", want: 400},
		{method: "PUT", path: "/meshes/x", token: "ok", body: "type: Mesh\nname: x\nmesh: default\n", want: 400, field: "mesh"},
		{method: "GET", path: "/meshtraces?size=0", want: 400, field: "size"},
		{method: "GET", path: "/meshtraces?size=1001", want: 400, field: "size"},
		{method: "GET", path: "/meshtraces?size=ten", want: 400, field: "size"},
		{method: "GET", path: "/meshtraces?offset=-1", want: 400, field: "offset"},
		{method: "GET", path: "/meshtraces?filter[name]=x", want: 400, field: "filter[name]"},
		{method: "GET", path: "/meshtraces?size=1000&offset=5", want: 200, contains: `"total":2,"items":[],"next":null`},
	}
	for _, tt := range tests {
		t.Run(tt.method+" "+tt.path+" "+tt.field, func(t *testing.T) {
			r := s.do(t, tt.method, tt.path, tt.body, tt.token)
			if r.status != tt.want {
				t.Fatalf("status = %d, want %d: %s", r.status, tt.want, r.body)
			}
			if tt.contains != "" && !strings.Contains(string(r.body), tt.contains) {
				t.Errorf("body %s does not contain %s", r.body, tt.contains)
			}
			if r.status >= 300 {
				e := r.apiError(t)
				if tt.field != "" && !hasField(e, tt.field) {
					t.Errorf("no cause names field %q: %s", tt.field, r.body)
				}
			}
			if r.status == 401 && r.header.Get("WWW-Authenticate") == "" {
				t.Error("401 without WWW-Authenticate")
			}
		})
	}
}

func hasField(e Error, field string) bool {
	for i, c := range e.Causes {
		if c.Field == field && e.InvalidParameters[i].Field == field && c.Message != "" {
			return true
		}
	}
	return false
}

func getResource(t *testing.T, s *testServer, path string) *resource.Resource {
	t.Helper()
	r := s.do(t, "GET", path, "", "")
	if r.status != 200 {
		t.Fatalf("GET %s = %d %s", path, r.status, r.body)
	}
	res, err := resource.Decode(r.body)
	if err != nil {
		t.Fatalf("GET %s: decode: %v: %s", path, err, r.body)
	}
	return res
}

func TestLifecycle(t *testing.T) { forEachStore(t, testLifecycle) }

func testLifecycle(t *testing.T, open func(t *testing.T) store.Store) {
	s := newTestServer(t, open(t), nil)
	const p = "/meshes/default/meshtraces/life"
	r := s.do(t, "PUT", p, meshTrace("default", "life", "labels:\n  team: a\n"), "ok")
	if r.status != 201 || strings.TrimSpace(string(r.body)) != "{}" {
		t.Fatalf("create = %d %s", r.status, r.body)
	}
	first := getResource(t, s, p)
	// Global stores the labels as written (Kuma 2.7 adds none there).
	if !maps.Equal(first.Labels, map[string]string{"team": "a"}) {
		t.Errorf("labels %v, want only team: a", first.Labels)
	}
	if first.CreationTime.IsZero() || first.ModificationTime.IsZero() {
		t.Fatalf("times not set: %+v", first.Meta)
	}
	time.Sleep(5 * time.Millisecond)
	r = s.do(t, "PUT", p, meshTrace("default", "life", ""), "ok")
	if r.status != 200 {
		t.Fatalf("update = %d %s", r.status, r.body)
	}
	second := getResource(t, s, p)
	if !second.CreationTime.Equal(first.CreationTime) || !second.ModificationTime.After(first.ModificationTime) {
		t.Fatalf("times after update: creation %v->%v modification %v->%v",
			first.CreationTime, second.CreationTime, first.ModificationTime, second.ModificationTime)
	}
	if _, ok := second.Labels["team"]; ok {
		t.Error("update kept a label the body dropped")
	}

	// What GET returns can be PUT back unchanged (kumactl get -o yaml | apply).
	if r = s.do(t, "GET", p, "", ""); r.status != 200 {
		t.Fatalf("get = %d", r.status)
	}
	if back := s.do(t, "PUT", p, string(r.body), "ok"); back.status != 200 {
		t.Fatalf("PUT of the GET output = %d %s", back.status, back.body)
	}
	if third := getResource(t, s, p); !third.CreationTime.Equal(first.CreationTime) {
		t.Fatalf("creationTime changed on round trip: %v -> %v", first.CreationTime, third.CreationTime)
	}

	// Dry runs validate and answer as the write would, without storing.
	r = s.do(t, "PUT", "/meshes/default/meshtraces/dry?dry-run=true", meshTrace("default", "dry", ""), "ok")
	if r.status != 201 || r.header.Get(DryRunHeader) != "true" {
		t.Fatalf("dry-run create = %d %s", r.status, r.body)
	}
	r = s.do(t, "PUT", "/meshes/default/meshtraces/dry", meshTrace("default", "dry", ""), "ok", DryRunHeader, "true")
	if r.status != 201 {
		t.Fatalf("dry-run header create = %d %s", r.status, r.body)
	}
	if r = s.do(t, "GET", "/meshes/default/meshtraces/dry", "", ""); r.status != 404 {
		t.Fatalf("dry-run stored the resource: %d", r.status)
	}
	r = s.do(t, "PUT", "/meshes/default/meshtraces/dry?dry-run=true", "type: MeshTrace\nmesh: default\nname: dry\nspec:\n  default:\n    sampling:\n      overall: 101\n", "ok")
	if r.status != 400 {
		t.Fatalf("dry-run of an invalid resource = %d %s", r.status, r.body)
	}
	r = s.do(t, "PUT", p+"?dry-run=true", meshTrace("default", "life", ""), "ok")
	if r.status != 200 {
		t.Fatalf("dry-run update = %d %s", r.status, r.body)
	}

	// Meshes: create, refuse to delete while it holds policies, then delete.
	if r = s.do(t, "PUT", "/meshes/m2", `{"type":"Mesh","name":"m2"}`, "ok"); r.status != 201 {
		t.Fatalf("create mesh = %d %s", r.status, r.body)
	}
	if r = s.do(t, "PUT", "/meshes/m2/meshtraces/in-m2", meshTrace("m2", "in-m2", ""), "ok"); r.status != 201 {
		t.Fatalf("create in m2 = %d %s", r.status, r.body)
	}
	r = s.do(t, "DELETE", "/meshes/m2", "", "ok")
	if r.status != 400 || !strings.Contains(string(r.body), `MeshTrace \"in-m2\"`) {
		t.Fatalf("delete non-empty mesh = %d %s", r.status, r.body)
	}
	r.apiError(t)
	if r = s.do(t, "DELETE", "/meshes/m2/meshtraces/in-m2", "", "ok"); r.status != 200 || strings.TrimSpace(string(r.body)) != "{}" {
		t.Fatalf("delete policy = %d %s", r.status, r.body)
	}
	if r = s.do(t, "DELETE", "/meshes/m2", "", "ok"); r.status != 200 {
		t.Fatalf("delete empty mesh = %d %s", r.status, r.body)
	}
	if r = s.do(t, "DELETE", "/meshes/m2", "", "ok"); r.status != 404 {
		t.Fatalf("delete deleted mesh = %d %s", r.status, r.body)
	}
}

func TestOversizedBody(t *testing.T) {
	s := newTestServer(t, nil, nil)
	body := meshTrace("default", "big", "labels:\n  pad: "+strings.Repeat("a", DefaultMaxBodyBytes)+"\n")
	r := s.do(t, "PUT", "/meshes/default/meshtraces/big", body, "ok")
	if r.status != 413 {
		t.Fatalf("status = %d, want 413: %.200s", r.status, r.body)
	}
	r.apiError(t)
}

func TestPaginationAndFilter(t *testing.T) { forEachStore(t, testPaginationAndFilter) }

func testPaginationAndFilter(t *testing.T, open func(t *testing.T) store.Store) {
	s := newTestServer(t, open(t), nil)
	const n = 25
	for i := range n {
		name := fmt.Sprintf("p%02d", i)
		team := "odd"
		if i%2 == 0 {
			team = "even"
		}
		if r := s.do(t, "PUT", "/meshes/default/meshtraces/"+name, meshTrace("default", name, "labels:\n  team: "+team+"\n  app.example.com/tier: web\n"), "ok"); r.status != 201 {
			t.Fatalf("create %s = %d %s", name, r.status, r.body)
		}
	}
	type page struct {
		Total int               `json:"total"`
		Items []json.RawMessage `json:"items"`
		Next  *string           `json:"next"`
	}
	walk := func(url string) (names []string, pages int) {
		for url != "" {
			r := s.do(t, "GET", url, "", "")
			if r.status != 200 {
				t.Fatalf("GET %s = %d %s", url, r.status, r.body)
			}
			var p page
			if err := json.Unmarshal(r.body, &p); err != nil {
				t.Fatal(err)
			}
			for _, it := range p.Items {
				res, err := resource.Decode(it)
				if err != nil {
					t.Fatal(err)
				}
				names = append(names, res.Name)
			}
			pages++
			url = ""
			if p.Next != nil {
				if !strings.HasPrefix(*p.Next, s.URL+"/") {
					t.Fatalf("next %q is not an absolute URL of this server", *p.Next)
				}
				url = *p.Next
			}
		}
		return names, pages
	}
	names, pages := walk("/meshes/default/meshtraces?size=10")
	if len(names) != n || pages != 3 || names[0] != "p00" || names[n-1] != "p24" {
		t.Fatalf("walked %d items in %d pages: %v", len(names), pages, names)
	}
	names, pages = walk("/meshtraces?size=4&filter[labels.team]=even")
	if len(names) != 13 || pages != 4 {
		t.Fatalf("filtered walk: %d items in %d pages: %v", len(names), pages, names)
	}
	names, _ = walk("/meshtraces?filter[labels.team]=odd&filter[labels.app.example.com/tier]=web")
	if len(names) != 12 {
		t.Fatalf("two filters: %d items", len(names))
	}
	r := s.do(t, "GET", "/meshtraces", "", "")
	if !strings.Contains(string(r.body), `"total":25`) || !strings.HasSuffix(strings.TrimSpace(string(r.body)), `"next":null}`) {
		t.Fatalf("default page: %.300s", r.body)
	}
}

func TestConcurrentPuts(t *testing.T) { forEachStore(t, testConcurrentPuts) }

// Concurrent PUTs of one resource (no version comes from the client) are
// serialized by the store: each lands whole, exactly one creates, the others
// update, and what is stored is one writer's body with the first creation
// time. (Kuma 2.7 may answer 409 to the loser of such a race.)
func testConcurrentPuts(t *testing.T, open func(t *testing.T) store.Store) {
	s := newTestServer(t, open(t), nil)
	const writers = 8
	codes := make([]int, writers)
	var wg sync.WaitGroup
	for i := range writers {
		wg.Go(func() {
			body := meshTrace("default", "race", fmt.Sprintf("labels:\n  writer: w%d\n", i))
			codes[i] = s.do(t, "PUT", "/meshes/default/meshtraces/race", body, "ok").status
		})
	}
	wg.Wait()
	count := map[int]int{}
	for _, c := range codes {
		count[c]++
	}
	if count[201] != 1 || count[200] != writers-1 {
		t.Fatalf("codes = %v, want one 201 and %d 200", codes, writers-1)
	}
	got, _, err := s.store.Get(context.Background(), resource.Key{Type: resource.TypeMeshTrace, Mesh: "default", Name: "race"})
	if err != nil {
		t.Fatal(err)
	}
	if !strings.HasPrefix(got.Labels["writer"], "w") || got.CreationTime.After(got.ModificationTime) {
		t.Fatalf("stored %+v", got.Meta)
	}
}

func TestSeedExamplesApplyUnchanged(t *testing.T) {
	files, err := filepath.Glob("../resource/testdata/seed/*.yaml")
	if err != nil || len(files) == 0 {
		t.Fatalf("no seed examples: %v", err)
	}
	for _, form := range []string{".universal.yaml", ".k8s.yaml"} {
		s := newTestServer(t, nil, nil)
		for _, f := range files {
			if !strings.HasSuffix(f, form) {
				continue
			}
			t.Run(filepath.Base(f), func(t *testing.T) {
				data, err := os.ReadFile(f)
				if err != nil {
					t.Fatal(err)
				}
				want, err := resource.Decode(data)
				if err != nil {
					t.Fatal(err)
				}
				d, _ := resource.Lookup(want.Type)
				path := fmt.Sprintf("/meshes/%s/%s/%s", want.Mesh, d.Plural, want.Name)
				if d.Scope == resource.ScopeGlobal {
					path = fmt.Sprintf("/%s/%s", d.Plural, want.Name)
				}
				r := s.do(t, "PUT", path, string(data), "ok", "Content-Type", "application/yaml")
				if r.status != 201 && r.status != 200 { // several examples share a name
					t.Fatalf("PUT %s = %d %s", path, r.status, r.body)
				}
				got := getResource(t, s, path) // the spec as applied: no defaults added
				wantSpec, _ := json.Marshal(want.Spec)
				gotSpec, _ := json.Marshal(got.Spec)
				if !bytes.Equal(wantSpec, gotSpec) {
					t.Fatalf("spec changed on the way:\nsent %s\ngot  %s", wantSpec, gotSpec)
				}
			})
		}
	}
}

func TestZoneMode(t *testing.T) {
	mem := store.NewMemory()
	synced := &resource.Resource{Meta: resource.Meta{Type: resource.TypeMeshTrace, Mesh: "default", Name: "from-global",
		Labels: map[string]string{resource.LabelOrigin: resource.OriginGlobal}}}
	putRaw(t, mem, synced)
	s := newTestServer(t, mem, func(c *Config) {
		c.Mode, c.Zone = ModeZone, "east"
		c.Writable = []resource.Type{resource.TypeMeshTrace, resource.TypeDataplane}
		c.ReadOnly = func(r *resource.Resource) bool { return r.Labels[resource.LabelOrigin] == resource.OriginGlobal }
		c.Mutate = func(r *resource.Resource) {
			if r.Type == resource.TypeDataplane {
				r.Labels[resource.LabelZone] = "east"
			}
		}
	})
	if m := s.do(t, "GET", "/", "", "").json(t); m["mode"] != "zone" {
		t.Fatalf("mode = %v", m["mode"])
	}
	r := s.do(t, "PUT", "/meshes/default/meshtraces/from-global", meshTrace("default", "from-global", ""), "ok")
	if r.status != 405 || !strings.Contains(string(r.body), "synced from global") || !strings.Contains(string(r.body), `zone \"east\"`) {
		t.Fatalf("update synced = %d %s", r.status, r.body)
	}
	r.apiError(t)
	if r = s.do(t, "DELETE", "/meshes/default/meshtraces/from-global", "", "ok"); r.status != 405 {
		t.Fatalf("delete synced = %d %s", r.status, r.body)
	}
	if r = s.do(t, "PUT", "/meshes/x", `{"type":"Mesh","name":"x"}`, "ok"); r.status != 405 {
		t.Fatalf("create mesh on zone = %d %s", r.status, r.body)
	}
	dp := "type: Dataplane\nmesh: default\nname: dp\nlabels:\n  kuma.io/zone: west\nnetworking:\n  address: 10.0.0.1\n  inbound:\n  - port: 8080\n    tags:\n      kuma.io/service: web\n"
	if r = s.do(t, "PUT", "/meshes/default/dataplanes/dp", dp, "ok"); r.status != 201 {
		t.Fatalf("create dataplane = %d %s", r.status, r.body)
	}
	got := getResource(t, s, "/meshes/default/dataplanes/dp")
	if got.Labels[resource.LabelOrigin] != "zone" || got.Labels[resource.LabelZone] != "east" {
		t.Fatalf("labels = %v", got.Labels)
	}
	if r = s.do(t, "PUT", "/meshes/default/meshtraces/local", meshTrace("default", "local", ""), "ok"); r.status != 201 {
		t.Fatalf("create zone-local policy = %d %s", r.status, r.body)
	}
}

func TestExtraRoutesAuthAndMetrics(t *testing.T) {
	s := newTestServer(t, nil, func(c *Config) {
		c.Routes = map[string]http.Handler{
			"GET /meshes/{mesh}/dataplanes/{name}/_rules": http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				WriteJSON(w, 200, map[string]string{"dataplane": r.PathValue("name")})
			}),
			"POST /_reload": http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { WriteJSON(w, 200, struct{}{}) }),
		}
	})
	if r := s.do(t, "GET", "/meshes/default/dataplanes/dp1/_rules", "", ""); r.status != 200 || !strings.Contains(string(r.body), "dp1") {
		t.Fatalf("extra route = %d %s", r.status, r.body)
	}
	if r := s.do(t, "POST", "/_reload", "", ""); r.status != 401 {
		t.Fatalf("extra write route without token = %d", r.status)
	}
	if r := s.do(t, "POST", "/_reload", "", "ok"); r.status != 200 {
		t.Fatalf("extra write route with token = %d", r.status)
	}
	s.do(t, "PUT", "/meshes/default/meshtraces/m", meshTrace("default", "m", ""), "ok")
	s.do(t, "BREW", "/coffee", "", "ok")
	s.do(t, "GET", "/meshes/default/meshtraces/none", "", "")
	want := map[string]float64{
		`200 GET GET /meshes/{mesh}/dataplanes/{name}/_rules`: 1,
		`200 POST POST /_reload`:                              1,
		`201 PUT PUT /meshes/{mesh}/meshtraces/{name}`:        1,
		`401 POST POST /_reload`:                              1,
		`404 GET GET /meshes/{mesh}/meshtraces/{name}`:        1,
		`404 OTHER unmatched`:                                 1,
	}
	got, series := gatherCounters(t, s.reg)
	for k, v := range want {
		if got[k] != v {
			t.Errorf("meshtrace_http_requests_total{%s} = %v, want %v (all: %v)", k, got[k], v, got)
		}
	}
	if series != 5 {
		t.Errorf("duration series = %d, want 5", series)
	}
	// A second handler on the same registry shares the collectors.
	if _, err := New(Config{Store: s.store, Registerer: s.reg}); err != nil {
		t.Fatal(err)
	}
	if _, err := New(Config{Store: s.store, Routes: map[string]http.Handler{"GET /meshes/{name}": http.NotFoundHandler()}}); err == nil {
		t.Fatal("a conflicting extra route must fail New")
	}
	if _, err := New(Config{Store: s.store, Mode: "regional"}); err == nil {
		t.Fatal("a bad mode must fail New")
	}
}

// gatherCounters returns request counts keyed "code method route" and the
// number of duration histogram series.
func gatherCounters(t *testing.T, reg *prometheus.Registry) (map[string]float64, int) {
	t.Helper()
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	counts, series := map[string]float64{}, 0
	for _, mf := range mfs {
		switch mf.GetName() {
		case "meshtrace_http_requests_total":
			for _, m := range mf.GetMetric() {
				l := map[string]string{}
				for _, lp := range m.GetLabel() {
					l[lp.GetName()] = lp.GetValue()
				}
				counts[l["code"]+" "+l["method"]+" "+l["route"]] = m.GetCounter().GetValue()
			}
		case "meshtrace_http_request_duration_seconds":
			series = len(mf.GetMetric())
		}
	}
	return counts, series
}

// An operator can repair a corrupt stored value (not JSON, or an envelope
// naming another resource than its key) through the API: PUT and bulk apply
// overwrite it (as an update, with a fresh creation time), DELETE removes it.
// Global's read-only rule and admission do not trip over it.
func TestRepairCorruptValue(t *testing.T) {
	mem := store.NewMemory()
	admitted := 0
	s := newTestServer(t, mem, func(c *Config) {
		c.ReadOnly = func(r *resource.Resource) bool { return r.Labels[resource.LabelOrigin] == resource.OriginZone }
		c.Admit = func(_ context.Context, old, cur *resource.Resource) ([]string, func(int64), error) {
			admitted++
			if old != nil && old.Spec == nil {
				return nil, nil, fmt.Errorf("admission shown a resource without a spec")
			}
			return nil, nil, nil
		}
	})
	key := func(n string) resource.Key {
		return resource.Key{Type: resource.TypeMeshTrace, Mesh: "default", Name: n}
	}
	mem.PutRaw(key("bad"), []byte("not json"))
	mem.PutRaw(key("named"), []byte(`{"meta":{"type":"MeshTrace","mesh":"default","name":"live"},"spec":{}}`))
	mem.PutRaw(key("gone"), []byte("{"))

	const p = "/meshes/default/meshtraces/"
	if r := s.do(t, "PUT", p+"bad", meshTrace("default", "bad", ""), "ok"); r.status != 200 {
		t.Fatalf("PUT over a corrupt value = %d %s", r.status, r.body)
	}
	if got := getResource(t, s, p+"bad"); got.CreationTime.IsZero() {
		t.Fatalf("overwritten corrupt value has no creation time: %+v", got.Meta)
	}
	b := decodeBulk(t, s.do(t, "POST", "/_apply", bulkBody(traceJSON("default", "named", "http://z:9411/api/v2/spans")), "ok"))
	if b.Items[0].Error != nil || b.Updated != 1 || countTraces(t, mem) != 2 {
		t.Fatalf("bulk apply over a corrupt value: %+v, %d policies", b.Items[0], countTraces(t, mem))
	}
	if r := s.do(t, "GET", p+"live", "", "ok"); r.status != 404 {
		t.Fatalf("the resource a mismatching value named was written: %d %s", r.status, r.body)
	}
	if r := s.do(t, "DELETE", p+"gone", "", "ok"); r.status != 200 {
		t.Fatalf("DELETE of a corrupt value = %d %s", r.status, r.body)
	}
	if r := s.do(t, "GET", p+"gone", "", "ok"); r.status != 404 {
		t.Fatalf("GET after deleting a corrupt value = %d %s", r.status, r.body)
	}
	if len(mem.Corrupt()) != 0 {
		t.Fatalf("still reported corrupt: %+v", mem.Corrupt())
	}
}

// A write is authorized by "Bearer <token>" (scheme in any case, spaces
// around the token trimmed) and nothing else, whatever the token's length.
func TestAuthorized(t *testing.T) {
	hex64 := strings.Repeat("0123456789abcdef", 4)
	long := strings.Repeat("t", 300)
	for _, tc := range []struct {
		token, header string
		want          bool
	}{
		{"", "", true},
		{"", "Bearer anything", true},
		{testToken, "Bearer " + testToken, true},
		{testToken, "bearer " + testToken, true},
		{testToken, "BEARER   " + testToken + "  ", true},
		{testToken, "Bearer", false},
		{testToken, "", false},
		{testToken, testToken, false},
		{testToken, "Basic " + testToken, false},
		{testToken, "Bearer " + testToken[:len(testToken)-1], false},
		{testToken, "Bearer " + testToken + "x", false},
		{hex64, "Bearer " + hex64, true},
		{hex64, "Bearer " + hex64[:63] + "0", false},
		{long, "Bearer " + long, true},
		{long, "Bearer " + long[:299], false},
		{long, "Bearer " + long + "t", false},
		{long[:128], "Bearer " + long[:128], true},
		{long[:128], "Bearer " + long[:129], false},
	} {
		h := &Handler{cfg: Config{Token: tc.token}}
		r := httptest.NewRequest(http.MethodPut, "/", nil)
		if tc.header != "" {
			r.Header.Set("Authorization", tc.header)
		}
		if got := h.authorized(r); got != tc.want {
			t.Errorf("token %.10q..., header %.20q...: authorized %v, want %v", tc.token, tc.header, got, tc.want)
		}
	}
}
