package resource

import "net"

// DataplaneSpec is Kuma's Universal Dataplane (its fields inline at the top level).
type DataplaneSpec struct {
	Networking DataplaneNetworking `json:"networking"`
}

// DataplaneNetworking describes a proxy's address, inbounds, outbounds and gateway.
type DataplaneNetworking struct {
	Address           string     `json:"address"`
	AdvertisedAddress string     `json:"advertisedAddress,omitempty"`
	Inbound           []Inbound  `json:"inbound,omitempty"`
	Outbound          []Outbound `json:"outbound,omitempty"`
	Gateway           *Gateway   `json:"gateway,omitempty"`
	Admin             *Admin     `json:"admin,omitempty"`
}

// Inbound is a port the proxy receives traffic on for its service.
type Inbound struct {
	Port           uint32            `json:"port"`
	ServicePort    uint32            `json:"servicePort,omitempty"`
	ServiceAddress string            `json:"serviceAddress,omitempty"`
	Address        string            `json:"address,omitempty"`
	Tags           map[string]string `json:"tags"`
}

// Outbound is a local port the proxy forwards to another service.
type Outbound struct {
	Port    uint32            `json:"port"`
	Address string            `json:"address,omitempty"`
	Tags    map[string]string `json:"tags,omitempty"`
}

// Gateway types.
const (
	GatewayBuiltin   = "BUILTIN"
	GatewayDelegated = "DELEGATED"
)

// Gateway marks the proxy as a gateway.
type Gateway struct {
	Type string            `json:"type,omitempty"`
	Tags map[string]string `json:"tags"`
}

// Admin is the Envoy admin port.
type Admin struct {
	Port uint32 `json:"port"`
}

// IsBuiltinGateway reports whether the proxy is a builtin gateway.
func (s *DataplaneSpec) IsBuiltinGateway() bool {
	return s.Networking.Gateway != nil && s.Networking.Gateway.Type == GatewayBuiltin
}

// IsGateway reports whether the proxy is any kind of gateway.
func (s *DataplaneSpec) IsGateway() bool { return s.Networking.Gateway != nil }

// TagSets returns the tag sets a policy can select this proxy by: one per
// inbound, or the gateway's tags.
func (s *DataplaneSpec) TagSets() []map[string]string {
	if s.Networking.Gateway != nil {
		return []map[string]string{s.Networking.Gateway.Tags}
	}
	out := make([]map[string]string, 0, len(s.Networking.Inbound))
	for _, in := range s.Networking.Inbound {
		out = append(out, in.Tags)
	}
	return out
}

// ServiceUnknown is the identifying service of a proxy without any
// kuma.io/service tag (Kuma's value).
const ServiceUnknown = "unknown"

// IdentifyingService is the alphabetically first kuma.io/service among the
// proxy's inbounds and gateway, as Kuma 2.7 names a proxy's spans.
func (s *DataplaneSpec) IdentifyingService() string {
	first := ""
	for _, tags := range s.TagSets() {
		if v := tags[TagService]; v != "" && (first == "" || v < first) {
			first = v
		}
	}
	if first == "" {
		return ServiceUnknown
	}
	return first
}

// IsIPv6 reports whether the proxy's address is an IPv6 address.
func (s *DataplaneSpec) IsIPv6() bool {
	ip := net.ParseIP(s.Networking.Address)
	return ip != nil && ip.To4() == nil
}

// SetZone forces the kuma.io/zone tag on every inbound and on the gateway.
func (s *DataplaneSpec) SetZone(zone string) {
	for i := range s.Networking.Inbound {
		if s.Networking.Inbound[i].Tags == nil {
			s.Networking.Inbound[i].Tags = map[string]string{}
		}
		s.Networking.Inbound[i].Tags[TagZone] = zone
	}
	if g := s.Networking.Gateway; g != nil {
		if g.Tags == nil {
			g.Tags = map[string]string{}
		}
		g.Tags[TagZone] = zone
	}
}

func init() {
	Register(&Descriptor{
		Type:    TypeDataplane,
		Plural:  "dataplanes",
		Scope:   ScopeMesh,
		Sync:    SyncZoneToGlobal,
		NewSpec: func() Spec { return &DataplaneSpec{} },
	})
}
