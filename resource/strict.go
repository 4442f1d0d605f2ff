package resource

import (
	"bytes"
	"encoding"
	"encoding/json"
	"fmt"
	"reflect"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"
)

// The strict decoder works in two steps: the document is first parsed into a
// generic tree (maps, slices, json.Number, strings, bools), the tree is checked
// against the Go type by reflection, which names the full path of every unknown
// field and wrong JSON type, and only a tree that passed is handed to
// encoding/json to fill the typed value.

var (
	typeTime        = reflect.TypeFor[time.Time]()
	typeRawMessage  = reflect.TypeFor[json.RawMessage]()
	typeUnmarshaler = reflect.TypeFor[json.Unmarshaler]()
)

// parseJSONTree parses one JSON value, keeping numbers exact.
func parseJSONTree(data []byte) (any, error) {
	if scanTree {
		if tree, ok := scanJSONTree(data); ok {
			return tree, nil
		}
	}
	return decodeJSONTree(data)
}

// scanTree turns on scanJSONTree; tests turn it off to compare.
var scanTree = true

// decodeJSONTree is parseJSONTree by encoding/json.
func decodeJSONTree(data []byte) (any, error) {
	dec := json.NewDecoder(bytes.NewReader(data))
	dec.UseNumber()
	var v any
	if err := dec.Decode(&v); err != nil {
		return nil, err
	}
	if _, err := dec.Token(); err == nil {
		return nil, fmt.Errorf("unexpected data after the JSON value")
	}
	return v, nil
}

// decodeStrict checks tree against the type of target (a pointer) and, when it
// fits, fills target. Violations are reported under path.
// target must hold no maps, slices or pointers of its own yet: a failed
// fastFill is undone by restoring a shallow copy.
func decodeStrict(path string, tree any, target any, errs *ValidationErrors) {
	before := len(*errs)
	t := reflect.TypeOf(target).Elem()
	if fastFillOn {
		dst := reflect.ValueOf(target).Elem()
		saved := reflect.New(t).Elem()
		saved.Set(dst)
		if fastFill(tree, dst) {
			return
		}
		dst.Set(saved)
	}
	// A valid tree is checked in map order; only when something is wrong is
	// it checked again in key order, so the errors come in a stable order.
	checkTree(path, tree, t, errs, false)
	if len(*errs) > before {
		*errs = (*errs)[:before]
		checkTree(path, tree, t, errs, true)
		return
	}
	if err := decodeFill(tree, reflect.ValueOf(target).Elem()); err != nil {
		errs.Add(path, "cannot decode: "+err.Error())
	}
}

// fillViaJSON fills dst from a checked tree the long way: encode the tree,
// let encoding/json decode it.
func fillViaJSON(tree any, dst reflect.Value) error {
	raw, err := json.Marshal(tree)
	if err != nil {
		return err
	}
	return json.Unmarshal(raw, dst.Addr().Interface())
}

// decodeFill is fill; tests swap in fillViaJSON to compare (and turn
// fastFillOn off).
var (
	decodeFill = fill
	fastFillOn = true
)

var typeTextUnmarshaler = reflect.TypeFor[encoding.TextUnmarshaler]()

// fill sets dst from a tree that checkTree accepted for dst's type, as
// encoding/json would decode the tree's JSON into it, without encoding and
// parsing it again. Types with their own decoding (Unmarshaler,
// TextUnmarshaler, time, raw JSON, interfaces, arrays, structs with embedded
// or ",string" fields) go through encoding/json.
func fill(tree any, dst reflect.Value) error {
	t := dst.Type()
	if tree == nil {
		switch t.Kind() {
		case reflect.Pointer, reflect.Map, reflect.Slice, reflect.Interface:
			dst.SetZero()
		}
		return nil
	}
	if t.Kind() != reflect.Pointer && (reflect.PointerTo(t).Implements(typeUnmarshaler) || reflect.PointerTo(t).Implements(typeTextUnmarshaler)) {
		return fillViaJSON(tree, dst)
	}
	switch t.Kind() {
	case reflect.Pointer:
		if t.Implements(typeUnmarshaler) || t.Implements(typeTextUnmarshaler) {
			return fillViaJSON(tree, dst)
		}
		if dst.IsNil() {
			dst.Set(reflect.New(t.Elem()))
		}
		return fill(tree, dst.Elem())
	case reflect.Struct:
		idx, ok := structFields(t)
		m, isObj := tree.(map[string]any)
		if !ok || !isObj {
			return fillViaJSON(tree, dst)
		}
		for k, v := range m {
			i, known := idx[k]
			if !known {
				return fmt.Errorf("unknown field %q", k)
			}
			if err := fill(v, dst.Field(i)); err != nil {
				return err
			}
		}
		return nil
	case reflect.Map:
		m, isObj := tree.(map[string]any)
		if !isObj || t.Key().Kind() != reflect.String {
			return fillViaJSON(tree, dst)
		}
		if dst.IsNil() {
			dst.Set(reflect.MakeMapWithSize(t, len(m)))
		}
		for k, v := range m {
			e := reflect.New(t.Elem()).Elem()
			if err := fill(v, e); err != nil {
				return err
			}
			dst.SetMapIndex(reflect.ValueOf(k).Convert(t.Key()), e)
		}
		return nil
	case reflect.Slice:
		a, isArr := tree.([]any)
		if !isArr || t.Elem().Kind() == reflect.Uint8 {
			return fillViaJSON(tree, dst)
		}
		out := reflect.MakeSlice(t, len(a), len(a))
		for i, v := range a {
			if err := fill(v, out.Index(i)); err != nil {
				return err
			}
		}
		dst.Set(out)
		return nil
	case reflect.String:
		s, ok := tree.(string)
		if !ok {
			return fillViaJSON(tree, dst)
		}
		dst.SetString(s)
		return nil
	case reflect.Bool:
		b, ok := tree.(bool)
		if !ok {
			return fillViaJSON(tree, dst)
		}
		dst.SetBool(b)
		return nil
	case reflect.Int, reflect.Int8, reflect.Int16, reflect.Int32, reflect.Int64:
		n, ok := tree.(json.Number)
		if !ok {
			return fillViaJSON(tree, dst)
		}
		i, err := strconv.ParseInt(n.String(), 10, t.Bits())
		if err != nil {
			return fillViaJSON(tree, dst)
		}
		dst.SetInt(i)
		return nil
	case reflect.Uint, reflect.Uint8, reflect.Uint16, reflect.Uint32, reflect.Uint64:
		n, ok := tree.(json.Number)
		if !ok {
			return fillViaJSON(tree, dst)
		}
		u, err := strconv.ParseUint(n.String(), 10, t.Bits())
		if err != nil {
			return fillViaJSON(tree, dst)
		}
		dst.SetUint(u)
		return nil
	case reflect.Float32, reflect.Float64:
		n, ok := tree.(json.Number)
		if !ok {
			return fillViaJSON(tree, dst)
		}
		f, err := strconv.ParseFloat(n.String(), t.Bits())
		if err != nil {
			return fillViaJSON(tree, dst)
		}
		dst.SetFloat(f)
		return nil
	}
	return fillViaJSON(tree, dst)
}

var structFieldCache sync.Map // reflect.Type -> structIndex

type structIndex struct {
	idx map[string]int
	ok  bool
}

// JSONFields maps the JSON names of a plain struct's fields to their index,
// as encoding/json names them; false for structs with embedded fields, a
// ",string" option or two fields of one name. The map is shared: do not
// change it.
func JSONFields(t reflect.Type) (map[string]int, bool) { return structFields(t) }

// structFields maps the JSON names of a plain struct's fields to their
// index; ok is false for structs fill leaves to encoding/json (embedded
// fields, ",string" options).
func structFields(t reflect.Type) (map[string]int, bool) {
	if c, found := structFieldCache.Load(t); found {
		si := c.(structIndex)
		return si.idx, si.ok
	}
	si := structIndex{idx: map[string]int{}, ok: true}
	for i := 0; i < t.NumField(); i++ {
		f := t.Field(i)
		if f.Anonymous {
			si.ok = false
			break
		}
		if !f.IsExported() {
			continue
		}
		tag := f.Tag.Get("json")
		if tag == "-" {
			continue
		}
		name, opts, _ := strings.Cut(tag, ",")
		if slices.Contains(strings.Split(opts, ","), "string") {
			si.ok = false
			break
		}
		if name == "" {
			name = f.Name
		}
		if _, dup := si.idx[name]; dup {
			si.ok = false
			break
		}
		si.idx[name] = i
	}
	structFieldCache.Store(t, si)
	return si.idx, si.ok
}

// jsonKind names the JSON type of a tree node for error messages.
func jsonKind(v any) string {
	switch v.(type) {
	case nil:
		return "null"
	case map[string]any:
		return "object"
	case []any:
		return "array"
	case string:
		return "string"
	case bool:
		return "boolean"
	case json.Number:
		return "number"
	default:
		return fmt.Sprintf("%T", v)
	}
}

func wrongType(errs *ValidationErrors, path, want string, v any) {
	errs.Add(path, fmt.Sprintf("must be %s, got %s", want, jsonKind(v)))
}

func joinField(path, name string) string {
	if path == "" {
		return name
	}
	return path + "." + name
}

func joinIndex(path string, i int) string { return fmt.Sprintf("%s[%d]", path, i) }

func joinKey(path, key string) string { return path + "[" + strconv.Quote(key) + "]" }

// checkTree reports every place where v does not fit t.
func checkTree(path string, v any, t reflect.Type, errs *ValidationErrors, sorted bool) {
	if v == nil {
		return // null leaves the zero value, as encoding/json does
	}
	switch {
	case t == typeRawMessage:
		return
	case t == typeTime:
		s, ok := v.(string)
		if !ok {
			wrongType(errs, path, "a string holding an RFC 3339 time", v)
			return
		}
		if _, err := time.Parse(time.RFC3339Nano, s); err != nil {
			errs.Add(path, "must be a time in RFC 3339 format")
		}
		return
	case t.Kind() != reflect.Pointer && t.Kind() != reflect.Interface && reflect.PointerTo(t).Implements(typeUnmarshaler):
		raw, err := json.Marshal(v)
		if err == nil {
			err = reflect.New(t).Interface().(json.Unmarshaler).UnmarshalJSON(raw)
		}
		if err != nil {
			errs.Add(path, err.Error())
		}
		return
	}
	switch t.Kind() {
	case reflect.Pointer:
		checkTree(path, v, t.Elem(), errs, sorted)
	case reflect.Interface:
		// any value fits
	case reflect.Struct:
		checkStruct(path, v, t, errs, sorted)
	case reflect.Map:
		m, ok := v.(map[string]any)
		if !ok {
			wrongType(errs, path, "an object", v)
			return
		}
		for _, k := range keysOf(m, sorted) {
			checkTree(joinKey(path, k), m[k], t.Elem(), errs, sorted)
		}
	case reflect.Slice, reflect.Array:
		a, ok := v.([]any)
		if !ok {
			wrongType(errs, path, "an array", v)
			return
		}
		for i, e := range a {
			checkTree(joinIndex(path, i), e, t.Elem(), errs, sorted)
		}
	case reflect.String:
		if _, ok := v.(string); !ok {
			wrongType(errs, path, "a string", v)
		}
	case reflect.Bool:
		if _, ok := v.(bool); !ok {
			wrongType(errs, path, "a boolean", v)
		}
	case reflect.Int, reflect.Int8, reflect.Int16, reflect.Int32, reflect.Int64:
		n, ok := v.(json.Number)
		if !ok {
			wrongType(errs, path, "an integer", v)
			return
		}
		if _, err := strconv.ParseInt(n.String(), 10, t.Bits()); err != nil {
			errs.Add(path, fmt.Sprintf("must be an integer that fits in %d bits, got %s", t.Bits(), n))
		}
	case reflect.Uint, reflect.Uint8, reflect.Uint16, reflect.Uint32, reflect.Uint64:
		n, ok := v.(json.Number)
		if !ok {
			wrongType(errs, path, "a non-negative integer", v)
			return
		}
		if _, err := strconv.ParseUint(n.String(), 10, t.Bits()); err != nil {
			errs.Add(path, fmt.Sprintf("must be a non-negative integer that fits in %d bits, got %s", t.Bits(), n))
		}
	case reflect.Float32, reflect.Float64:
		n, ok := v.(json.Number)
		if !ok {
			wrongType(errs, path, "a number", v)
			return
		}
		if _, err := strconv.ParseFloat(n.String(), t.Bits()); err != nil {
			errs.Add(path, "must be a number in range, got "+n.String())
		}
	default:
		errs.Add(path, "cannot be decoded into "+t.String())
	}
}

// keysOf lists m's keys, sorted when asked.
func keysOf(m map[string]any, sorted bool) []string {
	if sorted {
		return sortedKeys(m)
	}
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	return keys
}

func checkStruct(path string, v any, t reflect.Type, errs *ValidationErrors, sorted bool) {
	m, ok := v.(map[string]any)
	if !ok {
		wrongType(errs, path, "an object", v)
		return
	}
	fields := jsonFields(t)
	for _, k := range keysOf(m, sorted) {
		ft, ok := fields[k]
		if !ok {
			errs.Add(joinField(path, k), "unknown field")
			continue
		}
		checkTree(joinField(path, k), m[k], ft, errs, sorted)
	}
}

var jsonFieldCache sync.Map // reflect.Type -> map[string]reflect.Type

// jsonFields maps the exact JSON names of t's exported fields to their
// types. The map is shared: read it only.
func jsonFields(t reflect.Type) map[string]reflect.Type {
	if c, ok := jsonFieldCache.Load(t); ok {
		return c.(map[string]reflect.Type)
	}
	out := buildJSONFields(t)
	jsonFieldCache.Store(t, out)
	return out
}

func buildJSONFields(t reflect.Type) map[string]reflect.Type {
	out := map[string]reflect.Type{}
	for i := 0; i < t.NumField(); i++ {
		f := t.Field(i)
		if !f.IsExported() {
			continue
		}
		tag := f.Tag.Get("json")
		if tag == "-" {
			continue
		}
		name, _, _ := strings.Cut(tag, ",")
		if f.Anonymous && name == "" {
			ft := f.Type
			if ft.Kind() == reflect.Pointer {
				ft = ft.Elem()
			}
			if ft.Kind() == reflect.Struct {
				for k, v := range jsonFields(ft) {
					if _, dup := out[k]; !dup {
						out[k] = v
					}
				}
				continue
			}
		}
		if name == "" {
			name = f.Name
		}
		out[name] = f.Type
	}
	return out
}
