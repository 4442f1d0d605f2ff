package resource

import (
	"encoding/json"
	"math"
	"strconv"
	"unicode/utf8"
)

// scanJSONTree builds the tree parseJSONTree builds with encoding/json
// (maps, []any, strings, json.Number, bools, nil) in one pass over the bytes,
// without reflection. It takes only the plain case: one well-formed value
// followed by nothing but white space, nested at most maxScanDepth deep. ok
// is false for anything else, and parseJSONTree then asks encoding/json,
// which also says what is wrong: errors and odd inputs keep exactly their
// old handling. FuzzScanJSONTreeMatchesEncodingJSON checks both agree.
func scanJSONTree(data []byte) (tree any, ok bool) {
	s := jsonScanner{data: data}
	s.space()
	v, ok := s.value(0)
	if !ok {
		return nil, false
	}
	s.space()
	if s.i != len(s.data) {
		return nil, false
	}
	return v, true
}

// maxScanDepth bounds the nesting scanJSONTree takes; deeper documents go
// to encoding/json (which has its own, larger limit).
const maxScanDepth = 200

type jsonScanner struct {
	data []byte
	i    int
	// src is string(data) when decodeDirect has made it, for strings to
	// be cut from; empty otherwise.
	src string
	k0  int // where the last key read by key starts (its quote)
}

func (s *jsonScanner) space() {
	for s.i < len(s.data) {
		switch s.data[s.i] {
		case ' ', '\t', '\n', '\r':
			s.i++
		default:
			return
		}
	}
}

func (s *jsonScanner) value(depth int) (any, bool) {
	if s.i >= len(s.data) {
		return nil, false
	}
	switch c := s.data[s.i]; {
	case c == '{':
		return s.object(depth + 1)
	case c == '[':
		return s.array(depth + 1)
	case c == '"':
		return s.string()
	case c == '-' || (c >= '0' && c <= '9'):
		return s.number()
	case c == 't':
		return true, s.literal("true")
	case c == 'f':
		return false, s.literal("false")
	case c == 'n':
		return nil, s.literal("null")
	}
	return nil, false
}

func (s *jsonScanner) literal(want string) bool {
	if len(s.data)-s.i < len(want) || string(s.data[s.i:s.i+len(want)]) != want {
		return false
	}
	s.i += len(want)
	return true
}

func (s *jsonScanner) object(depth int) (any, bool) {
	if depth > maxScanDepth {
		return nil, false
	}
	s.i++ // {
	m := make(map[string]any)
	s.space()
	if s.i < len(s.data) && s.data[s.i] == '}' {
		s.i++
		return m, true
	}
	for {
		if s.i >= len(s.data) || s.data[s.i] != '"' {
			return nil, false
		}
		k, ok := s.str()
		if !ok {
			return nil, false
		}
		s.space()
		if s.i >= len(s.data) || s.data[s.i] != ':' {
			return nil, false
		}
		s.i++
		s.space()
		v, ok := s.value(depth)
		if !ok {
			return nil, false
		}
		m[k] = v
		s.space()
		if s.i >= len(s.data) {
			return nil, false
		}
		switch s.data[s.i] {
		case ',':
			s.i++
			s.space()
		case '}':
			s.i++
			return m, true
		default:
			return nil, false
		}
	}
}

func (s *jsonScanner) array(depth int) (any, bool) {
	if depth > maxScanDepth {
		return nil, false
	}
	s.i++ // [
	a := make([]any, 0)
	s.space()
	if s.i < len(s.data) && s.data[s.i] == ']' {
		s.i++
		return a, true
	}
	for {
		v, ok := s.value(depth)
		if !ok {
			return nil, false
		}
		a = append(a, v)
		s.space()
		if s.i >= len(s.data) {
			return nil, false
		}
		switch s.data[s.i] {
		case ',':
			s.i++
			s.space()
		case ']':
			s.i++
			return a, true
		default:
			return nil, false
		}
	}
}

// string reads a string at s.i (its opening quote). Plain strings (no
// escape, valid UTF-8) are copied; others are unquoted by encoding/json, so
// escapes and surrogates read exactly as before.
func (s *jsonScanner) string() (any, bool) {
	if v, ok := s.str(); ok {
		return v, true
	}
	return nil, false
}

// str is string without boxing the result.
func (s *jsonScanner) str() (string, bool) {
	b, ok := s.strBytes()
	return string(b), ok
}

// strBytes reads a string at s.i (its opening quote) as str does; the
// bytes are data's own when the string is plain.
func (s *jsonScanner) strBytes() ([]byte, bool) {
	start := s.i
	s.i++
	plain := true
	for s.i < len(s.data) {
		c := s.data[s.i]
		switch {
		case c == '"':
			s.i++
			body := s.data[start+1 : s.i-1]
			if plain {
				return body, true
			}
			if !utf8.Valid(body) || hasByte(body, '\\') {
				var out string
				if err := json.Unmarshal(s.data[start:s.i], &out); err != nil {
					return nil, false
				}
				return []byte(out), true
			}
			return body, true
		case c == '\\':
			plain = false
			s.i += 2
		case c < 0x20:
			return nil, false
		case c >= utf8.RuneSelf:
			plain = false
			s.i++
		default:
			s.i++
		}
	}
	return nil, false
}

func hasByte(b []byte, c byte) bool {
	for _, x := range b {
		if x == c {
			return true
		}
	}
	return false
}

// number reads a number as JSON's grammar writes it and keeps its text.
func (s *jsonScanner) number() (any, bool) {
	start, ok := s.numberEnd()
	if !ok {
		return nil, false
	}
	return json.Number(s.data[start:s.i]), true
}

// numberEnd steps over a number as JSON's grammar writes it, and says where
// it started.
func (s *jsonScanner) numberEnd() (int, bool) {
	start := s.i
	if s.data[s.i] == '-' {
		s.i++
	}
	switch {
	case s.i < len(s.data) && s.data[s.i] == '0':
		s.i++
	case s.i < len(s.data) && s.data[s.i] >= '1' && s.data[s.i] <= '9':
		s.digits()
	default:
		return 0, false
	}
	if s.i < len(s.data) && s.data[s.i] == '.' {
		s.i++
		if s.digits() == 0 {
			return 0, false
		}
	}
	if s.i < len(s.data) && (s.data[s.i] == 'e' || s.data[s.i] == 'E') {
		s.i++
		if s.i < len(s.data) && (s.data[s.i] == '+' || s.data[s.i] == '-') {
			s.i++
		}
		if s.digits() == 0 {
			return 0, false
		}
	}
	return start, true
}

func (s *jsonScanner) digits() int {
	n := 0
	for s.i < len(s.data) && s.data[s.i] >= '0' && s.data[s.i] <= '9' {
		s.i++
		n++
	}
	return n
}

// yamlTree turns what go.yaml.in/yaml/v2 decodes into an interface{} into
// the tree parseJSONTree would read from sigs.k8s.io/yaml's JSON of it
// (keys made strings as that package makes them, numbers as encoding/json
// writes them, strings as JSON carries them), without writing and scanning
// that JSON. ok is false for anything it does not take (keys that are not
// strings, numbers or booleans, two keys reading the same, infinities, types
// it does not know); the caller then takes sigs.k8s.io/yaml's way, which also
// words the error. FuzzYAMLTreeMatchesJSONRoute checks both agree.
func yamlTree(v any) (any, bool) {
	switch v := v.(type) {
	case nil, bool:
		return v, true
	case string:
		return jsonString(v), true
	case int:
		return json.Number(strconv.Itoa(v)), true
	case int64:
		return json.Number(strconv.FormatInt(v, 10)), true
	case uint64:
		return json.Number(strconv.FormatUint(v, 10)), true
	case float64:
		if math.IsInf(v, 0) || math.IsNaN(v) {
			return nil, false
		}
		b, err := json.Marshal(v)
		if err != nil {
			return nil, false
		}
		return json.Number(b), true
	case []any:
		if v == nil {
			return nil, true
		}
		out := make([]any, len(v))
		for i, e := range v {
			var ok bool
			if out[i], ok = yamlTree(e); !ok {
				return nil, false
			}
		}
		return out, true
	case map[any]any:
		out := make(map[string]any, len(v))
		for k, e := range v {
			var key string
			switch k := k.(type) {
			case string:
				key = jsonString(k)
			case int:
				key = strconv.Itoa(k)
			case int64:
				key = strconv.FormatInt(k, 10)
			case float64:
				if math.IsInf(k, 0) || math.IsNaN(k) {
					return nil, false
				}
				key = strconv.FormatFloat(k, 'g', -1, 32)
			case bool:
				key = strconv.FormatBool(k)
			default:
				return nil, false
			}
			if _, dup := out[key]; dup {
				return nil, false
			}
			val, ok := yamlTree(e)
			if !ok {
				return nil, false
			}
			out[key] = val
		}
		return out, true
	}
	return nil, false
}

// jsonString is s as it reads back from its JSON: the same string unless
// it is not valid UTF-8.
func jsonString(s string) string {
	if utf8.ValidString(s) {
		return s
	}
	b, _ := json.Marshal(s)
	var out string
	_ = json.Unmarshal(b, &out)
	return out
}
