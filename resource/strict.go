package resource

import (
	"bytes"
	"encoding/json"
	"fmt"
	"reflect"
	"strconv"
	"strings"
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
func decodeStrict(path string, tree any, target any, errs *ValidationErrors) {
	before := len(*errs)
	checkTree(path, tree, reflect.TypeOf(target).Elem(), errs)
	if len(*errs) > before {
		return
	}
	raw, err := json.Marshal(tree)
	if err == nil {
		err = json.Unmarshal(raw, target)
	}
	if err != nil {
		errs.Add(path, "cannot decode: "+err.Error())
	}
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
func checkTree(path string, v any, t reflect.Type, errs *ValidationErrors) {
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
		checkTree(path, v, t.Elem(), errs)
	case reflect.Interface:
		// any value fits
	case reflect.Struct:
		checkStruct(path, v, t, errs)
	case reflect.Map:
		m, ok := v.(map[string]any)
		if !ok {
			wrongType(errs, path, "an object", v)
			return
		}
		for _, k := range sortedKeys(m) {
			checkTree(joinKey(path, k), m[k], t.Elem(), errs)
		}
	case reflect.Slice, reflect.Array:
		a, ok := v.([]any)
		if !ok {
			wrongType(errs, path, "an array", v)
			return
		}
		for i, e := range a {
			checkTree(joinIndex(path, i), e, t.Elem(), errs)
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

func checkStruct(path string, v any, t reflect.Type, errs *ValidationErrors) {
	m, ok := v.(map[string]any)
	if !ok {
		wrongType(errs, path, "an object", v)
		return
	}
	fields := jsonFields(t)
	for _, k := range sortedKeys(m) {
		ft, ok := fields[k]
		if !ok {
			errs.Add(joinField(path, k), "unknown field")
			continue
		}
		checkTree(joinField(path, k), m[k], ft, errs)
	}
}

// jsonFields maps the exact JSON names of t's exported fields to their types.
func jsonFields(t reflect.Type) map[string]reflect.Type {
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
