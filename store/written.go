package store

import (
	"bytes"
	"encoding"
	"encoding/json"
	"maps"
	"reflect"
	"strings"
	"sync"
	"sync/atomic"
	"time"
	"unicode/utf8"

	"github.com/meshtrace/meshtrace/resource"
)

// Own writes: almost every watch event a store meets is the echo of a write
// the same process just made (global's API and bulk apply, a zone applying
// what KDS sends), with the resource in hand. A write registers what it
// sends before sending it (etcd notifies watchers while it applies, before
// the writer has its answer), and the event whose value is byte for byte
// the one registered for its key takes that resource instead of decoding
// the value. A value written by anyone else, or registered for an older or
// newer write of the key, is decoded as before.
//
// The taken resource must be what decoding would give. It is a copy of the
// written resource's Meta (labels copied too, Version from the event)
// sharing its spec: writers hand their resources to the store and never
// change them after, and everyone treats event resources as read-only. A
// resource is registered only when decoding its stored form gives it back
// exactly (reflect.DeepEqual): see canonical. Anything else (an empty map
// where JSON omits it, a time in another location, invalid UTF-8, a raw
// JSON field) is decoded as before.
//
// A write that fails (error, compare failed, cancelled) forgets its entry
// before it returns; an entry whose event never comes (no hub watches its
// type) is dropped once writtenKept newer ones were registered, or sooner
// when the values waiting exceed writtenMaxBytes (oldest first).
type writtenValues struct {
	mu   sync.Mutex
	m    map[string][]*written // by storage key, in registration order
	ring []*written            // registration order; the oldest is dropped first
	next int
	// bytes is the size of the values waiting.
	bytes int
	// hubs is the number of running hubs; without any, nothing is registered.
	hubs atomic.Int32
	// reused counts event values taken instead of decoded (for tests).
	reused atomic.Int64
}

const (
	writtenKept = 4096
	// writtenMaxBytes bounds the values waiting: several transactions of
	// txnChunkBytes in flight fit.
	writtenMaxBytes = 8 << 20
)

type written struct {
	key   string
	value []byte
	r     *resource.Resource
	slot  int
}

// add registers value, the stored form of r, about to be written under key,
// and returns the entry to forget if the write fails; nil when nothing was
// registered.
func (w *writtenValues) add(key string, value []byte, r *resource.Resource) *written {
	return w.addSpec(key, value, r, false)
}

// addSpec is add; specKnown says the caller vouches that r's spec decodes
// from value back to itself (Op.SpecJSON), so it is not walked to check.
func (w *writtenValues) addSpec(key string, value []byte, r *resource.Resource, specKnown bool) *written {
	if w.hubs.Load() == 0 || len(value) > writtenMaxBytes/4 {
		return nil
	}
	snap, ok := snapshot(r, specKnown)
	if !ok {
		return nil
	}
	e := &written{key: key, value: value, r: snap}
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.m == nil {
		w.m = make(map[string][]*written)
		w.ring = make([]*written, writtenKept)
	}
	if old := w.ring[w.next]; old != nil {
		w.dropLocked(old)
	}
	// Over the byte budget: drop the oldest waiting, in ring order from here.
	for i := 1; w.bytes+len(value) > writtenMaxBytes && i < writtenKept; i++ {
		if old := w.ring[(w.next+i)%writtenKept]; old != nil {
			w.dropLocked(old)
		}
	}
	if w.bytes+len(value) > writtenMaxBytes {
		return nil
	}
	w.bytes += len(value)
	e.slot = w.next
	w.ring[w.next] = e
	// A key written again before the event of its last write: both wait.
	w.m[key] = append(w.m[key], e)
	w.next = (w.next + 1) % writtenKept
	return e
}

func (w *writtenValues) dropLocked(e *written) {
	if w.ring[e.slot] != e {
		return // dropped already
	}
	w.ring[e.slot] = nil
	w.bytes -= len(e.value)
	es := w.m[e.key]
	for i, x := range es {
		if x == e {
			es = append(es[:i:i], es[i+1:]...)
			break
		}
	}
	if len(es) == 0 {
		delete(w.m, e.key)
	} else {
		w.m[e.key] = es
	}
}

// forget drops the entries of a write that failed (nil entries are skipped).
func (w *writtenValues) forget(es ...*written) {
	w.mu.Lock()
	defer w.mu.Unlock()
	for _, e := range es {
		if e != nil {
			w.dropLocked(e)
		}
	}
}

// take returns the resource registered for key when its stored form is
// value, with Version rev, and forgets it; nil otherwise.
func (w *writtenValues) take(key string, value []byte, rev int64) *resource.Resource {
	w.mu.Lock()
	var e *written
	for _, x := range w.m[key] {
		if bytes.Equal(x.value, value) {
			e = x
			break
		}
	}
	if e == nil {
		w.mu.Unlock()
		return nil
	}
	w.dropLocked(e)
	w.mu.Unlock()
	w.reused.Add(1)
	e.r.Version = rev
	return e.r
}

// pending is the number of registered entries and the size of their
// values (for tests).
func (w *writtenValues) pending() (int, int) {
	w.mu.Lock()
	defer w.mu.Unlock()
	n := 0
	for _, es := range w.m {
		n += len(es)
	}
	return n, w.bytes
}

// snapshot returns what decoding r's stored form gives, from r itself: its
// Meta with the labels copied and no version, and its spec (the zero spec
// when nil). ok is false when decoding would not give r back exactly. With
// specKnown the spec is taken to decode back to itself when of the type
// decoding makes.
func snapshot(r *resource.Resource, specKnown bool) (*resource.Resource, bool) {
	d, ok := resource.Lookup(r.Type)
	if !ok {
		return nil, false
	}
	m := r.Meta
	m.Version = 0
	if !canonicalMeta(&m) {
		return nil, false
	}
	m.Labels = maps.Clone(m.Labels)
	spec := r.Spec
	if spec == nil {
		spec = d.NewSpec()
	} else if specKnown {
		if v := reflect.ValueOf(spec); v.Type() != specType(d) || v.IsNil() {
			return nil, false
		}
	} else if !canonicalSpec(d, spec) {
		return nil, false
	}
	return &resource.Resource{Meta: m, Spec: spec}, true
}

// canonicalMeta is canonical for a Meta, without reflection (every write
// asks it): names and labels valid UTF-8, an empty label map nil (omitempty
// leaves it out, and decoding gives nil), times in UTC without a monotonic
// reading, no version (TestCanonicalMetaMatchesCanonical).
func canonicalMeta(m *resource.Meta) bool {
	if !utf8.ValidString(string(m.Type)) || !utf8.ValidString(m.Mesh) || !utf8.ValidString(m.Name) || m.Version != 0 {
		return false
	}
	if m.Labels != nil && len(m.Labels) == 0 {
		return false
	}
	for k, v := range m.Labels {
		if !utf8.ValidString(k) || !utf8.ValidString(v) {
			return false
		}
	}
	for _, tm := range []time.Time{m.CreationTime, m.ModificationTime} {
		if tm.Location() != time.UTC || tm != tm.Round(0) {
			return false
		}
	}
	return true
}

// canonicalSpec reports whether spec is of the type decoding makes for d
// (which must start from the zero value) and decodes back to itself.
func canonicalSpec(d *resource.Descriptor, spec resource.Spec) bool {
	v := reflect.ValueOf(spec)
	if v.Kind() != reflect.Pointer || v.IsNil() || v.Type() != specType(d) {
		return false
	}
	return canonical(v.Elem(), false)
}

var specTypes sync.Map // resource.Type -> reflect.Type, nil when NewSpec is not a pointer to a zero value

func specType(d *resource.Descriptor) reflect.Type {
	if t, ok := specTypes.Load(d.Type); ok {
		t, _ := t.(reflect.Type)
		return t
	}
	var t reflect.Type
	if v := reflect.ValueOf(d.NewSpec()); v.Kind() == reflect.Pointer && !v.IsNil() && v.Elem().IsZero() {
		t = v.Type()
	}
	specTypes.Store(d.Type, t)
	return t
}

var (
	timeType          = reflect.TypeFor[time.Time]()
	intOrStringType   = reflect.TypeFor[resource.IntOrString]()
	residencyModeType = reflect.TypeFor[resource.ResidencyMode]()
	rawMessageType    = reflect.TypeFor[json.RawMessage]()
	marshalerTypes    = []reflect.Type{
		reflect.TypeFor[json.Marshaler](), reflect.TypeFor[json.Unmarshaler](),
		reflect.TypeFor[encoding.TextMarshaler](), reflect.TypeFor[encoding.TextUnmarshaler](),
	}
)

// canonical reports whether encoding/json, encoding v and decoding the
// result into a zero value of its type, gives a value reflect.DeepEqual to
// v. omitEmpty says v is a struct field tagged omitempty. It answers false
// when unsure: the caller then decodes.
func canonical(v reflect.Value, omitEmpty bool) bool {
	return checkerOf(v.Type())(v, omitEmpty)
}

// checker is canonical for values of one type, built once per type (the
// walk of a MeshTrace then costs no type inspection).
type checker func(v reflect.Value, omitEmpty bool) bool

var (
	checkersMu sync.Mutex
	checkers   sync.Map // reflect.Type -> checker
)

func checkerOf(t reflect.Type) checker {
	if c, ok := checkers.Load(t); ok {
		return c.(checker)
	}
	checkersMu.Lock()
	defer checkersMu.Unlock()
	return buildChecker(t, map[reflect.Type]*checker{})
}

// buildChecker makes t's checker; building holds those being built, so a
// recursive type refers to itself. Called with checkersMu held.
func buildChecker(t reflect.Type, building map[reflect.Type]*checker) checker {
	if c, ok := checkers.Load(t); ok {
		return c.(checker)
	}
	if p, ok := building[t]; ok {
		return func(v reflect.Value, omitEmpty bool) bool { return (*p)(v, omitEmpty) }
	}
	p := new(checker)
	building[t] = p
	*p = makeChecker(t, building)
	delete(building, t)
	checkers.Store(t, *p)
	return *p
}

// valueOf is v's value as a T, read through its address when it has one.
func valueOf[T any](v reflect.Value) T {
	if v.CanAddr() {
		return *v.Addr().Interface().(*T)
	}
	return v.Interface().(T)
}

func never(reflect.Value, bool) bool  { return false }
func always(reflect.Value, bool) bool { return true }

func makeChecker(t reflect.Type, building map[reflect.Type]*checker) checker {
	switch t {
	case timeType:
		return func(v reflect.Value, _ bool) bool {
			tm := valueOf[time.Time](v)
			// Decoding gives UTC as a nil location and no monotonic reading.
			return tm.Location() == time.UTC && tm == tm.Round(0)
		}
	case intOrStringType:
		return func(v reflect.Value, _ bool) bool {
			x := valueOf[resource.IntOrString](v)
			if x.IsString {
				return x.IntVal == 0 && utf8.ValidString(x.StrVal)
			}
			return x.StrVal == ""
		}
	case residencyModeType:
		return func(v reflect.Value, _ bool) bool { return utf8.ValidString(v.String()) }
	case rawMessageType:
		// Encoding compacts and escapes it: only an omitted one is sure.
		return func(v reflect.Value, omitEmpty bool) bool { return omitEmpty && v.IsNil() }
	}
	// A pointer's methods are its element's: that is checked below.
	if t.Kind() != reflect.Pointer && hasMarshaler(t) {
		return never
	}
	switch t.Kind() {
	case reflect.Bool, reflect.Int, reflect.Int8, reflect.Int16, reflect.Int32, reflect.Int64,
		reflect.Uint, reflect.Uint8, reflect.Uint16, reflect.Uint32, reflect.Uint64, reflect.Float32, reflect.Float64:
		return always
	case reflect.String:
		return func(v reflect.Value, _ bool) bool { return utf8.ValidString(v.String()) }
	case reflect.Pointer:
		elem := buildChecker(t.Elem(), building)
		nilable := false
		switch t.Elem().Kind() {
		case reflect.Slice, reflect.Map, reflect.Pointer, reflect.Interface:
			nilable = true
		}
		return func(v reflect.Value, _ bool) bool {
			if v.IsNil() {
				return true
			}
			e := v.Elem()
			if nilable && e.IsNil() {
				// Encoded as null, which decodes to a nil pointer.
				return false
			}
			return elem(e, false)
		}
	case reflect.Interface:
		return func(v reflect.Value, _ bool) bool { return v.IsNil() }
	case reflect.Struct:
		return structChecker(t, building)
	case reflect.Slice:
		if t.Elem().Kind() == reflect.Uint8 && !hasMarshaler(t.Elem()) {
			return func(v reflect.Value, omitEmpty bool) bool { return v.IsNil() || v.Len() > 0 || !omitEmpty }
		}
		elem := buildChecker(t.Elem(), building)
		return func(v reflect.Value, omitEmpty bool) bool {
			if v.IsNil() {
				return true
			}
			if v.Len() == 0 {
				return !omitEmpty
			}
			for i := range v.Len() {
				if !elem(v.Index(i), false) {
					return false
				}
			}
			return true
		}
	case reflect.Array:
		elem := buildChecker(t.Elem(), building)
		return func(v reflect.Value, _ bool) bool {
			for i := range v.Len() {
				if !elem(v.Index(i), false) {
					return false
				}
			}
			return true
		}
	case reflect.Map:
		kt := t.Key()
		if hasMarshaler(kt) {
			return never
		}
		var keyOK func(reflect.Value) bool
		switch kt.Kind() {
		case reflect.String:
			keyOK = func(k reflect.Value) bool { return utf8.ValidString(k.String()) }
		case reflect.Int, reflect.Int8, reflect.Int16, reflect.Int32, reflect.Int64,
			reflect.Uint, reflect.Uint8, reflect.Uint16, reflect.Uint32, reflect.Uint64:
			keyOK = func(reflect.Value) bool { return true }
		default:
			return never
		}
		elem := buildChecker(t.Elem(), building)
		return func(v reflect.Value, omitEmpty bool) bool {
			if v.IsNil() {
				return true
			}
			if v.Len() == 0 {
				return !omitEmpty
			}
			it := v.MapRange()
			for it.Next() {
				if !keyOK(it.Key()) || !elem(it.Value(), false) {
					return false
				}
			}
			return true
		}
	}
	return never
}

func hasMarshaler(t reflect.Type) bool {
	pt := reflect.PointerTo(t)
	for _, m := range marshalerTypes {
		if t.Implements(m) || pt.Implements(m) {
			return true
		}
	}
	return false
}

type fieldChecker struct {
	index     int
	omitEmpty bool
	// skip: not encoded (unexported or tagged "-"), so it must be zero.
	skip  bool
	check checker
}

// structChecker checks every field as encoding/json treats it; structs it
// does not handle (embedded fields, the string option, two fields of one
// name) are never canonical.
func structChecker(t reflect.Type, building map[reflect.Type]*checker) checker {
	var fields []fieldChecker
	names := map[string]bool{}
	for i := range t.NumField() {
		f := t.Field(i)
		tag := f.Tag.Get("json")
		if f.Anonymous {
			return never
		}
		if !f.IsExported() || tag == "-" {
			fields = append(fields, fieldChecker{index: i, skip: true})
			continue
		}
		name, opts, _ := strings.Cut(tag, ",")
		if name == "" {
			name = f.Name
		}
		if names[name] {
			return never
		}
		names[name] = true
		fc := fieldChecker{index: i}
		for o := range strings.SplitSeq(opts, ",") {
			switch o {
			case "omitempty":
				fc.omitEmpty = true
			case "string":
				return never
			}
		}
		fc.check = buildChecker(f.Type, building)
		fields = append(fields, fc)
	}
	return func(v reflect.Value, _ bool) bool {
		for _, f := range fields {
			fv := v.Field(f.index)
			if f.skip {
				if !fv.IsZero() {
					return false
				}
				continue
			}
			if !f.check(fv, f.omitEmpty) {
				return false
			}
		}
		return true
	}
}
