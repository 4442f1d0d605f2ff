package resource

import (
	"reflect"
	"slices"
	"strconv"
	"time"
	"unsafe"
)

// decodeDirect decodes a policy in Universal JSON straight from its bytes
// into its typed resource, without the generic tree scanJSONTree builds and
// decodeUniversalFast then walks (a map per object, a boxed value per
// string and number): an API PUT, and every resource a zone receives, is
// such a document. It takes only documents that route takes and fills the
// same way: "type" first, naming a policy type, then known envelope fields
// and "spec", each once, every value fitting its field (fastFill's rules,
// read from the bytes: a null leaves a field zero, numbers parsed from
// their text). ok is false for anything else (another order, a key twice,
// an unknown field, a type mismatch, trailing data), and the caller takes
// the tree route, which also words the errors. FuzzDirectMatchesTree checks
// both agree.
func decodeDirect(data []byte) (*Resource, bool) {
	if !directOn || !scanTree || !fastFillOn {
		return nil, false
	}
	s := jsonScanner{data: data}
	s.space()
	if !s.consume('{') {
		return nil, false
	}
	s.space()
	k, ok := s.key()
	if !ok || string(k) != "type" || !s.at('"') {
		return nil, false
	}
	typ, ok := s.strBytes()
	if !ok {
		return nil, false
	}
	d, ok := registry[Type(typ)] // Lookup, without copying the name
	if !ok || !d.IsPolicy {
		return nil, false
	}
	// One copy of the document, from which every plain string of the
	// resource is cut, instead of one allocation per string.
	s.src = string(data)
	r := &Resource{Meta: Meta{Type: d.Type}, Spec: d.NewSpec()}
	meta := reflect.ValueOf(&r.Meta).Elem()
	var seen uint64 // the envelope's fields met, by index in Meta; spec is bit 63
	for {
		s.space()
		if s.consume('}') {
			break
		}
		if !s.consume(',') {
			return nil, false
		}
		s.space()
		k, ok := s.key()
		if !ok {
			return nil, false
		}
		var bit uint64
		var dst reflect.Value
		var p *fillPlan
		if string(k) == "spec" {
			bit, dst = 1<<63, reflect.ValueOf(r.Spec).Elem()
			p = planOf(dst.Type())
		} else {
			i, known := metaFields[string(k)]
			if !known || string(k) == "type" || !slices.Contains(universalMetaFields, string(k)) {
				return nil, false
			}
			bit, dst, p = 1<<i, meta.Field(i), metaPlan.fieldPlan(i)
		}
		if seen&bit != 0 || !directFill(&s, dst, p) {
			return nil, false
		}
		seen |= bit
	}
	s.space()
	if s.i != len(s.data) {
		return nil, false
	}
	if len(r.Labels) == 0 {
		r.Labels = nil
	}
	return r, true
}

// directOn turns decodeDirect on; tests turn it off to compare.
var directOn = true

var (
	typeStringMap = reflect.TypeFor[map[string]string]()
	metaPlan      = planOf(reflect.TypeFor[Meta]())
)

// directFill reads the value at s.i into dst (of p's type) as fastFill
// fills dst from the value's tree; false as soon as fastFill would refuse
// it, or when the object holds a key twice (the tree keeps the last, a
// fill would merge).
func directFill(s *jsonScanner, dst reflect.Value, p *fillPlan) bool {
	if s.i >= len(s.data) {
		return false
	}
	if s.data[s.i] == 'n' {
		if !s.literal("null") {
			return false
		}
		switch p.typ.Kind() {
		case reflect.Pointer, reflect.Map, reflect.Slice, reflect.Interface:
			dst.SetZero()
		}
		return true
	}
	switch p.kind {
	case fillPointer:
		if dst.IsNil() {
			dst.Set(reflect.New(p.typ.Elem()))
		}
		return directFill(s, dst.Elem(), p.elemPlan())
	case fillStruct:
		if p.tooWide || !s.consume('{') {
			return false
		}
		var seen uint64
		return s.members(func(k []byte) bool {
			i, known := p.fieldIndex(k)
			if !known || seen&(1<<i) != 0 || !directFill(s, dst.Field(i), p.fieldPlan(i)) {
				return false
			}
			seen |= 1 << i
			return true
		})
	case fillMap:
		if !s.consume('{') {
			return false
		}
		if p.isStrMap {
			return s.stringMap(dst)
		}
		t := p.typ
		if dst.IsNil() {
			dst.Set(reflect.MakeMap(t))
		}
		ep := p.elemPlan()
		return s.members(func(k []byte) bool {
			key := reflect.ValueOf(string(k)).Convert(t.Key())
			if dst.MapIndex(key).IsValid() {
				return false
			}
			e := reflect.New(t.Elem()).Elem()
			if !directFill(s, e, ep) {
				return false
			}
			dst.SetMapIndex(key, e)
			return true
		})
	case fillSlice:
		if !s.consume('[') {
			return false
		}
		s.space()
		if s.consume(']') {
			// Empty, but not nil, as the tree route leaves it.
			dst.Set(reflect.MakeSlice(p.typ, 0, 0))
			return true
		}
		// The elements are appended to dst itself (nil here: a field is
		// filled once) rather than to a slice made aside and then copied
		// into it; on failure the whole resource is dropped.
		dst.SetZero()
		ep := p.elemPlan()
		for n := 0; ; n++ {
			if n > 0 {
				s.space()
				if s.consume(']') {
					return true
				}
				if !s.consume(',') {
					return false
				}
				s.space()
			}
			if n == dst.Cap() {
				dst.Grow(1)
			}
			dst.SetLen(n + 1)
			if !directFill(s, dst.Index(n), ep) {
				return false
			}
		}
	case fillString:
		if !s.at('"') {
			return false
		}
		v, ok := s.text()
		if ok {
			dst.SetString(v)
		}
		return ok
	case fillBool:
		switch {
		case s.data[s.i] == 't' && s.literal("true"):
			dst.SetBool(true)
		case s.data[s.i] == 'f' && s.literal("false"):
			dst.SetBool(false)
		default:
			return false
		}
		return true
	case fillInt, fillUint, fillFloat, fillIntOrString, fillTime:
		return s.scalar(dst, p)
	}
	return false
}

// scalar reads a number or a string into a field of p's kind, as fastFill
// does from the tree's json.Number or string.
func (s *jsonScanner) scalar(dst reflect.Value, p *fillPlan) bool {
	var text string
	isString := s.at('"')
	if isString {
		v, ok := s.text()
		if !ok {
			return false
		}
		text = v
	} else if c := s.data[s.i]; c == '-' || (c >= '0' && c <= '9') {
		start := s.i
		if _, ok := s.numberEnd(); !ok {
			return false
		}
		// Only parsed, never kept (strconv copies what its errors quote):
		// no copy of the number's text.
		text = unsafe.String(&s.data[start], s.i-start)
	} else {
		return false
	}
	switch p.kind {
	case fillInt:
		i, err := strconv.ParseInt(text, 10, p.bits)
		if isString || err != nil {
			return false
		}
		dst.SetInt(i)
	case fillUint:
		u, err := strconv.ParseUint(text, 10, p.bits)
		if isString || err != nil {
			return false
		}
		dst.SetUint(u)
	case fillFloat:
		f, err := strconv.ParseFloat(text, p.bits)
		if isString || err != nil {
			return false
		}
		dst.SetFloat(f)
	case fillIntOrString:
		ios := dst.Addr().Interface().(*IntOrString)
		if isString {
			*ios = IntOrString{IsString: true, StrVal: text}
			return true
		}
		i, err := strconv.ParseInt(text, 10, 64)
		if err != nil {
			return false
		}
		*ios = IntOrString{IntVal: i}
	case fillTime:
		if !isString {
			return false
		}
		if _, err := time.Parse(time.RFC3339Nano, text); err != nil {
			return false
		}
		var tm time.Time
		if err := tm.UnmarshalText([]byte(text)); err != nil {
			return false
		}
		dst.Set(reflect.ValueOf(tm))
	default:
		return false
	}
	return true
}

// text reads a string at s.i (its opening quote) as str does, but a plain
// string (the bytes of data themselves) is cut from s.src, the one copy of
// data decodeDirect makes, instead of copied on its own.
func (s *jsonScanner) text() (string, bool) {
	start := s.i
	b, ok := s.strBytes()
	if !ok {
		return "", false
	}
	if s.src != "" && len(b) == s.i-start-2 && (len(b) == 0 || &b[0] == &s.data[start+1]) {
		return s.src[start+1 : s.i-1], true
	}
	return string(b), true
}

// stringMap reads the rest of an object (its '{' read) into a
// map[string]string without reflection per entry; a null value reads as
// "", as fastFill leaves a string for null.
func (s *jsonScanner) stringMap(dst reflect.Value) bool {
	m, _ := dst.Interface().(map[string]string)
	if m == nil {
		m = map[string]string{}
		dst.Set(reflect.ValueOf(m))
	}
	return s.members(func(k []byte) bool {
		if _, dup := m[string(k)]; dup || s.i >= len(s.data) {
			return false
		}
		key := s.keyText(k)
		var v string
		switch s.data[s.i] {
		case '"':
			var ok bool
			if v, ok = s.text(); !ok {
				return false
			}
		case 'n':
			if !s.literal("null") {
				return false
			}
		default:
			return false
		}
		m[key] = v
		return true
	})
}

// members reads the rest of an object (its '{' read), calling member with
// each key and the scanner at that key's value; it reports whether the
// object was read to its '}' and every member call succeeded.
func (s *jsonScanner) members(member func(k []byte) bool) bool {
	for first := true; ; first = false {
		s.space()
		if s.consume('}') {
			return true
		}
		if !first {
			if !s.consume(',') {
				return false
			}
			s.space()
		}
		k, ok := s.key()
		if !ok || !member(k) {
			return false
		}
	}
}

// key reads an object key and the colon after it, and the space before
// its value. The bytes may be data's own: string(k) in a map index or a
// comparison copies nothing.
func (s *jsonScanner) key() ([]byte, bool) {
	if !s.at('"') {
		return nil, false
	}
	s.k0 = s.i
	k, ok := s.strBytes()
	if !ok {
		return nil, false
	}
	s.space()
	if !s.consume(':') {
		return nil, false
	}
	s.space()
	return k, true
}

// at reports whether the byte at s.i is c.
func (s *jsonScanner) at(c byte) bool { return s.i < len(s.data) && s.data[s.i] == c }

// consume steps over c when it is the byte at s.i.
func (s *jsonScanner) consume(c byte) bool {
	if s.at(c) {
		s.i++
		return true
	}
	return false
}

// keyText is the key k, just read by key, as a string: cut from s.src when
// k is data's own bytes, as text does for values.
func (s *jsonScanner) keyText(k []byte) string {
	if s.src != "" && s.k0+1+len(k) < len(s.data) && (len(k) == 0 || &k[0] == &s.data[s.k0+1]) && s.data[s.k0+1+len(k)] == '"' {
		return s.src[s.k0+1 : s.k0+1+len(k)]
	}
	return string(k)
}
