package resource

import (
	"unicode/utf8"
)

// specCloner is a spec that copies itself faster than Effective's JSON
// round trip. The copy equals what the round trip gives (values written
// omitempty and empty come back nil, IntOrString keeps only the half it
// writes); ok is false when it cannot promise that (a string that is not
// valid UTF-8, which JSON would change), and Effective then takes the round
// trip. TestCloneMatchesJSONRoundTrip checks both agree.
type specCloner interface {
	cloneSpec() (Spec, bool)
}

// cloneSpecs turns specCloner on; tests turn it off to compare.
var cloneSpecs = true

// cloner copies values as a JSON round trip would, noting strings JSON
// would change.
type cloner struct{ bad bool }

func (c *cloner) str(s string) string {
	if !utf8.ValidString(s) {
		c.bad = true
	}
	return s
}

func (c *cloner) strPtr(p *string) *string {
	if p == nil {
		return nil
	}
	s := c.str(*p)
	return &s
}

func (c *cloner) boolPtr(p *bool) *bool {
	if p == nil {
		return nil
	}
	b := *p
	return &b
}

// strMap copies a map written omitempty: empty comes back nil.
func (c *cloner) strMap(m map[string]string) map[string]string {
	if len(m) == 0 {
		return nil
	}
	out := make(map[string]string, len(m))
	for k, v := range m {
		out[c.str(k)] = c.str(v)
	}
	return out
}

// strs copies a slice written omitempty: empty comes back nil.
func (c *cloner) strs(s []string) []string {
	if len(s) == 0 {
		return nil
	}
	out := make([]string, len(s))
	for i, v := range s {
		out[i] = c.str(v)
	}
	return out
}

func (c *cloner) intOrString(v *IntOrString) *IntOrString {
	if v == nil {
		return nil
	}
	if v.IsString {
		return &IntOrString{IsString: true, StrVal: c.str(v.StrVal)}
	}
	return &IntOrString{IntVal: v.IntVal}
}

// intOrStringIn copies v into *dst, or returns nil for nil.
func (c *cloner) intOrStringIn(dst, v *IntOrString) *IntOrString {
	if v == nil {
		return nil
	}
	if v.IsString {
		*dst = IntOrString{IsString: true, StrVal: c.str(v.StrVal)}
	} else {
		*dst = IntOrString{IntVal: v.IntVal}
	}
	return dst
}

// strPtrIn copies *p into *dst, or returns nil for nil.
func (c *cloner) strPtrIn(dst, p *string) *string {
	if p == nil {
		return nil
	}
	*dst = c.str(*p)
	return dst
}

// meshTraceClone holds the fixed parts of a MeshTrace copy so that
// cloneSpec allocates them together: the copy is made for every Validate
// and Effective, and one allocation for the spec, its targetRef, default,
// sampling and the pointers to its lists used to be nine.
type meshTraceClone struct {
	spec     MeshTraceSpec
	ref      TargetRef
	conf     MeshTraceConf
	sampling Sampling
	percents [3]IntOrString
	tags     []TraceTag
	backends []Backend
}

// traceTagClone holds what a TraceTag points to, allocated for all tags at once.
type traceTagClone struct {
	literal string
	header  HeaderTag
	def     string
}

func (s *MeshTraceSpec) cloneSpec() (Spec, bool) {
	var c cloner
	if s == nil {
		return &MeshTraceSpec{}, true
	}
	blk := &meshTraceClone{}
	out := &blk.spec
	if r := s.TargetRef; r != nil {
		blk.ref = TargetRef{
			Kind: c.str(r.Kind), Name: c.str(r.Name), Mesh: c.str(r.Mesh),
			Tags: c.strMap(r.Tags), ProxyTypes: c.strs(r.ProxyTypes),
		}
		out.TargetRef = &blk.ref
	}
	if d := s.Default; d != nil {
		conf := &blk.conf
		// A pointer to a nil slice is written null and read back nil.
		if d.Tags != nil && *d.Tags != nil {
			blk.tags = make([]TraceTag, len(*d.Tags))
			extra := make([]traceTagClone, len(*d.Tags))
			for i, t := range *d.Tags {
				e := &extra[i]
				blk.tags[i] = TraceTag{Name: c.str(t.Name), Literal: c.strPtrIn(&e.literal, t.Literal)}
				if h := t.Header; h != nil {
					e.header = HeaderTag{Name: c.str(h.Name), Default: c.strPtrIn(&e.def, h.Default)}
					blk.tags[i].Header = &e.header
				}
			}
			conf.Tags = &blk.tags
		}
		if sm := d.Sampling; sm != nil {
			blk.sampling = Sampling{
				Overall: c.intOrStringIn(&blk.percents[0], sm.Overall),
				Client:  c.intOrStringIn(&blk.percents[1], sm.Client),
				Random:  c.intOrStringIn(&blk.percents[2], sm.Random),
			}
			conf.Sampling = &blk.sampling
		}
		if d.Backends != nil && *d.Backends != nil {
			blk.backends = make([]Backend, len(*d.Backends))
			for i, b := range *d.Backends {
				nb := Backend{Type: c.str(b.Type)}
				if z := b.Zipkin; z != nil {
					nb.Zipkin = &ZipkinBackend{URL: c.str(z.URL), TraceID128Bit: z.TraceID128Bit, APIVersion: c.str(z.APIVersion), SharedSpanContext: c.boolPtr(z.SharedSpanContext)}
				}
				if dd := b.Datadog; dd != nil {
					nb.Datadog = &DatadogBackend{URL: c.str(dd.URL), SplitService: dd.SplitService}
				}
				if o := b.OpenTelemetry; o != nil {
					nb.OpenTelemetry = &OpenTelemetryBackend{Endpoint: c.str(o.Endpoint)}
				}
				blk.backends[i] = nb
			}
			conf.Backends = &blk.backends
		}
		out.Default = conf
	}
	return out, !c.bad
}

// strMapKept copies a map written without omitempty: empty comes back
// empty, nil comes back nil (null).
func (c *cloner) strMapKept(m map[string]string) map[string]string {
	if m == nil {
		return nil
	}
	out := make(map[string]string, len(m))
	for k, v := range m {
		out[c.str(k)] = c.str(v)
	}
	return out
}

// cloneSpec copies a Dataplane without the JSON round trip, which was
// most of validating one (a zone validates every Dataplane it stores).
func (s *DataplaneSpec) cloneSpec() (Spec, bool) {
	var c cloner
	out := &DataplaneSpec{}
	if s == nil {
		return out, true
	}
	n, o := &s.Networking, &out.Networking
	o.Address = c.str(n.Address)
	o.AdvertisedAddress = c.str(n.AdvertisedAddress)
	if len(n.Inbound) > 0 {
		o.Inbound = make([]Inbound, len(n.Inbound))
		for i, in := range n.Inbound {
			o.Inbound[i] = Inbound{
				Port: in.Port, ServicePort: in.ServicePort,
				ServiceAddress: c.str(in.ServiceAddress), Address: c.str(in.Address),
				Tags: c.strMapKept(in.Tags),
			}
		}
	}
	if len(n.Outbound) > 0 {
		o.Outbound = make([]Outbound, len(n.Outbound))
		for i, out := range n.Outbound {
			o.Outbound[i] = Outbound{Port: out.Port, Address: c.str(out.Address), Tags: c.strMap(out.Tags)}
		}
	}
	if g := n.Gateway; g != nil {
		o.Gateway = &Gateway{Type: c.str(g.Type), Tags: c.strMapKept(g.Tags)}
	}
	if a := n.Admin; a != nil {
		o.Admin = &Admin{Port: a.Port}
	}
	return out, !c.bad
}
