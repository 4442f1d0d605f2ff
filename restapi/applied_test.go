package restapi

import (
	"encoding/json"
	"maps"
	"testing"
)

// A spec is returned as applied: no defaults filled in, no labels added on
// global; ?effective=true returns it with the defaults the zones apply.
func TestSpecAsAppliedUnlessEffective(t *testing.T) {
	s := newTestServer(t, nil, nil)
	const body = `{"type":"MeshTrace","mesh":"default","name":"bare","labels":{"team":"a"},
"spec":{"default":{"backends":[{"zipkin":{"url":"http://zipkin:9411"}}]}}}`
	if r := s.do(t, "PUT", "/meshes/default/meshtraces/bare", body, "ok"); r.status != 201 {
		t.Fatalf("create = %d %s", r.status, r.body)
	}
	type view struct {
		Labels map[string]string `json:"labels"`
		Spec   json.RawMessage   `json:"spec"`
	}
	get := func(path string) view {
		t.Helper()
		r := s.do(t, "GET", path, "", "")
		if r.status != 200 {
			t.Fatalf("GET %s = %d %s", path, r.status, r.body)
		}
		var v view
		if err := json.Unmarshal(r.body, &v); err != nil {
			t.Fatal(err)
		}
		return v
	}
	list := func(path string) view {
		t.Helper()
		var l struct{ Items []view }
		if r := s.do(t, "GET", path, "", ""); r.status != 200 || json.Unmarshal(r.body, &l) != nil || len(l.Items) != 1 {
			t.Fatalf("GET %s = %d %s", path, r.status, r.body)
		}
		return l.Items[0]
	}
	const applied = `{"default":{"backends":[{"zipkin":{"url":"http://zipkin:9411","traceId128bit":false}}]}}`
	const effective = `{"targetRef":{"kind":"Mesh"},"default":{"backends":[{"type":"Zipkin","zipkin":{"url":"http://zipkin:9411","traceId128bit":false,"apiVersion":"httpJson","sharedSpanContext":true}}]}}`
	for _, tc := range []struct {
		name string
		got  view
		want string
	}{
		{"get", get("/meshes/default/meshtraces/bare"), applied},
		{"list", list("/meshes/default/meshtraces"), applied},
		{"get effective", get("/meshes/default/meshtraces/bare?effective=true"), effective},
		{"list effective", list("/meshtraces?effective=true"), effective},
	} {
		if string(tc.got.Spec) != tc.want {
			t.Errorf("%s: spec\n%s\nwant\n%s", tc.name, tc.got.Spec, tc.want)
		}
		if !maps.Equal(tc.got.Labels, map[string]string{"team": "a"}) {
			t.Errorf("%s: labels %v, want the applied ones", tc.name, tc.got.Labels)
		}
	}
	// Validation still sees the defaults: a backend type that contradicts
	// the block is refused though the type is not defaulted into storage.
	bad := `{"type":"MeshTrace","mesh":"default","name":"bad","spec":{"default":{"backends":[{"type":"Datadog","zipkin":{"url":"http://z:9411"}}]}}}`
	if r := s.do(t, "PUT", "/meshes/default/meshtraces/bad", bad, "ok"); r.status != 400 {
		t.Fatalf("contradicting type = %d %s", r.status, r.body)
	}
}
