package resource

import (
	"cmp"
	"fmt"
	"net"
	"strconv"
	"strings"
)

// Protocols a kuma.io/protocol tag may name (Kuma 2.7's list).
const (
	ProtocolTCP     = "tcp"
	ProtocolHTTP    = "http"
	ProtocolHTTP2   = "http2"
	ProtocolGRPC    = "grpc"
	ProtocolKafka   = "kafka"
	ProtocolUnknown = "<unknown>"
)

// SupportedProtocols is the sorted list of valid kuma.io/protocol values.
var SupportedProtocols = []string{ProtocolGRPC, ProtocolHTTP, ProtocolHTTP2, ProtocolKafka, ProtocolTCP}

// ParseProtocol returns the protocol a kuma.io/protocol value names (case
// insensitive), or ProtocolUnknown.
func ParseProtocol(tag string) string {
	switch p := strings.ToLower(tag); p {
	case ProtocolTCP, ProtocolHTTP, ProtocolHTTP2, ProtocolGRPC, ProtocolKafka:
		return p
	}
	return ProtocolUnknown
}

// localhostIP is where an inbound's application and an outbound's listener
// are when no address is given.
const localhostIP = "127.0.0.1"

func cmpOr[T comparable](v, def T) T { return cmp.Or(v, def) }

func isLoopback(addr string) bool {
	ip := net.ParseIP(addr)
	return ip != nil && (ip.IsLoopback() || ip.IsUnspecified())
}

// validateInterfaces refuses two listeners on one address and port: two
// inbounds, two outbounds, or an inbound and an outbound. Envoy would get two
// listeners of one name and one of them would be dropped. (Beyond Kuma 2.7,
// which accepts such Dataplanes.)
func validateInterfaces(errs *ValidationErrors, n *DataplaneNetworking) {
	type listener struct {
		addr string
		port uint32
	}
	// The address and port stand for net.JoinHostPort of them, which is
	// one-to-one; the field that took them is written out on a conflict.
	type owner struct {
		outbound bool
		i        int
	}
	used := map[listener]owner{}
	inbounds, outbounds := rootPath("networking.inbound"), rootPath("networking.outbound")
	name := func(o owner) fieldPath {
		if o.outbound {
			return outbounds.index(o.i)
		}
		return inbounds.index(o.i)
	}
	take := func(o owner, addr string, port uint32) {
		if !validPort(port) {
			return
		}
		if first, ok := used[listener{addr, port}]; ok {
			hp := net.JoinHostPort(addr, strconv.FormatUint(uint64(port), 10))
			f, firstPath := name(o), name(first)
			errs.addField(&f, "port", fmt.Sprintf("%s is already used by %s", hp, firstPath.String()))
			return
		}
		used[listener{addr, port}] = o
	}
	for i, in := range n.Inbound {
		take(owner{false, i}, cmpOr(in.Address, n.Address), in.Port)
	}
	for i, out := range n.Outbound {
		take(owner{true, i}, cmpOr(out.Address, localhostIP), out.Port)
	}
}

// SetDefaults makes a gateway DELEGATED unless told otherwise and gives every
// inbound a servicePort equal to its port when none is set.
func (s *DataplaneSpec) SetDefaults() {
	n := &s.Networking
	if n.Gateway != nil && n.Gateway.Type == "" {
		n.Gateway.Type = GatewayDelegated
	}
	for i := range n.Inbound {
		if n.Inbound[i].ServicePort == 0 {
			n.Inbound[i].ServicePort = n.Inbound[i].Port
		}
	}
}

// Validate checks the proxy's addresses, ports and service tags.
func (s *DataplaneSpec) Validate() ValidationErrors {
	var errs ValidationErrors
	n := &s.Networking
	path := rootPath("networking")
	switch {
	case n.Address == "":
		errs.addField(&path, "address", msgMustBeDefined)
	case !isIPOrHostname(n.Address):
		errs.addField(&path, "address", "must be a valid IP address or hostname")
	case n.Address == "0.0.0.0" || n.Address == "::":
		errs.addField(&path, "address", "must not be 0.0.0.0 or ::")
	}
	if n.AdvertisedAddress != "" && !isIPOrHostname(n.AdvertisedAddress) {
		errs.addField(&path, "advertisedAddress", "must be a valid IP address or hostname")
	}
	switch {
	case len(n.Inbound) == 0 && n.Gateway == nil:
		errs.addAt(&path, "must have at least one inbound or a gateway")
	case len(n.Inbound) > 0 && n.Gateway != nil:
		errs.addField(&path, "inbound", "must not be defined together with a gateway")
	}
	inbounds := path.field("inbound")
	for i, in := range n.Inbound {
		p := inbounds.index(i)
		if !validPort(in.Port) {
			errs.addField(&p, "port", msgPortRange)
		}
		if in.ServicePort != 0 && !validPort(in.ServicePort) {
			errs.addField(&p, "servicePort", msgPortRange)
		}
		// Envoy listens and connects on IPs: Kuma 2.7 takes IPs only here.
		if in.Address != "" && net.ParseIP(in.Address) == nil {
			errs.addField(&p, "address", "address has to be valid IP address")
		}
		if in.ServiceAddress != "" && net.ParseIP(in.ServiceAddress) == nil {
			errs.addField(&p, "serviceAddress", "serviceAddress has to be valid IP address")
		}
		if in.ServiceAddress != "" && (in.ServiceAddress == n.Address || in.ServiceAddress == in.Address) &&
			(in.ServicePort == 0 || in.ServicePort == in.Port) {
			errs.addField(&p, "serviceAddress", "serviceAddress and servicePort has to differ from address and port")
		}
		tp := p.field("tags")
		validateServiceTags(&errs, &tp, in.Tags)
		if v, ok := in.Tags[TagProtocol]; ok && ParseProtocol(v) == ProtocolUnknown {
			kp := tp.key(TagProtocol)
			errs.addAt(&kp, fmt.Sprintf("tag %q has an invalid value %q. Allowed values: %s",
				TagProtocol, v, strings.Join(SupportedProtocols, ", ")))
		}
	}
	validateInterfaces(&errs, n)
	if g := n.Gateway; g != nil {
		p := path.field("gateway")
		switch g.Type {
		case "", GatewayBuiltin, GatewayDelegated:
		default:
			errs.addField(&p, "type", "must be one of BUILTIN, DELEGATED")
		}
		tp := p.field("tags")
		validateServiceTags(&errs, &tp, g.Tags)
		if v, ok := g.Tags[TagProtocol]; ok && v != ProtocolTCP {
			kp := tp.key(TagProtocol)
			errs.addAt(&kp, fmt.Sprintf("other values than tcp are not allowed, provided value %q", v))
		}
		if g.Type == GatewayBuiltin && len(n.Outbound) > 0 {
			errs.addField(&path, "outbound", "outbound cannot be defined for builtin gateways")
		}
	}
	outbounds := path.field("outbound")
	for i, out := range n.Outbound {
		p := outbounds.index(i)
		if !validPort(out.Port) {
			errs.addField(&p, "port", msgPortRange)
		}
		if out.Address != "" && net.ParseIP(out.Address) == nil {
			errs.addField(&p, "address", "address has to be valid IP address")
		}
		tp := p.field("tags")
		validateServiceTags(&errs, &tp, out.Tags)
	}
	admin := path.field("admin")
	if a := n.Admin; a != nil && !validPort(a.Port) {
		errs.addField(&admin, "port", msgPortRange)
	} else if a != nil {
		for _, in := range n.Inbound {
			if (in.Port == a.Port && isLoopback(cmpOr(in.Address, n.Address))) ||
				(cmpOr(in.ServicePort, in.Port) == a.Port && isLoopback(cmpOr(in.ServiceAddress, localhostIP))) {
				errs.addField(&admin, "port", "must differ from inbound")
				break
			}
		}
		for _, out := range n.Outbound {
			if out.Port == a.Port && isLoopback(cmpOr(out.Address, localhostIP)) {
				errs.addField(&admin, "port", "must differ from outbound")
				break
			}
		}
	}
	return errs
}

// validateServiceTags requires a non-empty kuma.io/service tag and checks the
// charset of every tag.
func validateServiceTags(errs *ValidationErrors, path *fieldPath, tags map[string]string) {
	if _, ok := tags[TagService]; !ok {
		kp := path.key(TagService)
		errs.addAt(&kp, "tag has to exist")
	}
	validateTags(errs, path, tags)
}
