package resource

import (
	"errors"
	"fmt"
	"net"
	"net/url"
	"strconv"
	"strings"
)

// DefaultZipkinPath is the collector path used when a Zipkin url has none.
const DefaultZipkinPath = "/api/v2/spans"

// SetDefaults fills in what Kong Mesh 2.7 defaults, so the stored policy shows
// it: targetRef kind Mesh, a backend's type inferred from its only block,
// Zipkin apiVersion httpJson and sharedSpanContext true, and the OpenTelemetry
// port 4317.
func (s *MeshTraceSpec) SetDefaults() {
	if s.TargetRef == nil {
		s.TargetRef = &TargetRef{Kind: KindMesh}
	}
	if s.Default == nil || s.Default.Backends == nil {
		return
	}
	for i := range *s.Default.Backends {
		(*s.Default.Backends)[i].setDefaults()
	}
}

func (b *Backend) setDefaults() {
	if b.Type == "" {
		if types := b.definedTypes(); len(types) == 1 {
			b.Type = types[0]
		}
	}
	if z := b.Zipkin; z != nil {
		if z.APIVersion == "" {
			z.APIVersion = ZipkinAPIHTTPJSON
		}
		if z.SharedSpanContext == nil {
			t := true
			z.SharedSpanContext = &t
		}
	}
	if o := b.OpenTelemetry; o != nil && o.Endpoint != "" {
		if _, _, err := net.SplitHostPort(o.Endpoint); err != nil && !strings.Contains(o.Endpoint, "/") {
			host := strings.TrimSuffix(strings.TrimPrefix(o.Endpoint, "["), "]")
			if host != "" && !strings.ContainsAny(host, " []") {
				o.Endpoint = net.JoinHostPort(host, strconv.Itoa(DefaultOpenTelemetryPort))
			}
		}
	}
}

// definedTypes lists the backend types whose block is set.
func (b *Backend) definedTypes() []string {
	var out []string
	if b.Zipkin != nil {
		out = append(out, BackendZipkin)
	}
	if b.Datadog != nil {
		out = append(out, BackendDatadog)
	}
	if b.OpenTelemetry != nil {
		out = append(out, BackendOpenTelemetry)
	}
	return out
}

// Validate applies Kong Mesh 2.7's MeshTrace rules. Paths are relative to spec.
func (s *MeshTraceSpec) Validate() ValidationErrors {
	var errs ValidationErrors
	if s.TargetRef != nil {
		validateTargetRef(&errs, "targetRef", s.TargetRef)
	}
	if s.Default == nil {
		errs.Add("default", msgMustBeDefined)
		return errs
	}
	s.Default.validate(&errs, "default")
	return errs
}

// supportedTargetRefKinds lists the kinds a MeshTrace targetRef may name, in
// the order error messages show them.
var supportedTargetRefKinds = []string{KindMesh, KindMeshSubset, KindMeshService, KindMeshServiceSubset, KindMeshGateway}

var targetRefKinds = map[string]struct {
	name, tags, proxyTypes bool // required / allowed / allowed
}{
	KindMesh:              {name: false, tags: false, proxyTypes: true},
	KindMeshSubset:        {name: false, tags: true, proxyTypes: true},
	KindMeshService:       {name: true, tags: false},
	KindMeshServiceSubset: {name: true, tags: true},
	KindMeshGateway:       {name: true, tags: false},
}

func validateTargetRef(errs *ValidationErrors, path string, ref *TargetRef) {
	rule, ok := targetRefKinds[ref.Kind]
	if !ok {
		if ref.Kind == "" {
			errs.Add(joinField(path, "kind"), msgMustBeDefined)
		} else {
			errs.Add(joinField(path, "kind"), notSupported(ref.Kind, supportedTargetRefKinds))
		}
		return
	}
	switch {
	case rule.name && ref.Name == "":
		errs.Add(joinField(path, "name"), "must be set with kind "+ref.Kind)
	case !rule.name && ref.Name != "":
		errs.Add(joinField(path, "name"), "must not be set with kind "+ref.Kind)
	}
	if !rule.proxyTypes && len(ref.ProxyTypes) > 0 {
		errs.Add(joinField(path, "proxyTypes"), "must not be set with kind "+ref.Kind)
	} else {
		for i, pt := range ref.ProxyTypes {
			if pt != ProxyTypeSidecar && pt != ProxyTypeGateway {
				errs.Add(joinIndex(joinField(path, "proxyTypes"), i), "must be one of Sidecar, Gateway")
			}
		}
	}
	if !rule.tags {
		if len(ref.Tags) > 0 {
			errs.Add(joinField(path, "tags"), "must not be set with kind "+ref.Kind)
		}
		return
	}
	validateTags(errs, joinField(path, "tags"), ref.Tags)
}

func (c *MeshTraceConf) validate(errs *ValidationErrors, path string) {
	if c.Tags != nil {
		for i, t := range *c.Tags {
			t.validate(errs, joinIndex(joinField(path, "tags"), i))
		}
	}
	if s := c.Sampling; s != nil {
		sp := joinField(path, "sampling")
		validatePercentage(errs, joinField(sp, "overall"), s.Overall)
		validatePercentage(errs, joinField(sp, "client"), s.Client)
		validatePercentage(errs, joinField(sp, "random"), s.Random)
	}
	bp := joinField(path, "backends")
	if c.Backends == nil {
		errs.Add(bp, msgMustBeDefined)
	} else {
		switch len(*c.Backends) {
		case 0: // tracing off
		case 1:
			(*c.Backends)[0].validate(errs, joinIndex(bp, 0))
		default:
			errs.Add(bp, "must have zero or one backend defined")
		}
	}
}

func (t TraceTag) validate(errs *ValidationErrors, path string) {
	if t.Name == "" {
		errs.Add(joinField(path, "name"), msgMustNotBeEmpty)
	}
	switch {
	case t.Literal != nil && t.Header != nil:
		errs.Add(path, "tag must have only one type defined: header, literal")
	case t.Literal == nil && t.Header == nil: // Kuma 2.7 says the same for both cases
		errs.Add(path, "tag must have only one type defined: header, literal")
	case t.Header != nil && t.Header.Name == "":
		errs.Add(joinField(joinField(path, "header"), "name"), msgMustNotBeEmpty)
	}
}

func validatePercentage(errs *ValidationErrors, path string, v *IntOrString) {
	if v == nil {
		return
	}
	f, err := v.Float()
	if err != nil {
		errs.Add(path, "string is not a number")
		return
	}
	if !(f >= 0 && f <= 100) { // also rejects NaN
		errs.Add(path, "must be between 0 and 100")
	}
}

func (b *Backend) validate(errs *ValidationErrors, path string) {
	defined := b.definedTypes()
	if len(defined) > 1 {
		errs.Add(path, "backend must have only one type defined: datadog, openTelemetry, zipkin")
		return
	}
	switch b.Type {
	case "":
		if len(defined) == 0 {
			errs.Add(path, "backend must have exactly one defined: datadog, openTelemetry, zipkin")
		} else {
			errs.Add(joinField(path, "type"), msgMustBeDefined)
		}
		return
	case BackendZipkin, BackendDatadog, BackendOpenTelemetry:
	default:
		errs.Add(joinField(path, "type"), notSupported(b.Type, []string{BackendZipkin, BackendDatadog, BackendOpenTelemetry}))
		return
	}
	if len(defined) == 1 && defined[0] != b.Type {
		errs.Add(joinField(path, "type"), fmt.Sprintf("is %s but only %s is defined", b.Type, blockName(defined[0])))
		return
	}
	switch b.Type {
	case BackendZipkin:
		if b.Zipkin == nil {
			errs.Add(joinField(path, "zipkin"), msgMustBeDefined)
			return
		}
		b.Zipkin.validate(errs, joinField(path, "zipkin"))
	case BackendDatadog:
		if b.Datadog == nil {
			errs.Add(joinField(path, "datadog"), msgMustBeDefined)
			return
		}
		b.Datadog.validate(errs, joinField(path, "datadog"))
	case BackendOpenTelemetry:
		if b.OpenTelemetry == nil {
			errs.Add(joinField(path, "openTelemetry"), msgMustBeDefined)
			return
		}
		b.OpenTelemetry.validate(errs, joinField(path, "openTelemetry"))
	}
}

func blockName(backendType string) string {
	switch backendType {
	case BackendZipkin:
		return "zipkin"
	case BackendDatadog:
		return "datadog"
	default:
		return "openTelemetry"
	}
}

func (z *ZipkinBackend) validate(errs *ValidationErrors, path string) {
	if z.URL == "" {
		errs.Add(joinField(path, "url"), msgMustBeDefined)
	} else if _, _, _, _, err := z.HostPort(); err != nil {
		errs.Add(joinField(path, "url"), err.Error())
	}
	switch z.APIVersion {
	case "", ZipkinAPIHTTPJSON, ZipkinAPIHTTPProto:
	default:
		errs.Add(joinField(path, "apiVersion"), "must be one of httpJson, httpProto")
	}
}

// parsePort parses a url or endpoint port, "" meaning unset (0).
func parsePort(p string) (uint32, error) {
	if p == "" {
		return 0, nil
	}
	n, err := strconv.ParseUint(p, 10, 32)
	if err != nil || !validPort(uint32(n)) {
		return 0, errors.New("port must be a valid (1-65535)")
	}
	return uint32(n), nil
}

// HostPort splits the collector url for the Envoy generator. A url without a
// port gets 80 for http and 443 for https; one without a path gets
// DefaultZipkinPath. tls reports the https scheme. The error message is the
// validation message for the url field.
func (z *ZipkinBackend) HostPort() (host string, port uint32, path string, tls bool, err error) {
	u, err := url.Parse(z.URL)
	if err != nil {
		return "", 0, "", false, errors.New("must be a valid url")
	}
	switch u.Scheme {
	case "http":
		port = 80
	case "https":
		port, tls = 443, true
	default:
		return "", 0, "", false, errors.New("must be a valid url with scheme http or https")
	}
	if u.Hostname() == "" || u.User != nil || !isIPOrHostname(u.Hostname()) {
		return "", 0, "", false, errors.New("must be a valid url with a host")
	}
	if p, err := parsePort(u.Port()); err != nil {
		return "", 0, "", false, err
	} else if p != 0 {
		port = p
	}
	path = u.EscapedPath()
	if path == "" || path == "/" {
		path = DefaultZipkinPath
	}
	if u.RawQuery != "" {
		path += "?" + u.RawQuery
	}
	return u.Hostname(), port, path, tls, nil
}

func (d *DatadogBackend) validate(errs *ValidationErrors, path string) {
	if d.URL == "" {
		errs.Add(joinField(path, "url"), msgMustBeDefined)
		return
	}
	if _, _, err := d.HostPort(); err != nil {
		errs.Add(joinField(path, "url"), err.Error())
	}
}

// HostPort returns the agent's host and port. The error message is the
// validation message for the url field.
func (d *DatadogBackend) HostPort() (host string, port uint32, err error) {
	u, err := url.Parse(d.URL)
	if err != nil {
		return "", 0, errors.New("must be a valid url")
	}
	if u.Scheme != "http" {
		return "", 0, errors.New("scheme must be http")
	}
	if u.Hostname() == "" || u.User != nil || !isIPOrHostname(u.Hostname()) {
		return "", 0, errors.New("must be a valid url with a host")
	}
	if u.Port() == "" {
		return "", 0, errors.New("port must be defined")
	}
	port, err = parsePort(u.Port())
	if err != nil {
		return "", 0, err
	}
	if u.Path != "" || u.RawQuery != "" {
		return "", 0, errors.New("path must not be defined")
	}
	return u.Hostname(), port, nil
}

func (o *OpenTelemetryBackend) validate(errs *ValidationErrors, path string) {
	if o.Endpoint == "" {
		errs.Add(joinField(path, "endpoint"), msgMustBeDefined)
		return
	}
	if _, _, err := o.HostPort(); err != nil {
		errs.Add(joinField(path, "endpoint"), err.Error())
	}
}

// HostPort splits the collector endpoint ("host:port"; the port defaults to
// 4317 when missing). The error message is the validation message for the
// endpoint field.
func (o *OpenTelemetryBackend) HostPort() (host string, port uint32, err error) {
	h, p, splitErr := net.SplitHostPort(o.Endpoint)
	if splitErr != nil {
		h, p = strings.TrimSuffix(strings.TrimPrefix(o.Endpoint, "["), "]"), ""
	}
	if h == "" || !isIPOrHostname(h) {
		return "", 0, errors.New("must be a valid address in the form host:port")
	}
	port, err = parsePort(p)
	if err != nil {
		return "", 0, err
	}
	if port == 0 {
		port = DefaultOpenTelemetryPort
	}
	return h, port, nil
}
