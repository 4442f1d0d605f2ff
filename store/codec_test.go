package store

import (
	"bytes"
	"encoding/json"
	"fmt"
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
		b, err := encode(r, 0, nil)
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
		got, err := encode(r, 0, nil)
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
			if _, err := encode(r, 0, nil); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("spec-given", func(b *testing.B) {
		// The spec encoded by the caller (global's API, see BatchOptions.SpecJSON).
		spec, err := resource.MarshalSpec(r)
		if err != nil {
			b.Fatal(err)
		}
		b.ReportAllocs()
		for b.Loop() {
			if _, err := encode(r, 0, spec); err != nil {
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

// encodeReference is encode by encoding/json alone (what it was before
// appendEnvelope): json.Marshal of the typed envelope.
func encodeReference(r *resource.Resource) ([]byte, error) {
	env := typedEnvelope{Meta: r.Meta}
	env.Meta.Version = 0
	if r.Spec != nil {
		env.Spec = r.Spec
	}
	b, err := json.Marshal(env)
	if err != nil {
		return nil, fmt.Errorf("store: encode %s: %w", r.Key(), err)
	}
	return b, nil
}

// checkEncodeMatchesReference: encode, with and without the spec encoded
// by the caller (BatchOptions.SpecJSON), writes exactly what
// encoding/json writes for the envelope, and fails as it does.
func checkEncodeMatchesReference(t *testing.T, r *resource.Resource) {
	t.Helper()
	want, wantErr := encodeReference(r)
	got, err := encode(r, 0, nil)
	if (err == nil) != (wantErr == nil) || (err != nil && err.Error() != wantErr.Error()) {
		t.Fatalf("%s: error %v, encoding/json: %v", r.Key(), err, wantErr)
	}
	if !bytes.Equal(got, want) {
		t.Fatalf("%s:\nencode        %s\nencoding/json %s", r.Key(), got, want)
	}
	if r.Spec == nil {
		return
	}
	spec, err := resource.MarshalSpec(r)
	if err != nil {
		return
	}
	got, err = encode(r, 0, spec)
	if (err == nil) != (wantErr == nil) || !bytes.Equal(got, want) {
		t.Fatalf("%s: with the spec given:\nencode        %s (%v)\nencoding/json %s (%v)", r.Key(), got, err, want, wantErr)
	}
}

// The envelope encode writes by hand is encoding/json's, for what JSON
// escapes (HTML, controls, invalid UTF-8, U+2028), empty and nil label
// maps, times in other zones, with and without fractions, and times
// encoding/json refuses (years past 9999, an offset of 24 hours or more).
func TestEncodeMatchesEncodingJSON(t *testing.T) {
	names := []string{"n1", "a<b>&c", "\x00\x1f\u007f", "é\xff\xfe", "\u2028\u2029", `q"b\s`, "\b\f\n\r\t"}
	times := []time.Time{
		{},
		time.Date(2026, 11, 1, 12, 0, 0, 0, time.UTC),
		time.Date(2026, 11, 1, 12, 0, 0, 120000000, time.FixedZone("x", -5*3600-30*60)),
		time.Date(1, 1, 1, 0, 0, 0, 1, time.UTC),
		time.Date(10000, 1, 1, 0, 0, 0, 0, time.UTC),
		time.Date(2026, 1, 1, 0, 0, 0, 0, time.FixedZone("far", 25*3600)),
		time.Date(-1, 1, 1, 0, 0, 0, 0, time.UTC),
	}
	for _, d := range resource.Types() {
		mesh := ""
		if d.Scope == resource.ScopeMesh {
			mesh = "m<&>"
		}
		for i, name := range names {
			r, err := resource.New(d.Type, mesh, name)
			if err != nil {
				t.Fatal(err)
			}
			switch i % 3 {
			case 0:
				r.Labels = map[string]string{}
			case 1:
				r.Labels = map[string]string{name: name, "b": "", "a": "<x>", "\xff": "\u2028"}
			}
			for j, ct := range times {
				r.CreationTime, r.ModificationTime = ct, times[(j+i)%len(times)]
				checkEncodeMatchesReference(t, r)
			}
		}
	}
}

// FuzzEncodeMatchesEncodingJSON: encode writes what encoding/json writes
// for the envelope of any MeshTrace (names, labels, times, spec).
func FuzzEncodeMatchesEncodingJSON(f *testing.F) {
	f.Add("default", "t", "k", "v", int64(1793534400123456789), 0, []byte(`{"targetRef":{"kind":"MeshService","name":"svc-1"},"default":{"sampling":{"overall":10}}}`))
	f.Add("m<&>", "\xff\u2028", "", "\x01", int64(-62135596800), 3600, []byte(`{"default":{"tags":[{"name":"x","literal":"<&>"}]}}`))
	f.Add("", "x", "a/b", "c", int64(253402300800), 86400, []byte(`null`))
	f.Fuzz(func(t *testing.T, mesh, name, lk, lv string, unix int64, offset int, spec []byte) {
		r, err := resource.New(resource.TypeMeshTrace, mesh, name)
		if err != nil || checkKey(r.Key()) != nil {
			return
		}
		_ = json.Unmarshal(spec, r.Spec)
		if lk != "" {
			r.Labels = map[string]string{lk: lv, "z": lv}
		}
		r.CreationTime = time.Unix(0, unix).In(time.FixedZone("z", offset%(100*3600)))
		r.ModificationTime = time.Unix(unix/1000, 0).UTC()
		checkEncodeMatchesReference(t, r)
	})
}

// A policy as a zone stores it (origin label, both times) is encoded into
// one buffer made to size: with its spec given, that buffer is all encode
// allocates.
func TestEncodeSizesItsBuffer(t *testing.T) {
	r, err := resource.New(resource.TypeMeshTrace, "default", "burst-12-345")
	if err != nil {
		t.Fatal(err)
	}
	if err := json.Unmarshal([]byte(`{"targetRef":{"kind":"MeshService","name":"svc-345"},"default":{"sampling":{"overall":10},"backends":[{"zipkin":{"url":"http://zipkin-burst:9411/api/v2/spans","traceId128bit":false}}]}}`), r.Spec); err != nil {
		t.Fatal(err)
	}
	r.Labels = map[string]string{resource.LabelOrigin: resource.OriginGlobal}
	r.CreationTime = time.Date(2026, 11, 30, 11, 5, 51, 123456789, time.FixedZone("x", -7*3600))
	r.ModificationTime = r.CreationTime
	spec, err := json.Marshal(r.Spec)
	if err != nil {
		t.Fatal(err)
	}
	b, err := encode(r, 0, spec)
	if err != nil {
		t.Fatal(err)
	}
	if want, _ := encodeTwoSteps(r); !bytes.Equal(b, want) {
		t.Fatalf("encode %s\nwant   %s", b, want)
	}
	if allocs := testing.AllocsPerRun(100, func() { _, _ = encode(r, 0, spec) }); allocs > 1 {
		t.Fatalf("encode allocates %v times, want 1 (%d bytes in a buffer of %d)", allocs, len(b), cap(b))
	}
}
