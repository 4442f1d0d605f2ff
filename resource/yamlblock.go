package resource

import (
	"encoding/json"
	"strings"
)

// blockYAMLTree reads the YAML most files hold (block mappings and
// sequences of plain, quoted or empty-collection values, one per line,
// indented with spaces) straight into the tree parseTree makes of it,
// without go.yaml.in/yaml/v2's general parser. It takes nothing it is not
// sure of: values must be strings that YAML 1.1 cannot read as anything
// else (a letter, '_' or '/' first, then letters, digits and ._/:-), plain
// decimal integers, true or false, quoted strings without escapes, [] or
// {}; keys are such strings. Anything else (comments after a value, flow
// collections, anchors, tags, block or multi-line scalars, other numbers,
// duplicate keys, tabs, non-ASCII, ...) answers ok false, and parseTree asks
// yaml/v2. FuzzBlockYAMLMatchesYAMLv2 checks both agree.
func blockYAMLTree(data []byte) (tree any, ok bool) {
	for _, c := range data {
		if (c < 0x20 || c > 0x7e) && c != '\n' {
			return nil, false // tabs, CR, non-ASCII, also in comments
		}
	}
	p := blockParser{}
	for rest := string(data); rest != ""; {
		line := rest
		if i := strings.IndexByte(rest, '\n'); i >= 0 {
			line, rest = rest[:i], rest[i+1:]
		} else {
			rest = ""
		}
		indent := 0
		for indent < len(line) && line[indent] == ' ' {
			indent++
		}
		text := strings.TrimRight(line[indent:], " ")
		if text == "" || text[0] == '#' {
			continue
		}
		p.lines = append(p.lines, blockLine{indent: indent, text: text})
	}
	if len(p.lines) == 0 || p.lines[0].indent != 0 {
		return nil, false
	}
	m, ok := p.mapping(0)
	if !ok || p.i != len(p.lines) {
		return nil, false
	}
	return m, true
}

type blockLine struct {
	indent int
	text   string
}

type blockParser struct {
	lines []blockLine
	i     int
}

// mapping reads the entries at indent.
func (p *blockParser) mapping(indent int) (map[string]any, bool) {
	m := map[string]any{}
	for p.i < len(p.lines) {
		l := p.lines[p.i]
		if l.indent < indent {
			break
		}
		if l.indent > indent || l.text[0] == '-' {
			return nil, false
		}
		key, rest, ok := splitBlockKey(l.text)
		if !ok {
			return nil, false
		}
		if _, dup := m[key]; dup {
			return nil, false
		}
		p.i++
		var v any
		if rest != "" {
			if v, ok = blockScalar(rest); !ok {
				return nil, false
			}
		} else if p.i < len(p.lines) {
			next := p.lines[p.i]
			switch {
			case next.indent > indent && isSeqItem(next.text):
				v, ok = p.sequence(next.indent)
			case next.indent > indent:
				v, ok = p.mapping(next.indent)
			case next.indent == indent && isSeqItem(next.text):
				v, ok = p.sequence(indent)
			}
			if !ok {
				return nil, false
			}
		}
		m[key] = v
	}
	return m, true
}

// sequence reads the items ("- ...") at indent.
func (p *blockParser) sequence(indent int) ([]any, bool) {
	a := []any{}
	for p.i < len(p.lines) {
		l := p.lines[p.i]
		if l.indent < indent || (l.indent == indent && !isSeqItem(l.text)) {
			break
		}
		if l.indent > indent {
			return nil, false
		}
		item := strings.TrimLeft(l.text[1:], " ")
		itemIndent := indent + len(l.text) - len(item)
		if item == "" || item[0] == '-' {
			return nil, false
		}
		if _, _, isKey := splitBlockKey(item); isKey {
			// A mapping whose first entry shares the "- " line.
			p.lines[p.i] = blockLine{indent: itemIndent, text: item}
			m, ok := p.mapping(itemIndent)
			if !ok {
				return nil, false
			}
			a = append(a, m)
			continue
		}
		v, ok := blockScalar(item)
		if !ok {
			return nil, false
		}
		a = append(a, v)
		p.i++
	}
	return a, true
}

func isSeqItem(text string) bool { return text == "-" || strings.HasPrefix(text, "- ") }

// splitBlockKey splits "key: value" or "key:"; the key must be a plain
// string (see blockYAMLTree).
func splitBlockKey(text string) (key, rest string, ok bool) {
	i := strings.IndexByte(text, ':')
	if i <= 0 {
		return "", "", false
	}
	key = text[:i]
	// YAML allows implicit keys of at most 1024 characters.
	if len(key) > 128 || (i+1 < len(text) && text[i+1] != ' ') {
		return "", "", false
	}
	if !plainString(key, false) {
		return "", "", false
	}
	return key, strings.TrimLeft(text[i+1:], " "), true
}

// blockScalar reads one value written on its line.
func blockScalar(s string) (any, bool) {
	switch s {
	case "[]":
		return []any{}, true
	case "{}":
		return map[string]any{}, true
	case "true":
		return true, true
	case "false":
		return false, true
	}
	switch s[0] {
	case '\'':
		if len(s) >= 2 && s[len(s)-1] == '\'' && !strings.Contains(s[1:len(s)-1], "'") {
			return s[1 : len(s)-1], true
		}
		return nil, false
	case '"':
		if len(s) >= 2 && s[len(s)-1] == '"' && !strings.ContainsAny(s[1:len(s)-1], "\"\\") {
			return s[1 : len(s)-1], true
		}
		return nil, false
	}
	if decimalInt(s) {
		return json.Number(s), true
	}
	if plainString(s, true) {
		return s, true
	}
	return nil, false
}

// decimalInt reports whether s is 0 or a decimal integer without leading
// zeros, short enough for an int.
func decimalInt(s string) bool {
	d := strings.TrimPrefix(s, "-")
	if d == "" || len(d) > 18 || (d[0] == '0' && (len(d) > 1 || len(s) > 1)) {
		return false
	}
	for i := 0; i < len(d); i++ {
		if d[i] < '0' || d[i] > '9' {
			return false
		}
	}
	return true
}

// plainString reports whether s, written plain, is read by YAML 1.1 as
// this very string: a letter, '_' or '/' first, then letters, digits and
// ._/- (and ':' inside a value, not last), and none of the words YAML 1.1
// reads as booleans or null.
func plainString(s string, value bool) bool {
	if s == "" {
		return false
	}
	if c := s[0]; !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c == '_' || c == '/') {
		return false
	}
	for i := 1; i < len(s); i++ {
		c := s[i]
		switch {
		case c >= 'a' && c <= 'z', c >= 'A' && c <= 'Z', c >= '0' && c <= '9', c == '.', c == '_', c == '/', c == '-':
		case c == ':' && value && i < len(s)-1:
		default:
			return false
		}
	}
	switch s {
	case "y", "Y", "yes", "Yes", "YES", "n", "N", "no", "No", "NO",
		"true", "True", "TRUE", "false", "False", "FALSE",
		"on", "On", "ON", "off", "Off", "OFF", "null", "Null", "NULL":
		return false
	}
	return true
}
