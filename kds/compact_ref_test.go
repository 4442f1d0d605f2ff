package kds

import (
	"bytes"
	"encoding"
	"encoding/json"
	"reflect"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/meshtrace/meshtrace/resource"
)

// The reflective compact reader, which decodeCompact was before it read
// MeshTrace with code written for the type: a plan per Go type made once,
// then one walk over the bytes filling the value through reflect. It is the
// reference the typed reader must equal on any input
// (FuzzDecodeCompactMatchesReflective); it reads any policy type, so a new
// type's typed reader can be checked against it the same way.

// decodeCompactReflect is decodeCompact as it was, all through reflect.
func decodeCompactReflect(b []byte) (_ *resource.Resource, specJSON []byte, ok bool) {
	rest, ok := bytes.CutPrefix(b, encodedTypePrefix)
	if !ok {
		return nil, nil, false
	}
	end := bytes.IndexByte(rest, '"')
	if end < 0 {
		return nil, nil, false
	}
	d, ok := resource.Lookup(resource.Type(rest[:end]))
	if !ok || !d.IsPolicy {
		return nil, nil, false
	}
	spec := d.NewSpec()
	sv := reflect.ValueOf(spec)
	if sv.Kind() != reflect.Pointer || sv.IsNil() || !sv.Elem().IsZero() {
		return nil, nil, false
	}
	p := planOf(sv.Elem().Type())
	r := &resource.Resource{Meta: resource.Meta{Type: d.Type}, Spec: spec}
	c := compactReader{b: b, i: len(encodedTypePrefix) + end + 1}
	var seen uint8
	const (
		seenMesh = 1 << iota
		seenName
		seenLabels
		seenCreation
		seenModification
		seenSpec
	)
	once := func(bit uint8) bool {
		if seen&bit != 0 {
			return false
		}
		seen |= bit
		return true
	}
	for !c.take('}') {
		if !c.take(',') {
			return nil, nil, false
		}
		key, ok := c.str()
		if !ok || !c.take(':') {
			return nil, nil, false
		}
		switch string(key) {
		case "mesh":
			ok = once(seenMesh) && c.value(reflect.ValueOf(&r.Mesh).Elem(), stringPlan, 0)
		case "name":
			ok = once(seenName) && c.value(reflect.ValueOf(&r.Name).Elem(), stringPlan, 0)
		case "labels":
			ok = once(seenLabels) && c.value(reflect.ValueOf(&r.Labels).Elem(), labelsPlan, 0)
		case "creationTime":
			ok = once(seenCreation) && c.value(reflect.ValueOf(&r.CreationTime).Elem(), timePlan, 0)
		case "modificationTime":
			ok = once(seenModification) && c.value(reflect.ValueOf(&r.ModificationTime).Elem(), timePlan, 0)
		case "spec":
			start := c.i
			c.canon = true
			ok = once(seenSpec) && c.value(sv.Elem(), p, 0)
			if ok && c.canon {
				specJSON = c.b[start:c.i]
			}
		default:
			ok = false
		}
		if !ok {
			return nil, nil, false
		}
	}
	if c.i != len(c.b) || seen&seenSpec == 0 {
		return nil, nil, false
	}
	if len(r.Labels) == 0 {
		r.Labels = nil
	}
	return r, specJSON, true
}

// maxCompactDepth bounds the nesting decodeCompact follows; deeper input is
// declined (the spec types nest a few levels).
const maxCompactDepth = 32

// value reads one value into v (a zero value, addressable) as p says.
func (c *compactReader) value(v reflect.Value, p *valuePlan, depth int) bool {
	if depth > maxCompactDepth || c.peek() == 'n' {
		return false // null: encoding/json's handling differs by kind
	}
	if !p.canon {
		c.canon = false
	}
	switch p.kind {
	case planUnmarshaler:
		start := c.i
		var ok bool
		if c.peek() == '"' {
			_, ok = c.str()
		} else {
			_, ok = c.integer()
		}
		if !ok {
			return false
		}
		u := v.Addr().Interface().(json.Unmarshaler)
		if u.UnmarshalJSON(c.b[start:c.i]) != nil {
			return false
		}
		if c.canon {
			c.canon = p.marshals && marshalsAs(v, c.b[start:c.i])
		}
		return true
	case planPointer:
		e := reflect.New(p.t.Elem())
		if !c.value(e.Elem(), p.elem, depth+1) {
			return false
		}
		v.Set(e)
		return true
	case planStruct:
		if !c.take('{') {
			return false
		}
		if c.take('}') {
			if p.written != 0 {
				c.canon = false // json.Marshal writes the fields without omitempty
			}
			return true
		}
		var seen uint64
		last := -1 // the field read before, for canon: fields in order
		for {
			key, ok := c.str()
			if !ok || !c.take(':') {
				return false
			}
			i, known := p.names[string(key)]
			if !known || seen&(1<<i) != 0 {
				return false
			}
			seen |= 1 << i
			f := p.fields[i]
			fv := v.Field(f.index)
			if !c.value(fv, f.plan, depth+1) {
				return false
			}
			if c.canon && (i < last || f.omitEmpty && isEmptyValue(fv)) {
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
		if seen&p.written != p.written {
			c.canon = false // json.Marshal writes a field left out here
		}
		return true
	case planMap:
		if !c.take('{') {
			return false
		}
		m := reflect.MakeMap(p.t)
		if !c.take('}') {
			var prev []byte
			for n := 0; ; n++ {
				key, ok := c.str()
				if !ok || !c.take(':') {
					return false
				}
				if n > 0 && bytes.Compare(prev, key) >= 0 {
					c.canon = false // json.Marshal sorts the keys
				}
				prev = key
				e := reflect.New(p.t.Elem()).Elem()
				if !c.value(e, p.elem, depth+1) {
					return false
				}
				m.SetMapIndex(reflect.ValueOf(string(key)).Convert(p.t.Key()), e)
				if c.take('}') {
					break
				}
				if !c.take(',') {
					return false
				}
			}
		}
		v.Set(m)
		return true
	case planSlice:
		if !c.take('[') {
			return false
		}
		s := reflect.MakeSlice(p.t, 0, 0)
		if !c.take(']') {
			for {
				s = reflect.Append(s, reflect.Zero(p.t.Elem()))
				if !c.value(s.Index(s.Len()-1), p.elem, depth+1) {
					return false
				}
				if c.take(']') {
					break
				}
				if !c.take(',') {
					return false
				}
			}
		}
		v.Set(s)
		return true
	case planString:
		s, ok := c.str()
		if ok {
			v.SetString(string(s))
		}
		return ok
	case planBool:
		switch {
		case c.literal("true"):
			v.SetBool(true)
		case c.literal("false"):
		default:
			return false
		}
		return true
	case planInt:
		s, ok := c.integer()
		if !ok {
			return false
		}
		n, err := strconv.ParseInt(string(s), 10, 64)
		if err != nil || v.OverflowInt(n) {
			return false
		}
		v.SetInt(n)
		return true
	case planUint:
		s, ok := c.integer()
		if !ok || s[0] == '-' {
			return false
		}
		n, err := strconv.ParseUint(string(s), 10, 64)
		if err != nil || v.OverflowUint(n) {
			return false
		}
		v.SetUint(n)
		return true
	}
	return false // planUnsupported
}

type planKind uint8

const (
	planUnsupported planKind = iota
	planUnmarshaler
	planPointer
	planStruct
	planMap
	planSlice
	planString
	planBool
	planInt
	planUint
)

// valuePlan is how decodeCompact fills one Go type, worked out once.
type valuePlan struct {
	kind planKind
	t    reflect.Type
	elem *valuePlan // pointer, map and slice
	// A struct's fields by their JSON name (at most 64), in the order of
	// the struct (json.Marshal's), and those json.Marshal writes even when
	// zero (a bit per field).
	names   map[string]int
	fields  []fieldPlan
	written uint64
	// canon: json.Marshal writes a value of t as this plan reads it (see
	// compactReader.canon), and marshals: t has a MarshalJSON, which
	// json.Marshal writes it with.
	canon, marshals bool
}

type fieldPlan struct {
	index     int
	plan      *valuePlan
	omitEmpty bool
}

var (
	unmarshalerType     = reflect.TypeFor[json.Unmarshaler]()
	textUnmarshalerType = reflect.TypeFor[encoding.TextUnmarshaler]()
	marshalerType       = reflect.TypeFor[json.Marshaler]()
	textMarshalerType   = reflect.TypeFor[encoding.TextMarshaler]()

	plansMu sync.Mutex
	plans   = map[reflect.Type]*valuePlan{}

	stringPlan = planOf(reflect.TypeFor[string]())
	labelsPlan = planOf(reflect.TypeFor[map[string]string]())
	timePlan   = planOf(reflect.TypeFor[time.Time]())
)

// planOf returns the plan of t, made on first use.
func planOf(t reflect.Type) *valuePlan {
	plansMu.Lock()
	defer plansMu.Unlock()
	return planLocked(t)
}

func planLocked(t reflect.Type) *valuePlan {
	if p, ok := plans[t]; ok {
		return p
	}
	p := &valuePlan{t: t}
	plans[t] = p // before the fields: a type that contains itself
	// A pointer's methods are its element's, whose plan says.
	p.canon = t.Kind() == reflect.Pointer || !implements(t, textMarshalerType) && !implements(t, marshalerType)
	switch pt := reflect.PointerTo(t); {
	case pt.Implements(unmarshalerType):
		p.kind = planUnmarshaler
		p.marshals = implements(t, marshalerType)
		p.canon = true // as its MarshalJSON writes it: checked per value
		return p
	case pt.Implements(textUnmarshalerType):
		return p // decoded in ways this reader does not follow
	}
	switch t.Kind() {
	case reflect.Pointer:
		p.kind, p.elem = planPointer, planLocked(t.Elem())
	case reflect.Slice:
		p.kind, p.elem = planSlice, planLocked(t.Elem())
		if t.Elem().Kind() == reflect.Uint8 {
			p.canon = false // json.Marshal writes []byte in base64
		}
	case reflect.Map:
		if t.Key().Kind() == reflect.String && !reflect.PointerTo(t.Key()).Implements(textUnmarshalerType) {
			p.kind, p.elem = planMap, planLocked(t.Elem())
			// Map values are not addressable as json.Marshal walks them:
			// only plain values are sure to be written as read.
			switch p.elem.kind {
			case planString, planBool, planInt, planUint:
			default:
				p.canon = false
			}
			if implements(t.Key(), textMarshalerType) {
				p.canon = false
			}
		}
	case reflect.String:
		p.kind = planString
	case reflect.Bool:
		p.kind = planBool
	case reflect.Int, reflect.Int8, reflect.Int16, reflect.Int32, reflect.Int64:
		p.kind = planInt
	case reflect.Uint, reflect.Uint8, reflect.Uint16, reflect.Uint32, reflect.Uint64:
		p.kind = planUint
	case reflect.Struct:
		if names, fields, ok := structFields(t); ok {
			p.kind, p.names, p.fields = planStruct, names, fields
			for i := range p.fields {
				f := &p.fields[i]
				sf := t.Field(f.index)
				f.plan = planLocked(sf.Type)
				_, opts, _ := strings.Cut(sf.Tag.Get("json"), ",")
				omitZero := false
				for o := range strings.SplitSeq(opts, ",") {
					f.omitEmpty = f.omitEmpty || o == "omitempty"
					omitZero = omitZero || o == "omitzero"
				}
				if omitZero {
					p.canon = false // not in policies; left to json.Marshal
				}
				if !f.omitEmpty || !emptyWhenZero(sf.Type) {
					p.written |= 1 << i
				}
			}
		}
	}
	return p
}

// structFields lists the fields encoding/json fills in t by their JSON
// names (resource.JSONFields); false for what this reader leaves to it:
// embedded fields, the ",string" option, two fields of one name, names it
// would not take as they are, more than 64 fields.
func structFields(t reflect.Type) (map[string]int, []fieldPlan, bool) {
	idx, ok := resource.JSONFields(t)
	if !ok || len(idx) > 64 {
		return nil, nil, false
	}
	names := make(map[string]int, len(idx))
	fields := make([]fieldPlan, 0, len(idx))
	for name, i := range idx {
		if !plainName(name) {
			return nil, nil, false
		}
		fields = append(fields, fieldPlan{index: i})
	}
	// In the struct's order, as json.Marshal writes them.
	slices.SortFunc(fields, func(a, b fieldPlan) int { return a.index - b.index })
	for name, i := range idx {
		names[name] = slices.IndexFunc(fields, func(f fieldPlan) bool { return f.index == i })
	}
	return names, fields, true
}

// implements reports whether t or a pointer to it has iface's methods.
func implements(t, iface reflect.Type) bool {
	return t.Implements(iface) || reflect.PointerTo(t).Implements(iface)
}

// emptyWhenZero reports whether omitempty leaves a zero value of t out
// (encoding/json's isEmptyValue of the zero value).
func emptyWhenZero(t reflect.Type) bool {
	switch t.Kind() {
	case reflect.Struct:
		return false
	case reflect.Array:
		return t.Len() == 0
	}
	return true
}

// isEmptyValue is encoding/json's: what omitempty leaves out.
func isEmptyValue(v reflect.Value) bool {
	switch v.Kind() {
	case reflect.Array, reflect.Map, reflect.Slice, reflect.String:
		return v.Len() == 0
	case reflect.Bool, reflect.Int, reflect.Int8, reflect.Int16, reflect.Int32, reflect.Int64,
		reflect.Uint, reflect.Uint8, reflect.Uint16, reflect.Uint32, reflect.Uint64, reflect.Uintptr,
		reflect.Float32, reflect.Float64, reflect.Interface, reflect.Pointer:
		return v.IsZero()
	}
	return false
}

// marshalsAs reports whether v's MarshalJSON (v addressable) writes text.
func marshalsAs(v reflect.Value, text []byte) bool {
	switch m := v.Addr().Interface().(type) {
	case *resource.IntOrString:
		// Its MarshalJSON (json.Marshal of the string or the integer),
		// without allocating.
		if m.IsString {
			return len(text) == len(m.StrVal)+2 && text[0] == '"' && string(text[1:len(text)-1]) == m.StrVal && plainString(m.StrVal)
		}
		var buf [20]byte
		return string(strconv.AppendInt(buf[:0], m.IntVal, 10)) == string(text)
	case json.Marshaler:
		b, err := m.MarshalJSON()
		return err == nil && bytes.Equal(b, text)
	}
	return false
}

// plainString reports whether json.Marshal writes s as it is between quotes.
func plainString(s string) bool {
	for i := 0; i < len(s); i++ {
		if ch := s[i]; ch < 0x20 || ch >= 0x7f || ch == '"' || ch == '\\' || ch == '<' || ch == '>' || ch == '&' {
			return false
		}
	}
	return true
}

// plainName reports a JSON name of letters, digits, '_' and '-' only.
func plainName(s string) bool {
	for _, ch := range s {
		if !(ch >= 'a' && ch <= 'z' || ch >= 'A' && ch <= 'Z' || ch >= '0' && ch <= '9' || ch == '_' || ch == '-') {
			return false
		}
	}
	return s != ""
}

// FuzzDecodeCompactMatchesReflective: on any input the typed reader
// declines what the reflective one declines, and otherwise reads the same
// resource and the same spec JSON (both nil or both equal).
func FuzzDecodeCompactMatchesReflective(f *testing.F) {
	for _, b := range compactSeeds(f) {
		f.Add(b)
	}
	for _, s := range compactFuzzSeeds {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		sameAsReflective(t, data)
	})
}

func sameAsReflective(t *testing.T, data []byte) {
	t.Helper()
	got, gotSpec, gotOK := decodeCompact(data)
	want, wantSpec, wantOK := decodeCompactReflect(data)
	if gotOK != wantOK {
		t.Fatalf("typed read %v, reflective %v\n%s", gotOK, wantOK, data)
	}
	if !reflect.DeepEqual(got, want) {
		t.Fatalf("read differently\ntyped:      %#v\nreflective: %#v\n%s", got, want, data)
	}
	if (gotSpec == nil) != (wantSpec == nil) || !bytes.Equal(gotSpec, wantSpec) {
		t.Fatalf("spec JSON %q, reflective %q\n%s", gotSpec, wantSpec, data)
	}
}
