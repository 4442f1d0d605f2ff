package resource

import (
	"errors"
	"fmt"
	"net"
	"net/url"
	"strconv"
	"strings"
	"unicode/utf8"
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
		if first, n := b.definedTypes(); n == 1 {
			b.Type = first
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

// definedTypes counts the backend blocks that are set and names the first
// (Zipkin, Datadog, OpenTelemetry order), without a slice to allocate.
func (b *Backend) definedTypes() (first string, n int) {
	for _, t := range [...]struct {
		set bool
		typ string
	}{{b.Zipkin != nil, BackendZipkin}, {b.Datadog != nil, BackendDatadog}, {b.OpenTelemetry != nil, BackendOpenTelemetry}} {
		if t.set {
			if n == 0 {
				first = t.typ
			}
			n++
		}
	}
	return first, n
}

// Validate applies Kong Mesh 2.7's MeshTrace rules. Paths are relative to spec.
func (s *MeshTraceSpec) Validate() ValidationErrors {
	var errs ValidationErrors
	if s.TargetRef != nil {
		p := rootPath("targetRef")
		validateTargetRef(&errs, &p, s.TargetRef)
	}
	if s.Default == nil {
		errs.Add("default", msgMustBeDefined)
		return errs
	}
	p := rootPath("default")
	s.Default.validate(&errs, &p)
	return errs
}

// validatesAsEffective reports whether Validate finds on s what it finds on
// effectiveSpec's copy of s (as a JSON round trip makes it, with the
// defaults filled in), so that Validate can check s itself: of the
// defaults, only a backend's type (which Backend.validate infers as
// setDefaults does) and an OpenTelemetry endpoint's port change what the
// rules see (targetRef kind Mesh breaks none), and the round trip changes
// only strings that are not valid UTF-8 and a pointer to a nil list of
// backends (written null, read back nil).
func (s *MeshTraceSpec) validatesAsEffective() bool {
	if s == nil {
		return false
	}
	if r := s.TargetRef; r != nil {
		if !utf8.ValidString(r.Kind) || !utf8.ValidString(r.Name) || !utf8.ValidString(r.Mesh) || !validUTF8Map(r.Tags) {
			return false
		}
		for _, pt := range r.ProxyTypes {
			if !utf8.ValidString(pt) {
				return false
			}
		}
	}
	c := s.Default
	if c == nil {
		return true
	}
	if c.Tags != nil {
		for _, t := range *c.Tags {
			if !utf8.ValidString(t.Name) || !validUTF8Ptr(t.Literal) ||
				t.Header != nil && (!utf8.ValidString(t.Header.Name) || !validUTF8Ptr(t.Header.Default)) {
				return false
			}
		}
	}
	if sm := c.Sampling; sm != nil {
		for _, v := range [...]*IntOrString{sm.Overall, sm.Client, sm.Random} {
			if v != nil && v.IsString && !utf8.ValidString(v.StrVal) {
				return false
			}
		}
	}
	if c.Backends != nil {
		if *c.Backends == nil {
			return false
		}
		for _, b := range *c.Backends {
			if b.OpenTelemetry != nil || !utf8.ValidString(b.Type) ||
				b.Zipkin != nil && (!utf8.ValidString(b.Zipkin.URL) || !utf8.ValidString(b.Zipkin.APIVersion)) ||
				b.Datadog != nil && !utf8.ValidString(b.Datadog.URL) {
				return false
			}
		}
	}
	return true
}

func validUTF8Ptr(p *string) bool { return p == nil || utf8.ValidString(*p) }

func validUTF8Map(m map[string]string) bool {
	for k, v := range m {
		if !utf8.ValidString(k) || !utf8.ValidString(v) {
			return false
		}
	}
	return true
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

func validateTargetRef(errs *ValidationErrors, path *fieldPath, ref *TargetRef) {
	rule, ok := targetRefKinds[ref.Kind]
	if !ok {
		if ref.Kind == "" {
			errs.addField(path, "kind", msgMustBeDefined)
		} else {
			errs.addField(path, "kind", notSupported(ref.Kind, supportedTargetRefKinds))
		}
		return
	}
	switch {
	case rule.name && ref.Name == "":
		errs.addField(path, "name", "must be set with kind "+ref.Kind)
	case !rule.name && ref.Name != "":
		errs.addField(path, "name", "must not be set with kind "+ref.Kind)
	}
	if !rule.proxyTypes && len(ref.ProxyTypes) > 0 {
		errs.addField(path, "proxyTypes", "must not be set with kind "+ref.Kind)
	} else {
		pp := path.field("proxyTypes")
		for i, pt := range ref.ProxyTypes {
			if pt != ProxyTypeSidecar && pt != ProxyTypeGateway {
				ip := pp.index(i)
				errs.addAt(&ip, "must be one of Sidecar, Gateway")
			}
		}
	}
	if !rule.tags {
		if len(ref.Tags) > 0 {
			errs.addField(path, "tags", "must not be set with kind "+ref.Kind)
		}
		return
	}
	tp := path.field("tags")
	validateTags(errs, &tp, ref.Tags)
}

func (c *MeshTraceConf) validate(errs *ValidationErrors, path *fieldPath) {
	if c.Tags != nil {
		tp := path.field("tags")
		for i, t := range *c.Tags {
			ip := tp.index(i)
			t.validate(errs, &ip)
		}
	}
	if s := c.Sampling; s != nil {
		sp := path.field("sampling")
		validatePercentage(errs, &sp, "overall", s.Overall)
		validatePercentage(errs, &sp, "client", s.Client)
		validatePercentage(errs, &sp, "random", s.Random)
	}
	bp := path.field("backends")
	if c.Backends == nil {
		errs.addAt(&bp, msgMustBeDefined)
	} else {
		switch len(*c.Backends) {
		case 0: // tracing off
		case 1:
			ip := bp.index(0)
			(*c.Backends)[0].validate(errs, &ip)
		default:
			errs.addAt(&bp, "must have zero or one backend defined")
		}
	}
}

func (t TraceTag) validate(errs *ValidationErrors, path *fieldPath) {
	if t.Name == "" {
		errs.addField(path, "name", msgMustNotBeEmpty)
	}
	switch {
	case t.Literal != nil && t.Header != nil:
		errs.addAt(path, "tag must have only one type defined: header, literal")
	case t.Literal == nil && t.Header == nil: // Kuma 2.7 says the same for both cases
		errs.addAt(path, "tag must have only one type defined: header, literal")
	case t.Header != nil && t.Header.Name == "":
		hp := path.field("header")
		errs.addField(&hp, "name", msgMustNotBeEmpty)
	}
}

// validatePercentage checks the field name of path.
func validatePercentage(errs *ValidationErrors, path *fieldPath, name string, v *IntOrString) {
	if v == nil {
		return
	}
	f, err := v.Float()
	if err != nil {
		errs.addField(path, name, "string is not a number")
		return
	}
	if !(f >= 0 && f <= 100) { // also rejects NaN
		errs.addField(path, name, "must be between 0 and 100")
	}
}

func (b *Backend) validate(errs *ValidationErrors, path *fieldPath) {
	defined, n := b.definedTypes()
	if n > 1 {
		errs.addAt(path, "backend must have only one type defined: datadog, openTelemetry, zipkin")
		return
	}
	typ := b.Type
	if typ == "" && n == 1 {
		typ = defined // as setDefaults infers it: Validate may see the spec without its defaults
	}
	switch typ {
	case "":
		if n == 0 {
			errs.addAt(path, "backend must have exactly one defined: datadog, openTelemetry, zipkin")
		} else {
			errs.addField(path, "type", msgMustBeDefined)
		}
		return
	case BackendZipkin, BackendDatadog, BackendOpenTelemetry:
	default:
		errs.addField(path, "type", notSupported(typ, []string{BackendZipkin, BackendDatadog, BackendOpenTelemetry}))
		return
	}
	if n == 1 && defined != typ {
		errs.addField(path, "type", fmt.Sprintf("is %s but only %s is defined", typ, blockName(defined)))
		return
	}
	switch typ {
	case BackendZipkin:
		if b.Zipkin == nil {
			errs.addField(path, "zipkin", msgMustBeDefined)
			return
		}
		p := path.field("zipkin")
		b.Zipkin.validate(errs, &p)
	case BackendDatadog:
		if b.Datadog == nil {
			errs.addField(path, "datadog", msgMustBeDefined)
			return
		}
		p := path.field("datadog")
		b.Datadog.validate(errs, &p)
	case BackendOpenTelemetry:
		if b.OpenTelemetry == nil {
			errs.addField(path, "openTelemetry", msgMustBeDefined)
			return
		}
		p := path.field("openTelemetry")
		b.OpenTelemetry.validate(errs, &p)
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

func (z *ZipkinBackend) validate(errs *ValidationErrors, path *fieldPath) {
	if z.URL == "" {
		errs.addField(path, "url", msgMustBeDefined)
	} else if _, _, _, _, err := z.HostPort(); err != nil {
		errs.addField(path, "url", err.Error())
	}
	switch z.APIVersion {
	case "", ZipkinAPIHTTPJSON, ZipkinAPIHTTPProto:
	default:
		errs.addField(path, "apiVersion", "must be one of httpJson, httpProto")
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
	if h, p, pth, t, ok := simpleZipkinURL(z.URL); ok {
		return zipkinHostPort(h, p, pth, "", t)
	}
	u, err := url.Parse(z.URL)
	if err != nil {
		return "", 0, "", false, errors.New("must be a valid url")
	}
	switch u.Scheme {
	case "http":
	case "https":
		tls = true
	default:
		return "", 0, "", false, errors.New("must be a valid url with scheme http or https")
	}
	if u.User != nil {
		return "", 0, "", false, errors.New("must be a valid url with a host")
	}
	return zipkinHostPort(u.Hostname(), u.Port(), u.EscapedPath(), u.RawQuery, tls)
}

// zipkinHostPort checks and completes the parts of a Zipkin url with the
// scheme http (tls false) or https.
func zipkinHostPort(hostname, urlPort, escapedPath, rawQuery string, tls bool) (host string, port uint32, path string, _ bool, err error) {
	port = 80
	if tls {
		port = 443
	}
	if hostname == "" || !isIPOrHostname(hostname) {
		return "", 0, "", false, errors.New("must be a valid url with a host")
	}
	if p, err := parsePort(urlPort); err != nil {
		return "", 0, "", false, err
	} else if p != 0 {
		port = p
	}
	path = escapedPath
	if path == "" || path == "/" {
		path = DefaultZipkinPath
	}
	if rawQuery != "" {
		path += "?" + rawQuery
	}
	return hostname, port, path, tls, nil
}

// simpleZipkinURL splits the urls Zipkin collectors nearly always have,
// "http(s)://name[:digits][/path]" with a lower case scheme, a host of
// letters, digits, dots, dashes and underscores and a path that needs no escaping, as
// url.Parse would (Hostname, Port, EscapedPath; no user, query or fragment)
// without its allocation. Anything else is left to url.Parse (ok false).
// FuzzZipkinHostPortMatchesURLParse checks the two agree.
func simpleZipkinURL(raw string) (hostname, port, path string, tls, ok bool) {
	rest, found := strings.CutPrefix(raw, "http://")
	if !found {
		if rest, found = strings.CutPrefix(raw, "https://"); !found {
			return "", "", "", false, false
		}
		tls = true
	}
	authority := rest
	if i := strings.IndexByte(rest, '/'); i >= 0 {
		authority, path = rest[:i], rest[i:]
	}
	hostname = authority
	if i := strings.IndexByte(authority, ':'); i >= 0 {
		hostname, port = authority[:i], authority[i+1:]
		if port == "" {
			return "", "", "", false, false
		}
		for j := range len(port) {
			if port[j] < '0' || port[j] > '9' {
				return "", "", "", false, false
			}
		}
	}
	if hostname == "" {
		return "", "", "", false, false
	}
	for j := range len(hostname) {
		if c := hostname[j]; !isAlnum(c) && c != '.' && c != '-' && c != '_' {
			return "", "", "", false, false
		}
	}
	for j := range len(path) {
		if c := path[j]; !isAlnum(c) && c != '/' && c != '.' && c != '-' && c != '_' && c != '~' {
			return "", "", "", false, false
		}
	}
	return hostname, port, path, tls, true
}

func (d *DatadogBackend) validate(errs *ValidationErrors, path *fieldPath) {
	if d.URL == "" {
		errs.addField(path, "url", msgMustBeDefined)
		return
	}
	if _, _, err := d.HostPort(); err != nil {
		errs.addField(path, "url", err.Error())
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

func (o *OpenTelemetryBackend) validate(errs *ValidationErrors, path *fieldPath) {
	if o.Endpoint == "" {
		errs.addField(path, "endpoint", msgMustBeDefined)
		return
	}
	if _, _, err := o.HostPort(); err != nil {
		errs.addField(path, "endpoint", err.Error())
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
