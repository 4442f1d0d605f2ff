package resource

import (
	"reflect"
	"strings"
	"testing"
)

// trace wraps a spec written in YAML (indented by 0) into a Universal MeshTrace.
func trace(spec string) string {
	lines := strings.Split(strings.TrimRight(spec, "\n"), "\n")
	for i, l := range lines {
		lines[i] = "  " + l
	}
	return "type: MeshTrace\nmesh: default\nname: t\nspec:\n" + strings.Join(lines, "\n") + "\n"
}

const zipkinOK = "  backends:\n  - type: Zipkin\n    zipkin:\n      url: http://zipkin:9411/api/v2/spans\n"

func v(field, msg string) Violation { return Violation{Field: field, Message: msg} }

func checkViolations(t *testing.T, doc string, want ValidationErrors) {
	t.Helper()
	r := mustDecode(t, doc)
	Prepare(r)
	got := violations(t, Validate(r))
	if !reflect.DeepEqual(got, want) {
		t.Fatalf("violations:\n got  %v\n want %v\n%s", got, want, doc)
	}
}

func TestMeshTraceValidation(t *testing.T) {
	tests := []struct {
		name string
		spec string
		want ValidationErrors
	}{
		{"minimal zipkin", "default:\n" + zipkinOK, nil},
		{"targetRef omitted", "default:\n  backends: []\n", nil},
		{"backends omitted", "default:\n  sampling:\n    overall: 50\n", ValidationErrors{v("spec.default.backends", "must be defined")}},
		{"default missing", "targetRef:\n  kind: Mesh\n", ValidationErrors{v("spec.default", "must be defined")}},
		{"two backends", "default:\n  backends:\n  - zipkin: {url: http://a}\n  - datadog: {url: http://b:1}\n",
			ValidationErrors{v("spec.default.backends", "must have zero or one backend defined")}},

		// targetRef
		{"kind unsupported", "targetRef:\n  kind: MeshHTTPRoute\ndefault: {backends: []}\n", ValidationErrors{v("spec.targetRef.kind", `value is not supported: "MeshHTTPRoute"; supported: Mesh, MeshSubset, MeshService, MeshServiceSubset, MeshGateway`)}},
		{"kind empty", "targetRef: {}\ndefault: {backends: []}\n", ValidationErrors{v("spec.targetRef.kind", "must be defined")}},
		{"mesh with name", "targetRef:\n  kind: Mesh\n  name: x\ndefault: {backends: []}\n", ValidationErrors{v("spec.targetRef.name", "must not be set with kind Mesh")}},
		{"mesh with tags", "targetRef:\n  kind: Mesh\n  tags: {a: b}\ndefault: {backends: []}\n", ValidationErrors{v("spec.targetRef.tags", "must not be set with kind Mesh")}},
		{"meshsubset with name", "targetRef:\n  kind: MeshSubset\n  name: x\ndefault: {backends: []}\n", ValidationErrors{v("spec.targetRef.name", "must not be set with kind MeshSubset")}},
		{"meshsubset without tags", "targetRef:\n  kind: MeshSubset\ndefault: {backends: []}\n", nil},
		{"meshservice without name", "targetRef:\n  kind: MeshService\ndefault: {backends: []}\n", ValidationErrors{v("spec.targetRef.name", "must be set with kind MeshService")}},
		{"meshservice with tags", "targetRef:\n  kind: MeshService\n  name: web\n  tags: {a: b}\ndefault: {backends: []}\n", ValidationErrors{v("spec.targetRef.tags", "must not be set with kind MeshService")}},
		{"meshservicesubset without name", "targetRef:\n  kind: MeshServiceSubset\n  tags: {version: v1}\ndefault: {backends: []}\n", ValidationErrors{v("spec.targetRef.name", "must be set with kind MeshServiceSubset")}},
		{"meshservicesubset ok", "targetRef:\n  kind: MeshServiceSubset\n  name: web\n  tags: {version: v1}\ndefault: {backends: []}\n", nil},
		{"mesh proxyTypes", "targetRef:\n  kind: Mesh\n  proxyTypes: [Sidecar, Gateway]\ndefault: {backends: []}\n", nil},
		{"meshsubset proxyTypes", "targetRef:\n  kind: MeshSubset\n  tags: {a: b}\n  proxyTypes: [Gateway]\ndefault: {backends: []}\n", nil},
		{"proxyTypes unknown", "targetRef:\n  kind: Mesh\n  proxyTypes: [Sidecar, Ingress]\ndefault: {backends: []}\n", ValidationErrors{v("spec.targetRef.proxyTypes[1]", "must be one of Sidecar, Gateway")}},
		{"meshservice proxyTypes", "targetRef:\n  kind: MeshService\n  name: web\n  proxyTypes: [Sidecar]\ndefault: {backends: []}\n", ValidationErrors{v("spec.targetRef.proxyTypes", "must not be set with kind MeshService")}},
		{"meshservicesubset proxyTypes", "targetRef:\n  kind: MeshServiceSubset\n  name: web\n  proxyTypes: [Sidecar]\ndefault: {backends: []}\n", ValidationErrors{v("spec.targetRef.proxyTypes", "must not be set with kind MeshServiceSubset")}},
		{"meshgateway proxyTypes", "targetRef:\n  kind: MeshGateway\n  name: gw\n  proxyTypes: [Gateway]\ndefault: {backends: []}\n", ValidationErrors{v("spec.targetRef.proxyTypes", "must not be set with kind MeshGateway")}},
		{"meshgateway without name", "targetRef:\n  kind: MeshGateway\ndefault: {backends: []}\n", ValidationErrors{v("spec.targetRef.name", "must be set with kind MeshGateway")}},
		{"meshgateway with tags", "targetRef:\n  kind: MeshGateway\n  name: gw\n  tags: {a: b}\ndefault: {backends: []}\n", ValidationErrors{v("spec.targetRef.tags", "must not be set with kind MeshGateway")}},
		{"subset tag value charset", "targetRef:\n  kind: MeshSubset\n  tags:\n    kuma.io/zone: we st\ndefault: {backends: []}\n",
			ValidationErrors{v(`spec.targetRef.tags["kuma.io/zone"]`, "tag value must consist of alphanumeric characters, dots, dashes, colons and underscores")}},
		{"subset tag value slash", "targetRef:\n  kind: MeshServiceSubset\n  name: web\n  tags:\n    version: a/b\ndefault: {backends: []}\n",
			ValidationErrors{v(`spec.targetRef.tags["version"]`, "tag value must consist of alphanumeric characters, dots, dashes, colons and underscores")}},
		{"subset tag key charset", "targetRef:\n  kind: MeshSubset\n  tags:\n    'a b': x\ndefault: {backends: []}\n",
			ValidationErrors{v(`spec.targetRef.tags["a b"]`, "tag name must consist of alphanumeric characters, dots, dashes, slashes, colons and underscores")}},
		{"subset tag empty", "targetRef:\n  kind: MeshSubset\n  tags:\n    '': ''\ndefault: {backends: []}\n",
			ValidationErrors{v(`spec.targetRef.tags[""]`, "tag name must be non-empty"), v(`spec.targetRef.tags[""]`, "tag value must be non-empty")}},

		// sampling
		{"sampling ok", "default:\n  backends: []\n  sampling: {overall: 0, random: '100', client: '33.3'}\n", nil},
		{"sampling out of range", "default:\n  backends: []\n  sampling: {overall: 101, client: -1, random: '100.5'}\n", ValidationErrors{
			v("spec.default.sampling.overall", "must be between 0 and 100"),
			v("spec.default.sampling.client", "must be between 0 and 100"),
			v("spec.default.sampling.random", "must be between 0 and 100"),
		}},
		{"sampling not a number", "default:\n  backends: []\n  sampling: {overall: 'abc', random: 'NaN'}\n", ValidationErrors{
			v("spec.default.sampling.overall", "string is not a number"),
			v("spec.default.sampling.random", "must be between 0 and 100"),
		}},

		// tags
		{"tags ok", "default:\n  backends: []\n  tags:\n  - {name: team, literal: core}\n  - {name: env, header: {name: x-env, default: prod}}\n", nil},
		{"tag name empty", "default:\n  backends: []\n  tags:\n  - {name: '', literal: core}\n", ValidationErrors{v("spec.default.tags[0].name", "must not be empty")}},
		{"tag both", "default:\n  backends: []\n  tags:\n  - {name: a, literal: core, header: {name: x}}\n", ValidationErrors{v("spec.default.tags[0]", "tag must have only one type defined: header, literal")}},
		{"tag neither", "default:\n  backends: []\n  tags:\n  - {name: a}\n", ValidationErrors{v("spec.default.tags[0]", "tag must have only one type defined: header, literal")}},
		{"tag header name empty", "default:\n  backends: []\n  tags:\n  - {name: a}\n  - {name: b, header: {name: ''}}\n", ValidationErrors{
			v("spec.default.tags[0]", "tag must have only one type defined: header, literal"),
			v("spec.default.tags[1].header.name", "must not be empty"),
		}},

		// backends
		{"backend without block", "default:\n  backends:\n  - type: Zipkin\n", ValidationErrors{v("spec.default.backends[0].zipkin", "must be defined")}},
		{"backend without anything", "default:\n  backends:\n  - {}\n", ValidationErrors{v("spec.default.backends[0]", "backend must have exactly one defined: datadog, openTelemetry, zipkin")}},
		{"backend with two blocks", "default:\n  backends:\n  - type: Zipkin\n    zipkin: {url: http://a}\n    datadog: {url: http://b:1}\n",
			ValidationErrors{v("spec.default.backends[0]", "backend must have only one type defined: datadog, openTelemetry, zipkin")}},
		{"backend type mismatch", "default:\n  backends:\n  - type: Datadog\n    zipkin: {url: http://a}\n",
			ValidationErrors{v("spec.default.backends[0].type", "is Datadog but only zipkin is defined")}},
		{"backend type unknown", "default:\n  backends:\n  - type: Jaeger\n", ValidationErrors{v("spec.default.backends[0].type", `value is not supported: "Jaeger"; supported: Zipkin, Datadog, OpenTelemetry`)}},

		// zipkin
		{"zipkin no port", "default:\n  backends:\n  - zipkin: {url: 'https://zipkin.example.com/api/v2/spans'}\n", nil},
		{"zipkin url missing", "default:\n  backends:\n  - zipkin: {}\n", ValidationErrors{v("spec.default.backends[0].zipkin.url", "must be defined")}},
		{"zipkin url scheme", "default:\n  backends:\n  - zipkin: {url: 'ftp://a:1/x'}\n", ValidationErrors{v("spec.default.backends[0].zipkin.url", "must be a valid url with scheme http or https")}},
		{"zipkin url not a url", "default:\n  backends:\n  - zipkin: {url: 'zipkin:9411'}\n", ValidationErrors{v("spec.default.backends[0].zipkin.url", "must be a valid url with scheme http or https")}},
		{"zipkin url no host", "default:\n  backends:\n  - zipkin: {url: 'http:///x'}\n", ValidationErrors{v("spec.default.backends[0].zipkin.url", "must be a valid url with a host")}},
		{"zipkin bad port", "default:\n  backends:\n  - zipkin: {url: 'http://a:70000/x'}\n", ValidationErrors{v("spec.default.backends[0].zipkin.url", "port must be a valid (1-65535)")}},
		{"zipkin apiVersion", "default:\n  backends:\n  - zipkin: {url: 'http://a', apiVersion: grpc}\n", ValidationErrors{v("spec.default.backends[0].zipkin.apiVersion", "must be one of httpJson, httpProto")}},

		// datadog
		{"datadog ok", "default:\n  backends:\n  - datadog: {url: 'http://127.0.0.1:8126', splitService: true}\n", nil},
		{"datadog url missing", "default:\n  backends:\n  - datadog: {}\n", ValidationErrors{v("spec.default.backends[0].datadog.url", "must be defined")}},
		{"datadog https", "default:\n  backends:\n  - datadog: {url: 'https://a:8126'}\n", ValidationErrors{v("spec.default.backends[0].datadog.url", "scheme must be http")}},
		{"datadog no port", "default:\n  backends:\n  - datadog: {url: 'http://a'}\n", ValidationErrors{v("spec.default.backends[0].datadog.url", "port must be defined")}},
		{"datadog bad port", "default:\n  backends:\n  - datadog: {url: 'http://a:0'}\n", ValidationErrors{v("spec.default.backends[0].datadog.url", "port must be a valid (1-65535)")}},
		{"datadog path", "default:\n  backends:\n  - datadog: {url: 'http://a:8126/v1'}\n", ValidationErrors{v("spec.default.backends[0].datadog.url", "path must not be defined")}},

		// opentelemetry
		{"otel ok", "default:\n  backends:\n  - openTelemetry: {endpoint: 'otel:4318'}\n", nil},
		{"otel missing", "default:\n  backends:\n  - openTelemetry: {}\n", ValidationErrors{v("spec.default.backends[0].openTelemetry.endpoint", "must be defined")}},
		{"otel url", "default:\n  backends:\n  - openTelemetry: {endpoint: 'http://otel:4317'}\n",
			ValidationErrors{v("spec.default.backends[0].openTelemetry.endpoint", "must be a valid address in the form host:port")}},
		{"otel bad port", "default:\n  backends:\n  - openTelemetry: {endpoint: 'otel:99999'}\n",
			ValidationErrors{v("spec.default.backends[0].openTelemetry.endpoint", "port must be a valid (1-65535)")}},

		{"many at once sorted by path", "targetRef:\n  kind: MeshService\ndefault:\n  tags:\n  - {name: ''}\n  sampling: {overall: 200}\n  backends:\n  - datadog: {url: 'https://a'}\n", ValidationErrors{
			v("spec.targetRef.name", "must be set with kind MeshService"),
			v("spec.default.tags[0].name", "must not be empty"),
			v("spec.default.tags[0]", "tag must have only one type defined: header, literal"),
			v("spec.default.sampling.overall", "must be between 0 and 100"),
			v("spec.default.backends[0].datadog.url", "scheme must be http"),
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) { checkViolations(t, trace(tt.spec), tt.want) })
	}
}

func TestMetaValidation(t *testing.T) {
	long := strings.Repeat("a", 254)
	tests := []struct {
		name string
		doc  string
		want ValidationErrors
	}{
		{"name empty", `{"type":"MeshTrace","mesh":"default","spec":{"default":{"backends":[]}}}`, ValidationErrors{v("name", "must not be empty")}},
		{"name charset", `{"type":"MeshTrace","mesh":"default","name":"My_Trace","spec":{"default":{"backends":[]}}}`, ValidationErrors{v("name", msgNameCharset)}},
		{"name too long", `{"type":"Zone","name":"` + long + `"}`, ValidationErrors{v("name", "must be at most 253 characters")}},
		{"mesh required", `{"type":"MeshTrace","name":"t","spec":{"default":{"backends":[]}}}`, ValidationErrors{v("mesh", "must not be empty")}},
		{"mesh charset", `{"type":"MeshTrace","mesh":"-x","name":"t","spec":{"default":{"backends":[]}}}`, ValidationErrors{v("mesh", msgNameCharset)}},
		{"mesh on global type", `{"type":"Mesh","mesh":"default","name":"m"}`, ValidationErrors{v("mesh", "must not be set for Mesh, which does not belong to a mesh")}},
		{"labels ok", `{"type":"Zone","name":"z","labels":{"kuma.io/origin":"global","team":"","a.b/c_d":"x.y-z"}}`, nil},
		{"label key", `{"type":"Zone","name":"z","labels":{"bad key":"x","/x":"y"}}`, ValidationErrors{v(`labels["/x"]`, msgLabelKeyFormat), v(`labels["bad key"]`, msgLabelKeyFormat)}},
		{"label value", `{"type":"Zone","name":"z","labels":{"a":"b c"}}`, ValidationErrors{v(`labels["a"]`, msgLabelValueFormat)}},
		{"meta before spec", `{"type":"MeshTrace","mesh":"default","name":"X","spec":{}}`, ValidationErrors{v("name", msgNameCharset), v("spec.default", "must be defined")}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) { checkViolations(t, tt.doc, tt.want) })
	}
	if err := Validate(&Resource{Meta: Meta{Type: "Nope", Name: "x"}}); !hasViolation(violations(t, err), "type", `unknown type "Nope"`) {
		t.Errorf("unknown type: %v", err)
	}
	if err := Validate(&Resource{Meta: Meta{Name: "x"}}); !hasViolation(violations(t, err), "type", "must be defined") {
		t.Errorf("empty type: %v", err)
	}
	r, _ := New(TypeMeshTrace, "default", "t")
	r.Spec = nil
	if err := Validate(r); !hasViolation(violations(t, err), "spec.default", "must be defined") {
		t.Errorf("nil spec: %v", err)
	}
}

func dataplane(networking string) string {
	return "type: Dataplane\nmesh: default\nname: dp-1\nnetworking:\n" + networking
}

func TestDataplaneValidation(t *testing.T) {
	tests := []struct {
		name, networking string
		want             ValidationErrors
	}{
		{"ok inbound", "  address: 10.0.0.1\n  inbound:\n  - port: 8080\n    tags: {kuma.io/service: web}\n  outbound:\n  - port: 10001\n    tags: {kuma.io/service: db}\n", nil},
		{"ok hostname gateway", "  address: web.svc\n  gateway:\n    type: BUILTIN\n    tags: {kuma.io/service: edge}\n", nil},
		{"address missing", "  inbound:\n  - port: 1\n    tags: {kuma.io/service: web}\n", ValidationErrors{v("networking.address", "must be defined")}},
		{"address invalid", "  address: 'not an address'\n  advertisedAddress: 'x y'\n  inbound:\n  - port: 1\n    tags: {kuma.io/service: web}\n", ValidationErrors{
			v("networking.address", "must be a valid IP address or hostname"),
			v("networking.advertisedAddress", "must be a valid IP address or hostname"),
		}},
		{"nothing", "  address: 10.0.0.1\n", ValidationErrors{v("networking", "must have at least one inbound or a gateway")}},
		{"inbound and gateway", "  address: 10.0.0.1\n  inbound:\n  - port: 1\n    tags: {kuma.io/service: web}\n  gateway:\n    tags: {kuma.io/service: gw}\n",
			ValidationErrors{v("networking.inbound", "must not be defined together with a gateway")}},
		{"inbound port and tags", "  address: 10.0.0.1\n  inbound:\n  - port: 0\n    servicePort: 70000\n    tags: {version: 'a b'}\n", ValidationErrors{
			v("networking.inbound[0].port", "must be in the range 1-65535"),
			v("networking.inbound[0].servicePort", "must be in the range 1-65535"),
			v(`networking.inbound[0].tags["kuma.io/service"]`, "tag has to exist"),
			v(`networking.inbound[0].tags["version"]`, msgTagValueCharset),
		}},
		{"inbound empty service", "  address: 10.0.0.1\n  inbound:\n  - port: 80\n    tags: {kuma.io/service: ''}\n",
			ValidationErrors{v(`networking.inbound[0].tags["kuma.io/service"]`, "tag value must be non-empty")}},
		{"gateway", "  address: 10.0.0.1\n  gateway:\n    type: SIDECAR\n    tags: {}\n", ValidationErrors{
			v("networking.gateway.type", "must be one of BUILTIN, DELEGATED"),
			v(`networking.gateway.tags["kuma.io/service"]`, "tag has to exist"),
		}},
		{"outbound", "  address: 10.0.0.1\n  inbound:\n  - port: 1\n    tags: {kuma.io/service: web}\n  outbound:\n  - port: 65536\n    address: '::1'\n", ValidationErrors{
			v("networking.outbound[0].port", "must be in the range 1-65535"),
			v(`networking.outbound[0].tags["kuma.io/service"]`, "tag has to exist"),
		}},
		{"admin", "  address: 10.0.0.1\n  inbound:\n  - port: 1\n    tags: {kuma.io/service: web}\n  admin: {port: 0}\n",
			ValidationErrors{v("networking.admin.port", "must be in the range 1-65535")}},
		{"inbound and outbound addresses are IPs", "  address: web.svc\n  inbound:\n  - port: 8080\n    address: web.svc\n    serviceAddress: app.local\n    tags: {kuma.io/service: web}\n  outbound:\n  - port: 10001\n    address: db.local\n    tags: {kuma.io/service: db}\n",
			ValidationErrors{v("networking.inbound[0].address", "address has to be valid IP address"), v("networking.inbound[0].serviceAddress", "serviceAddress has to be valid IP address"),
				v("networking.outbound[0].address", "address has to be valid IP address")}},
		{"address unspecified", "  address: 0.0.0.0\n  inbound:\n  - port: 1\n    tags: {kuma.io/service: web}\n",
			ValidationErrors{v("networking.address", "must not be 0.0.0.0 or ::")}},
		{"two inbounds on one port", "  address: 10.0.0.1\n  inbound:\n  - port: 8080\n    servicePort: 80\n    tags: {kuma.io/service: web}\n  - port: 8080\n    servicePort: 80\n    serviceAddress: 10.0.0.9\n    tags: {kuma.io/service: api}\n",
			ValidationErrors{v("networking.inbound[1].port", "10.0.0.1:8080 is already used by networking.inbound[0]")}},
		{"same servicePort on two addresses is fine", "  address: 10.0.0.1\n  inbound:\n  - port: 8080\n    servicePort: 80\n    tags: {kuma.io/service: web}\n  - port: 8081\n    servicePort: 80\n    serviceAddress: 10.0.0.9\n    tags: {kuma.io/service: api}\n", nil},
		{"two outbounds on one address", "  address: 10.0.0.1\n  inbound:\n  - port: 8080\n    tags: {kuma.io/service: web}\n  outbound:\n  - port: 10001\n    tags: {kuma.io/service: db}\n  - port: 10001\n    address: 127.0.0.1\n    tags: {kuma.io/service: cache}\n",
			ValidationErrors{v("networking.outbound[1].port", "127.0.0.1:10001 is already used by networking.outbound[0]")}},
		{"outbound on an inbound's address", "  address: 10.0.0.1\n  inbound:\n  - port: 8080\n    tags: {kuma.io/service: web}\n  outbound:\n  - port: 8080\n    address: 10.0.0.1\n    tags: {kuma.io/service: db}\n",
			ValidationErrors{v("networking.outbound[0].port", "10.0.0.1:8080 is already used by networking.inbound[0]")}},
		{"serviceAddress is the proxy's", "  address: 10.0.0.1\n  inbound:\n  - port: 8080\n    serviceAddress: 10.0.0.1\n    tags: {kuma.io/service: web}\n",
			ValidationErrors{v("networking.inbound[0].serviceAddress", "serviceAddress and servicePort has to differ from address and port")}},
		{"protocol tag", "  address: 10.0.0.1\n  inbound:\n  - port: 8080\n    tags: {kuma.io/service: web, kuma.io/protocol: thrift}\n",
			ValidationErrors{v(`networking.inbound[0].tags["kuma.io/protocol"]`, `tag "kuma.io/protocol" has an invalid value "thrift". Allowed values: grpc, http, http2, kafka, tcp`)}},
		{"gateway protocol tag", "  address: 10.0.0.1\n  gateway:\n    type: BUILTIN\n    tags: {kuma.io/service: edge, kuma.io/protocol: http}\n",
			ValidationErrors{v(`networking.gateway.tags["kuma.io/protocol"]`, `other values than tcp are not allowed, provided value "http"`)}},
		{"builtin gateway outbound", "  address: 10.0.0.1\n  gateway:\n    type: BUILTIN\n    tags: {kuma.io/service: edge}\n  outbound:\n  - port: 10001\n    tags: {kuma.io/service: db}\n",
			ValidationErrors{v("networking.outbound", "outbound cannot be defined for builtin gateways")}},
		{"admin on an inbound's application port", "  address: 10.0.0.1\n  inbound:\n  - port: 8080\n    servicePort: 9901\n    tags: {kuma.io/service: web}\n  outbound:\n  - port: 9901\n    address: 127.0.0.2\n    tags: {kuma.io/service: db}\n  admin: {port: 9901}\n",
			ValidationErrors{v("networking.admin.port", "must differ from inbound"), v("networking.admin.port", "must differ from outbound")}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) { checkViolations(t, dataplane(tt.networking), tt.want) })
	}
}

func TestDefaults(t *testing.T) {
	r := mustDecode(t, trace("default:\n  backends:\n  - zipkin: {url: 'http://z:9411/api/v2/spans'}\n"))
	Prepare(r)
	spec := r.Spec.(*MeshTraceSpec)
	if spec.TargetRef == nil || spec.TargetRef.Kind != KindMesh {
		t.Errorf("targetRef = %+v", spec.TargetRef)
	}
	b := (*spec.Default.Backends)[0]
	if b.Type != BackendZipkin || b.Zipkin.APIVersion != ZipkinAPIHTTPJSON || b.Zipkin.SharedSpanContext == nil || !*b.Zipkin.SharedSpanContext || b.Zipkin.TraceID128Bit {
		t.Errorf("zipkin defaults: %+v %+v", b, b.Zipkin)
	}
	y, err := MarshalYAML(r)
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{"kind: Mesh", "type: Zipkin", "apiVersion: httpJson", "sharedSpanContext: true", "traceId128bit: false"} {
		if !strings.Contains(string(y), want) {
			t.Errorf("stored form lacks %q:\n%s", want, y)
		}
	}

	// explicit values are kept
	r = mustDecode(t, trace("default:\n  backends:\n  - zipkin: {url: 'http://z', apiVersion: httpProto, sharedSpanContext: false, traceId128bit: true}\n"))
	Prepare(r)
	z := (*r.Spec.(*MeshTraceSpec).Default.Backends)[0].Zipkin
	if z.APIVersion != ZipkinAPIHTTPProto || *z.SharedSpanContext || !z.TraceID128Bit {
		t.Errorf("explicit zipkin values changed: %+v", z)
	}

	otel := map[string]string{
		"otel":           "otel:4317",
		"otel:4318":      "otel:4318",
		"10.0.0.1":       "10.0.0.1:4317",
		"::1":            "[::1]:4317",
		"[::1]":          "[::1]:4317",
		"[::1]:55":       "[::1]:55",
		"http://otel:80": "http://otel:80",
	}
	for in, want := range otel {
		r = mustDecode(t, trace("default:\n  backends:\n  - openTelemetry: {endpoint: '"+in+"'}\n"))
		Prepare(r)
		b := (*r.Spec.(*MeshTraceSpec).Default.Backends)[0]
		if b.Type != BackendOpenTelemetry || b.OpenTelemetry.Endpoint != want {
			t.Errorf("endpoint %q defaulted to %q (type %q), want %q", in, b.OpenTelemetry.Endpoint, b.Type, want)
		}
	}

	r = mustDecode(t, trace("default:\n  backends:\n  - datadog: {url: 'http://a:1'}\n"))
	Prepare(r)
	if b := (*r.Spec.(*MeshTraceSpec).Default.Backends)[0]; b.Type != BackendDatadog || b.Datadog.SplitService {
		t.Errorf("datadog defaults: %+v", b)
	}
	// ambiguous backends are left for Validate to report
	r = mustDecode(t, trace("default:\n  backends:\n  - datadog: {url: 'http://a:1'}\n    zipkin: {url: 'http://a'}\n"))
	Prepare(r)
	if b := (*r.Spec.(*MeshTraceSpec).Default.Backends)[0]; b.Type != "" {
		t.Errorf("type inferred from two blocks: %q", b.Type)
	}

	dp := mustDecode(t, dataplane("  address: 1.1.1.1\n  inbound:\n  - port: 80\n    tags: {kuma.io/service: a}\n  - port: 81\n    servicePort: 9000\n    tags: {kuma.io/service: b}\n"))
	Prepare(dp)
	in := dp.Spec.(*DataplaneSpec).Networking.Inbound
	if in[0].ServicePort != 80 || in[1].ServicePort != 9000 {
		t.Errorf("servicePort defaults: %+v", in)
	}
	gw := mustDecode(t, dataplane("  address: 1.1.1.1\n  gateway:\n    tags: {kuma.io/service: gw}\n"))
	Prepare(gw)
	if g := gw.Spec.(*DataplaneSpec).Networking.Gateway; g.Type != GatewayDelegated {
		t.Errorf("gateway type = %q", g.Type)
	}

	// Prepare is idempotent and safe on odd input.
	Prepare(nil)
	Prepare(&Resource{Meta: Meta{Type: "Nope"}})
	z1 := mustDecode(t, string(readSeed(t, "otel-full.universal.yaml")))
	Prepare(z1)
	h := Hash(z1)
	Prepare(z1)
	if Hash(z1) != h {
		t.Error("Prepare is not idempotent")
	}
}

func TestHostPort(t *testing.T) {
	zipkin := []struct {
		url  string
		host string
		port uint32
		path string
		tls  bool
	}{
		{"http://jaeger-collector:9411/api/v2/spans", "jaeger-collector", 9411, "/api/v2/spans", false},
		{"https://zipkin.example.com/custom", "zipkin.example.com", 443, "/custom", true},
		{"http://zipkin", "zipkin", 80, DefaultZipkinPath, false},
		{"http://[::1]:9411/a?b=c", "::1", 9411, "/a?b=c", false},
	}
	for _, tt := range zipkin {
		host, port, path, tls, err := (&ZipkinBackend{URL: tt.url}).HostPort()
		if err != nil || host != tt.host || port != tt.port || path != tt.path || tls != tt.tls {
			t.Errorf("%s: %q %d %q %v %v", tt.url, host, port, path, tls, err)
		}
	}
	if host, port, err := (&DatadogBackend{URL: "http://127.0.0.1:8126"}).HostPort(); err != nil || host != "127.0.0.1" || port != 8126 {
		t.Errorf("datadog: %q %d %v", host, port, err)
	}
	if _, _, err := (&DatadogBackend{URL: "http://a"}).HostPort(); err == nil || err.Error() != "port must be defined" {
		t.Errorf("datadog without port: %v", err)
	}
	for in, want := range map[string]uint32{"otel-collector.com:4317": 4317, "otel": 4317, "otel:4318": 4318} {
		host, port, err := (&OpenTelemetryBackend{Endpoint: in}).HostPort()
		if err != nil || port != want || strings.Contains(host, ":") {
			t.Errorf("otel %s: %q %d %v", in, host, port, err)
		}
	}
}
