package resource

import (
	"encoding/json"
	"reflect"
	"strconv"
	"sync"
	"sync/atomic"
	"time"
)

// fastFill checks tree against dst's type and fills dst in the same walk,
// for the common case: plain structs, maps with string keys, slices,
// pointers, strings, bools, numbers, IntOrString and times, every value
// fitting its field. It reports false, having possibly filled part of dst,
// as soon as anything is unusual or wrong; the caller then takes the two
// steps (checkTree, which names every problem, then fill), so errors and
// odd types keep exactly their old handling. It builds no field paths and
// asks reflection about each type once. FuzzFillMatchesEncodingJSON
// compares it with encoding/json.
func fastFill(tree any, dst reflect.Value) bool {
	t := dst.Type()
	if tree == nil {
		switch t.Kind() {
		case reflect.Pointer, reflect.Map, reflect.Slice, reflect.Interface:
			dst.SetZero()
		}
		return true
	}
	p := planOf(t)
	switch p.kind {
	case fillPointer:
		if dst.IsNil() {
			dst.Set(reflect.New(t.Elem()))
		}
		return fastFill(tree, dst.Elem())
	case fillStruct:
		m, ok := tree.(map[string]any)
		if !ok {
			return false
		}
		for k, v := range m {
			i, known := p.fields[k]
			if !known || !fastFill(v, dst.Field(i)) {
				return false
			}
		}
		return true
	case fillMap:
		m, ok := tree.(map[string]any)
		if !ok {
			return false
		}
		if dst.IsNil() {
			dst.Set(reflect.MakeMapWithSize(t, len(m)))
		}
		for k, v := range m {
			e := reflect.New(t.Elem()).Elem()
			if !fastFill(v, e) {
				return false
			}
			dst.SetMapIndex(reflect.ValueOf(k).Convert(t.Key()), e)
		}
		return true
	case fillSlice:
		a, ok := tree.([]any)
		if !ok {
			return false
		}
		out := reflect.MakeSlice(t, len(a), len(a))
		for i, v := range a {
			if !fastFill(v, out.Index(i)) {
				return false
			}
		}
		dst.Set(out)
		return true
	case fillString:
		s, ok := tree.(string)
		if ok {
			dst.SetString(s)
		}
		return ok
	case fillBool:
		b, ok := tree.(bool)
		if ok {
			dst.SetBool(b)
		}
		return ok
	case fillInt:
		n, ok := tree.(json.Number)
		if !ok {
			return false
		}
		i, err := strconv.ParseInt(string(n), 10, t.Bits())
		if err != nil {
			return false
		}
		dst.SetInt(i)
		return true
	case fillUint:
		n, ok := tree.(json.Number)
		if !ok {
			return false
		}
		u, err := strconv.ParseUint(string(n), 10, t.Bits())
		if err != nil {
			return false
		}
		dst.SetUint(u)
		return true
	case fillFloat:
		n, ok := tree.(json.Number)
		if !ok {
			return false
		}
		f, err := strconv.ParseFloat(string(n), t.Bits())
		if err != nil {
			return false
		}
		dst.SetFloat(f)
		return true
	case fillIntOrString:
		// As IntOrString.UnmarshalJSON reads the value's JSON.
		switch v := tree.(type) {
		case string:
			dst.Set(reflect.ValueOf(IntOrString{IsString: true, StrVal: v}))
			return true
		case json.Number:
			i, err := strconv.ParseInt(string(v), 10, 64)
			if err != nil {
				return false
			}
			dst.Set(reflect.ValueOf(IntOrString{IntVal: i}))
			return true
		}
		return false
	case fillTime:
		// checkTree's test, then what time.Time.UnmarshalJSON does.
		s, ok := tree.(string)
		if !ok {
			return false
		}
		if _, err := time.Parse(time.RFC3339Nano, s); err != nil {
			return false
		}
		var tm time.Time
		if err := tm.UnmarshalText([]byte(s)); err != nil {
			return false
		}
		dst.Set(reflect.ValueOf(tm))
		return true
	}
	return false
}

type fillKind uint8

const (
	fillSlow fillKind = iota // left to checkTree and fill
	fillPointer
	fillStruct
	fillMap
	fillSlice
	fillString
	fillBool
	fillInt
	fillUint
	fillFloat
	fillIntOrString
	fillTime
)

type fillPlan struct {
	kind   fillKind
	fields map[string]int // fillStruct: JSON name -> field index

	// What directFill asks of a value of this type, kept here so that it
	// does not ask reflection (or fillPlans) again for every value.
	typ      reflect.Type
	bits     int                        // fillInt, fillUint, fillFloat: t.Bits()
	names    []string                   // fillStruct: the JSON names of fields, with...
	index    []int                      // ...their field indexes, for a short linear lookup
	tooWide  bool                       // fillStruct: more fields than a uint64 can mark
	isStrMap bool                       // fillMap: map[string]string
	elem     atomic.Pointer[fillPlan]   // pointer, map, slice: the element's plan, once looked up
	field    []atomic.Pointer[fillPlan] // fillStruct: each field's plan, once looked up
}

// elemPlan is planOf(p.typ.Elem()), looked up once per type. Plans are
// found lazily rather than built with their type so that recursive types
// need no cycle handling; two goroutines may both look one up, and store
// the same plan.
func (p *fillPlan) elemPlan() *fillPlan {
	if e := p.elem.Load(); e != nil {
		return e
	}
	e := planOf(p.typ.Elem())
	p.elem.Store(e)
	return e
}

// fieldPlan is planOf of field i's type, looked up once per type.
func (p *fillPlan) fieldPlan(i int) *fillPlan {
	if f := p.field[i].Load(); f != nil {
		return f
	}
	f := planOf(p.typ.Field(i).Type)
	p.field[i].Store(f)
	return f
}

// fieldIndex is p.fields[string(k)] without hashing: structs here have
// few fields.
func (p *fillPlan) fieldIndex(k []byte) (int, bool) {
	for j, n := range p.names {
		if n == string(k) {
			return p.index[j], true
		}
	}
	return 0, false
}

var (
	fillPlans       sync.Map // reflect.Type -> *fillPlan
	typeIntOrString = reflect.TypeFor[IntOrString]()
)

// planOf says how fastFill handles t, in the order checkTree and fill look
// at a type: raw JSON, times and types with their own decoding first.
func planOf(t reflect.Type) *fillPlan {
	if p, ok := fillPlans.Load(t); ok {
		return p.(*fillPlan)
	}
	p := &fillPlan{kind: fillSlow, typ: t}
	k := t.Kind()
	switch {
	case t == typeRawMessage:
	case t == typeTime:
		p.kind = fillTime
	case t == typeIntOrString:
		p.kind = fillIntOrString
	case k == reflect.Pointer:
		p.kind = fillPointer
	case k != reflect.Interface && (reflect.PointerTo(t).Implements(typeUnmarshaler) || reflect.PointerTo(t).Implements(typeTextUnmarshaler)):
	case k == reflect.Struct:
		if idx, ok := structFields(t); ok {
			p.kind, p.fields = fillStruct, idx
			p.tooWide = t.NumField() > 64
			p.field = make([]atomic.Pointer[fillPlan], t.NumField())
			for name, i := range idx {
				p.names = append(p.names, name)
				p.index = append(p.index, i)
			}
		}
	case k == reflect.Map:
		if t.Key().Kind() == reflect.String {
			p.kind = fillMap
			p.isStrMap = t == typeStringMap
		}
	case k == reflect.Slice:
		if t.Elem().Kind() != reflect.Uint8 {
			p.kind = fillSlice
		}
	case k == reflect.String:
		p.kind = fillString
	case k == reflect.Bool:
		p.kind = fillBool
	case k >= reflect.Int && k <= reflect.Int64:
		p.kind, p.bits = fillInt, t.Bits()
	case k >= reflect.Uint && k <= reflect.Uint64:
		p.kind, p.bits = fillUint, t.Bits()
	case k == reflect.Float32 || k == reflect.Float64:
		p.kind, p.bits = fillFloat, t.Bits()
	}
	fillPlans.Store(t, p)
	return p
}
