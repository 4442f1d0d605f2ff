package overview

import (
	"bytes"
	"context"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/meshtrace/meshtrace/resource"
	"github.com/meshtrace/meshtrace/restapi"
	"github.com/meshtrace/meshtrace/store"
)

var (
	t0 = time.Date(2026, 11, 1, 10, 0, 0, 0, time.UTC)
	t1 = t0.Add(time.Minute)
	t2 = t0.Add(2 * time.Minute)
)

func put(t *testing.T, st store.Store, doc string) {
	t.Helper()
	items, err := resource.DecodeAll([]byte(doc))
	if err != nil {
		t.Fatal(err)
	}
	for _, r := range items {
		r.CreationTime, r.ModificationTime = t0, t1
		if _, err := st.Put(context.Background(), r, store.MustNotExist); err != nil {
			t.Fatal(err)
		}
	}
}

const fixture = `type: Mesh
name: default
---
type: Zone
name: east
---
type: Zone
name: west
enabled: false
---
type: ZoneInsight
name: east
online: true
connectedTime: "2026-11-01T10:00:00Z"
globalInstance: global-1
lastAckedRevision: 42
lagRevisions: 1
nacks: 1
stats:
  MeshTrace: {sent: 3, acked: 2, nacked: 1}
  Mesh: {sent: 1, acked: 1, nacked: 0}
---
type: MeshTrace
name: trace-west
mesh: default
spec:
  targetRef:
    kind: MeshSubset
    tags:
      kuma.io/zone: west
  default:
    backends:
    - zipkin:
        url: http://west.zipkincollector:9411/api/v2/spans
---
type: Dataplane
name: west.backend-1
mesh: default
labels:
  kuma.io/zone: west
  kuma.io/display-name: backend-1
networking:
  address: 10.0.0.1
  inbound:
  - port: 8080
    servicePort: 80
    tags:
      kuma.io/service: backend
      kuma.io/zone: west
      version: v1
---
type: Dataplane
name: west.gateway
mesh: default
labels:
  kuma.io/zone: west
networking:
  address: 10.0.0.2
  gateway:
    tags:
      kuma.io/service: edge
      kuma.io/zone: west
---
type: Dataplane
name: east.frontend-1
mesh: default
labels:
  kuma.io/zone: east
networking:
  address: 10.0.0.3
  inbound:
  - port: 8080
    tags:
      kuma.io/service: frontend
      kuma.io/zone: east
`

// proxies: backend-1 online, frontend-1 went away, the gateway never connected.
func lookup(context.Context) (ProxyLookup, error) {
	statuses := map[string]*resource.ProxyXDS{
		"west.backend-1": {Online: true, ControlPlane: "west", ConnectedTime: t0, LastUpdateTime: t1,
			Sent: 4, Acked: 3, Rejected: 1, AckedVersion: "17", EnvoyVersion: "1.30.1"},
		"east.frontend-1": {Online: false, ControlPlane: "east", ConnectedTime: t0, DisconnectedTime: t2, Sent: 2, Acked: 2},
	}
	return func(dp *resource.Resource) *resource.ProxyXDS { return statuses[dp.Name] }, nil
}

func server(t *testing.T) *httptest.Server {
	t.Helper()
	st := store.NewMemory()
	put(t, st, fixture)
	api, err := restapi.New(restapi.Config{
		Store:  st,
		Routes: Routes(Config{Store: st, Proxies: lookup, Now: func() time.Time { return t2 }}),
	})
	if err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewServer(api)
	t.Cleanup(srv.Close)
	return srv
}

func get(t *testing.T, srv *httptest.Server, path string) (int, []byte) {
	t.Helper()
	resp, err := http.Get(srv.URL + path)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var b bytes.Buffer
	if _, err := b.ReadFrom(resp.Body); err != nil {
		t.Fatal(err)
	}
	return resp.StatusCode, b.Bytes()
}

// TestKumactlRoutes checks the exact JSON of every route kumactl 2.7's inspect
// commands call against golden files (UPDATE_GOLDEN=1 rewrites them).
func TestKumactlRoutes(t *testing.T) {
	srv := server(t)
	for _, tc := range []struct{ golden, path string }{
		{"dataplanes-insights", "/meshes/default/dataplanes+insights"},
		{"dataplanes-insights-item", "/meshes/default/dataplanes+insights/west.backend-1"},
		{"dataplanes-insights-tag", "/meshes/default/dataplanes+insights?tag=kuma.io/service:back&tag=version:v1"},
		{"dataplanes-insights-gateway", "/meshes/default/dataplanes+insights?gateway=delegated"},
		{"dataplanes-insights-page", "/meshes/default/dataplanes+insights?size=1&offset=1"},
		{"zones-insights", "/zones+insights"},
		{"mesh-insights", "/mesh-insights"},
		{"meshtrace-dataplanes", "/meshes/default/meshtraces/trace-west/dataplanes"},
	} {
		t.Run(tc.golden, func(t *testing.T) {
			code, body := get(t, srv, tc.path)
			if code != http.StatusOK {
				t.Fatalf("GET %s: %d %s", tc.path, code, body)
			}
			body = bytes.ReplaceAll(body, []byte(strings.TrimPrefix(srv.URL, "http://")), []byte("HOST"))
			var pretty bytes.Buffer
			if err := json.Indent(&pretty, body, "", "  "); err != nil {
				t.Fatal(err)
			}
			pretty.WriteByte('\n')
			golden := filepath.Join("testdata", tc.golden+".golden.json")
			if os.Getenv("UPDATE_GOLDEN") != "" {
				if err := os.WriteFile(golden, pretty.Bytes(), 0o644); err != nil {
					t.Fatal(err)
				}
			}
			want, err := os.ReadFile(golden)
			if err != nil {
				t.Fatal(err)
			}
			if !bytes.Equal(pretty.Bytes(), want) {
				t.Errorf("GET %s differs from %s:\n%s", tc.path, golden, pretty.String())
			}
		})
	}
}

// The aliases answer what the main paths answer.
func TestAliases(t *testing.T) {
	srv := server(t)
	for alias, path := range map[string]string{
		"/meshes/default/dataplanes/_overview":                "/meshes/default/dataplanes+insights",
		"/meshes/default/dataplanes/west.backend-1/_overview": "/meshes/default/dataplanes+insights/west.backend-1",
		"/dataplanes+insights":                                "/meshes/default/dataplanes+insights",
		"/zones/_overview":                                    "/zones+insights",
		"/zones/east/_overview":                               "/zones+insights/east",
		"/mesh-insights/default":                              "/mesh-insights",
	} {
		c1, b1 := get(t, srv, alias)
		c2, b2 := get(t, srv, path)
		if c1 != 200 || c2 != 200 {
			t.Fatalf("%s: %d, %s: %d", alias, c1, path, c2)
		}
		if strings.HasPrefix(alias, "/mesh-insights/") {
			var list List[json.RawMessage]
			if err := json.Unmarshal(b2, &list); err != nil || len(list.Items) != 1 {
				t.Fatalf("%s: %v", path, err)
			}
			b2 = list.Items[0]
		}
		if !bytes.Equal(bytes.TrimSpace(b1), bytes.TrimSpace(b2)) {
			t.Errorf("%s answers\n%s\nbut %s answers\n%s", alias, b1, path, b2)
		}
	}
}

func TestErrors(t *testing.T) {
	srv := server(t)
	for path, want := range map[string]int{
		"/meshes/default/dataplanes+insights?gateway=maybe":    http.StatusBadRequest,
		"/meshes/default/dataplanes+insights?size=0":           http.StatusBadRequest,
		"/meshes/default/dataplanes+insights/nope":             http.StatusNotFound,
		"/zones+insights/nope":                                 http.StatusNotFound,
		"/mesh-insights/nope":                                  http.StatusNotFound,
		"/meshes/default/meshtraces/nope/dataplanes":           http.StatusNotFound,
		"/meshes/other/dataplanes+insights":                    http.StatusOK,
		"/meshes/default/dataplanes+insights?tag=kuma.io/zone": http.StatusOK, // malformed tags are ignored, as in Kuma
	} {
		if code, body := get(t, srv, path); code != want {
			t.Errorf("GET %s: %d %s, want %d", path, code, body, want)
		}
	}
}

func TestStatus(t *testing.T) {
	dp := func(doc string) *resource.Resource {
		r, err := resource.Decode([]byte(doc))
		if err != nil {
			t.Fatal(err)
		}
		return r
	}
	sidecar := dp("type: Dataplane\nname: a\nmesh: m\nnetworking:\n  address: 1.1.1.1\n  inbound:\n  - port: 1\n    tags: {kuma.io/service: a}\n")
	bare := dp("type: Dataplane\nname: a\nmesh: m\nnetworking:\n  address: 1.1.1.1\n")
	gw := dp("type: Dataplane\nname: a\nmesh: m\nnetworking:\n  address: 1.1.1.1\n  gateway:\n    tags: {kuma.io/service: a}\n")
	on, off := &resource.ProxyXDS{Online: true}, &resource.ProxyXDS{}
	for _, tc := range []struct {
		dp   *resource.Resource
		st   *resource.ProxyXDS
		want string
	}{
		{sidecar, on, StatusOnline}, {sidecar, off, StatusOffline}, {sidecar, nil, StatusOffline},
		{gw, on, StatusOnline}, {bare, on, StatusOffline},
	} {
		if got := Status(tc.dp, tc.st); got != tc.want {
			t.Errorf("%+v %+v: %s, want %s", tc.dp.Spec, tc.st, got, tc.want)
		}
	}
}

// Query strings come from anyone: parsing them never panics and either
// fails with a 400 or yields a usable page and filter.
func FuzzListQuery(f *testing.F) {
	f.Add("size=1&offset=2&tag=kuma.io/service:web&gateway=builtin&name=x")
	f.Add("size=-1&gateway=maybe&tag=::")
	f.Add("offset=99999999999999999999&tag=%zz")
	f.Fuzz(func(t *testing.T, raw string) {
		q, err := url.ParseQuery(raw)
		if err != nil {
			return
		}
		p, perr := parsePage(q)
		if perr == nil && (p.size < 1 || p.size > MaxPageSize || p.offset < 0) {
			t.Fatalf("accepted page %+v from %q", p, raw)
		}
		if _, ferr := parseDataplaneFilter(q); ferr != nil {
			return
		}
		req := httptest.NewRequest("GET", "/x?"+q.Encode(), nil)
		if perr == nil {
			_ = paginate(req, p, []int{1, 2, 3})
		}
	})
}
