package restapi

import (
	"context"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/meshtrace/meshtrace/resource"
	"github.com/meshtrace/meshtrace/store"
)

const testToken = "s3cret"

type testServer struct {
	*httptest.Server
	store store.Store
	reg   *prometheus.Registry
}

// newTestServer serves a Handler over a memory store holding the default mesh.
func newTestServer(t *testing.T, st store.Store, mutate func(*Config)) *testServer {
	t.Helper()
	if st == nil {
		st = store.NewMemory()
	}
	putRaw(t, st, &resource.Resource{Meta: resource.Meta{Type: resource.TypeMesh, Name: "default"}, Spec: &resource.MeshSpec{}})
	reg := prometheus.NewRegistry()
	cfg := Config{Store: st, Token: testToken, Registerer: reg, ClusterID: "c-1", InstanceID: "i-1"}
	if mutate != nil {
		mutate(&cfg)
	}
	h, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewServer(h)
	t.Cleanup(srv.Close)
	return &testServer{Server: srv, store: st, reg: reg}
}

// putRaw stores r directly, bypassing the API.
func putRaw(t *testing.T, st store.Store, r *resource.Resource) {
	t.Helper()
	if r.Spec == nil {
		d, _ := resource.Lookup(r.Type)
		r.Spec = d.NewSpec()
	}
	r.CreationTime = time.Now().UTC()
	if _, err := st.Put(context.Background(), r, store.AnyVersion); err != nil {
		t.Fatalf("put %s: %v", r.Key(), err)
	}
}

type response struct {
	status int
	header http.Header
	body   []byte
}

func (r response) json(t *testing.T) map[string]any {
	t.Helper()
	var m map[string]any
	if err := json.Unmarshal(r.body, &m); err != nil {
		t.Fatalf("body is not a JSON object: %v: %s", err, r.body)
	}
	return m
}

func (r response) apiError(t *testing.T) Error {
	t.Helper()
	var e Error
	if err := json.Unmarshal(r.body, &e); err != nil {
		t.Fatalf("body is not an error: %v: %s", err, r.body)
	}
	if e.Type != "/std-errors" || e.Status != r.status || e.Title == "" || e.InvalidParameters == nil || e.Causes == nil {
		t.Fatalf("malformed error body for status %d: %s", r.status, r.body)
	}
	return e
}

// do sends a request; token "" sends none, "ok" sends the test token.
func (s *testServer) do(t *testing.T, method, path, body, token string, headers ...string) response {
	t.Helper()
	url := path
	if !strings.HasPrefix(path, "http") {
		url = s.URL + path
	}
	var rdr io.Reader
	if body != "" {
		rdr = strings.NewReader(body)
	}
	req, err := http.NewRequest(method, url, rdr)
	if err != nil {
		t.Fatal(err)
	}
	switch token {
	case "":
	case "ok":
		req.Header.Set("Authorization", "Bearer "+testToken)
	default:
		req.Header.Set("Authorization", token)
	}
	for i := 0; i+1 < len(headers); i += 2 {
		req.Header.Set(headers[i], headers[i+1])
	}
	resp, err := s.Client().Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	return response{status: resp.StatusCode, header: resp.Header, body: b}
}

func meshTrace(mesh, name string, extra string) string {
	return "type: MeshTrace\nmesh: " + mesh + "\nname: " + name + "\n" + extra +
		"spec:\n  default:\n    backends:\n    - zipkin:\n        url: http://zipkin:9411/api/v2/spans\n"
}

// forEachStore runs test against the memory store and an embedded etcd.
func forEachStore(t *testing.T, test func(t *testing.T, open func(t *testing.T) store.Store)) {
	t.Run("memory", func(t *testing.T) {
		test(t, func(*testing.T) store.Store { return store.NewMemory() })
	})
	t.Run("etcd", func(t *testing.T) {
		if testing.Short() {
			t.Skip("embedded etcd skipped in -short mode")
		}
		test(t, func(t *testing.T) store.Store {
			ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
			defer cancel()
			st, err := store.OpenEmbedded(ctx, store.EmbeddedConfig{Dir: t.TempDir(), UnsafeNoFsync: true})
			if err != nil {
				t.Fatal(err)
			}
			t.Cleanup(func() { _ = st.Close() })
			return st
		})
	})
}
