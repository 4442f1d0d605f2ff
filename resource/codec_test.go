package resource

import (
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"time"
)

var seedNames = []string{
	"zipkin-simple", "zipkin-full", "datadog-simple", "datadog-full",
	"otel-simple", "otel-full", "trace-west", "trace-east",
}

func readSeed(t testing.TB, name string) []byte {
	t.Helper()
	b, err := os.ReadFile(filepath.Join("testdata", "seed", name))
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func mustDecode(t testing.TB, data string) *Resource {
	t.Helper()
	r, err := Decode([]byte(data))
	if err != nil {
		t.Fatalf("Decode: %v\n%s", err, data)
	}
	return r
}

func violations(t testing.TB, err error) ValidationErrors {
	t.Helper()
	if err == nil {
		return nil
	}
	var ie *InvalidError
	if !errors.As(err, &ie) {
		t.Fatalf("error %v (%T) is not an *InvalidError", err, err)
	}
	return ie.Violations
}

func hasViolation(vs ValidationErrors, field, msg string) bool {
	for _, v := range vs {
		if v.Field == field && v.Message == msg {
			return true
		}
	}
	return false
}

func TestSeedExamples(t *testing.T) {
	for _, name := range seedNames {
		t.Run(name, func(t *testing.T) {
			kube := mustDecode(t, string(readSeed(t, name+".k8s.yaml")))
			uni := mustDecode(t, string(readSeed(t, name+".universal.yaml")))
			for _, r := range []*Resource{kube, uni} {
				Prepare(r)
				if err := Validate(r); err != nil {
					t.Fatalf("Validate: %v", err)
				}
			}
			wantName := "default"
			if strings.HasPrefix(name, "trace-") {
				wantName = name
			}
			if kube.Mesh != "default" || kube.Name != wantName || kube.Labels != nil {
				t.Errorf("kube meta = %+v", kube.Meta)
			}
			if !reflect.DeepEqual(kube, uni) {
				t.Fatalf("Kubernetes and Universal forms differ:\n%#v\n%#v", kube, uni)
			}
			if Hash(kube) != Hash(uni) {
				t.Errorf("hashes differ")
			}
			assertRoundTrips(t, uni)
		})
	}
}

// assertRoundTrips writes r as Universal JSON and YAML and as a Kubernetes
// manifest, and checks each reads back equal.
func assertRoundTrips(t *testing.T, r *Resource) {
	t.Helper()
	js, err := json.Marshal(r)
	if err != nil {
		t.Fatal(err)
	}
	var fromJSON Resource
	if err := json.Unmarshal(js, &fromJSON); err != nil {
		t.Fatalf("Unmarshal: %v\n%s", err, js)
	}
	if !reflect.DeepEqual(&fromJSON, r) {
		t.Errorf("JSON round trip differs:\n%s\n%#v", js, fromJSON)
	}
	y, err := MarshalYAML(r)
	if err != nil {
		t.Fatal(err)
	}
	if got := mustDecode(t, string(y)); !reflect.DeepEqual(got, r) {
		t.Errorf("YAML round trip differs:\n%s", y)
	}
	k, err := ToKubernetes(r, "kong-mesh-system")
	if err != nil {
		t.Fatal(err)
	}
	if got := mustDecode(t, string(k)); !reflect.DeepEqual(got, r) {
		t.Errorf("Kubernetes round trip differs:\n%s", k)
	}
	if Hash(r) == "" || len(Hash(r)) != 64 {
		t.Errorf("bad hash %q", Hash(r))
	}
}

func TestSeedTraceEastInfersType(t *testing.T) {
	r := mustDecode(t, string(readSeed(t, "trace-east.universal.yaml")))
	Prepare(r)
	b := (*r.Spec.(*MeshTraceSpec).Default.Backends)[0]
	if b.Type != BackendZipkin {
		t.Fatalf("type = %q, want inferred Zipkin", b.Type)
	}
}

func TestRoundTripOtherTypes(t *testing.T) {
	docs := []string{
		`{"type":"Mesh","name":"default","mtls":{"enabledBackend":"ca-1","backends":[{"name":"ca-1","type":"builtin"}]},"labels":{"team":"core"}}`,
		`type: Dataplane
mesh: default
name: backend-1
labels:
  kuma.io/origin: zone
networking:
  address: 10.0.0.1
  inbound:
  - port: 8080
    tags:
      kuma.io/service: backend
      kuma.io/protocol: http
  outbound:
  - port: 10001
    tags:
      kuma.io/service: web
`,
		`{"type":"Zone","name":"east","enabled":false}`,
		`{"type":"ZoneInsight","name":"east","online":true,"connectedTime":"2026-11-25T10:00:00Z","lastAckedRevision":42,"lagRevisions":0,"nacks":1,"stats":{"MeshTrace":{"sent":3,"acked":2,"nacked":1}}}`,
		`{"type":"MeshTrace","mesh":"m1","name":"t","creationTime":"2026-11-25T10:00:00Z","modificationTime":"2026-11-25T10:00:01.5Z","spec":{"default":{"backends":[]}}}`,
	}
	for _, d := range docs {
		r := mustDecode(t, d)
		Prepare(r)
		if err := Validate(r); err != nil {
			t.Fatalf("Validate %s: %v", d, err)
		}
		assertTimesRoundTrip(t, r)
		r.CreationTime, r.ModificationTime = time.Time{}, time.Time{}
		assertRoundTrips(t, r)
	}
}

func assertTimesRoundTrip(t *testing.T, r *Resource) {
	t.Helper()
	js, err := json.Marshal(r)
	if err != nil {
		t.Fatal(err)
	}
	got := mustDecode(t, string(js))
	if !got.CreationTime.Equal(r.CreationTime) || !got.ModificationTime.Equal(r.ModificationTime) {
		t.Errorf("times differ: %s", js)
	}
	if h1, h2 := Hash(got), Hash(r); h1 != h2 {
		t.Errorf("hash changed")
	}
}

func TestUniversalInlineForm(t *testing.T) {
	r := mustDecode(t, `{"type":"Dataplane","mesh":"default","name":"dp","networking":{"address":"1.2.3.4","gateway":{"tags":{"kuma.io/service":"gw"}}}}`)
	js, err := json.Marshal(r)
	if err != nil {
		t.Fatal(err)
	}
	want := `{"type":"Dataplane","mesh":"default","name":"dp","networking":{"address":"1.2.3.4","gateway":{"tags":{"kuma.io/service":"gw"}}}}`
	if string(js) != want {
		t.Errorf("got  %s\nwant %s", js, want)
	}
	y, err := MarshalYAML(r)
	if err != nil {
		t.Fatal(err)
	}
	if !strings.HasPrefix(string(y), "type: Dataplane\nmesh: default\nname: dp\nnetworking:\n") {
		t.Errorf("YAML not in envelope order:\n%s", y)
	}
}

func TestKubernetesForm(t *testing.T) {
	r := mustDecode(t, `apiVersion: kuma.io/v1alpha1
kind: MeshTrace
metadata:
  name: t1
  namespace: kuma-system
  labels:
    team: core
spec:
  default:
    backends: []
`)
	if r.Mesh != DefaultMesh || r.Name != "t1" || !reflect.DeepEqual(r.Labels, map[string]string{"team": "core"}) {
		t.Fatalf("meta = %+v", r.Meta)
	}
	m := mustDecode(t, "apiVersion: kuma.io/v1alpha1\nkind: Mesh\nmetadata:\n  name: m1\nspec:\n  mtls: {}\n")
	if m.Mesh != "" || m.Type != TypeMesh {
		t.Fatalf("mesh meta = %+v", m.Meta)
	}
	k, err := ToKubernetes(r, "")
	if err != nil {
		t.Fatal(err)
	}
	want := `apiVersion: kuma.io/v1alpha1
kind: MeshTrace
metadata:
  name: t1
  labels:
    kuma.io/mesh: default
    team: core
spec:
  default:
    backends: []
`
	if string(k) != want {
		t.Errorf("ToKubernetes:\n%s\nwant\n%s", k, want)
	}
}

func TestDecodeErrors(t *testing.T) {
	tests := []struct {
		name, doc, field, msg string
	}{
		{"unknown nested field", "type: MeshTrace\nmesh: default\nname: x\nspec:\n  default:\n    backends:\n    - zipkin:\n        urll: http://a\n",
			"spec.default.backends[0].zipkin.urll", "unknown field"},
		{"unknown top-level policy field", `{"type":"MeshTrace","mesh":"default","name":"x","foo":1,"spec":{}}`, "foo", "unknown field"},
		{"unknown inline field", `{"type":"Dataplane","mesh":"default","name":"x","networking":{"adress":"1.1.1.1"}}`, "networking.adress", "unknown field"},
		{"unknown kube field", "apiVersion: kuma.io/v1alpha1\nkind: MeshTrace\nmetadata:\n  name: x\nstatus: {}\nspec: {}\n", "status", "unknown field"},
		{"unknown kube metadata", "apiVersion: kuma.io/v1alpha1\nkind: MeshTrace\nmetadata:\n  name: x\n  lables: {}\nspec: {}\n", "metadata.lables", "unknown field"},
		{"unknown kube spec field", "apiVersion: kuma.io/v1alpha1\nkind: MeshTrace\nmetadata:\n  name: x\nspec:\n  targetref: {}\n", "spec.targetref", "unknown field"},
		{"field names are case sensitive", `{"type":"MeshTrace","mesh":"default","name":"x","spec":{"Default":{}}}`, "spec.Default", "unknown field"},
		{"wrong type string", `{"type":"MeshTrace","mesh":"default","name":"x","spec":{"default":{"backends":[{"zipkin":{"url":42}}]}}}`,
			"spec.default.backends[0].zipkin.url", "must be a string, got number"},
		{"wrong type bool", "type: MeshTrace\nmesh: default\nname: x\nspec:\n  default:\n    backends:\n    - datadog:\n        url: http://a:1\n        splitService: maybe\n",
			"spec.default.backends[0].datadog.splitService", "must be a boolean, got string"},
		{"wrong type array", `{"type":"MeshTrace","mesh":"default","name":"x","spec":{"default":{"backends":{}}}}`, "spec.default.backends", "must be an array, got object"},
		{"wrong type object", `{"type":"MeshTrace","mesh":"default","name":"x","spec":[]}`, "spec", "must be an object, got array"},
		{"wrong type port", `{"type":"Dataplane","mesh":"default","name":"x","networking":{"address":"1.1.1.1","inbound":[{"port":-1,"tags":{}}]}}`,
			"networking.inbound[0].port", "must be a non-negative integer that fits in 32 bits, got -1"},
		{"wrong tag value type", "type: MeshTrace\nmesh: default\nname: x\nspec:\n  targetRef:\n    kind: MeshSubset\n    tags:\n      version: [1]\n",
			`spec.targetRef.tags["version"]`, "must be a string, got array"},
		{"sampling float", `{"type":"MeshTrace","mesh":"default","name":"x","spec":{"default":{"sampling":{"overall":12.5}}}}`,
			"spec.default.sampling.overall", "must be an integer or a string holding a decimal number, got 12.5"},
		{"sampling bool", `{"type":"MeshTrace","mesh":"default","name":"x","spec":{"default":{"sampling":{"overall":true}}}}`,
			"spec.default.sampling.overall", "must be an integer or a string holding a decimal number, got true"},
		{"bad time", `{"type":"Zone","name":"x","creationTime":"yesterday"}`, "creationTime", "must be a time in RFC 3339 format"},
		{"labels not strings", `{"type":"Zone","name":"x","labels":{"a":1}}`, `labels["a"]`, "must be a string, got number"},
		{"unknown type", `{"type":"MeshTrase","name":"x"}`, "type", `unknown type "MeshTrase"`},
		{"missing type", `{"name":"x"}`, "type", "must be defined"},
		{"type not a string", `{"type":1}`, "type", "must be a string, got number"},
		{"unknown kind", "apiVersion: kuma.io/v1alpha1\nkind: MeshTrase\nmetadata:\n  name: x\n", "kind", `unknown kind "MeshTrase"`},
		{"bad apiVersion", "apiVersion: v1\nkind: MeshTrace\nmetadata:\n  name: x\nspec: {}\n", "apiVersion", "must be kuma.io/v1alpha1"},
		{"missing metadata", "apiVersion: kuma.io/v1alpha1\nkind: MeshTrace\nspec: {}\n", "metadata", "must be defined"},
		{"not an object", "- a\n- b\n", "", "a resource must be an object, got array"},
		{"scalar", "hello", "", "a resource must be an object, got string"},
		{"empty", "  \n# only a comment\n", "", "empty document"},
		{"two documents", "type: Zone\nname: a\n---\ntype: Zone\nname: b\n", "", "expected one document, got 2 (use DecodeAll)"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := Decode([]byte(tt.doc))
			vs := violations(t, err)
			if !hasViolation(vs, tt.field, tt.msg) {
				t.Fatalf("want %q: %q, got %v", tt.field, tt.msg, err)
			}
		})
	}
}

func TestDecodeSyntaxErrors(t *testing.T) {
	for _, doc := range []string{`{"type":`, "a: [b\n", "a: 1\na: 2\n", `{"type":"Zone"} {}`} {
		_, err := Decode([]byte(doc))
		vs := violations(t, err)
		if len(vs) != 1 || vs[0].Field != "" || !strings.HasPrefix(vs[0].Message, "invalid ") {
			t.Errorf("%q: got %v", doc, err)
		}
	}
}

func TestUnmarshalJSONIsStrictAndUniversalOnly(t *testing.T) {
	var r Resource
	err := json.Unmarshal([]byte(`{"type":"Zone","name":"x","enabeld":true}`), &r)
	if !hasViolation(violations(t, err), "enabeld", "unknown field") {
		t.Fatalf("got %v", err)
	}
	err = json.Unmarshal([]byte(`{"apiVersion":"kuma.io/v1alpha1","kind":"Zone","metadata":{"name":"x"}}`), &r)
	if err == nil {
		t.Fatal("Kubernetes form accepted by UnmarshalJSON")
	}
	var list []Resource
	if err := json.Unmarshal([]byte(`[{"type":"Zone","name":"a"},{"type":"Mesh","name":"b"}]`), &list); err != nil {
		t.Fatal(err)
	}
	if len(list) != 2 || list[1].Type != TypeMesh || list[0].Spec == nil {
		t.Fatalf("list = %+v", list)
	}
}

func TestDecodeAll(t *testing.T) {
	stream := "---\n# leading comment\n---\n" + string(readSeed(t, "zipkin-simple.universal.yaml")) +
		"---\n\n--- \n" + string(readSeed(t, "trace-west.k8s.yaml")) + "...\n---\n"
	rs, err := DecodeAll([]byte(stream))
	if err != nil {
		t.Fatal(err)
	}
	if len(rs) != 2 || rs[0].Name != "default" || rs[1].Name != "trace-west" {
		t.Fatalf("got %d resources", len(rs))
	}
	rs, err = DecodeAll([]byte(`{"type":"Zone","name":"a"}`))
	if err != nil || len(rs) != 1 {
		t.Fatalf("JSON: %v %v", rs, err)
	}
	rs, err = DecodeAll([]byte("\n# nothing\n"))
	if err != nil || len(rs) != 0 {
		t.Fatalf("empty: %v %v", rs, err)
	}

	_, err = DecodeAll([]byte("type: Zone\nname: a\n---\ntype: Zone\nname: b\nfoo: 1\n"))
	var de *DocumentError
	if !errors.As(err, &de) || de.Index != 1 || de.Line != 3 {
		t.Fatalf("got %v", err)
	}
	if !hasViolation(violations(t, err), "foo", "unknown field") {
		t.Fatalf("got %v", err)
	}
	if !strings.HasPrefix(err.Error(), "document 1 (line 3): ") {
		t.Errorf("message %q", err.Error())
	}
}

func TestHash(t *testing.T) {
	a := mustDecode(t, `{"type":"Mesh","name":"m","mtls":{"a":1,"b":2},"creationTime":"2026-01-01T00:00:00Z"}`)
	b := mustDecode(t, "type: Mesh\nname: m\nmodificationTime: 2026-02-01T00:00:00Z\nmtls:\n  b: 2\n  a: 1\n")
	b.Version = 7
	if Hash(a) != Hash(b) {
		t.Fatal("hash depends on key order, times or version")
	}
	c := mustDecode(t, `{"type":"Mesh","name":"m","mtls":{"a":1,"b":3}}`)
	d := mustDecode(t, `{"type":"Mesh","name":"m","labels":{"x":"y"},"mtls":{"a":1,"b":2}}`)
	if Hash(a) == Hash(c) || Hash(a) == Hash(d) {
		t.Fatal("hash ignores content")
	}
	r1 := mustDecode(t, string(readSeed(t, "zipkin-simple.universal.yaml")))
	r2 := mustDecode(t, string(readSeed(t, "zipkin-simple.universal.yaml")))
	if Hash(r1) != Hash(r2) {
		t.Fatal("hash not stable")
	}
	Prepare(r2)
	if Hash(r1) == Hash(r2) {
		t.Fatal("defaults do not change the hash")
	}
}

func TestIntOrString(t *testing.T) {
	tests := []struct {
		in      string
		want    IntOrString
		float   float64
		wantErr bool
		floatOK bool
	}{
		{in: `80`, want: IntOrString{IntVal: 80}, float: 80, floatOK: true},
		{in: `0`, want: IntOrString{}, float: 0, floatOK: true},
		{in: `"12.5"`, want: IntOrString{IsString: true, StrVal: "12.5"}, float: 12.5, floatOK: true},
		{in: `"100"`, want: IntOrString{IsString: true, StrVal: "100"}, float: 100, floatOK: true},
		{in: `"abc"`, want: IntOrString{IsString: true, StrVal: "abc"}},
		{in: `12.5`, wantErr: true},
		{in: `[]`, wantErr: true},
	}
	for _, tt := range tests {
		var v IntOrString
		err := json.Unmarshal([]byte(tt.in), &v)
		if (err != nil) != tt.wantErr {
			t.Errorf("%s: err %v", tt.in, err)
			continue
		}
		if err != nil {
			continue
		}
		if v != tt.want {
			t.Errorf("%s: got %+v", tt.in, v)
		}
		f, ferr := v.Float()
		if (ferr == nil) != tt.floatOK || f != tt.float {
			t.Errorf("%s: Float = %v, %v", tt.in, f, ferr)
		}
		out, _ := json.Marshal(v)
		if string(out) != tt.in {
			t.Errorf("%s: marshals as %s", tt.in, out)
		}
	}
	r := mustDecode(t, "type: MeshTrace\nmesh: default\nname: x\nspec:\n  default:\n    sampling:\n      overall: 80\n      client: \"12.5\"\n      random: '0'\n")
	s := r.Spec.(*MeshTraceSpec).Default.Sampling
	if *s.Overall != *Int(80) || *s.Client != *Str("12.5") || *s.Random != *Str("0") {
		t.Fatalf("sampling = %+v %+v %+v", s.Overall, s.Client, s.Random)
	}
}

func TestYAMLQuotesAmbiguousStrings(t *testing.T) {
	values := []string{"y", "Y", "yes", "on", "Off", "1:20", "0x1F", "1_000", "012", "true", "null", "~", "80", "1e3", ".inf", "-"}
	tags := map[string]string{}
	for i, s := range values {
		tags[fmt.Sprintf("k%02d", i)] = s
	}
	tags["y"] = "key-is-ambiguous"
	lit := "x"
	r, _ := New(TypeMeshTrace, "default", "t")
	r.Spec = &MeshTraceSpec{
		TargetRef: &TargetRef{Kind: KindMeshSubset, Tags: tags},
		Default:   &MeshTraceConf{Tags: &[]TraceTag{{Name: "ctl\x7f\u00e9\n2", Literal: &lit}}},
	}
	assertRoundTrips(t, r)
}
