package resource

import (
	"encoding/json"
	"strings"
)

// TypeMeshGateway is Kuma's builtin gateway resource.
const TypeMeshGateway Type = "MeshGateway"

// MeshGatewaySpec is what Kuma 2.7's MeshGateway says about a builtin gateway
// that tracing depends on: which gateway Dataplanes it configures (selectors)
// and the listeners it opens. Fields this project does not act on (tls,
// resources) are kept as given so that resources written with kumactl
// round-trip.
type MeshGatewaySpec struct {
	Selectors []Selector        `json:"selectors"`
	Tags      map[string]string `json:"tags,omitempty"`
	Conf      *MeshGatewayConf  `json:"conf,omitempty"`
}

// Selector selects Dataplanes whose tags include every tag of Match.
type Selector struct {
	Match map[string]string `json:"match"`
}

// MeshGatewayConf holds a gateway's listeners.
type MeshGatewayConf struct {
	Listeners []GatewayListener `json:"listeners"`
}

// Gateway listener protocols.
const (
	GatewayHTTP  = "HTTP"
	GatewayHTTPS = "HTTPS"
	GatewayTCP   = "TCP"
	GatewayTLS   = "TLS"
)

// GatewayListener is one port a builtin gateway listens on.
type GatewayListener struct {
	Port      uint32            `json:"port"`
	Protocol  string            `json:"protocol"`
	Hostname  string            `json:"hostname,omitempty"`
	Tags      map[string]string `json:"tags,omitempty"`
	TLS       json.RawMessage   `json:"tls,omitempty"`
	Resources json.RawMessage   `json:"resources,omitempty"`
	CrossMesh bool              `json:"crossMesh,omitempty"`
}

// NonEmptyHostname is the listener's hostname, "*" when unset.
func (l GatewayListener) NonEmptyHostname() string {
	if l.Hostname == "" {
		return "*"
	}
	return l.Hostname
}

// SetDefaults does nothing: Kuma fills no MeshGateway defaults.
func (s *MeshGatewaySpec) SetDefaults() {}

// Validate applies the part of Kuma 2.7's MeshGateway rules that concerns the
// fields modelled here.
func (s *MeshGatewaySpec) Validate() ValidationErrors {
	var errs ValidationErrors
	if len(s.Selectors) == 0 {
		errs.Add("selectors", "must have at least one element")
	}
	for i, sel := range s.Selectors {
		p := joinField(joinIndex("selectors", i), "match")
		switch {
		case len(sel.Match) == 0:
			errs.Add(p, "must have at least one tag")
		case sel.Match[TagService] == "":
			errs.Add(p, `mandatory tag "kuma.io/service" is missing`)
		}
		mp := rootPath(p)
		validateTags(&errs, &mp, sel.Match)
	}
	for _, k := range sortedKeys(s.Tags) {
		switch k {
		case TagService, TagProtocol, TagZone, "kuma.io/external-service":
			errs.Add(joinKey("tags", k), `tag name must not be "`+k+`"`)
		}
	}
	tp := rootPath("tags")
	validateTags(&errs, &tp, s.Tags)
	if s.Conf == nil {
		errs.Add("conf", "cannot be empty")
		return errs
	}
	lp := joinField("conf", "listeners")
	if len(s.Conf.Listeners) == 0 {
		errs.Add(lp, "cannot be empty")
	}
	protocols := map[uint32]map[string][]int{}
	hostnames := map[uint32]map[string][]int{}
	for i, l := range s.Conf.Listeners {
		p := joinIndex(lp, i)
		if l.Hostname != "" && !validGatewayHostname(l.Hostname) {
			errs.Add(joinField(p, "hostname"), "invalid hostname")
		}
		if !validPort(l.Port) {
			errs.Add(joinField(p, "port"), "port must be in the range [1, 65535]")
		}
		switch l.Protocol {
		case GatewayHTTP, GatewayHTTPS, GatewayTCP, GatewayTLS:
		case "":
			errs.Add(joinField(p, "protocol"), "cannot be empty")
		default:
			errs.Add(joinField(p, "protocol"), "must be one of HTTP, HTTPS, TCP, TLS")
		}
		if l.Protocol == GatewayHTTPS && len(l.TLS) == 0 {
			errs.Add(joinField(p, "tls"), "cannot be empty")
		}
		tp := rootPath(joinField(p, "tags"))
		validateTags(&errs, &tp, l.Tags)
		if protocols[l.Port] == nil {
			protocols[l.Port], hostnames[l.Port] = map[string][]int{}, map[string][]int{}
		}
		protocols[l.Port][l.Protocol] = append(protocols[l.Port][l.Protocol], i)
		hostnames[l.Port][l.NonEmptyHostname()] = append(hostnames[l.Port][l.NonEmptyHostname()], i)
	}
	for i, l := range s.Conf.Listeners {
		p := joinIndex(lp, i)
		if len(protocols[l.Port]) > 1 {
			errs.Add(p, "protocol conflicts with other listeners on this port")
		}
		if len(hostnames[l.Port][l.NonEmptyHostname()]) > 1 {
			errs.Add(p, "multiple listeners for hostname on this port")
		}
	}
	return errs
}

// validGatewayHostname accepts a DNS name, optionally with a leading "*.".
func validGatewayHostname(h string) bool {
	if h == "*" {
		return true
	}
	h = strings.TrimPrefix(h, "*.")
	return len(h) <= maxNameLength && isHostname(h) && !strings.HasSuffix(h, ".")
}

// Selects reports whether one of the gateway's selectors matches tags and
// returns how many tags the best matching selector has (more is more specific).
func (s *MeshGatewaySpec) Selects(tags map[string]string) (bool, int) {
	best, ok := 0, false
	for _, sel := range s.Selectors {
		match := len(sel.Match) > 0
		for k, v := range sel.Match {
			if tags[k] != v {
				match = false
				break
			}
		}
		if match && (!ok || len(sel.Match) > best) {
			ok, best = true, len(sel.Match)
		}
	}
	return ok, best
}

func init() {
	Register(&Descriptor{
		Type:    TypeMeshGateway,
		Plural:  "meshgateways",
		Scope:   ScopeMesh,
		Sync:    SyncGlobalToZone,
		NewSpec: func() Spec { return &MeshGatewaySpec{} },
	})
}
