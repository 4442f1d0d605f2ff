package store

import (
	"encoding/json"
	"math/rand/v2"
	"reflect"
	"testing"
	"time"

	"github.com/meshtrace/meshtrace/resource"
)

// randomValue fills v (settable) with a random value of its type: nil,
// empty and full slices, maps and pointers, strings with and without
// invalid UTF-8, times in UTC, in other locations and with a monotonic
// reading, raw JSON in several spellings.
func randomValue(rng *rand.Rand, v reflect.Value, depth int) {
	t := v.Type()
	switch t {
	case reflect.TypeFor[time.Time]():
		times := []time.Time{{}, time.Date(2026, 11, 30, 6, 0, 0, rng.IntN(1e9), time.UTC), time.Now().UTC()}
		if odd(rng) {
			times = []time.Time{time.Now(), time.Date(2026, 1, 2, 3, 4, 5, 6, time.FixedZone("east", 3600)), time.Unix(1700000000, 0)}
		}
		v.Set(reflect.ValueOf(times[rng.IntN(len(times))]))
		return
	case reflect.TypeFor[json.RawMessage]():
		raws := []json.RawMessage{nil}
		if odd(rng) {
			raws = []json.RawMessage{{}, json.RawMessage(`{"a":1}`), json.RawMessage(` { "a" : 1 } `), json.RawMessage(`null`), json.RawMessage(`"<b>"`)}
		}
		v.Set(reflect.ValueOf(raws[rng.IntN(len(raws))]))
		return
	}
	switch v.Kind() {
	case reflect.Bool:
		v.SetBool(rng.IntN(2) == 0)
	case reflect.Int, reflect.Int8, reflect.Int16, reflect.Int32, reflect.Int64:
		v.SetInt(int64(rng.IntN(5) - 2))
	case reflect.Uint, reflect.Uint8, reflect.Uint16, reflect.Uint32, reflect.Uint64:
		v.SetUint(uint64(rng.IntN(5)))
	case reflect.Float32, reflect.Float64:
		v.SetFloat(rng.Float64() * 100)
	case reflect.String:
		strs := []string{"", "a", "Zipkin", "x<y&z", "é", "Off", "12.5"}
		if odd(rng) {
			strs = []string{"\xff", "a\xc3"}
		}
		v.SetString(strs[rng.IntN(len(strs))])
	case reflect.Pointer:
		if depth > 6 || rng.IntN(3) == 0 {
			return
		}
		p := reflect.New(t.Elem())
		randomValue(rng, p.Elem(), depth+1)
		v.Set(p)
	case reflect.Struct:
		for i := range t.NumField() {
			if t.Field(i).IsExported() {
				randomValue(rng, v.Field(i), depth+1)
			}
		}
	case reflect.Slice:
		switch {
		case rng.IntN(3) == 0:
		case odd(rng):
			v.Set(reflect.MakeSlice(t, 0, 0))
		default:
			n := 1 + rng.IntN(2)
			s := reflect.MakeSlice(t, n, n)
			for i := range n {
				randomValue(rng, s.Index(i), depth+1)
			}
			v.Set(s)
		}
	case reflect.Map:
		switch {
		case rng.IntN(3) == 0:
		case odd(rng):
			v.Set(reflect.MakeMap(t))
		default:
			m := reflect.MakeMap(t)
			for range 1 + rng.IntN(2) {
				k, e := reflect.New(t.Key()).Elem(), reflect.New(t.Elem()).Elem()
				randomValue(rng, k, depth+1)
				randomValue(rng, e, depth+1)
				m.SetMapIndex(k, e)
			}
			v.Set(m)
		}
	}
}

// odd is true now and then: a value that may not read back as it was.
func odd(rng *rand.Rand) bool { return rng.IntN(16) == 0 }

// Whenever snapshot takes a resource as it is, decoding its stored form
// gives exactly that resource back: every registered type, random specs
// and envelopes. Both answers must be common, or the test proves little.
// canonicalMeta answers as canonical's reflection walk of a Meta does.
func TestCanonicalMetaMatchesCanonical(t *testing.T) {
	rng := rand.New(rand.NewPCG(14, 5))
	yes := 0
	for range 20000 {
		var m resource.Meta
		randomValue(rng, reflect.ValueOf(&m).Elem(), 0)
		if rng.IntN(2) == 0 {
			m.Version = 0
		}
		if rng.IntN(4) == 0 {
			m.Labels = map[string]string{"kuma.io/origin": "global"}
		}
		if rng.IntN(4) == 0 {
			m.CreationTime = time.Date(2026, 11, 30, 5, 0, 0, rng.IntN(1e9), time.UTC)
			m.ModificationTime = m.CreationTime
		}
		want := canonical(reflect.ValueOf(&m).Elem(), false)
		if got := canonicalMeta(&m); got != want {
			t.Fatalf("canonicalMeta %v, canonical %v: %#v", got, want, m)
		}
		if want {
			yes++
		}
	}
	if yes < 1000 {
		t.Fatalf("only %d of 20000 canonical: the test reaches too little", yes)
	}
}

func TestSnapshotMatchesDecode(t *testing.T) {
	rng := rand.New(rand.NewPCG(14, 4))
	for _, d := range resource.Types() {
		taken, refused := 0, 0
		for range 5000 {
			r := &resource.Resource{Meta: resource.Meta{Type: d.Type, Name: "n"}, Spec: d.NewSpec()}
			if d.Scope == resource.ScopeMesh {
				r.Mesh = "m"
			}
			randomValue(rng, reflect.ValueOf(&r.Labels).Elem(), 0)
			randomValue(rng, reflect.ValueOf(&r.CreationTime).Elem(), 0)
			randomValue(rng, reflect.ValueOf(&r.ModificationTime).Elem(), 0)
			r.Version = int64(rng.IntN(3))
			randomValue(rng, reflect.ValueOf(r.Spec).Elem(), 0)
			if rng.IntN(20) == 0 {
				r.Spec = nil
			}
			b, err := encode(r, 0, nil)
			if err != nil {
				continue
			}
			snap, ok := snapshot(r, false)
			if !ok {
				refused++
				continue
			}
			taken++
			snap.Version = 7
			got, err := decode(r.Key(), b, 7)
			if err != nil {
				t.Fatalf("%s: %v", d.Type, err)
			}
			if !reflect.DeepEqual(got.Meta, snap.Meta) || !reflect.DeepEqual(got.Spec, snap.Spec) {
				t.Fatalf("%s: stored as %s\ndecodes to %#v %#v\nsnapshot   %#v %#v", d.Type, b, got.Meta, got.Spec, snap.Meta, snap.Spec)
			}
		}
		t.Logf("%s: %d taken as written, %d left to decoding", d.Type, taken, refused)
		if taken < 30 || refused < 30 {
			t.Fatalf("%s: %d taken, %d refused: the random values miss a side", d.Type, taken, refused)
		}
	}
}

// typicalTrace is a MeshTrace as the API stores it.
func typicalTrace() *resource.Resource {
	lit := "v"
	r, _ := resource.New(resource.TypeMeshTrace, "default", "web")
	r.Labels = map[string]string{resource.LabelOrigin: resource.OriginGlobal}
	r.CreationTime = time.Now().UTC()
	r.ModificationTime = r.CreationTime
	r.Spec = &resource.MeshTraceSpec{
		TargetRef: &resource.TargetRef{Kind: resource.KindMeshService, Name: "web", Tags: map[string]string{"v": "1"}},
		Default: &resource.MeshTraceConf{
			Tags:     &[]resource.TraceTag{{Name: "t", Literal: &lit}},
			Sampling: &resource.Sampling{Overall: resource.Int(10), Random: resource.Str("2.5")},
			Backends: &[]resource.Backend{{Type: resource.BackendOpenTelemetry, OpenTelemetry: &resource.OpenTelemetryBackend{Endpoint: "otel:4317"}}},
		},
	}
	return r
}

// The writes meshtrace makes read back as written.
func TestSnapshotTakesTypicalWrites(t *testing.T) {
	r := typicalTrace()
	if _, ok := snapshot(r, false); !ok {
		t.Fatal("a MeshTrace as the API stores it is decoded")
	}
	r.Labels = map[string]string{}
	if _, ok := snapshot(r, false); ok {
		t.Fatal("an empty label map (read back as none) is taken as written")
	}
}

// BenchmarkSnapshot: what a write now costs to spare its watch event a
// decode (snapshot), against that decode.
func BenchmarkSnapshot(b *testing.B) {
	r := typicalTrace()
	v, err := encode(r, 0, nil)
	if err != nil {
		b.Fatal(err)
	}
	b.Run("snapshot", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			if _, ok := snapshot(r, false); !ok {
				b.Fatal("not taken")
			}
		}
	})
	b.Run("decode", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			if _, err := decode(r.Key(), v, 1); err != nil {
				b.Fatal(err)
			}
		}
	})
}

// parseKey undoes resourceKey, names keep their slashes, and anything
// else under the prefix is not a resource key.
func TestParseKey(t *testing.T) {
	ks := newKeyspace("/p/")
	for _, k := range []resource.Key{
		{Type: resource.TypeMeshTrace, Mesh: "default", Name: "a"},
		{Type: resource.TypeZone, Name: "east"},
		{Type: resource.TypeMeshTrace, Mesh: "m", Name: "a/b/c"},
	} {
		got, ok := ks.parseKey(ks.resourceKey(k))
		if !ok || got != k {
			t.Fatalf("parseKey(resourceKey(%v)) = %v, %v", k, got, ok)
		}
	}
	for _, bad := range []string{"/p/values/x", "/p/resources/MeshTrace", "/p/resources/MeshTrace/m", "/q/resources/MeshTrace/m/a", "/p/resourcesX/a/b/c"} {
		if k, ok := ks.parseKey(bad); ok {
			t.Fatalf("parseKey(%q) = %v", bad, k)
		}
	}
	if n := testing.AllocsPerRun(100, func() { ks.parseKey("/p/resources/MeshTrace/m/a") }); n != 0 {
		t.Fatalf("parseKey allocates %v times", n)
	}
}
