package resource

import (
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"reflect"
	"testing"

	yamlv2 "go.yaml.in/yaml/v2"
	"sigs.k8s.io/yaml"
)

// FuzzDecodeValidate feeds arbitrary bytes through the whole pipeline: decode,
// defaults, validation and every writer. Nothing may panic, and whatever
// decodes must read back equal from each form it is written in.
func FuzzDecodeValidate(f *testing.F) {
	addSeedFiles(f)
	f.Add([]byte(`{"type":"Dataplane","mesh":"default","name":"dp","networking":{"address":"1.2.3.4","inbound":[{"port":80,"tags":{"kuma.io/service":"a"}}]}}`))
	f.Add([]byte("type: Zone\nname: west\nresidency:\n  mode: Enforce\n  allowedCollectors: ['*.west.svc:9411', '10.0.0.0/8', '[fd00::/8]:4317']\n"))
	f.Add([]byte("type: MeshGateway\nmesh: default\nname: edge\nselectors:\n- match: {kuma.io/service: edge}\nconf:\n  listeners:\n  - {port: 8080, protocol: HTTP, hostname: '*.example.com', tags: {a: b}}\n  - {port: 8443, protocol: HTTPS, tls: {mode: TERMINATE}}\n"))
	f.Add([]byte(`{"type":"Dataplane","mesh":"default","name":"dp","networking":{"address":"1.2.3.4","inbound":[{"port":80,"tags":{"kuma.io/service":"a","kuma.io/protocol":"grpc"}}],"outbound":[{"port":80,"address":"1.2.3.4","tags":{"kuma.io/service":"b"}}],"admin":{"port":80}}}`))
	f.Add([]byte("type: Zone\nname: a\n---\ntype: Mesh\nname: m\nmtls: {a: [1, 2.5, null]}\n"))
	f.Fuzz(func(t *testing.T, data []byte) {
		rs, _ := DecodeAll(data)
		if r, err := Decode(data); err == nil {
			rs = append(rs, r)
		}
		for _, r := range rs {
			_ = Validate(r)
			Prepare(r)
			_ = Validate(r)
			h := Hash(r)
			js, err := json.Marshal(r)
			if err != nil {
				t.Fatalf("Marshal: %v", err)
			}
			back, err := Decode(js)
			if err != nil {
				t.Fatalf("own JSON does not decode: %v\n%s", err, js)
			}
			if Hash(back) != h {
				t.Fatalf("JSON round trip changed the content:\n%s", js)
			}
			y, err := MarshalYAML(r)
			if err != nil {
				t.Fatalf("MarshalYAML: %v", err)
			}
			if back, err = Decode(y); err != nil {
				t.Fatalf("own YAML does not decode: %v\n%s", err, y)
			}
			if Hash(back) != h {
				t.Fatalf("YAML round trip changed the content:\n%s", y)
			}
			k, err := ToKubernetes(r, "ns")
			if err != nil {
				t.Fatalf("ToKubernetes: %v", err)
			}
			if back, err = Decode(k); err != nil {
				t.Fatalf("own manifest does not decode: %v\n%s", err, k)
			}
			if Hash(back) != h {
				t.Fatalf("Kubernetes round trip changed the content:\n%s", k)
			}
		}
	})
}

// FuzzFillMatchesEncodingJSON: the strict decoder fills typed values from
// the tree directly (fastFill, else checkTree then fill); the result must be
// what encoding/json makes of the same checked tree (fillViaJSON), for every
// input, including errors.
func FuzzFillMatchesEncodingJSON(f *testing.F) {
	addSeedFiles(f)
	f.Add([]byte(`{"type":"Dataplane","mesh":"default","name":"dp","labels":{"a":"b"},"networking":{"address":"1.2.3.4","inbound":[{"port":80,"tags":{"kuma.io/service":"a"}}],"outbound":[]}}`))
	f.Add([]byte("type: Zone\nname: west\nresidency:\n  mode: Enforce\n  allowedCollectors: ['*.west.svc:9411', '10.0.0.0/8']\n"))
	f.Add([]byte("type: Mesh\nname: m\ncreationTime: 2026-11-01T12:00:00Z\nmtls: {a: [1, 2.5, null]}\n"))
	f.Add([]byte("type: MeshTrace\nmesh: default\nname: t\nspec:\n  targetRef: {kind: MeshService, name: a}\n  default:\n    sampling: {overall: 10, client: '50', random: null}\n    tags: [{name: a, literal: b}, {name: c, header: {name: x, default: y}}]\n    backends: [{zipkin: {url: 'http://z:9411/api/v2/spans', sharedSpan: true}}]\n"))
	f.Add([]byte(`{"type":"MeshTrace","mesh":"default","name":"t","creationTime":"2026-11-01T12:00:00.123456789+01:00","modificationTime":"2026-11-01T12:00:00Z","labels":{"a":"b","c":null},"spec":{"targetRef":{"kind":"MeshSubset","tags":{"kuma.io/zone":"w"},"proxyTypes":["Sidecar"]},"default":{"sampling":{"overall":9223372036854775808,"client":"5.5","random":1.5},"tags":[],"backends":[{"type":"Zipkin","zipkin":{"url":"http://z","traceId128bit":true,"sharedSpanContext":false}},{"openTelemetry":{"endpoint":"otel"}},{"datadog":{"url":"http://d","splitService":1}}]}}}`))
	f.Add([]byte(`{"type":"MeshTrace","mesh":"default","name":"t","creationTime":"2026-13-01T12:00:00Z","spec":null}`))
	f.Add([]byte(`{"type":"Zone","name":"w","residency":{"mode":"Audit","allowedCollectors":["a:1"]},"labels":{}}`))
	f.Add([]byte(`{"type":"Dataplane","mesh":"default","name":"dp","networking":{"address":"1.2.3.4","inbound":[{"port":65536,"tags":{"kuma.io/service":"a"}}]}}`))
	f.Add([]byte(`{"apiVersion":"kuma.io/v1alpha1","kind":"MeshTrace","metadata":{"name":"t","namespace":"x","labels":{"kuma.io/mesh":"m"}},"spec":{"default":{"backends":[]}}}`))
	f.Fuzz(func(t *testing.T, data []byte) {
		decodeFill, fastFillOn = fillViaJSON, false
		want, wantErr := DecodeAll(data)
		var wantR Resource
		wantUErr := wantR.UnmarshalJSON(data)
		decodeFill, fastFillOn = fill, true
		var gotR Resource
		gotUErr := gotR.UnmarshalJSON(data)
		if fmt.Sprint(wantUErr) != fmt.Sprint(gotUErr) || !reflect.DeepEqual(wantR, gotR) {
			t.Fatalf("UnmarshalJSON differs:\nencoding/json: %v %#v\nfill: %v %#v", wantUErr, wantR, gotUErr, gotR)
		}
		got, gotErr := DecodeAll(data)
		if (wantErr == nil) != (gotErr == nil) || (wantErr != nil && wantErr.Error() != gotErr.Error()) {
			t.Fatalf("errors differ:\nencoding/json: %v\nfill: %v", wantErr, gotErr)
		}
		if !reflect.DeepEqual(want, got) {
			t.Fatalf("results differ:\nencoding/json: %#v\nfill: %#v", want, got)
		}
	})
}

// FuzzScanJSONTreeMatchesEncodingJSON: whatever scanJSONTree takes,
// encoding/json takes too and reads as the same tree; and the whole decoder
// gives the same resources and errors with it as without it.
func FuzzScanJSONTreeMatchesEncodingJSON(f *testing.F) {
	addSeedFiles(f)
	addSeedJSON(f)
	for _, s := range []string{
		`{"type":"MeshTrace","mesh":"default","name":"t","labels":{"a":"b"},"spec":{"targetRef":{"kind":"MeshService","name":"a"},"default":{"sampling":{"overall":10,"client":"50"},"backends":[{"zipkin":{"url":"http://z:9411/api/v2/spans"}}]}}}`,
		` {"a": [1, -0.5e+3, 2E-2, true, false, null, "x\u00e9\ud83d\ude00\"\\\/\b\f\n\r\t", {}, []]} `,
		`{"a":"caf\xc3\xa9", "b":"\xff\xfe", "a":"dup"}`,
		`{} {}`, `{} x`, `[1,]`, `{"a":1,}`, `01`, `-`, `1.`, `1e`, `"\x01"`, `"\ud800"`, `"\u12"`, "\xef\xbb\xbf{}",
		`[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]`,
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		if tree, ok := scanJSONTree(data); ok {
			want, err := decodeJSONTree(data)
			if err != nil {
				t.Fatalf("scanJSONTree took what encoding/json refuses (%v): %q", err, data)
			}
			if !reflect.DeepEqual(tree, want) {
				t.Fatalf("trees differ for %q:\nscan: %#v\nencoding/json: %#v", data, tree, want)
			}
		}
		scanTree = false
		want, wantErr := DecodeAll(data)
		var wantR Resource
		wantUErr := wantR.UnmarshalJSON(data)
		scanTree = true
		got, gotErr := DecodeAll(data)
		var gotR Resource
		gotUErr := gotR.UnmarshalJSON(data)
		if fmt.Sprint(wantErr) != fmt.Sprint(gotErr) || fmt.Sprint(wantUErr) != fmt.Sprint(gotUErr) {
			t.Fatalf("errors differ:\nencoding/json: %v; %v\nscan: %v; %v", wantErr, wantUErr, gotErr, gotUErr)
		}
		if !reflect.DeepEqual(want, got) || !reflect.DeepEqual(wantR, gotR) {
			t.Fatalf("results differ:\nencoding/json: %#v\nscan: %#v", want, got)
		}
	})
}

// TestScanJSONTreeTakesPlainDocuments: the documents the API and zones
// decode every time take the fast path.
func TestScanJSONTreeTakesPlainDocuments(t *testing.T) {
	for _, s := range []string{
		`{"type":"MeshTrace","mesh":"default","name":"burst-1","labels":{"team":"a"},"spec":{"targetRef":{"kind":"MeshService","name":"svc-1"},"default":{"sampling":{"overall":10},"tags":[{"name":"env","literal":"prod"}],"backends":[{"zipkin":{"url":"http://zipkin-burst:9411/api/v2/spans"}}]}}}`,
		"{\n  \"name\": \"caf\u00e9 \\u003c\",\n  \"n\": [0, -1.5e3]\n}\n",
	} {
		if _, ok := scanJSONTree([]byte(s)); !ok {
			t.Errorf("not taken: %s", s)
		}
	}
}

// FuzzYAMLTreeMatchesJSONRoute: the tree yamlTree makes of a YAML document
// is the one sigs.k8s.io/yaml's JSON of it parses into.
func FuzzYAMLTreeMatchesJSONRoute(f *testing.F) {
	addSeedFiles(f)
	for _, s := range []string{
		"a: 1\nb: -2.5e-7\nc: 1e21\nd: 0x1F\ne: 0o17\nf: 1_000\ng: .inf\nh: ~\ni: yes\nj: 'y'\nk: 2026-11-30T05:00:00Z\n",
		"1: a\n2.5: b\ntrue: c\nnull: d\n",
		"1: a\n'1': b\n",
		"a: !!binary /w==\nb: [1, [2, {c: d}], []]\nc: {}\n",
		"a: &x {b: 1}\nc: *x\nd: 18446744073709551615\ne: 9223372036854775808\nf: -9223372036854775809\n",
		"- a\n- 'caf\u00e9 <&>'\n",
		"type: MeshTrace\nmesh: default\nname: t\nspec:\n  default:\n    sampling: {overall: 10.0, client: 1e2}\n    backends: [{zipkin: {url: 'http://z:9411'}}]\n",
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		var y any
		if yamlv2.UnmarshalStrict(data, &y) != nil {
			return
		}
		tree, ok := yamlTree(y)
		if !ok {
			return
		}
		js, err := yaml.YAMLToJSONStrict(data)
		if err != nil {
			t.Fatalf("yamlTree took %q, which sigs.k8s.io/yaml refuses: %v", data, err)
		}
		want, err := decodeJSONTree(js)
		if err != nil {
			t.Fatalf("JSON of %q does not parse: %v", data, err)
		}
		if !reflect.DeepEqual(tree, want) {
			t.Fatalf("trees differ for %q:\nyamlTree: %#v\nJSON route: %#v", data, tree, want)
		}
	})
}

// FuzzBlockYAMLMatchesYAMLv2: whatever blockYAMLTree takes, yaml/v2 reads
// (strictly) into the same tree.
func FuzzBlockYAMLMatchesYAMLv2(f *testing.F) {
	addSeedFiles(f)
	for _, s := range []string{
		"type: MeshTrace\nname: bulk-1\nmesh: default\nspec:\n  targetRef:\n    kind: MeshService\n    name: svc-1\n  default:\n    sampling:\n      overall: 10\n    backends:\n    - zipkin:\n        url: http://zipkin-burst:9411/api/v2/spans\n",
		"a:\n- x\n- 'y z'\n- \"q#\"\nb: -12\nc: []\nd: {}\ne: true\nf:\ng:\n  - h: 1\n    i: /p\n  -   j: k\n",
		"# c\na: 1\n  # indented comment\nb:\n    c: 0\n",
		"a: yes\n", "a: 010\n", "a: 1:20\n", "a: b # c\n", "a: 'it''s'\n", "a:\n  b\n", "a: b\n  c\n", "- a\n", "a: 1\na: 2\n",
		"a: x:\n", "a: x:y\n", "on: 1\n", "a:\n    b: 1\n  c: 2\n", "a:\n- b\n c: 1\n", "a: \"x\\ty\"\n", "a: 9999999999999999999\n", "_a: _b\n",
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		tree, ok := blockYAMLTree(data)
		if !ok {
			return
		}
		var y any
		if err := yamlv2.UnmarshalStrict(data, &y); err != nil {
			t.Fatalf("blockYAMLTree took %q, which yaml/v2 refuses: %v", data, err)
		}
		want, ok := yamlTree(y)
		if !ok {
			t.Fatalf("blockYAMLTree took %q, which yamlTree does not: %#v", data, y)
		}
		if !reflect.DeepEqual(tree, want) {
			t.Fatalf("trees differ for %q:\nblock: %#v\nyaml/v2: %#v", data, tree, want)
		}
	})
}

// TestBlockYAMLTakesCommonFiles: the documents apply -f usually gets take
// the fast path.
func TestBlockYAMLTakesCommonFiles(t *testing.T) {
	files, _ := filepath.Glob(filepath.Join("testdata", "seed", "*.yaml"))
	taken := 0
	for _, name := range files {
		b, _ := os.ReadFile(name)
		if _, ok := blockYAMLTree(b); ok {
			taken++
		}
	}
	if _, ok := blockYAMLTree([]byte("type: MeshTrace\nname: t\nmesh: default\nspec:\n  targetRef:\n    kind: MeshService\n    name: svc-1\n  default:\n    sampling:\n      overall: 10\n    backends:\n    - zipkin:\n        url: http://zipkin:9411/api/v2/spans\n")); !ok {
		t.Error("a plain MeshTrace is not taken")
	}
	t.Logf("%d of %d seed files taken", taken, len(files))
}

// seedExamples are the seed examples (testdata/seed/*.yaml), as read.
func seedExamples(f *testing.F) [][]byte {
	f.Helper()
	files, _ := filepath.Glob(filepath.Join("testdata", "seed", "*.yaml"))
	var out [][]byte
	for _, name := range files {
		b, err := os.ReadFile(name)
		if err != nil {
			f.Fatal(err)
		}
		out = append(out, b)
	}
	return out
}

// addSeedFiles adds every seed example to f's corpus.
func addSeedFiles(f *testing.F) {
	f.Helper()
	for _, b := range seedExamples(f) {
		f.Add(b)
	}
}

// addSeedJSON adds the JSON encoding of every resource the seed examples
// decode to.
func addSeedJSON(f *testing.F) {
	f.Helper()
	for _, b := range seedExamples(f) {
		if rs, err := DecodeAll(b); err == nil {
			for _, r := range rs {
				js, _ := json.Marshal(r)
				f.Add(js)
			}
		}
	}
}
