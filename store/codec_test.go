package store

import (
	"bytes"
	"encoding/json"
	"reflect"
	"testing"
	"time"

	"github.com/meshtrace/meshtrace/resource"
)

// decode reads a stored value in one parse; the result must be what the two
// steps (envelope, then spec) give, for every type, and a spec of null or
// none is the zero spec.
func TestDecodeOnePassMatchesTwoSteps(t *testing.T) {
	var values [][]byte
	var keys []resource.Key
	for _, d := range resource.Types() {
		mesh := ""
		if d.Scope == resource.ScopeMesh {
			mesh = "default"
		}
		r, err := resource.New(d.Type, mesh, "n1")
		if err != nil {
			t.Fatal(err)
		}
		r.Labels = map[string]string{"a": "b"}
		r.CreationTime = time.Date(2026, 11, 1, 12, 0, 0, 0, time.UTC)
		b, err := encode(r, 0)
		if err != nil {
			t.Fatal(err)
		}
		values, keys = append(values, b), append(keys, r.Key())
		prefix := `{"meta":{"type":"` + string(d.Type) + `","mesh":"` + mesh + `","name":"n1"}`
		values = append(values, []byte(prefix+`,"spec":null}`), []byte(prefix+`}`))
		keys = append(keys, r.Key(), r.Key())
	}
	trace := resource.Key{Type: resource.TypeMeshTrace, Mesh: "default", Name: "t"}
	values = append(values, []byte(`{"meta":{"type":"MeshTrace","mesh":"default","name":"t"},"spec":{"default":{"sampling":{"overall":10},"backends":[{"zipkin":{"url":"http://z:9411/api/v2/spans"}}]}}}`))
	keys = append(keys, trace)
	for i, b := range values {
		got, err := decode(keys[i], b, 7)
		if err != nil {
			t.Fatalf("%s: %v", b, err)
		}
		want, raw, err := decodeMeta(keys[i], b, 7)
		if err == nil {
			err = decodeSpec(want, raw)
		}
		if err != nil {
			t.Fatalf("%s: two steps: %v", b, err)
		}
		if !reflect.DeepEqual(got, want) {
			t.Fatalf("%s:\none pass %#v\ntwo steps %#v", b, got, want)
		}
	}
	// Corrupt values keep their reasons.
	for _, b := range []string{`not json`, `{"meta":{"type":"MeshTrace","mesh":"default","name":"other"}}`, `{"meta":{"type":"MeshTrace","mesh":"default","name":"t"},"spec":"x"}`} {
		if _, err := decode(trace, []byte(b), 7); err == nil {
			t.Fatalf("%s decoded", b)
		}
	}
}

// benchValue is a stored MeshTrace as the API writes it.
var benchValue = []byte(`{"meta":{"type":"MeshTrace","mesh":"default","name":"t","creationTime":"2026-11-01T12:00:00Z","modificationTime":"2026-11-01T12:00:00Z"},"spec":{"targetRef":{"kind":"MeshService","name":"svc-1"},"default":{"sampling":{"overall":10},"backends":[{"zipkin":{"url":"http://zipkin-burst:9411/api/v2/spans"}}]}}}`)

// BenchmarkDecode: reading one stored MeshTrace (every watch event and read
// does it), in one parse and in the two steps List uses.
func BenchmarkDecode(b *testing.B) {
	k := resource.Key{Type: resource.TypeMeshTrace, Mesh: "default", Name: "t"}
	v := benchValue
	b.Run("one-pass", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			if _, err := decode(k, v, 1); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("two-steps", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			r, raw, err := decodeMeta(k, v, 1)
			if err == nil {
				err = decodeSpec(r, raw)
			}
			if err != nil {
				b.Fatal(err)
			}
		}
	})
}

// encodeTwoSteps is how encode worked before it took one pass: the spec on
// its own, then the envelope holding it as a raw message.
func encodeTwoSteps(r *resource.Resource) ([]byte, error) {
	env := envelope{Meta: r.Meta}
	env.Meta.Version = 0
	if r.Spec != nil {
		spec, err := json.Marshal(r.Spec)
		if err != nil {
			return nil, err
		}
		env.Spec = spec
	}
	return json.Marshal(env)
}

// encode writes a resource in one pass; the stored bytes are exactly those
// of the two steps it replaced (stores written before keep comparing equal,
// and nothing reading them can tell), for every type, for a nil spec, a
// typed nil spec and strings that JSON escapes.
func TestEncodeOnePassMatchesTwoSteps(t *testing.T) {
	var rs []*resource.Resource
	for _, d := range resource.Types() {
		mesh := ""
		if d.Scope == resource.ScopeMesh {
			mesh = "default"
		}
		r, err := resource.New(d.Type, mesh, "n1")
		if err != nil {
			t.Fatal(err)
		}
		r.Labels = map[string]string{"a": "b", "<html>&": "\u2028\"\\\x01é"}
		r.CreationTime = time.Date(2026, 11, 1, 12, 0, 0, 123456789, time.UTC)
		r.ModificationTime = time.Date(2026, 11, 2, 12, 0, 0, 0, time.FixedZone("x", 3600))
		r.Version = 42
		rs = append(rs, r)
		bare, _ := resource.New(d.Type, mesh, "bare")
		noSpec := *bare
		noSpec.Spec = nil
		typedNil := *bare
		typedNil.Spec = reflect.Zero(reflect.TypeOf(bare.Spec)).Interface().(resource.Spec)
		rs = append(rs, bare, &noSpec, &typedNil)
	}
	tr, _ := resource.New(resource.TypeMeshTrace, "default", "t")
	if err := json.Unmarshal([]byte(`{"targetRef":{"kind":"MeshService","name":"a<b>&c","tags":{"k":"v"}},"default":{"sampling":{"overall":10,"client":"50.5"},"tags":[{"name":"x","literal":"<&>"}],"backends":[{"zipkin":{"url":"http://z:9411/api/v2/spans?a=1&b=2"}}]}}`), tr.Spec); err != nil {
		t.Fatal(err)
	}
	rs = append(rs, tr)
	for _, r := range rs {
		got, err := encode(r, 0)
		if err != nil {
			t.Fatalf("%s: %v", r.Key(), err)
		}
		want, err := encodeTwoSteps(r)
		if err != nil {
			t.Fatalf("%s: two steps: %v", r.Key(), err)
		}
		if !bytes.Equal(got, want) {
			t.Fatalf("%s:\none pass  %s\ntwo steps %s", r.Key(), got, want)
		}
	}
}

// BenchmarkEncode: the stored form of one MeshTrace (every write).
func BenchmarkEncode(b *testing.B) {
	k := resource.Key{Type: resource.TypeMeshTrace, Mesh: "default", Name: "t"}
	r, err := decode(k, benchValue, 0)
	if err != nil {
		b.Fatal(err)
	}
	b.Run("one-pass", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			if _, err := encode(r, 0); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("two-steps", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			if _, err := encodeTwoSteps(r); err != nil {
				b.Fatal(err)
			}
		}
	})
}
