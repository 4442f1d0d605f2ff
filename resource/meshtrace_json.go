package resource

import "strconv"

// appendMeshTraceJSON appends json.Marshal(s) of a non-nil s, byte for
// byte, without reflection: global encodes the spec of every MeshTrace
// written (MarshalSpec), then again for each KDS message carrying it.
// omitempty as encoding/json reads it: a nil pointer, an empty string,
// map or slice is left out; a pointer to a nil slice is written null.
func appendMeshTraceJSON(b []byte, s *MeshTraceSpec) []byte {
	o := jsonObject{b: append(b, '{')}
	if s.TargetRef != nil {
		o.key("targetRef")
		o.b = appendTargetRefJSON(o.b, s.TargetRef)
	}
	if d := s.Default; d != nil {
		o.key("default")
		o.b = appendMeshTraceConfJSON(o.b, d)
	}
	return o.end()
}

func appendTargetRefJSON(b []byte, t *TargetRef) []byte {
	o := jsonObject{b: append(b, '{')}
	o.str("kind", t.Kind)
	o.strOmitEmpty("name", t.Name)
	o.strOmitEmpty("mesh", t.Mesh)
	if len(t.Tags) > 0 {
		o.key("tags")
		tags := jsonObject{b: append(o.b, '{')}
		for _, k := range sortedKeys(t.Tags) {
			tags.sep()
			tags.b = AppendJSONString(tags.b, k)
			tags.b = append(tags.b, ':')
			tags.b = AppendJSONString(tags.b, t.Tags[k])
		}
		o.b = tags.end()
	}
	if len(t.ProxyTypes) > 0 {
		o.key("proxyTypes")
		o.b = append(o.b, '[')
		for i, p := range t.ProxyTypes {
			if i > 0 {
				o.b = append(o.b, ',')
			}
			o.b = AppendJSONString(o.b, p)
		}
		o.b = append(o.b, ']')
	}
	return o.end()
}

// appendListJSON appends l as a JSON array, each element written by f, or
// null for a nil slice (as json.Marshal writes it).
func appendListJSON[T any](b []byte, l []T, f func([]byte, *T) []byte) []byte {
	if l == nil {
		return append(b, "null"...)
	}
	b = append(b, '[')
	for i := range l {
		if i > 0 {
			b = append(b, ',')
		}
		b = f(b, &l[i])
	}
	return append(b, ']')
}

func appendMeshTraceConfJSON(b []byte, d *MeshTraceConf) []byte {
	o := jsonObject{b: append(b, '{')}
	if d.Tags != nil {
		o.key("tags")
		o.b = appendListJSON(o.b, *d.Tags, appendTraceTagJSON)
	}
	if s := d.Sampling; s != nil {
		o.key("sampling")
		so := jsonObject{b: append(o.b, '{')}
		so.intOrString("overall", s.Overall)
		so.intOrString("client", s.Client)
		so.intOrString("random", s.Random)
		o.b = so.end()
	}
	if d.Backends != nil {
		o.key("backends")
		o.b = appendListJSON(o.b, *d.Backends, appendBackendJSON)
	}
	return o.end()
}

func appendTraceTagJSON(b []byte, t *TraceTag) []byte {
	o := jsonObject{b: append(b, '{')}
	o.str("name", t.Name)
	if t.Literal != nil {
		o.str("literal", *t.Literal)
	}
	if h := t.Header; h != nil {
		o.key("header")
		ho := jsonObject{b: append(o.b, '{')}
		ho.str("name", h.Name)
		if h.Default != nil {
			ho.str("default", *h.Default)
		}
		o.b = ho.end()
	}
	return o.end()
}

func appendBackendJSON(b []byte, be *Backend) []byte {
	o := jsonObject{b: append(b, '{')}
	o.strOmitEmpty("type", be.Type)
	if z := be.Zipkin; z != nil {
		o.key("zipkin")
		zo := jsonObject{b: append(o.b, '{')}
		zo.str("url", z.URL)
		zo.bool("traceId128bit", z.TraceID128Bit)
		zo.strOmitEmpty("apiVersion", z.APIVersion)
		if z.SharedSpanContext != nil {
			zo.bool("sharedSpanContext", *z.SharedSpanContext)
		}
		o.b = zo.end()
	}
	if d := be.Datadog; d != nil {
		o.key("datadog")
		do := jsonObject{b: append(o.b, '{')}
		do.str("url", d.URL)
		do.bool("splitService", d.SplitService)
		o.b = do.end()
	}
	if ot := be.OpenTelemetry; ot != nil {
		o.key("openTelemetry")
		oo := jsonObject{b: append(o.b, '{')}
		oo.str("endpoint", ot.Endpoint)
		o.b = oo.end()
	}
	return o.end()
}

// jsonObject appends the members of a JSON object after its '{'.
type jsonObject struct {
	b    []byte
	more bool // a member was written: the next one needs a comma
}

func (o *jsonObject) sep() {
	if o.more {
		o.b = append(o.b, ',')
	}
	o.more = true
}

// key appends a member's name (one needing no escape) and its colon.
func (o *jsonObject) key(k string) {
	o.sep()
	o.b = append(o.b, '"')
	o.b = append(o.b, k...)
	o.b = append(o.b, '"', ':')
}

func (o *jsonObject) str(k, v string) {
	o.key(k)
	o.b = AppendJSONString(o.b, v)
}

func (o *jsonObject) strOmitEmpty(k, v string) {
	if v != "" {
		o.str(k, v)
	}
}

func (o *jsonObject) bool(k string, v bool) {
	o.key(k)
	o.b = strconv.AppendBool(o.b, v)
}

// intOrString appends v as IntOrString.MarshalJSON writes it; nothing for nil.
func (o *jsonObject) intOrString(k string, v *IntOrString) {
	if v == nil {
		return
	}
	o.key(k)
	if v.IsString {
		o.b = AppendJSONString(o.b, v.StrVal)
	} else {
		o.b = strconv.AppendInt(o.b, v.IntVal, 10)
	}
}

func (o *jsonObject) end() []byte { return append(o.b, '}') }
