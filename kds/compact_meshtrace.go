package kds

import (
	"bytes"
	"strconv"
	"time"

	"github.com/meshtrace/meshtrace/resource"
)

// The typed readers of decodeCompact: what the reflective reader
// (compact_ref_test.go) does for each Go type, written out. Each declines
// (false) where it does, and keeps compactReader.canon as it does; a null
// is declined everywhere, since no reader here takes one.

// object reads a JSON object holding a struct's fields. names are the
// fields' JSON names in the struct's order (json.Marshal's), written the
// bits (by that order) of those json.Marshal writes even when empty: no
// omitempty, or a struct. field reads the value of field i and says
// whether omitempty leaves what it read out. An unknown name or one met
// twice declines. A struct has at most 8 fields here (a bit each).
func (c *compactReader) object(names []string, written uint8, field func(i int) (ok, omitted bool)) bool {
	if !c.take('{') {
		return false
	}
	if c.take('}') {
		if written != 0 {
			c.canon = false // json.Marshal writes the fields without omitempty
		}
		return true
	}
	var seen uint8
	last := -1 // the field read before, for canon: fields in order
	for {
		key, ok := c.str()
		if !ok || !c.take(':') {
			return false
		}
		i := fieldIndex(names, key)
		if i < 0 || seen&(1<<i) != 0 {
			return false
		}
		seen |= 1 << i
		ok, omitted := field(i)
		if !ok {
			return false
		}
		if c.canon && (i < last || omitted) {
			c.canon = false
		}
		last = i
		if c.take('}') {
			break
		}
		if !c.take(',') {
			return false
		}
	}
	if seen&written != written {
		c.canon = false // json.Marshal writes a field left out here
	}
	return true
}

func fieldIndex(names []string, key []byte) int {
	for i, n := range names {
		if n == string(key) {
			return i
		}
	}
	return -1
}

// compactList reads a JSON array into a slice (empty, not nil, for []),
// each element read in place by elem; the elements go into into's spare
// room first (into is empty).
func compactList[T any](c *compactReader, into []T, elem func(*T) bool) ([]T, bool) {
	if !c.take('[') {
		return nil, false
	}
	out := into
	if out == nil {
		out = []T{}
	}
	if c.take(']') {
		return out, true
	}
	for {
		var zero T
		out = append(out, zero)
		if !elem(&out[len(out)-1]) {
			return nil, false
		}
		if c.take(']') {
			return out, true
		}
		if !c.take(',') {
			return nil, false
		}
	}
}

// text reads a string into s.
func (c *compactReader) text(s *string) bool {
	b, ok := c.str()
	if ok {
		*s = string(b)
	}
	return ok
}

// textOmitted is text for a field with omitempty: it also says whether
// what it read is empty.
func (c *compactReader) textOmitted(s *string) (ok, omitted bool) {
	ok = c.text(s)
	return ok, *s == ""
}

// textPtr reads a string into a new *string.
func (c *compactReader) textPtr(p **string) bool {
	var s string
	if !c.text(&s) {
		return false
	}
	*p = &s
	return true
}

// boolean reads true or false into v.
func (c *compactReader) boolean(v *bool) bool {
	switch {
	case c.literal("true"):
		*v = true
	case c.literal("false"):
		*v = false
	default:
		return false
	}
	return true
}

// strMap reads an object of strings into a new map (empty, not nil, for
// {}); keys out of order leave canon false (json.Marshal sorts them).
func (c *compactReader) strMap(m *map[string]string) bool {
	if !c.take('{') {
		return false
	}
	out := map[string]string{}
	if !c.take('}') {
		var prev []byte
		for n := 0; ; n++ {
			key, ok := c.str()
			if !ok || !c.take(':') {
				return false
			}
			if n > 0 && bytes.Compare(prev, key) >= 0 {
				c.canon = false
			}
			prev = key
			v, ok := c.str()
			if !ok {
				return false
			}
			out[string(key)] = string(v)
			if c.take('}') {
				break
			}
			if !c.take(',') {
				return false
			}
		}
	}
	*m = out
	return true
}

// time reads an RFC 3339 string as time.Time's UnmarshalJSON does.
func (c *compactReader) time(t *time.Time) bool {
	start := c.i
	if _, ok := c.str(); !ok {
		return false // time.Time takes no number either
	}
	return t.UnmarshalJSON(c.b[start:c.i]) == nil
}

// intOrString reads an integer or a string into slot and points p at it,
// as IntOrString's UnmarshalJSON reads them: a string in the compact form
// is its text as it is, an integer must fit an int64. json.Marshal writes
// what it read as it was (canon is left alone): str and integer already
// note <, >, & and -0.
func (c *compactReader) intOrString(p **resource.IntOrString, slot *resource.IntOrString) bool {
	if c.peek() == '"' {
		s, ok := c.str()
		if !ok {
			return false
		}
		*slot = resource.IntOrString{IsString: true, StrVal: string(s)}
	} else {
		s, ok := c.integer()
		if !ok {
			return false
		}
		n, err := strconv.ParseInt(string(s), 10, 64)
		if err != nil {
			return false
		}
		*slot = resource.IntOrString{IntVal: n}
	}
	*p = slot
	return true
}

// JSON names of the MeshTrace types' fields, in their structs' order.
var (
	meshTraceNames     = []string{"targetRef", "default"}
	targetRefNames     = []string{"kind", "name", "mesh", "tags", "proxyTypes"}
	traceConfNames     = []string{"tags", "sampling", "backends"}
	traceTagNames      = []string{"name", "literal", "header"}
	headerTagNames     = []string{"name", "default"}
	samplingNames      = []string{"overall", "client", "random"}
	backendNames       = []string{"type", "zipkin", "datadog", "openTelemetry"}
	zipkinNames        = []string{"url", "traceId128bit", "apiVersion", "sharedSpanContext"}
	datadogNames       = []string{"url", "splitService"}
	openTelemetryNames = []string{"endpoint"}
)

// meshTraceBlock holds the parts of a MeshTrace that a policy has at most
// once, and its first backend, so that reading one allocates them together
// (one allocation instead of up to nine).
type meshTraceBlock struct {
	spec     resource.MeshTraceSpec
	ref      resource.TargetRef
	conf     resource.MeshTraceConf
	tags     []resource.TraceTag
	sampling resource.Sampling
	percents [3]resource.IntOrString
	backends []resource.Backend
	backend  [1]resource.Backend
	zipkin   resource.ZipkinBackend
	// zipkinUsed: zipkin is the first backend's (a later one gets its own).
	zipkinUsed bool
}

// readMeshTrace reads a MeshTrace spec.
func readMeshTrace(c *compactReader) (resource.Spec, bool) {
	blk := &meshTraceBlock{}
	return &blk.spec, c.meshTrace(blk)
}

// The names a MeshTrace's kind, backend type and Zipkin apiVersion nearly
// always have: read as these constants, they take no allocation.
var (
	knownKinds       = []string{resource.KindMesh, resource.KindMeshSubset, resource.KindMeshService, resource.KindMeshServiceSubset, resource.KindMeshGateway}
	knownBackends    = []string{resource.BackendZipkin, resource.BackendDatadog, resource.BackendOpenTelemetry}
	knownAPIVersions = []string{resource.ZipkinAPIHTTPJSON, resource.ZipkinAPIHTTPProto}
)

// textKnown is text that returns one of known instead of a copy when the
// string is one of them.
func (c *compactReader) textKnown(s *string, known []string) bool {
	b, ok := c.str()
	if !ok {
		return false
	}
	for _, k := range known {
		if k == string(b) {
			*s = k
			return true
		}
	}
	*s = string(b)
	return true
}

func (c *compactReader) meshTrace(b *meshTraceBlock) bool {
	s := &b.spec
	return c.object(meshTraceNames, 0, func(i int) (bool, bool) {
		if i == 0 {
			s.TargetRef = &b.ref
			return c.targetRef(s.TargetRef), false
		}
		s.Default = &b.conf
		return c.traceConf(b), false
	})
}

func (c *compactReader) targetRef(r *resource.TargetRef) bool {
	return c.object(targetRefNames, 1, func(i int) (bool, bool) {
		switch i {
		case 0:
			return c.textKnown(&r.Kind, knownKinds), false
		case 1:
			return c.textOmitted(&r.Name)
		case 2:
			return c.textOmitted(&r.Mesh)
		case 3:
			ok := c.strMap(&r.Tags)
			return ok, len(r.Tags) == 0
		}
		var ok bool
		r.ProxyTypes, ok = compactList(c, nil, c.text)
		return ok, len(r.ProxyTypes) == 0
	})
}

func (c *compactReader) traceConf(b *meshTraceBlock) bool {
	conf := &b.conf
	return c.object(traceConfNames, 0, func(i int) (bool, bool) {
		var ok bool
		switch i {
		case 0:
			b.tags, ok = compactList(c, nil, c.traceTag)
			conf.Tags = &b.tags
		case 1:
			conf.Sampling = &b.sampling
			ok = c.sampling(b)
		default:
			b.backends, ok = compactList(c, b.backend[:0], func(x *resource.Backend) bool { return c.backend(x, b) })
			conf.Backends = &b.backends
		}
		return ok, false
	})
}

func (c *compactReader) traceTag(t *resource.TraceTag) bool {
	return c.object(traceTagNames, 1, func(i int) (bool, bool) {
		switch i {
		case 0:
			return c.text(&t.Name), false
		case 1:
			return c.textPtr(&t.Literal), false
		}
		t.Header = &resource.HeaderTag{}
		return c.object(headerTagNames, 1, func(i int) (bool, bool) {
			if i == 0 {
				return c.text(&t.Header.Name), false
			}
			return c.textPtr(&t.Header.Default), false
		}), false
	})
}

func (c *compactReader) sampling(b *meshTraceBlock) bool {
	s := &b.sampling
	return c.object(samplingNames, 0, func(i int) (bool, bool) {
		switch i {
		case 0:
			return c.intOrString(&s.Overall, &b.percents[0]), false
		case 1:
			return c.intOrString(&s.Client, &b.percents[1]), false
		}
		return c.intOrString(&s.Random, &b.percents[2]), false
	})
}

func (c *compactReader) backend(b *resource.Backend, blk *meshTraceBlock) bool {
	return c.object(backendNames, 0, func(i int) (bool, bool) {
		switch i {
		case 0:
			ok := c.textKnown(&b.Type, knownBackends)
			return ok, b.Type == ""
		case 1:
			z := &blk.zipkin
			if blk.zipkinUsed {
				z = &resource.ZipkinBackend{}
			}
			blk.zipkinUsed = true
			b.Zipkin = z
			return c.object(zipkinNames, 0b11, func(i int) (bool, bool) {
				switch i {
				case 0:
					return c.text(&z.URL), false
				case 1:
					return c.boolean(&z.TraceID128Bit), false
				case 2:
					ok := c.textKnown(&z.APIVersion, knownAPIVersions)
					return ok, z.APIVersion == ""
				}
				shared := new(bool)
				z.SharedSpanContext = shared
				return c.boolean(shared), false
			}), false
		case 2:
			d := &resource.DatadogBackend{}
			b.Datadog = d
			return c.object(datadogNames, 0b11, func(i int) (bool, bool) {
				if i == 0 {
					return c.text(&d.URL), false
				}
				return c.boolean(&d.SplitService), false
			}), false
		}
		o := &resource.OpenTelemetryBackend{}
		b.OpenTelemetry = o
		return c.object(openTelemetryNames, 1, func(int) (bool, bool) {
			return c.text(&o.Endpoint), false
		}), false
	})
}
