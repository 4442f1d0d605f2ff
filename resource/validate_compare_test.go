package resource

import (
	"math/rand/v2"
	"reflect"
	"testing"
)

// refValidate is Validate as it was with the reference validators of
// validate_ref_test.go, for MeshTrace resources.
func refValidate(r *Resource) ValidationErrors {
	var errs ValidationErrors
	validateName(&errs, "name", r.Name)
	validateName(&errs, "mesh", r.Mesh)
	for _, k := range sortedKeys(r.Labels) {
		refValidateLabel(&errs, refJoinKey("labels", k), k, r.Labels[k])
	}
	spec := Effective(r).Spec.(*MeshTraceSpec)
	errs.AddPrefixed("spec", refValidateMeshTrace(spec))
	return errs
}

func validationErrors(err error) ValidationErrors {
	if err == nil {
		return nil
	}
	return err.(*InvalidError).Violations
}

// pick returns one of the choices, or the zero value one time in four.
func pick[T any](rng *rand.Rand, choices ...T) T {
	var zero T
	if rng.IntN(4) == 0 {
		return zero
	}
	return choices[rng.IntN(len(choices))]
}

func randStrPtr(rng *rand.Rand, choices ...string) *string {
	if rng.IntN(3) == 0 {
		return nil
	}
	s := pick(rng, choices...)
	return &s
}

func randMap(rng *rand.Rand, keys, values []string) map[string]string {
	if rng.IntN(3) == 0 {
		return nil
	}
	m := map[string]string{}
	for range rng.IntN(12) {
		m[pick(rng, keys...)] = pick(rng, values...)
	}
	return m
}

func randIntOrString(rng *rand.Rand) *IntOrString {
	switch rng.IntN(5) {
	case 0:
		return nil
	case 1:
		return &IntOrString{IntVal: int64(rng.IntN(300)) - 100}
	default:
		return &IntOrString{IsString: true, StrVal: pick(rng, "50", "50.5", "-1", "100.0001", "NaN", "abc", "1e2", " 5", "0x10")}
	}
}

var (
	randTagKeys   = []string{"a", "kuma.io/zone", "kuma.io/service", "bad key", "ü", `q"uote`, "x/y:z_1", "."}
	randTagValues = []string{"west", "v1", "bad value", "a/b", "ok_1.2-3", "\x00"}
	randURLs      = []string{
		"http://jaeger-collector:9411/api/v2/spans", "https://zipkin", "http://1.2.3.4:9411", "http://[::1]:80/x?y=1",
		"ftp://a", "http://", "http://a:0", "http://a:99999", "http://u@a", "://x", "http://a b", "http://a/%zz",
		"HTTP://A:1/", "http://a:80/p%20q", "http://a:8126", "http://a:8126/path", "https://a?x", "http://a#frag",
		"http://-a", "http://a:+1", "http://a:01", "http://[fe80::1%25eth0]:1",
	}
	randEndpoints = []string{"otel:4317", "otel", "[::1]", "::1", "1.2.3.4:0", "a:b", ":4317", "a b:1", "host:65536", "[::1]:4317"}
)

func randMeshTrace(rng *rand.Rand) *Resource {
	s := &MeshTraceSpec{}
	if rng.IntN(4) != 0 {
		s.TargetRef = &TargetRef{
			Kind:       pick(rng, KindMesh, KindMeshSubset, KindMeshService, KindMeshServiceSubset, KindMeshGateway, "MeshHTTPRoute", "Mesh\xff"),
			Name:       pick(rng, "web", ""),
			Tags:       randMap(rng, randTagKeys, randTagValues),
			ProxyTypes: pick(rng, []string{ProxyTypeSidecar}, []string{ProxyTypeGateway, "Ingress", ""}, []string{}),
		}
	}
	if rng.IntN(8) != 0 {
		c := &MeshTraceConf{}
		if rng.IntN(2) == 0 {
			var tags []TraceTag
			for range rng.IntN(4) {
				t := TraceTag{Name: pick(rng, "team", ""), Literal: randStrPtr(rng, "core", "")}
				if rng.IntN(2) == 0 {
					t.Header = &HeaderTag{Name: pick(rng, "x-env"), Default: randStrPtr(rng, "prod")}
				}
				tags = append(tags, t)
			}
			c.Tags = &tags
		}
		if rng.IntN(2) == 0 {
			c.Sampling = &Sampling{Overall: randIntOrString(rng), Client: randIntOrString(rng), Random: randIntOrString(rng)}
		}
		if rng.IntN(6) != 0 {
			var bs []Backend
			for range pick(rng, 1, 1, 1, 2, 0) {
				b := Backend{Type: pick(rng, BackendZipkin, BackendDatadog, BackendOpenTelemetry, "Jaeger", "Jae\xffger")}
				if rng.IntN(2) == 0 {
					b.Zipkin = &ZipkinBackend{URL: pick(rng, randURLs...), APIVersion: pick(rng, ZipkinAPIHTTPJSON, ZipkinAPIHTTPProto, "v1")}
				}
				if rng.IntN(3) == 0 {
					b.Datadog = &DatadogBackend{URL: pick(rng, randURLs...)}
				}
				if rng.IntN(3) == 0 {
					b.OpenTelemetry = &OpenTelemetryBackend{Endpoint: pick(rng, randEndpoints...)}
				}
				bs = append(bs, b)
			}
			c.Backends = &bs
		}
		s.Default = c
	}
	r := &Resource{Spec: s}
	r.Type = TypeMeshTrace
	r.Mesh = pick(rng, "default", "Bad")
	r.Name = pick(rng, "t", "-x")
	r.Labels = randMap(rng, []string{"team", "kuma.io/origin", "a/b/c", "-x", "/x", "Upper.Case"}, []string{"a", "zone", "-bad", ""})
	return r
}

// TestValidatorMatchesReference: the validators, which write a field's path
// only for a violation, report what the ones that built every path eagerly
// reported, in the same order, on many random and mostly invalid specs.
func TestValidatorMatchesReference(t *testing.T) {
	rng := rand.New(rand.NewPCG(1, 2))
	withViolations := 0
	for i := range 50000 {
		r := randMeshTrace(rng)
		got, want := validationErrors(Validate(r)), refValidate(r)
		if !reflect.DeepEqual(got, want) {
			t.Fatalf("case %d: violations differ for %+v\n got  %v\n want %v", i, r, got, want)
		}
		if len(want) > 0 {
			withViolations++
		}
		var gotTags, wantTags ValidationErrors
		tags := randMap(rng, randTagKeys, randTagValues)
		p := rootPath("a.b[0]")
		validateTags(&gotTags, &p, tags)
		refValidateTags(&wantTags, "a.b[0]", tags)
		if !reflect.DeepEqual(gotTags, wantTags) {
			t.Fatalf("validateTags(%v):\n got  %v\n want %v", tags, gotTags, wantTags)
		}
	}
	if withViolations < 40000 {
		t.Fatalf("only %d of 50000 random specs had violations: the generator is too tame", withViolations)
	}
}

// FuzzValidateMatchesReference is TestValidatorMatchesReference on whatever
// decodes as a MeshTrace.
func FuzzValidateMatchesReference(f *testing.F) {
	addSeedFiles(f)
	f.Add([]byte(trace("targetRef: {kind: MeshSubset, tags: {'a b': '', kuma.io/zone: west}}\ndefault:\n  tags: [{name: '', header: {name: ''}}, {name: x}]\n  sampling: {overall: 101, client: 'x'}\n  backends: [{type: Zipkin, zipkin: {url: 'http://a:0'}}]\n")))
	f.Fuzz(func(t *testing.T, data []byte) {
		r, err := Decode(data)
		if err != nil || r.Type != TypeMeshTrace {
			return
		}
		got, want := validationErrors(Validate(r)), refValidate(r)
		if !reflect.DeepEqual(got, want) {
			t.Fatalf("violations differ:\n got  %v\n want %v\n%s", got, want, data)
		}
	})
}

// FuzzZipkinHostPortMatchesURLParse: HostPort splits simple urls itself
// (simpleZipkinURL) and gives what it gave when url.Parse split them all.
func FuzzZipkinHostPortMatchesURLParse(f *testing.F) {
	for _, u := range randURLs {
		f.Add(u)
	}
	for _, u := range []string{"http://a:", "http://a:/", "https://a_b.c:65535/x/./y", "http://a.:80//", "http://1.2.3.4/", "http://a/~x_y-z", "http://a:9411:1", "http://a/b?", "http://a/b#"} {
		f.Add(u)
	}
	f.Fuzz(func(t *testing.T, raw string) {
		z := &ZipkinBackend{URL: raw}
		host, port, path, tls, err := z.HostPort()
		wHost, wPort, wPath, wTLS, wErr := refZipkinHostPort(z)
		if host != wHost || port != wPort || path != wPath || tls != wTLS || (err == nil) != (wErr == nil) || (err != nil && err.Error() != wErr.Error()) {
			t.Fatalf("HostPort(%q) = %q %d %q %v %v, url.Parse gives %q %d %q %v %v", raw, host, port, path, tls, err, wHost, wPort, wPath, wTLS, wErr)
		}
	})
}

func randDataplane(rng *rand.Rand) *Resource {
	addr := func() string {
		return pick(rng, "10.0.0.1", "127.0.0.1", "::1", "0.0.0.0", "::", "host.local", "bad addr", "fe80::1")
	}
	port := func() uint32 { return pick[uint32](rng, 80, 80, 8080, 9901, 70000) }
	tags := func() map[string]string {
		m := randMap(rng, append([]string{TagService, TagService, TagProtocol}, randTagKeys...), append([]string{"web", "tcp", "http", "HTTP2", "udp"}, randTagValues...))
		if m != nil && rng.IntN(2) == 0 {
			m[TagService] = "web"
		}
		return m
	}
	s := &DataplaneSpec{}
	n := &s.Networking
	n.Address, n.AdvertisedAddress = addr(), pick(rng, "1.2.3.4", "bad addr")
	for range rng.IntN(4) {
		n.Inbound = append(n.Inbound, Inbound{Port: port(), ServicePort: port(), ServiceAddress: pick(rng, "127.0.0.1", "10.0.0.1", "x"), Address: pick(rng, addr()), Tags: tags()})
	}
	for range rng.IntN(4) {
		n.Outbound = append(n.Outbound, Outbound{Port: port(), Address: pick(rng, addr()), Tags: tags()})
	}
	if rng.IntN(3) == 0 {
		n.Gateway = &Gateway{Type: pick(rng, GatewayBuiltin, GatewayDelegated, "OTHER"), Tags: tags()}
	}
	if rng.IntN(2) == 0 {
		n.Admin = &Admin{Port: port()}
	}
	r := &Resource{Spec: s}
	r.Type, r.Mesh, r.Name = TypeDataplane, "default", "dp"
	return r
}

// TestDataplaneValidatorMatchesReference is TestValidatorMatchesReference
// for Dataplanes.
func TestDataplaneValidatorMatchesReference(t *testing.T) {
	rng := rand.New(rand.NewPCG(5, 6))
	withViolations := 0
	for i := range 50000 {
		r := randDataplane(rng)
		var want ValidationErrors
		want.AddPrefixed("", refValidateDataplane(Effective(r).Spec.(*DataplaneSpec)))
		got := validationErrors(Validate(r))
		if !reflect.DeepEqual(got, want) {
			t.Fatalf("case %d: violations differ for %+v\n got  %v\n want %v", i, r.Spec, got, want)
		}
		if len(want) > 0 {
			withViolations++
		}
	}
	if withViolations < 40000 || withViolations == 50000 {
		t.Fatalf("%d of 50000 random Dataplanes had violations: the generator needs both kinds", withViolations)
	}
}

// TestValidatesAsEffective: the specs Validate checks without a copy, and
// those it copies first because the copy or its defaults change what the
// rules see.
func TestValidatesAsEffective(t *testing.T) {
	zipkin := func() *[]Backend {
		return &[]Backend{{Zipkin: &ZipkinBackend{URL: "http://zipkin:9411/api/v2/spans"}}}
	}
	var noBackends []Backend
	cases := []struct {
		name string
		spec *MeshTraceSpec
		want bool
	}{
		{"no target, one zipkin backend", &MeshTraceSpec{Default: &MeshTraceConf{Backends: zipkin()}}, true},
		{"no default", &MeshTraceSpec{TargetRef: &TargetRef{Kind: KindMesh}}, true},
		{"tags, sampling, no backends", &MeshTraceSpec{Default: &MeshTraceConf{Tags: &[]TraceTag{{Name: "a", Header: &HeaderTag{Name: "x"}}}, Sampling: &Sampling{Overall: Str("12.5")}, Backends: &[]Backend{}}}, true},
		{"nil spec", nil, false},
		{"pointer to a nil backend list", &MeshTraceSpec{Default: &MeshTraceConf{Backends: &noBackends}}, false},
		{"OpenTelemetry backend", &MeshTraceSpec{Default: &MeshTraceConf{Backends: &[]Backend{{OpenTelemetry: &OpenTelemetryBackend{Endpoint: "otel"}}}}}, false},
		{"invalid UTF-8 in a kind", &MeshTraceSpec{TargetRef: &TargetRef{Kind: "Mesh\xff"}}, false},
		{"invalid UTF-8 in a tag value", &MeshTraceSpec{TargetRef: &TargetRef{Kind: KindMeshSubset, Tags: map[string]string{"a": "\xff"}}}, false},
		{"invalid UTF-8 in a header default", &MeshTraceSpec{Default: &MeshTraceConf{Tags: &[]TraceTag{{Name: "a", Header: &HeaderTag{Name: "x", Default: new(string("\xff"))}}}}}, false},
		{"invalid UTF-8 in a percentage", &MeshTraceSpec{Default: &MeshTraceConf{Sampling: &Sampling{Client: Str("1\xff")}}}, false},
		{"invalid UTF-8 in a zipkin url", &MeshTraceSpec{Default: &MeshTraceConf{Backends: &[]Backend{{Zipkin: &ZipkinBackend{URL: "http://\xff"}}}}}, false},
	}
	for _, c := range cases {
		if got := c.spec.validatesAsEffective(); got != c.want {
			t.Errorf("%s: %v, want %v", c.name, got, c.want)
		}
		r := &Resource{Meta: Meta{Type: TypeMeshTrace, Mesh: "default", Name: "t"}, Spec: c.spec}
		if c.spec == nil {
			continue
		}
		if got, want := validationErrors(Validate(r)), refValidate(r); !reflect.DeepEqual(got, want) {
			t.Errorf("%s: violations differ\n got  %v\n want %v", c.name, got, want)
		}
	}
}
