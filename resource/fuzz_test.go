package resource

import (
	"encoding/json"
	"os"
	"path/filepath"
	"reflect"
	"testing"
)

// FuzzDecodeValidate feeds arbitrary bytes through the whole pipeline: decode,
// defaults, validation and every writer. Nothing may panic, and whatever
// decodes must read back equal from each form it is written in.
func FuzzDecodeValidate(f *testing.F) {
	files, _ := filepath.Glob(filepath.Join("testdata", "seed", "*.yaml"))
	for _, name := range files {
		b, err := os.ReadFile(name)
		if err != nil {
			f.Fatal(err)
		}
		f.Add(b)
	}
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
// the checked tree directly (fill); the result must be what encoding/json
// makes of the same tree (fillViaJSON), for every input, including errors.
func FuzzFillMatchesEncodingJSON(f *testing.F) {
	files, _ := filepath.Glob(filepath.Join("testdata", "seed", "*.yaml"))
	for _, name := range files {
		b, err := os.ReadFile(name)
		if err != nil {
			f.Fatal(err)
		}
		f.Add(b)
	}
	f.Add([]byte(`{"type":"Dataplane","mesh":"default","name":"dp","labels":{"a":"b"},"networking":{"address":"1.2.3.4","inbound":[{"port":80,"tags":{"kuma.io/service":"a"}}],"outbound":[]}}`))
	f.Add([]byte("type: Zone\nname: west\nresidency:\n  mode: Enforce\n  allowedCollectors: ['*.west.svc:9411', '10.0.0.0/8']\n"))
	f.Add([]byte("type: Mesh\nname: m\ncreationTime: 2026-11-01T12:00:00Z\nmtls: {a: [1, 2.5, null]}\n"))
	f.Add([]byte("type: MeshTrace\nmesh: default\nname: t\nspec:\n  targetRef: {kind: MeshService, name: a}\n  default:\n    sampling: {overall: 10, client: '50', random: null}\n    tags: [{name: a, literal: b}, {name: c, header: {name: x, default: y}}]\n    backends: [{zipkin: {url: 'http://z:9411/api/v2/spans', sharedSpan: true}}]\n"))
	f.Fuzz(func(t *testing.T, data []byte) {
		decodeFill = fillViaJSON
		want, wantErr := DecodeAll(data)
		decodeFill = fill
		got, gotErr := DecodeAll(data)
		if (wantErr == nil) != (gotErr == nil) || (wantErr != nil && wantErr.Error() != gotErr.Error()) {
			t.Fatalf("errors differ:\nencoding/json: %v\nfill: %v", wantErr, gotErr)
		}
		if !reflect.DeepEqual(want, got) {
			t.Fatalf("results differ:\nencoding/json: %#v\nfill: %#v", want, got)
		}
	})
}
