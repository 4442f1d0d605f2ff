package resource

import (
	"encoding/json"
	"fmt"
	"math/rand/v2"
	"reflect"
	"testing"
)

// TestCloneMatchesJSONRoundTrip: Effective copies a MeshTrace spec by hand
// (cloneSpec); the copy must be what the JSON round trip it replaces gives,
// for random specs with every field nil, empty or set, and must share
// nothing with the original (the defaults Effective fills in leave it as it
// was).
func TestCloneMatchesJSONRoundTrip(t *testing.T) {
	rng := rand.New(rand.NewPCG(1, 2))
	for i := range 20000 {
		spec := randomMeshTrace(rng)
		r := &Resource{Meta: Meta{Type: TypeMeshTrace, Mesh: "default", Name: "t"}, Spec: spec}
		if i%500 == 0 {
			r.Spec = (*MeshTraceSpec)(nil)
		}
		before, err := json.Marshal(r)
		if err != nil {
			t.Fatal(err)
		}
		d, _ := Lookup(TypeMeshTrace)
		sameCopies(t, d, r.Spec, fmt.Sprintf("spec %d", i))
		cloneSpecs = false
		want := Effective(r)
		cloneSpecs = true
		got := Effective(r)
		if !reflect.DeepEqual(want, got) {
			w, _ := json.Marshal(want.Spec)
			g, _ := json.Marshal(got.Spec)
			t.Fatalf("spec %d: copies differ:\nround trip: %#v\n%s\nclone: %#v\n%s", i, want.Spec, w, got.Spec, g)
		}
		after, _ := json.Marshal(r)
		if string(before) != string(after) {
			t.Fatalf("spec %d: Effective changed the original:\nbefore: %s\nafter:  %s", i, before, after)
		}
	}
}

// randomString is one of words, or now and then "", a non-ASCII string
// or one that is not UTF-8.
func randomString(rng *rand.Rand, words ...string) string {
	switch rng.IntN(8) {
	case 0:
		return ""
	case 1:
		return "caf\xc3\xa9"
	case 2:
		if rng.IntN(4) == 0 {
			return "bad\xff"
		}
	}
	return words[rng.IntN(len(words))]
}

func randomMeshTrace(rng *rand.Rand) *MeshTraceSpec {
	str := func() string {
		return randomString(rng, "a", "Mesh", "MeshService", "http://z:9411/api/v2/spans", "otel", "Sidecar")
	}
	strPtr := func() *string {
		if rng.IntN(2) == 0 {
			return nil
		}
		s := str()
		return &s
	}
	strMap := func() map[string]string {
		switch rng.IntN(3) {
		case 0:
			return nil
		case 1:
			return map[string]string{}
		}
		return map[string]string{str(): str(), "kuma.io/zone": str()}
	}
	strs := func() []string {
		switch rng.IntN(3) {
		case 0:
			return nil
		case 1:
			return []string{}
		}
		return []string{str(), str()}
	}
	ios := func() *IntOrString {
		switch rng.IntN(4) {
		case 0:
			return nil
		case 1:
			return &IntOrString{IsString: true, StrVal: str(), IntVal: rng.Int64N(200)}
		}
		return &IntOrString{IntVal: rng.Int64N(200) - 50, StrVal: str()}
	}
	boolPtr := func() *bool {
		if rng.IntN(2) == 0 {
			return nil
		}
		b := rng.IntN(2) == 0
		return &b
	}
	s := &MeshTraceSpec{}
	if rng.IntN(4) > 0 {
		s.TargetRef = &TargetRef{Kind: str(), Name: str(), Mesh: str(), Tags: strMap(), ProxyTypes: strs()}
	}
	if rng.IntN(6) == 0 {
		return s
	}
	d := &MeshTraceConf{}
	s.Default = d
	switch rng.IntN(4) {
	case 0:
	case 1:
		d.Tags = new([]TraceTag)
	default:
		tags := []TraceTag{}
		for range rng.IntN(3) {
			tag := TraceTag{Name: str(), Literal: strPtr()}
			if rng.IntN(2) == 0 {
				tag.Header = &HeaderTag{Name: str(), Default: strPtr()}
			}
			tags = append(tags, tag)
		}
		d.Tags = &tags
	}
	if rng.IntN(3) > 0 {
		d.Sampling = &Sampling{Overall: ios(), Client: ios(), Random: ios()}
	}
	switch rng.IntN(4) {
	case 0:
	case 1:
		d.Backends = new([]Backend)
	default:
		bs := []Backend{}
		for range rng.IntN(3) {
			b := Backend{Type: str()}
			if rng.IntN(2) == 0 {
				b.Zipkin = &ZipkinBackend{URL: str(), TraceID128Bit: rng.IntN(2) == 0, APIVersion: str(), SharedSpanContext: boolPtr()}
			}
			if rng.IntN(3) == 0 {
				b.Datadog = &DatadogBackend{URL: str(), SplitService: rng.IntN(2) == 0}
			}
			if rng.IntN(3) == 0 {
				b.OpenTelemetry = &OpenTelemetryBackend{Endpoint: str()}
			}
			bs = append(bs, b)
		}
		d.Backends = &bs
	}
	return s
}

// TestCloneCoversEveryField: a spec with every field set (found by
// reflection, so a field added later is set too) copies as the round trip,
// for every spec with a hand-written copy.
func TestCloneCoversEveryField(t *testing.T) {
	for _, spec := range []Spec{&MeshTraceSpec{}, &DataplaneSpec{}} {
		setAll(reflect.ValueOf(spec).Elem())
		d, ok := lookupSpec(spec)
		if !ok {
			t.Fatalf("%T: no descriptor", spec)
		}
		sameCopies(t, d, spec, fmt.Sprintf("%T with every field set", spec))
	}
}

// lookupSpec is the descriptor whose specs are spec's type.
func lookupSpec(spec Spec) (*Descriptor, bool) {
	for _, d := range Types() {
		if d.specType == reflect.TypeOf(spec) {
			return d, true
		}
	}
	return nil, false
}

// sameCopies fails t when copySpec's hand-written copy of s differs from
// the JSON round trip it replaces.
func sameCopies(t *testing.T, d *Descriptor, s Spec, what string) {
	t.Helper()
	cloneSpecs = false
	want := copySpec(d, s)
	cloneSpecs = true
	got := copySpec(d, s)
	if !reflect.DeepEqual(want, got) {
		w, _ := json.Marshal(want)
		g, _ := json.Marshal(got)
		t.Fatalf("%s: copies differ:\nround trip: %#v\n%s\nclone: %#v\n%s", what, want, w, got, g)
	}
}

// setAll sets every field under v to a non-zero value.
func setAll(v reflect.Value) {
	switch v.Kind() {
	case reflect.Pointer:
		v.Set(reflect.New(v.Type().Elem()))
		setAll(v.Elem())
	case reflect.Struct:
		for i := range v.NumField() {
			if v.Type().Field(i).IsExported() {
				setAll(v.Field(i))
			}
		}
	case reflect.Slice:
		v.Set(reflect.MakeSlice(v.Type(), 1, 1))
		setAll(v.Index(0))
	case reflect.Map:
		v.Set(reflect.MakeMap(v.Type()))
		k, e := reflect.New(v.Type().Key()).Elem(), reflect.New(v.Type().Elem()).Elem()
		setAll(k)
		setAll(e)
		v.SetMapIndex(k, e)
	case reflect.String:
		v.SetString("x")
	case reflect.Bool:
		v.SetBool(true)
	case reflect.Int, reflect.Int8, reflect.Int16, reflect.Int32, reflect.Int64:
		v.SetInt(7)
	case reflect.Uint, reflect.Uint8, reflect.Uint16, reflect.Uint32, reflect.Uint64:
		v.SetUint(7)
	}
}

// TestCloneDataplaneMatchesJSONRoundTrip is TestCloneMatchesJSONRoundTrip
// for Dataplanes: nil, empty and filled lists and maps (tags of inbounds and
// gateways are written even when empty), strings that are not UTF-8.
func TestCloneDataplaneMatchesJSONRoundTrip(t *testing.T) {
	rng := rand.New(rand.NewPCG(3, 4))
	str := func() string { return randomString(rng, "a", "10.0.0.1", "::1", "kuma.io/service", "BUILTIN") }
	strMap := func() map[string]string {
		switch rng.IntN(3) {
		case 0:
			return nil
		case 1:
			return map[string]string{}
		}
		m := map[string]string{}
		for range 1 + rng.IntN(3) {
			m[str()] = str()
		}
		return m
	}
	port := func() uint32 { return []uint32{0, 1, 8080, 70000}[rng.IntN(4)] }
	d, _ := Lookup(TypeDataplane)
	for i := range 20000 {
		spec := &DataplaneSpec{}
		n := &spec.Networking
		n.Address, n.AdvertisedAddress = str(), str()
		switch rng.IntN(3) {
		case 0:
		case 1:
			n.Inbound = []Inbound{}
		default:
			for range 1 + rng.IntN(3) {
				n.Inbound = append(n.Inbound, Inbound{Port: port(), ServicePort: port(), ServiceAddress: str(), Address: str(), Tags: strMap()})
			}
		}
		switch rng.IntN(3) {
		case 0:
		case 1:
			n.Outbound = []Outbound{}
		default:
			for range 1 + rng.IntN(3) {
				n.Outbound = append(n.Outbound, Outbound{Port: port(), Address: str(), Tags: strMap()})
			}
		}
		if rng.IntN(2) == 0 {
			n.Gateway = &Gateway{Type: str(), Tags: strMap()}
		}
		if rng.IntN(2) == 0 {
			n.Admin = &Admin{Port: port()}
		}
		var s Spec = spec
		if i%500 == 0 {
			s = (*DataplaneSpec)(nil)
		}
		before, err := json.Marshal(s)
		if err != nil {
			t.Fatal(err)
		}
		sameCopies(t, d, s, fmt.Sprintf("spec %d", i))
		if after, _ := json.Marshal(s); string(before) != string(after) {
			t.Fatalf("spec %d: the copy changed the original:\nbefore: %s\nafter:  %s", i, before, after)
		}
	}
}
