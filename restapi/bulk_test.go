package restapi

import (
	"context"
	"encoding/json"
	"fmt"
	"strings"
	"testing"

	"github.com/meshtrace/meshtrace/resource"
	"github.com/meshtrace/meshtrace/store"
)

func traceJSON(mesh, name, url string) string {
	return fmt.Sprintf(`{"type":"MeshTrace","mesh":%q,"name":%q,"spec":{"default":{"backends":[{"zipkin":{"url":%q}}]}}}`, mesh, name, url)
}

func bulkBody(items ...string) string {
	return `{"items":[` + strings.Join(items, ",") + `]}`
}

func decodeBulk(t *testing.T, r response) BulkResponse {
	t.Helper()
	var b BulkResponse
	if err := json.Unmarshal(r.body, &b); err != nil {
		t.Fatalf("bulk response: %v: %s", err, r.body)
	}
	if len(b.Items) == 0 {
		t.Fatalf("bulk response without items: %s", r.body)
	}
	return b
}

func countTraces(t *testing.T, st store.Store) int {
	t.Helper()
	l, err := st.List(context.Background(), resource.TypeMeshTrace, store.ListOptions{})
	if err != nil {
		t.Fatal(err)
	}
	return l.Total
}

func TestBulkApply(t *testing.T) { forEachStore(t, testBulkApply) }

func testBulkApply(t *testing.T, open func(t *testing.T) store.Store) {
	s := newTestServer(t, open(t), nil)
	// 300 policies (three transactions), a new mesh and a policy in it.
	items := []string{`{"type":"Mesh","name":"other"}`, traceJSON("other", "in-other", "http://z:9411/api/v2/spans")}
	for i := range 300 {
		items = append(items, traceJSON("default", fmt.Sprintf("p-%03d", i), "http://z:9411/api/v2/spans"))
	}
	if r := s.do(t, "POST", "/_apply", bulkBody(items...), ""); r.status != 401 {
		t.Fatalf("without a token: %d", r.status)
	}
	r := s.do(t, "POST", "/_apply?dry-run=true", bulkBody(items...), "ok")
	b := decodeBulk(t, r)
	if r.status != 200 || !b.DryRun || b.Created != len(items) || countTraces(t, s.store) != 0 {
		t.Fatalf("dry run: %d created=%d stored=%d", r.status, b.Created, countTraces(t, s.store))
	}
	r = s.do(t, "POST", "/_apply", bulkBody(items...), "ok")
	b = decodeBulk(t, r)
	if r.status != 200 || b.Created != len(items) || b.Updated != 0 || b.Revision == 0 {
		t.Fatalf("apply: %d created=%d updated=%d rev=%d: %.300s", r.status, b.Created, b.Updated, b.Revision, r.body)
	}
	for i, it := range b.Items {
		if it.Index != i || it.Status != BulkCreated || it.Revision == 0 || it.Name == "" {
			t.Fatalf("item %d: %+v", i, it)
		}
	}
	if n := countTraces(t, s.store); n != 301 {
		t.Fatalf("%d policies stored", n)
	}
	got := getResource(t, s, "/meshes/default/meshtraces/p-007")
	if got.Labels[resource.LabelOrigin] != "" || got.CreationTime.IsZero() { // global adds no labels
		t.Fatalf("stored meta %+v", got.Meta)
	}
	// Again: every item is an update, creation times kept.
	b = decodeBulk(t, s.do(t, "POST", "/_apply", bulkBody(items...), "ok"))
	if b.Updated != len(items) || b.Created != 0 {
		t.Fatalf("re-apply: created=%d updated=%d", b.Created, b.Updated)
	}
	if again := getResource(t, s, "/meshes/default/meshtraces/p-007"); !again.CreationTime.Equal(got.CreationTime) {
		t.Fatalf("creation time changed from %s to %s", got.CreationTime, again.CreationTime)
	}
}

func TestBulkApplyRefusesBeforeWriting(t *testing.T) { forEachStore(t, testBulkApplyRefuses) }

func testBulkApplyRefuses(t *testing.T, open func(t *testing.T) store.Store) {
	mem := open(t)
	synced := &resource.Resource{Meta: resource.Meta{Type: resource.TypeMeshTrace, Mesh: "default", Name: "from-global",
		Labels: map[string]string{resource.LabelOrigin: resource.OriginGlobal}}}
	putRaw(t, mem, synced)
	s := newTestServer(t, mem, func(c *Config) {
		c.ReadOnly = func(r *resource.Resource) bool {
			return r.Labels[resource.LabelOrigin] == resource.OriginGlobal && r.Name == "from-global"
		}
	})
	good := func(n int) []string {
		var out []string
		for i := range n {
			out = append(out, traceJSON("default", fmt.Sprintf("ok-%03d", i), "http://z:9411/api/v2/spans"))
		}
		return out
	}
	for _, tc := range []struct {
		name   string
		bad    string
		status int
		field  string // a cause field that must be reported
	}{
		{"invalid spec", traceJSON("default", "bad", "ftp://nope"), 400, "items[200].spec.default.backends[0].zipkin.url"},
		{"unknown field", `{"type":"MeshTrace","mesh":"default","name":"bad","spec":{"defualt":{}}}`, 400, "items[200].spec.defualt"},
		{"missing mesh", traceJSON("nowhere", "bad", "http://z:9411/api/v2/spans"), 400, "items[200].mesh"},
		{"duplicate", traceJSON("default", "ok-003", "http://z:9411/api/v2/spans"), 400, "items[200]"},
		{"read-only", traceJSON("default", "from-global", "http://z:9411/api/v2/spans"), 405, "items[200]"},
		{"not writable", `{"type":"Zone","name":"z"}`, 405, "items[200]"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			items := append(good(200), tc.bad)
			items = append(items, good(250)[200:]...)
			r := s.do(t, "POST", "/_apply", bulkBody(items...), "ok")
			if r.status != tc.status {
				t.Fatalf("status %d, want %d: %.400s", r.status, tc.status, r.body)
			}
			e := r.apiError(t)
			found := false
			for _, c := range e.Causes {
				found = found || c.Field == tc.field
			}
			if !found {
				t.Fatalf("causes %+v lack %s", e.Causes, tc.field)
			}
			b := decodeBulk(t, r)
			for i, it := range b.Items {
				want := BulkSkipped
				if i == 200 {
					want = BulkInvalid
				}
				if it.Status != want || (want == BulkInvalid) != (it.Error != nil) {
					t.Fatalf("item %d: %+v, want %s", i, it, want)
				}
			}
			if n := countTraces(t, s.store); n != 1 {
				t.Fatalf("%d policies stored after a refused apply, want only the synced one", n)
			}
		})
	}
	if r := s.do(t, "POST", "/_apply", `{"items":`, "ok"); r.status != 400 {
		t.Fatalf("broken JSON: %d", r.status)
	}
}
