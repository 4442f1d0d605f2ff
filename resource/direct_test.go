package resource

import (
	"fmt"
	"os"
	"path/filepath"
	"reflect"
	"testing"
	"time"
)

// FuzzDirectMatchesTree: whatever decodeDirect takes, the tree route
// (scanJSONTree, then decodeUniversalFast) takes too and reads as the same
// resource; and Decode, DecodeAll and UnmarshalJSON give the same
// resources and errors with it as without it.
func FuzzDirectMatchesTree(f *testing.F) {
	addSeedJSON(f)
	for _, s := range []string{
		`{"type":"MeshTrace","mesh":"default","name":"burst-1","labels":{"team":"a"},"spec":{"targetRef":{"kind":"MeshService","name":"svc-1"},"default":{"sampling":{"overall":10},"tags":[{"name":"env","literal":"prod"}],"backends":[{"zipkin":{"url":"http://zipkin-burst:9411/api/v2/spans"}}]}}}`,
		` {"type" : "MeshTrace" , "name":"t","mesh":"m","creationTime":"2026-11-01T12:00:00.123456789+01:00","modificationTime":"2026-11-01T12:00:00Z","labels":{"a":"b","c":null},"spec":{"targetRef":{"kind":"MeshSubset","tags":{"kuma.io/zone":"w","x":null},"proxyTypes":["Sidecar",null]},"default":{"sampling":{"overall":9223372036854775808,"client":"5.5","random":1.5},"tags":[],"backends":[{"type":"Zipkin","zipkin":{"url":"http://z","traceId128bit":true,"sharedSpanContext":false}},{"openTelemetry":{"endpoint":"otel"}},{"datadog":{"url":"http://d","splitService":1}}]}}} `,
		`{"type":"MeshTrace","name":"t","spec":null,"labels":null}`,
		`{"type":"MeshTrace","name":"t","labels":{}}`,
		`{"type":"MeshTrace","name":"t","spec":{"default":{"backends":null,"tags":null,"sampling":{}}}}`,
		`{"type":"MeshTrace","name":"t","spec":{"default":{"backends":[]}}}`,
		`{"type":"MeshTrace","name":"t","spec":{"targetRef":{"kind":"Mesh"},"targetRef":{"name":"x"}}}`,
		`{"type":"MeshTrace","name":"t","labels":{"a":"b","a":"c"}}`,
		`{"type":"MeshTrace","name":"t","name":"u"}`,
		`{"type":"MeshTrace","type":"MeshTrace","name":"t"}`,
		`{"name":"t","type":"MeshTrace"}`,
		`{"spec":{},"type":"MeshTrace"}`,
		`{"type":"Mesh","name":"m"}`,
		`{"type":"MeshTrace","name":"t","kind":"x"}`,
		`{"type":"MeshTrace","name":"t","version":1}`,
		`{"type":"MeshTrace","name":"t\u00e9\"\\<>&","mesh":"caf\u00e9","labels":{"k\u0041":"v\n"}}`,
		"{\"type\":\"MeshTrace\",\"name\":\"caf\xc3\xa9\",\"mesh\":\"\xff\"}",
		`{"type":"MeshTrace","name":"t","spec":{"default":{"sampling":{"overall":"x","client":-0,"random":1e2}}}}`,
		`{"type":"MeshTrace","name":"t","spec":{"default":{"sampling":{"overall":true}}}}`,
		`{"type":"MeshTrace","name":"t","creationTime":"2026-13-01T12:00:00Z"}`,
		`{"type":"MeshTrace","name":"t","creationTime":1}`,
		`{"type":"MeshTrace","name":"t","spec":{"default":{"backends":[{"zipkin":{"traceId128bit":"true"}}]}}}`,
		`{"type":"MeshTrace","name":"t"} {}`,
		`{"type":"MeshTrace","name":"t",}`,
		`{"type":"MeshTrace","name":"t"`,
		`{"type":"MeshTrace","name":"t","spec":{"default":{"backends":[{},]}}}`,
		"\xef\xbb\xbf{\"type\":\"MeshTrace\",\"name\":\"t\"}",
		`{"type":null,"name":"t"}`,
		`{"type":"Nope","name":"t"}`,
		`{}`,
		`[]`,
		" [1] ",
		"\xc2\x85{\"type\":\"MeshTrace\",\"name\":\"t\"}\xc2\x85",
		"---\n{\"type\":\"MeshTrace\",\"name\":\"t\"}",
		"# c\n{\"type\":\"MeshTrace\",\"name\":\"t\"}",
		"\xef\xbb\xbf\xef\xbb\xbf{}",
		"\xef\xbb\xbf",
		"type: MeshTrace\nname: t\n",
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		if r, ok := decodeDirect(data); ok {
			tree, err := parseJSONTree(data)
			if err != nil {
				t.Fatalf("decodeDirect took what the tree route refuses (%v): %q", err, data)
			}
			obj, _ := tree.(map[string]any)
			want, err := decodeUniversal(obj)
			if err != nil {
				t.Fatalf("decodeDirect took what decodeUniversal refuses (%v): %q", err, data)
			}
			if !reflect.DeepEqual(r, want) {
				t.Fatalf("resources differ for %q:\ndirect: %#v\ntree: %#v", data, r, want)
			}
		}
		gotD, gotDErr := Decode(data)
		wantD, wantDErr := decodeSplitting(data)
		if fmt.Sprint(gotDErr) != fmt.Sprint(wantDErr) || !reflect.DeepEqual(gotD, wantD) {
			t.Fatalf("Decode differs from the route through splitDocuments for %q:\n%v, %#v\n%v, %#v", data, gotDErr, gotD, wantDErr, wantD)
		}
		directOn = false
		want, wantErr := DecodeAll(data)
		wantOne, wantOneErr := Decode(data)
		var wantR Resource
		wantUErr := wantR.UnmarshalJSON(data)
		directOn = true
		got, gotErr := DecodeAll(data)
		gotOne, gotOneErr := Decode(data)
		var gotR Resource
		gotUErr := gotR.UnmarshalJSON(data)
		if fmt.Sprint(wantErr, wantOneErr, wantUErr) != fmt.Sprint(gotErr, gotOneErr, gotUErr) {
			t.Fatalf("errors differ:\ntree: %v; %v; %v\ndirect: %v; %v; %v", wantErr, wantOneErr, wantUErr, gotErr, gotOneErr, gotUErr)
		}
		if !reflect.DeepEqual(want, got) || !reflect.DeepEqual(wantOne, gotOne) || !reflect.DeepEqual(wantR, gotR) {
			t.Fatalf("results differ for %q:\ntree: %#v\ndirect: %#v", data, wantOne, gotOne)
		}
	})
}

// TestDirectTakesPlainDocuments: the documents the API and zones decode
// every time (meshtracectl's JSON, resource.MarshalJSON's) take the direct
// path.
func TestDirectTakesPlainDocuments(t *testing.T) {
	docs := []string{
		`{"type":"MeshTrace","mesh":"default","name":"burst-1","labels":{"team":"a"},"spec":{"targetRef":{"kind":"MeshService","name":"svc-1"},"default":{"sampling":{"overall":10},"tags":[{"name":"env","literal":"prod"}],"backends":[{"zipkin":{"url":"http://zipkin-burst:9411/api/v2/spans"}}]}}}`,
	}
	files, _ := filepath.Glob(filepath.Join("testdata", "seed", "*.universal.yaml"))
	for _, name := range files {
		b, err := os.ReadFile(name)
		if err != nil {
			t.Fatal(err)
		}
		rs, err := DecodeAll(b)
		if err != nil {
			t.Fatal(err)
		}
		for _, r := range rs {
			r.CreationTime = time.Date(2026, 11, 1, 12, 0, 0, 5e8, time.UTC)
			r.ModificationTime = r.CreationTime
			js, err := r.MarshalJSON()
			if err != nil {
				t.Fatal(err)
			}
			docs = append(docs, string(js))
		}
	}
	for _, s := range docs {
		if _, ok := decodeDirect([]byte(s)); !ok {
			t.Errorf("not taken: %s", s)
		}
	}
}

// TestDirectKeepsNoInputBytes: the strings of a decoded resource are cut
// from decodeDirect's own copy of the document, so a caller reusing its
// buffer (a request body pool) does not change resources it decoded.
func TestDirectKeepsNoInputBytes(t *testing.T) {
	doc := `{"type":"MeshTrace","mesh":"default","name":"burst-1","labels":{"team":"a"},"spec":{"targetRef":{"kind":"MeshSubset","tags":{"k":"v"}},"default":{"sampling":{"overall":10,"client":"5"},"tags":[{"name":"env","literal":"prod"}],"backends":[{"zipkin":{"url":"http://zipkin-burst:9411/api/v2/spans"}}]}}}`
	buf := []byte(doc)
	got, ok := decodeDirect(buf)
	if !ok {
		t.Fatal("not taken")
	}
	for i := range buf {
		buf[i] = 'x'
	}
	want, ok := decodeDirect([]byte(doc))
	if !ok {
		t.Fatal("not taken")
	}
	if !reflect.DeepEqual(got, want) {
		t.Fatalf("resource changed with its input:\ngot: %#v\nwant: %#v", got, want)
	}
}
