package restapi

import (
	"bytes"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/hashicorp/go-hclog"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/meshtrace/meshtrace/config"
	"github.com/meshtrace/meshtrace/resource"
	"github.com/meshtrace/meshtrace/store"
)

// BenchmarkPutHandler: one MeshTrace PUT through the handler as global
// configures it (a size cap, a registry), into a memory store, without the
// network: decode, checks, encode and store, metrics. Each iteration
// creates a new policy.
func BenchmarkPutHandler(b *testing.B) { benchmarkPutHandler(b, nil, testToken) }

// BenchmarkPutHandlerLogged: the same as global runs it: the audit line
// logged through a config.LogConfig logger (to a discarding writer), and a
// token as long as the one global generates.
func BenchmarkPutHandlerLogged(b *testing.B) {
	log := config.LogConfig{Level: "info"}.Logger("global", io.Discard).Named("api")
	benchmarkPutHandler(b, log, strings.Repeat("0123456789abcdef", 4))
}

func benchmarkPutHandler(b *testing.B, log hclog.Logger, token string) {
	st := store.NewMemory()
	mesh := &resource.Resource{Meta: resource.Meta{Type: resource.TypeMesh, Name: "default"}, Spec: &resource.MeshSpec{}}
	if _, err := st.Put(b.Context(), mesh, store.AnyVersion); err != nil {
		b.Fatal(err)
	}
	h, err := New(Config{Store: st, Token: token, Registerer: prometheus.NewRegistry(), MaxResourceBytes: 1 << 20, Logger: log})
	if err != nil {
		b.Fatal(err)
	}
	b.ReportAllocs()
	i := 0
	for b.Loop() {
		i++
		name := fmt.Sprintf("bench-%d", i)
		body := fmt.Appendf(nil, `{"type":"MeshTrace","mesh":"default","name":%q,"spec":{"targetRef":{"kind":"MeshService","name":"svc-%d"},"default":{"sampling":{"overall":10},"backends":[{"zipkin":{"url":"http://zipkin-burst:9411/api/v2/spans"}}]}}}`, name, i)
		req := httptest.NewRequest(http.MethodPut, "/meshes/default/meshtraces/"+name, bytes.NewReader(body))
		req.Header.Set("Authorization", "Bearer "+token)
		rec := httptest.NewRecorder()
		h.ServeHTTP(rec, req)
		if rec.Code != http.StatusCreated {
			b.Fatalf("%d %s", rec.Code, rec.Body)
		}
	}
}
