// Package inspect holds the wire shapes of the inspect endpoints, shared by the
// control planes that serve them and the CLI that reads them.
package inspect

import (
	"fmt"

	"github.com/meshtrace/meshtrace/policy/meshtrace"
	"github.com/meshtrace/meshtrace/resource"
)

// PolicyRef names a policy that contributed to a proxy's configuration.
type PolicyRef struct {
	Type resource.Type `json:"type"`
	Mesh string        `json:"mesh"`
	Name string        `json:"name"`
}

// DataplaneRules is GET /meshes/{mesh}/dataplanes/{name}/_rules.
type DataplaneRules struct {
	Mesh string `json:"mesh"`
	Name string `json:"name"`
	Zone string `json:"zone,omitempty"`
	// Conf is the merged MeshTrace configuration; nil when no policy applies.
	Conf *resource.MeshTraceConf `json:"conf"`
	// Policies contributed to Conf, in merge order (the last one wins a conflict).
	Policies []PolicyRef `json:"policies"`
	// Backend is Zipkin, Datadog or OpenTelemetry; empty when tracing is off.
	Backend string `json:"backend,omitempty"`
	// Collector is the url or endpoint traces go to.
	Collector string `json:"collector,omitempty"`
	// Warnings say why the merged configuration may not trace everything,
	// e.g. an inbound without an HTTP kuma.io/protocol.
	Warnings []string `json:"warnings,omitempty"`
}

// AffectedDataplane is one proxy a policy applies to.
type AffectedDataplane struct {
	// Type is always Dataplane: with mesh and name it makes each item the
	// resource meta Kuma's InspectDataplanesForPolicy lists.
	Type      string `json:"type"`
	Mesh      string `json:"mesh"`
	Name      string `json:"name"`
	Zone      string `json:"zone,omitempty"`
	Service   string `json:"service,omitempty"`
	Backend   string `json:"backend,omitempty"`
	Collector string `json:"collector,omitempty"`
}

// AffectedDataplanes is GET /meshes/{mesh}/meshtraces/{name}/_resources/dataplanes.
type AffectedDataplanes struct {
	Total int                 `json:"total"`
	Items []AffectedDataplane `json:"items"`
}

// RulesView renders the rules computed for dp in the _rules shape.
func RulesView(mesh, name, zone string, rules meshtrace.Rules, dp *resource.Resource) DataplaneRules {
	out := DataplaneRules{Mesh: mesh, Name: name, Zone: zone, Policies: []PolicyRef{}}
	for _, k := range rules.Policies {
		out.Policies = append(out.Policies, Policy(k))
	}
	if len(rules.Policies) > 0 {
		conf := rules.Conf
		out.Conf = &conf
	}
	out.Backend, out.Collector = meshtrace.EffectiveCollector(rules.Conf)
	if rules.Enabled() {
		out.Warnings = ProtocolWarnings(dp)
	}
	return out
}

// ProtocolWarnings names the inbounds of dp that tracing cannot apply to:
// only listeners of kuma.io/protocol http, http2 or grpc are traced (as in
// Kuma 2.7); tcp, kafka or no protocol get a plain TCP proxy.
func ProtocolWarnings(dp *resource.Resource) []string {
	spec, ok := dp.Spec.(*resource.DataplaneSpec)
	if !ok || spec.IsGateway() {
		return nil
	}
	var out []string
	for i, in := range spec.Networking.Inbound {
		v, set := in.Tags[resource.TagProtocol]
		switch resource.ParseProtocol(v) {
		case resource.ProtocolHTTP, resource.ProtocolHTTP2, resource.ProtocolGRPC:
			continue
		}
		what := "is not set"
		if set {
			what = fmt.Sprintf("is %q", v)
		}
		out = append(out, fmt.Sprintf("networking.inbound[%d] (port %d, kuma.io/service %s): kuma.io/protocol %s, so this inbound is not traced; "+
			"tracing needs kuma.io/protocol http, http2 or grpc", i, in.Port, in.Tags[resource.TagService], what))
	}
	return out
}
