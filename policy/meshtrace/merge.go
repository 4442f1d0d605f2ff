package meshtrace

import (
	"github.com/meshtrace/meshtrace/resource"
)

// Rules is the outcome of matching and merging for one proxy.
type Rules struct {
	// Conf is the merged configuration. Conf.Backends nil or empty means tracing is off.
	Conf resource.MeshTraceConf `json:"conf"`
	// Policies are the policies that select the proxy, in merge order (the
	// last one has the final word on every field it sets).
	Policies []resource.Key `json:"policies"`
}

// Enabled reports whether the merged configuration turns tracing on.
func (r Rules) Enabled() bool { return Enabled(r.Conf) }

// Enabled reports whether conf has at least one backend.
func Enabled(conf resource.MeshTraceConf) bool {
	return conf.Backends != nil && len(*conf.Backends) > 0
}

// Compute matches policies against dp and merges the matching ones. gw is as
// for Affects.
func Compute(dp *resource.Resource, policies []*resource.Resource, gw ...*resource.Resource) Rules {
	return Merge(Match(dp, policies, gw...))
}

// Merge merges the `default` sections of already ordered policies (see Match)
// like a JSON merge patch applied in order: objects are merged key by key
// (sampling field by field), lists (tags, backends) are replaced whole, and an
// unset field inherits. An explicit empty `backends: []` therefore turns
// tracing off even when a less specific policy set a backend.
//
// The result shares no memory with the policies.
func Merge(ordered []*resource.Resource) Rules {
	var r Rules
	for _, p := range ordered {
		r.Policies = append(r.Policies, p.Key())
		s := spec(p)
		if s == nil || s.Default == nil {
			continue
		}
		MergeInto(&r.Conf, *s.Default)
	}
	return r
}

// MergeInto applies patch on top of dst.
func MergeInto(dst *resource.MeshTraceConf, patch resource.MeshTraceConf) {
	if patch.Tags != nil {
		tags := cloneTags(*patch.Tags)
		dst.Tags = &tags
	}
	if patch.Backends != nil {
		backends := cloneBackends(*patch.Backends)
		dst.Backends = &backends
	}
	if patch.Sampling != nil {
		if dst.Sampling == nil {
			dst.Sampling = &resource.Sampling{}
		}
		if v := patch.Sampling.Overall; v != nil {
			dst.Sampling.Overall = cloneNum(v)
		}
		if v := patch.Sampling.Random; v != nil {
			dst.Sampling.Random = cloneNum(v)
		}
		if v := patch.Sampling.Client; v != nil {
			dst.Sampling.Client = cloneNum(v)
		}
	}
}

func cloneNum(v *resource.IntOrString) *resource.IntOrString {
	c := *v
	return &c
}

func cloneStr(s *string) *string {
	if s == nil {
		return nil
	}
	c := *s
	return &c
}

func cloneTags(in []resource.TraceTag) []resource.TraceTag {
	out := make([]resource.TraceTag, len(in))
	for i, t := range in {
		out[i] = resource.TraceTag{Name: t.Name, Literal: cloneStr(t.Literal)}
		if t.Header != nil {
			out[i].Header = &resource.HeaderTag{Name: t.Header.Name, Default: cloneStr(t.Header.Default)}
		}
	}
	return out
}

func cloneBackends(in []resource.Backend) []resource.Backend {
	out := make([]resource.Backend, len(in))
	for i, b := range in {
		out[i] = resource.Backend{Type: b.Type}
		if b.Zipkin != nil {
			z := *b.Zipkin
			if z.SharedSpanContext != nil {
				v := *z.SharedSpanContext
				z.SharedSpanContext = &v
			}
			out[i].Zipkin = &z
		}
		if b.Datadog != nil {
			d := *b.Datadog
			out[i].Datadog = &d
		}
		if b.OpenTelemetry != nil {
			o := *b.OpenTelemetry
			out[i].OpenTelemetry = &o
		}
	}
	return out
}
