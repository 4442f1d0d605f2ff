package resource

// MeshTraceSpec is the spec of a MeshTrace policy (Kong Mesh 2.7).
type MeshTraceSpec struct {
	// TargetRef selects the proxies the policy applies to. Omitted means kind Mesh.
	TargetRef *TargetRef     `json:"targetRef,omitempty"`
	Default   *MeshTraceConf `json:"default,omitempty"`
}

// TargetRef kinds.
const (
	KindMesh              = "Mesh"
	KindMeshSubset        = "MeshSubset"
	KindMeshService       = "MeshService"
	KindMeshServiceSubset = "MeshServiceSubset"
	KindMeshGateway       = "MeshGateway"
)

// TargetRef is Kuma's policy target reference.
type TargetRef struct {
	Kind string            `json:"kind"`
	Name string            `json:"name,omitempty"`
	Mesh string            `json:"mesh,omitempty"`
	Tags map[string]string `json:"tags,omitempty"`
	// ProxyTypes narrows kinds Mesh and MeshSubset to sidecars, gateways or
	// both (empty: both), as in Kuma 2.7.
	ProxyTypes []string `json:"proxyTypes,omitempty"`
}

// Proxy types of TargetRef.ProxyTypes.
const (
	ProxyTypeSidecar = "Sidecar"
	ProxyTypeGateway = "Gateway"
)

// MeshTraceConf is the tracing configuration. Pointers distinguish "unset"
// (inherit when merging) from an explicit value; Backends set to an empty list
// turns tracing off.
type MeshTraceConf struct {
	Tags     *[]TraceTag `json:"tags,omitempty"`
	Sampling *Sampling   `json:"sampling,omitempty"`
	Backends *[]Backend  `json:"backends,omitempty"`
}

// TraceTag adds a custom tag to spans, from a literal or a request header.
type TraceTag struct {
	Name    string     `json:"name"`
	Literal *string    `json:"literal,omitempty"`
	Header  *HeaderTag `json:"header,omitempty"`
}

// HeaderTag takes a tag's value from a request header, with an optional default.
type HeaderTag struct {
	Name    string  `json:"name"`
	Default *string `json:"default,omitempty"`
}

// Sampling percentages, each 0..100, written as an int or a decimal string.
type Sampling struct {
	Overall *IntOrString `json:"overall,omitempty"`
	Client  *IntOrString `json:"client,omitempty"`
	Random  *IntOrString `json:"random,omitempty"`
}

// Backend types.
const (
	BackendZipkin        = "Zipkin"
	BackendDatadog       = "Datadog"
	BackendOpenTelemetry = "OpenTelemetry"
)

// Backend is one tracing backend; exactly one of the typed fields matches Type.
type Backend struct {
	Type          string                `json:"type,omitempty"`
	Zipkin        *ZipkinBackend        `json:"zipkin,omitempty"`
	Datadog       *DatadogBackend       `json:"datadog,omitempty"`
	OpenTelemetry *OpenTelemetryBackend `json:"openTelemetry,omitempty"`
}

// Zipkin API versions.
const (
	ZipkinAPIHTTPJSON  = "httpJson"
	ZipkinAPIHTTPProto = "httpProto"
)

// ZipkinBackend sends spans to a Zipkin-compatible collector.
type ZipkinBackend struct {
	URL               string `json:"url"`
	TraceID128Bit     bool   `json:"traceId128bit"`
	APIVersion        string `json:"apiVersion,omitempty"`
	SharedSpanContext *bool  `json:"sharedSpanContext,omitempty"`
}

// DatadogBackend sends spans to a Datadog agent.
type DatadogBackend struct {
	URL          string `json:"url"`
	SplitService bool   `json:"splitService"`
}

// OpenTelemetryBackend sends spans to an OTLP gRPC collector.
type OpenTelemetryBackend struct {
	Endpoint string `json:"endpoint"`
}

// DefaultOpenTelemetryPort is used when an OpenTelemetry endpoint has no port.
const DefaultOpenTelemetryPort = 4317

func init() {
	Register(&Descriptor{
		Type:     TypeMeshTrace,
		Plural:   "meshtraces",
		Scope:    ScopeMesh,
		IsPolicy: true,
		Sync:     SyncBoth,
		NewSpec:  func() Spec { return &MeshTraceSpec{} },
	})
}
