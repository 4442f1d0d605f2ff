// Package residency checks that no zone's traces leave that zone: for every
// proxy it computes, with the same matching and merge code the zones run,
// which collector the proxy exports spans to, and compares it with the
// collectors its zone allows (Zone.residency).
//
// Evaluate is the pure check of one proxy. Index keeps what a control plane
// holds (Zones, Dataplanes, MeshTraces) in memory from a store watch, re-checks
// the affected proxies on every change (continuous audit), and admits or
// refuses MeshTrace writes before they are stored (admission).
package residency

import (
	"fmt"
	"slices"
	"strings"

	"github.com/meshtrace/meshtrace/policy/meshtrace"
	"github.com/meshtrace/meshtrace/residency/allow"
	"github.com/meshtrace/meshtrace/resource"
)

// Zone is one zone's declared residency, compiled.
type Zone struct {
	Name string
	// Mode is resource.ResidencyEnforce, ResidencyAudit or ResidencyOff.
	Mode    resource.ResidencyMode
	Allowed allow.List
}

// CompileZone reads a Zone resource's residency. Patterns that do not parse
// (possible only for values written around the API's validation) are left
// out, so they allow nothing.
func CompileZone(name string, spec *resource.ZoneSpec) Zone {
	z := Zone{Name: name, Mode: spec.ResidencyMode()}
	if spec != nil && spec.Residency != nil {
		z.Allowed, _ = allow.Compile(spec.Residency.AllowedCollectors)
	}
	return z
}

// Checked reports whether the zone's mode asks for checks at all.
func (z Zone) Checked() bool {
	return z.Mode == resource.ResidencyEnforce || z.Mode == resource.ResidencyAudit
}

// Verdict is the outcome for one proxy.
type Verdict struct {
	Zone string `json:"zone"`
	Mesh string `json:"mesh"`
	// Proxy is the Dataplane's name in its zone (kuma.io/display-name on global).
	Proxy   string `json:"proxy"`
	Service string `json:"service,omitempty"`
	// Backend is Zipkin, Datadog or OpenTelemetry; "" when tracing is off.
	Backend string `json:"backend,omitempty"`
	// Collector is the backend's URL or endpoint as the policy writes it.
	Collector string `json:"collector,omitempty"`
	// Host and Port are where spans go, parsed from Collector.
	Host string `json:"host,omitempty"`
	Port uint32 `json:"port,omitempty"`
	// Policy is the policy whose backends the merge kept: the one that brings
	// the collector in.
	Policy *PolicyRef `json:"policy,omitempty"`
	// Allowed is false for a violation.
	Allowed bool `json:"allowed"`
	// AllowedBy is the pattern that allowed the collector.
	AllowedBy string `json:"allowedBy,omitempty"`
	// Reason says why a violation is one.
	Reason string `json:"reason,omitempty"`
}

// PolicyRef names a policy and where it was created.
type PolicyRef struct {
	Mesh string `json:"mesh"`
	Name string `json:"name"`
	// Origin is global or zone (kuma.io/origin); Zone the zone of a zone-originated policy.
	Origin string `json:"origin,omitempty"`
	Zone   string `json:"zone,omitempty"`
	// DisplayName is the name on the zone that created it, when global
	// stores it under another (kuma.io/display-name).
	DisplayName string `json:"displayName,omitempty"`
}

func (p *PolicyRef) String() string {
	if p == nil {
		return ""
	}
	s := fmt.Sprintf("MeshTrace %q in mesh %q", p.Name, p.Mesh)
	switch {
	case p.Origin == resource.OriginZone && p.DisplayName != "":
		s += fmt.Sprintf(" (created on zone %q as %q)", p.Zone, p.DisplayName)
	case p.Origin == resource.OriginZone:
		s += fmt.Sprintf(" (created on zone %q)", p.Zone)
	}
	return s
}

func policyRef(r *resource.Resource) *PolicyRef {
	ref := &PolicyRef{Mesh: r.Mesh, Name: r.Name, Origin: r.Labels[resource.LabelOrigin]}
	if ref.Origin == resource.OriginZone {
		ref.Zone = r.Labels[resource.LabelZone]
		if d := r.Labels[resource.LabelDisplayName]; d != "" && d != r.Name {
			ref.DisplayName = d
		}
	}
	return ref
}

// ZoneOf is the zone a resource belongs to: its kuma.io/zone label.
func ZoneOf(r *resource.Resource) string { return r.Labels[resource.LabelZone] }

// AppliesIn reports whether a policy takes part in matching for proxies of
// zone: policies from global apply everywhere; a policy created on a zone
// applies only in that zone (Kuma 2.7 does not sync zone-originated MeshTraces
// to other zones).
func AppliesIn(policy *resource.Resource, zone string) bool {
	if policy.Labels[resource.LabelOrigin] != resource.OriginZone {
		return true
	}
	return ZoneOf(policy) == zone
}

// ProxyName is a Dataplane's name in its zone.
func ProxyName(dp *resource.Resource) string {
	if n := dp.Labels[resource.LabelDisplayName]; n != "" {
		return n
	}
	return dp.Name
}

// Evaluate computes which collector dp exports to under policies (every
// MeshTrace of dp's mesh; the ones not applying in z are skipped) and whether
// z allows it. Tracing off is always allowed.
//
// gw is the MeshGateway configuring dp when dp is a builtin gateway (see
// meshtrace.SelectGateway), so MeshGateway targets match as on the zone.
func Evaluate(dp *resource.Resource, policies []*resource.Resource, z Zone, gw ...*resource.Resource) Verdict {
	sorted := slices.Clone(policies)
	sortMostSpecificFirst(sorted)
	return evaluate(dp, ProxyName(dp), sorted, z, nil, gw...)
}

// The collector of a proxy is decided by one policy: merging replaces
// `backends` whole, so the merged backends are those of the last policy in
// merge order (meshtrace.Less) that sets them, and only the first backend is
// used. evaluate therefore takes the policies most specific first (the
// reverse of meshtrace.Less) and stops at the first one that sets backends
// and selects the proxy (the zones' own Affects), without merging; it checks
// that policy's backend once per (policy, zone) when given a cache. TestEvaluateAgreesWithMerge holds it to
// meshtrace.Compute.

// checkKey identifies a check result in a cache.
type checkKey struct {
	policy *resource.Resource
	zone   string
}

// checked is the zone-independent-of-proxy part of a Verdict.
type checked struct {
	backend, collector, host, allowedBy, reason string
	port                                        uint32
	allowed                                     bool
	off                                         bool // backends: []
	policy                                      *PolicyRef
}

type checkCache map[checkKey]checked

func evaluate(dp *resource.Resource, proxy string, policies []*resource.Resource, z Zone, cache checkCache, gw ...*resource.Resource) Verdict {
	v := Verdict{Zone: z.Name, Mesh: dp.Mesh, Proxy: proxy, Allowed: true}
	var responsible *resource.Resource
	for _, p := range policies {
		s, _ := p.Spec.(*resource.MeshTraceSpec)
		if s == nil || s.Default == nil || s.Default.Backends == nil {
			continue
		}
		if AppliesIn(p, z.Name) && meshtrace.Affects(p, dp, gw...) {
			responsible = p
			break
		}
	}
	if responsible == nil {
		return v
	}
	k := checkKey{responsible, z.Name}
	c, ok := cache[k]
	if !ok {
		conf := resource.MeshTraceConf{Backends: responsible.Spec.(*resource.MeshTraceSpec).Default.Backends}
		if !meshtrace.Enabled(conf) {
			c = checked{allowed: true, off: true}
		} else {
			c.backend, c.collector, c.host, c.port, c.allowedBy, c.reason, c.allowed = check(conf, z)
		}
		c.policy = policyRef(responsible)
		if cache != nil {
			cache[k] = c
		}
	}
	if c.off {
		return v // an explicit empty backends list: tracing off
	}
	v.Policy = c.policy // shared by the verdicts of one check: read-only
	v.Backend, v.Collector, v.Host, v.Port, v.AllowedBy, v.Reason, v.Allowed = c.backend, c.collector, c.host, c.port, c.allowedBy, c.reason, c.allowed
	if !v.Allowed {
		v.Service = identifyingService(dp) // for violations only: it costs
	}
	return v
}

// Check is the zone's own check of a merged configuration: it reports
// whether the collector conf exports to is allowed in z, and why not. Tracing
// off is always allowed. Zones run it before serving a proxy.
func Check(conf resource.MeshTraceConf, z Zone) (allowed bool, collector, reason string) {
	_, collector, _, _, _, reason, allowed = check(conf, z)
	return allowed, collector, reason
}

func check(conf resource.MeshTraceConf, z Zone) (backend, collector, host string, port uint32, allowedBy, reason string, allowed bool) {
	if !meshtrace.Enabled(conf) {
		return "", "", "", 0, "", "", true
	}
	backend, collector = meshtrace.EffectiveCollector(conf)
	c, err := meshtrace.ParseBackend((*conf.Backends)[0])
	if err != nil {
		return backend, collector, "", 0, "", fmt.Sprintf("the collector address cannot be parsed (%v), so it cannot be shown to stay in zone %q", err, z.Name), false
	}
	if p, ok := z.Allowed.Allows(c.Host, c.Port); ok {
		return backend, collector, c.Host, c.Port, p.Raw, "", true
	}
	return backend, collector, c.Host, c.Port, "", fmt.Sprintf("%s:%d is not in zone %q's allowed collectors [%s]",
		hostForDisplay(c.Host), c.Port, z.Name, strings.Join(z.Allowed.Strings(), ", ")), false
}

func hostForDisplay(h string) string {
	if strings.Contains(h, ":") {
		return "[" + h + "]"
	}
	return h
}

// identifyingService is the alphabetically first kuma.io/service of the
// proxy's inbounds (or its gateway's), as Kuma names a proxy's service.
func identifyingService(dp *resource.Resource) string {
	ds, _ := dp.Spec.(*resource.DataplaneSpec)
	if ds == nil {
		return ""
	}
	first := ""
	for _, tags := range ds.TagSets() {
		if s := tags[resource.TagService]; s != "" && (first == "" || s < first) {
			first = s
		}
	}
	return first
}

// Message is a one-line description of a violation, naming zone, proxy,
// collector and the responsible policy.
func (v Verdict) Message() string {
	return fmt.Sprintf("zone %q: proxy %q (mesh %q) would export %s spans to %s, brought in by %s: %s",
		v.Zone, v.Proxy, v.Mesh, v.Backend, v.Collector, v.Policy, v.Reason)
}
