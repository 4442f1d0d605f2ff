package resource

import (
	"errors"
	"fmt"
	"net"
	"net/url"
	"strconv"
	"strings"
)

// The validators as they were before paths were built lazily (fieldPath):
// TestValidatorMatchesReference checks the production validators against
// them on many random specs, paths and messages included.

func refJoinField(path, name string) string {
	if path == "" {
		return name
	}
	return path + "." + name
}

func refJoinIndex(path string, i int) string { return fmt.Sprintf("%s[%d]", path, i) }

func refJoinKey(path, key string) string { return path + "[" + strconv.Quote(key) + "]" }

func refValidateMeshTrace(s *MeshTraceSpec) ValidationErrors {
	var errs ValidationErrors
	if s.TargetRef != nil {
		refValidateTargetRef(&errs, "targetRef", s.TargetRef)
	}
	if s.Default == nil {
		errs.Add("default", msgMustBeDefined)
		return errs
	}
	refValidateConf(s.Default, &errs, "default")
	return errs
}

func refValidateTargetRef(errs *ValidationErrors, path string, ref *TargetRef) {
	rule, ok := targetRefKinds[ref.Kind]
	if !ok {
		if ref.Kind == "" {
			errs.Add(refJoinField(path, "kind"), msgMustBeDefined)
		} else {
			errs.Add(refJoinField(path, "kind"), notSupported(ref.Kind, supportedTargetRefKinds))
		}
		return
	}
	switch {
	case rule.name && ref.Name == "":
		errs.Add(refJoinField(path, "name"), "must be set with kind "+ref.Kind)
	case !rule.name && ref.Name != "":
		errs.Add(refJoinField(path, "name"), "must not be set with kind "+ref.Kind)
	}
	if !rule.proxyTypes && len(ref.ProxyTypes) > 0 {
		errs.Add(refJoinField(path, "proxyTypes"), "must not be set with kind "+ref.Kind)
	} else {
		for i, pt := range ref.ProxyTypes {
			if pt != ProxyTypeSidecar && pt != ProxyTypeGateway {
				errs.Add(refJoinIndex(refJoinField(path, "proxyTypes"), i), "must be one of Sidecar, Gateway")
			}
		}
	}
	if !rule.tags {
		if len(ref.Tags) > 0 {
			errs.Add(refJoinField(path, "tags"), "must not be set with kind "+ref.Kind)
		}
		return
	}
	refValidateTags(errs, refJoinField(path, "tags"), ref.Tags)
}

func refValidateConf(c *MeshTraceConf, errs *ValidationErrors, path string) {
	if c.Tags != nil {
		for i, t := range *c.Tags {
			refValidateTraceTag(t, errs, refJoinIndex(refJoinField(path, "tags"), i))
		}
	}
	if s := c.Sampling; s != nil {
		sp := refJoinField(path, "sampling")
		refValidatePercentage(errs, refJoinField(sp, "overall"), s.Overall)
		refValidatePercentage(errs, refJoinField(sp, "client"), s.Client)
		refValidatePercentage(errs, refJoinField(sp, "random"), s.Random)
	}
	bp := refJoinField(path, "backends")
	if c.Backends == nil {
		errs.Add(bp, msgMustBeDefined)
	} else {
		switch len(*c.Backends) {
		case 0: // tracing off
		case 1:
			refValidateBackend(&(*c.Backends)[0], errs, refJoinIndex(bp, 0))
		default:
			errs.Add(bp, "must have zero or one backend defined")
		}
	}
}

func refValidateTraceTag(t TraceTag, errs *ValidationErrors, path string) {
	if t.Name == "" {
		errs.Add(refJoinField(path, "name"), msgMustNotBeEmpty)
	}
	switch {
	case t.Literal != nil && t.Header != nil:
		errs.Add(path, "tag must have only one type defined: header, literal")
	case t.Literal == nil && t.Header == nil: // Kuma 2.7 says the same for both cases
		errs.Add(path, "tag must have only one type defined: header, literal")
	case t.Header != nil && t.Header.Name == "":
		errs.Add(refJoinField(refJoinField(path, "header"), "name"), msgMustNotBeEmpty)
	}
}

func refValidatePercentage(errs *ValidationErrors, path string, v *IntOrString) {
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

func refValidateBackend(b *Backend, errs *ValidationErrors, path string) {
	defined := refDefinedTypes(b)
	if len(defined) > 1 {
		errs.Add(path, "backend must have only one type defined: datadog, openTelemetry, zipkin")
		return
	}
	switch b.Type {
	case "":
		if len(defined) == 0 {
			errs.Add(path, "backend must have exactly one defined: datadog, openTelemetry, zipkin")
		} else {
			errs.Add(refJoinField(path, "type"), msgMustBeDefined)
		}
		return
	case BackendZipkin, BackendDatadog, BackendOpenTelemetry:
	default:
		errs.Add(refJoinField(path, "type"), notSupported(b.Type, []string{BackendZipkin, BackendDatadog, BackendOpenTelemetry}))
		return
	}
	if len(defined) == 1 && defined[0] != b.Type {
		errs.Add(refJoinField(path, "type"), fmt.Sprintf("is %s but only %s is defined", b.Type, blockName(defined[0])))
		return
	}
	switch b.Type {
	case BackendZipkin:
		if b.Zipkin == nil {
			errs.Add(refJoinField(path, "zipkin"), msgMustBeDefined)
			return
		}
		refValidateZipkin(b.Zipkin, errs, refJoinField(path, "zipkin"))
	case BackendDatadog:
		if b.Datadog == nil {
			errs.Add(refJoinField(path, "datadog"), msgMustBeDefined)
			return
		}
		refValidateDatadog(b.Datadog, errs, refJoinField(path, "datadog"))
	case BackendOpenTelemetry:
		if b.OpenTelemetry == nil {
			errs.Add(refJoinField(path, "openTelemetry"), msgMustBeDefined)
			return
		}
		refValidateOpenTelemetry(b.OpenTelemetry, errs, refJoinField(path, "openTelemetry"))
	}
}

func refValidateZipkin(z *ZipkinBackend, errs *ValidationErrors, path string) {
	if z.URL == "" {
		errs.Add(refJoinField(path, "url"), msgMustBeDefined)
	} else if _, _, _, _, err := refZipkinHostPort(z); err != nil {
		errs.Add(refJoinField(path, "url"), err.Error())
	}
	switch z.APIVersion {
	case "", ZipkinAPIHTTPJSON, ZipkinAPIHTTPProto:
	default:
		errs.Add(refJoinField(path, "apiVersion"), "must be one of httpJson, httpProto")
	}
}

func refValidateDatadog(d *DatadogBackend, errs *ValidationErrors, path string) {
	if d.URL == "" {
		errs.Add(refJoinField(path, "url"), msgMustBeDefined)
		return
	}
	if _, _, err := d.HostPort(); err != nil {
		errs.Add(refJoinField(path, "url"), err.Error())
	}
}

func refValidateOpenTelemetry(o *OpenTelemetryBackend, errs *ValidationErrors, path string) {
	if o.Endpoint == "" {
		errs.Add(refJoinField(path, "endpoint"), msgMustBeDefined)
		return
	}
	if _, _, err := o.HostPort(); err != nil {
		errs.Add(refJoinField(path, "endpoint"), err.Error())
	}
}

// HostPort splits the collector url for the Envoy generator. A url without a
// port gets 80 for http and 443 for https; one without a path gets
// DefaultZipkinPath. tls reports the https scheme. The error message is the
// validation message for the url field.
func refZipkinHostPort(z *ZipkinBackend) (host string, port uint32, path string, tls bool, err error) {
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

// validateTags checks tag keys and values against Kuma's tag charset.
func refValidateTags(errs *ValidationErrors, field string, tags map[string]string) {
	for _, k := range sortedKeys(tags) {
		f := refJoinKey(field, k)
		v := tags[k]
		switch {
		case k == "":
			errs.Add(f, msgTagKeyEmpty)
		case !isTagKey(k):
			errs.Add(f, msgTagKeyCharset)
		}
		switch {
		case v == "":
			errs.Add(f, msgTagValueEmpty)
		case !isTagValue(v):
			errs.Add(f, msgTagValueCharset)
		}
	}
}

func refValidateLabel(errs *ValidationErrors, field, key, value string) {
	name := key
	if prefix, rest, ok := strings.Cut(key, "/"); ok {
		if prefix == "" || len(prefix) > maxNameLength || !isDNS1123(prefix) {
			errs.Add(field, msgLabelKeyFormat)
			return
		}
		name = rest
	}
	if len(name) == 0 || len(name) > 63 || !isLabelName(name) {
		errs.Add(field, msgLabelKeyFormat)
		return
	}
	if value == "" {
		return
	}
	if len(value) > 63 || !isLabelName(value) {
		errs.Add(field, msgLabelValueFormat)
	}
}

// refDefinedTypes lists the backend types whose block is set.
func refDefinedTypes(b *Backend) []string {
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

// Dataplane validation before fieldPath.
func refValidateInterfaces(errs *ValidationErrors, n *DataplaneNetworking) {
	used := map[string]string{} // address:port -> the field that took it
	take := func(field, addr string, port uint32) {
		if !validPort(port) {
			return
		}
		hp := net.JoinHostPort(addr, strconv.FormatUint(uint64(port), 10))
		if first, ok := used[hp]; ok {
			errs.Add(refJoinField(field, "port"), fmt.Sprintf("%s is already used by %s", hp, first))
			return
		}
		used[hp] = field
	}
	for i, in := range n.Inbound {
		take(refJoinIndex(refJoinField("networking", "inbound"), i), cmpOr(in.Address, n.Address), in.Port)
	}
	for i, out := range n.Outbound {
		take(refJoinIndex(refJoinField("networking", "outbound"), i), cmpOr(out.Address, localhostIP), out.Port)
	}
}

func refValidateDataplane(s *DataplaneSpec) ValidationErrors {
	var errs ValidationErrors
	n := &s.Networking
	const path = "networking"
	switch {
	case n.Address == "":
		errs.Add(refJoinField(path, "address"), msgMustBeDefined)
	case !isIPOrHostname(n.Address):
		errs.Add(refJoinField(path, "address"), "must be a valid IP address or hostname")
	case n.Address == "0.0.0.0" || n.Address == "::":
		errs.Add(refJoinField(path, "address"), "must not be 0.0.0.0 or ::")
	}
	if n.AdvertisedAddress != "" && !isIPOrHostname(n.AdvertisedAddress) {
		errs.Add(refJoinField(path, "advertisedAddress"), "must be a valid IP address or hostname")
	}
	switch {
	case len(n.Inbound) == 0 && n.Gateway == nil:
		errs.Add(path, "must have at least one inbound or a gateway")
	case len(n.Inbound) > 0 && n.Gateway != nil:
		errs.Add(refJoinField(path, "inbound"), "must not be defined together with a gateway")
	}
	for i, in := range n.Inbound {
		p := refJoinIndex(refJoinField(path, "inbound"), i)
		if !validPort(in.Port) {
			errs.Add(refJoinField(p, "port"), msgPortRange)
		}
		if in.ServicePort != 0 && !validPort(in.ServicePort) {
			errs.Add(refJoinField(p, "servicePort"), msgPortRange)
		}
		// Envoy listens and connects on IPs: Kuma 2.7 takes IPs only here.
		if in.Address != "" && net.ParseIP(in.Address) == nil {
			errs.Add(refJoinField(p, "address"), "address has to be valid IP address")
		}
		if in.ServiceAddress != "" && net.ParseIP(in.ServiceAddress) == nil {
			errs.Add(refJoinField(p, "serviceAddress"), "serviceAddress has to be valid IP address")
		}
		if in.ServiceAddress != "" && (in.ServiceAddress == n.Address || in.ServiceAddress == in.Address) &&
			(in.ServicePort == 0 || in.ServicePort == in.Port) {
			errs.Add(refJoinField(p, "serviceAddress"), "serviceAddress and servicePort has to differ from address and port")
		}
		refValidateServiceTags(&errs, refJoinField(p, "tags"), in.Tags)
		if v, ok := in.Tags[TagProtocol]; ok && ParseProtocol(v) == ProtocolUnknown {
			errs.Add(refJoinKey(refJoinField(p, "tags"), TagProtocol), fmt.Sprintf("tag %q has an invalid value %q. Allowed values: %s",
				TagProtocol, v, strings.Join(SupportedProtocols, ", ")))
		}
	}
	refValidateInterfaces(&errs, n)
	if g := n.Gateway; g != nil {
		p := refJoinField(path, "gateway")
		switch g.Type {
		case "", GatewayBuiltin, GatewayDelegated:
		default:
			errs.Add(refJoinField(p, "type"), "must be one of BUILTIN, DELEGATED")
		}
		refValidateServiceTags(&errs, refJoinField(p, "tags"), g.Tags)
		if v, ok := g.Tags[TagProtocol]; ok && v != ProtocolTCP {
			errs.Add(refJoinKey(refJoinField(p, "tags"), TagProtocol), fmt.Sprintf("other values than tcp are not allowed, provided value %q", v))
		}
		if g.Type == GatewayBuiltin && len(n.Outbound) > 0 {
			errs.Add(refJoinField(path, "outbound"), "outbound cannot be defined for builtin gateways")
		}
	}
	for i, out := range n.Outbound {
		p := refJoinIndex(refJoinField(path, "outbound"), i)
		if !validPort(out.Port) {
			errs.Add(refJoinField(p, "port"), msgPortRange)
		}
		if out.Address != "" && net.ParseIP(out.Address) == nil {
			errs.Add(refJoinField(p, "address"), "address has to be valid IP address")
		}
		refValidateServiceTags(&errs, refJoinField(p, "tags"), out.Tags)
	}
	if a := n.Admin; a != nil && !validPort(a.Port) {
		errs.Add(refJoinField(refJoinField(path, "admin"), "port"), msgPortRange)
	} else if a != nil {
		ap := refJoinField(refJoinField(path, "admin"), "port")
		for _, in := range n.Inbound {
			if (in.Port == a.Port && isLoopback(cmpOr(in.Address, n.Address))) ||
				(cmpOr(in.ServicePort, in.Port) == a.Port && isLoopback(cmpOr(in.ServiceAddress, localhostIP))) {
				errs.Add(ap, "must differ from inbound")
				break
			}
		}
		for _, out := range n.Outbound {
			if out.Port == a.Port && isLoopback(cmpOr(out.Address, localhostIP)) {
				errs.Add(ap, "must differ from outbound")
				break
			}
		}
	}
	return errs
}

func refValidateServiceTags(errs *ValidationErrors, path string, tags map[string]string) {
	if _, ok := tags[TagService]; !ok {
		errs.Add(refJoinKey(path, TagService), "tag has to exist")
	}

	refValidateTags(errs, path, tags)
}
