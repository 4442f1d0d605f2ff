// Package config loads a control plane's configuration: defaults (whatever
// the caller's struct already holds), then a YAML file, then environment
// variables. Flags and Validate are the caller's business.
//
// # Keys
//
// A configuration is a tree of structs. The YAML key of a field is its `json`
// tag (sigs.k8s.io/yaml decodes YAML through encoding/json); a field tagged
// `json:"-"` or unexported is not configuration. The dotted path of a leaf is
// its keys from the root joined by ".", e.g. "store.embedded.dir".
//
// # Environment
//
// The environment variable of a leaf is the prefix, then every key of its path
// in SCREAMING_SNAKE_CASE (camelCase words split, "-" and "." become "_"),
// joined by "_":
//
//	prefix MESHTRACE, path store.embedded.dir  -> MESHTRACE_STORE_EMBEDDED_DIR
//	prefix MESHTRACE, path kds.maxMessageBytes -> MESHTRACE_KDS_MAX_MESSAGE_BYTES
//	prefix MESHTRACE, path dataDir             -> MESHTRACE_DATA_DIR
//
// A field tag `env:"NAME"` replaces the derived variable name entirely (the
// prefix is still prepended). A set variable wins over the file even when
// empty. Values are written as in YAML: strings as is, bools as strconv
// accepts them, numbers in Go syntax, durations as "5s" (see Duration), and
// []string comma separated (surrounding spaces trimmed, empty items dropped).
package config

import (
	"encoding"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"reflect"
	"sort"
	"strconv"
	"strings"
	"time"
	"unicode"

	"sigs.k8s.io/yaml"
)

// Duration is a time.Duration written as a Go duration string ("5s", "1m30s")
// in YAML, JSON and the environment, never as nanoseconds.
type Duration time.Duration

// D returns d as a time.Duration.
func (d Duration) D() time.Duration { return time.Duration(d) }

func (d Duration) String() string { return time.Duration(d).String() }

// MarshalText writes d as a duration string.
func (d Duration) MarshalText() ([]byte, error) { return []byte(d.String()), nil }

// UnmarshalText parses a duration string such as "5s".
func (d *Duration) UnmarshalText(b []byte) error {
	s := strings.TrimSpace(string(b))
	v, err := time.ParseDuration(s)
	if err != nil {
		return fmt.Errorf("invalid duration %q: write it like \"5s\" or \"1m30s\"", s)
	}
	*d = Duration(v)
	return nil
}

// UnmarshalJSON accepts only a JSON string, so a bare number (which would be
// nanoseconds) is rejected rather than silently misread.
func (d *Duration) UnmarshalJSON(b []byte) error {
	var s string
	if err := json.Unmarshal(b, &s); err != nil {
		return fmt.Errorf("invalid duration %s: write it as a string like \"5s\"", string(b))
	}
	return d.UnmarshalText([]byte(s))
}

// MarshalJSON writes d as a JSON string.
func (d Duration) MarshalJSON() ([]byte, error) { return json.Marshal(d.String()) }

var (
	durationType        = reflect.TypeFor[Duration]()
	textUnmarshalerType = reflect.TypeFor[encoding.TextUnmarshaler]()
)

// Load reads the YAML file at path (skipped when path is "") strictly onto
// cfg, a pointer to a struct holding the defaults, then applies environment
// overrides named from envPrefix (e.g. "MESHTRACE"). Unknown keys fail with
// their dotted path. Load does not validate values beyond their types.
func Load(path string, cfg any, envPrefix string) error {
	rv := reflect.ValueOf(cfg)
	if rv.Kind() != reflect.Pointer || rv.Elem().Kind() != reflect.Struct {
		return fmt.Errorf("config: Load needs a pointer to a struct, got %T", cfg)
	}
	if path != "" {
		data, err := os.ReadFile(path)
		if err != nil {
			return fmt.Errorf("config: %w", err)
		}
		if err := decodeYAML(data, cfg); err != nil {
			return fmt.Errorf("config file %s: %w", path, err)
		}
	}
	return applyEnv(rv.Elem(), envPrefix, os.LookupEnv)
}

// decodeYAML decodes data onto cfg, rejecting keys cfg has no field for.
func decodeYAML(data []byte, cfg any) error {
	js, err := yaml.YAMLToJSONStrict(data)
	if err != nil {
		return err
	}
	var tree any
	if err := json.Unmarshal(js, &tree); err != nil {
		return err
	}
	if tree == nil { // empty file
		return nil
	}
	if err := checkKeys(tree, reflect.TypeOf(cfg).Elem(), ""); err != nil {
		return err
	}
	if err := json.Unmarshal(js, cfg); err != nil {
		var te *json.UnmarshalTypeError
		if errors.As(err, &te) && te.Field != "" {
			return fmt.Errorf("key %q: cannot use a %s as %s", te.Field, te.Value, describe(te.Type))
		}
		return err
	}
	return nil
}

func describe(t reflect.Type) string {
	if t == durationType {
		return "a duration string like \"5s\""
	}
	return t.String()
}

// checkKeys walks the decoded YAML tree beside the struct type and reports the
// first unknown key (in sorted order, so the message is stable).
func checkKeys(tree any, t reflect.Type, prefix string) error {
	m, ok := tree.(map[string]any)
	if !ok {
		if prefix == "" {
			return errors.New("the top level must be a mapping of keys")
		}
		return nil // type errors are reported by json.Unmarshal with the key
	}
	fields := map[string]reflect.StructField{}
	for _, f := range configFields(t) {
		fields[jsonName(f)] = f
	}
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	for _, k := range keys {
		f, ok := fields[k]
		if !ok {
			return fmt.Errorf("unknown key %q", join(prefix, k))
		}
		ft := f.Type
		if isLeaf(ft) {
			continue
		}
		if err := checkKeys(m[k], ft, join(prefix, k)); err != nil {
			return err
		}
	}
	return nil
}

func join(prefix, k string) string {
	if prefix == "" {
		return k
	}
	return prefix + "." + k
}

// configFields returns the exported, non-skipped fields of struct type t.
func configFields(t reflect.Type) []reflect.StructField {
	var out []reflect.StructField
	for i := 0; i < t.NumField(); i++ {
		f := t.Field(i)
		if !f.IsExported() || jsonName(f) == "-" {
			continue
		}
		out = append(out, f)
	}
	return out
}

func jsonName(f reflect.StructField) string {
	tag := f.Tag.Get("json")
	name, _, _ := strings.Cut(tag, ",")
	if tag == "-" {
		return "-"
	}
	if name == "" {
		return f.Name
	}
	return name
}

// isLeaf says whether a field is a value rather than a section to descend into.
func isLeaf(t reflect.Type) bool {
	if t.Kind() != reflect.Struct {
		return true
	}
	return reflect.PointerTo(t).Implements(textUnmarshalerType)
}

// leaf is one configurable value found by walking a config struct.
type leaf struct {
	path  string // dotted YAML path
	env   string // full environment variable name
	desc  string
	value reflect.Value
}

func walk(v reflect.Value, prefix, envPrefix string, out *[]leaf) {
	for _, f := range configFields(v.Type()) {
		name := jsonName(f)
		path := join(prefix, name)
		env := envPrefix + "_" + EnvName(name)
		if e := f.Tag.Get("env"); e != "" {
			env = envPrefix + "_" + e
		}
		fv := v.FieldByIndex(f.Index)
		if isLeaf(f.Type) {
			*out = append(*out, leaf{path: path, env: env, desc: f.Tag.Get("desc"), value: fv})
			continue
		}
		walk(fv, path, env, out)
	}
}

func leaves(v reflect.Value, envPrefix string) []leaf {
	var out []leaf
	walk(v, "", strings.TrimSuffix(envPrefix, "_"), &out)
	return out
}

// EnvName turns one key ("maxMessageBytes", "zone-insights") into its
// environment form ("MAX_MESSAGE_BYTES", "ZONE_INSIGHTS").
func EnvName(key string) string {
	var b strings.Builder
	rs := []rune(key)
	for i, r := range rs {
		switch {
		case r == '-' || r == '.' || r == '_':
			b.WriteByte('_')
			continue
		case unicode.IsUpper(r) && i > 0:
			prev := rs[i-1]
			nextLower := i+1 < len(rs) && unicode.IsLower(rs[i+1])
			if unicode.IsLower(prev) || unicode.IsDigit(prev) || (unicode.IsUpper(prev) && nextLower) {
				b.WriteByte('_')
			}
		}
		b.WriteRune(unicode.ToUpper(r))
	}
	return b.String()
}

func applyEnv(root reflect.Value, envPrefix string, lookup func(string) (string, bool)) error {
	for _, l := range leaves(root, envPrefix) {
		s, ok := lookup(l.env)
		if !ok {
			continue
		}
		if err := setValue(l.value, s); err != nil {
			return fmt.Errorf("environment %s (key %q): %w", l.env, l.path, err)
		}
	}
	return nil
}

// setValue parses s into v according to v's type.
func setValue(v reflect.Value, s string) error {
	if v.CanAddr() && v.Addr().Type().Implements(textUnmarshalerType) {
		return v.Addr().Interface().(encoding.TextUnmarshaler).UnmarshalText([]byte(s))
	}
	switch v.Kind() {
	case reflect.String:
		v.SetString(s)
	case reflect.Bool:
		b, err := strconv.ParseBool(strings.TrimSpace(s))
		if err != nil {
			return fmt.Errorf("invalid bool %q: use true or false", s)
		}
		v.SetBool(b)
	case reflect.Int, reflect.Int8, reflect.Int16, reflect.Int32, reflect.Int64:
		n, err := strconv.ParseInt(strings.TrimSpace(s), 0, v.Type().Bits())
		if err != nil {
			return fmt.Errorf("invalid integer %q", s)
		}
		v.SetInt(n)
	case reflect.Uint, reflect.Uint8, reflect.Uint16, reflect.Uint32, reflect.Uint64:
		n, err := strconv.ParseUint(strings.TrimSpace(s), 0, v.Type().Bits())
		if err != nil {
			return fmt.Errorf("invalid unsigned integer %q", s)
		}
		v.SetUint(n)
	case reflect.Float32, reflect.Float64:
		n, err := strconv.ParseFloat(strings.TrimSpace(s), v.Type().Bits())
		if err != nil {
			return fmt.Errorf("invalid number %q", s)
		}
		v.SetFloat(n)
	case reflect.Slice:
		if v.Type().Elem().Kind() != reflect.String {
			return fmt.Errorf("unsupported list type %s", v.Type())
		}
		items := []string{}
		for _, p := range strings.Split(s, ",") {
			if p = strings.TrimSpace(p); p != "" {
				items = append(items, p)
			}
		}
		sv := reflect.MakeSlice(v.Type(), len(items), len(items))
		for i, it := range items {
			sv.Index(i).SetString(it)
		}
		v.Set(sv)
	default:
		return fmt.Errorf("unsupported type %s", v.Type())
	}
	return nil
}

// Reference renders a markdown table of every key of cfg (a struct or a
// pointer to one): dotted YAML key, environment variable, the value cfg holds
// (pass DefaultConfig() to document defaults) and the field's `desc` tag.
func Reference(cfg any, envPrefix string) string {
	rv := reflect.ValueOf(cfg)
	for rv.Kind() == reflect.Pointer {
		rv = rv.Elem()
	}
	var b strings.Builder
	b.WriteString("| key | environment | default | description |\n")
	b.WriteString("| --- | --- | --- | --- |\n")
	for _, l := range leaves(rv, envPrefix) {
		fmt.Fprintf(&b, "| `%s` | `%s` | %s | %s |\n", l.path, l.env, formatDefault(l.value), escapeCell(l.desc))
	}
	return b.String()
}

func formatDefault(v reflect.Value) string {
	var s string
	switch {
	case v.Type() == durationType:
		s = Duration(v.Int()).String()
	case v.Kind() == reflect.Slice && v.Type().Elem().Kind() == reflect.String:
		parts := make([]string, v.Len())
		for i := range parts {
			parts[i] = v.Index(i).String()
		}
		s = strings.Join(parts, ",")
	default:
		s = fmt.Sprint(v.Interface())
	}
	if s == "" {
		return "(empty)"
	}
	return "`" + escapeCell(s) + "`"
}

func escapeCell(s string) string { return strings.ReplaceAll(s, "|", `\|`) }
