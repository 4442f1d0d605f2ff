package resource

import (
	"strconv"
	"strings"

	yamlv3 "go.yaml.in/yaml/v3"
)

// FieldLine returns the 1-based line within doc (one YAML or JSON document)
// of the key a violation's field path names, e.g. "spec.targetRef.kind" or
// "spec.default.backends[0].zipkin.url". When the path leads to a key that is
// not there (a missing field), the line of the deepest key that is there is
// returned; 0 means nothing of the path was found or doc does not parse.
func FieldLine(doc []byte, field string) int {
	var root yamlv3.Node
	if err := yamlv3.Unmarshal(doc, &root); err != nil {
		return 0
	}
	n := &root
	if n.Kind == yamlv3.DocumentNode {
		if len(n.Content) == 0 {
			return 0
		}
		n = n.Content[0]
	}
	line := 0
	rest := field
	for rest != "" && n != nil {
		switch {
		case rest[0] == '.':
			rest = rest[1:]
		case rest[0] == '[':
			end := strings.IndexByte(rest, ']')
			if end < 0 || n.Kind != yamlv3.SequenceNode {
				return line
			}
			i, err := strconv.Atoi(rest[1:end])
			if err != nil || i < 0 || i >= len(n.Content) {
				return line
			}
			n, rest = n.Content[i], rest[end+1:]
			line = n.Line
		default:
			if n.Kind != yamlv3.MappingNode {
				return line
			}
			// Keys may hold dots (label keys such as kuma.io/mesh): take the
			// longest key the path continues with.
			best := -1
			for i := 0; i+1 < len(n.Content); i += 2 {
				k := n.Content[i].Value
				if strings.HasPrefix(rest, k) && (len(rest) == len(k) || rest[len(k)] == '.' || rest[len(k)] == '[') &&
					(best < 0 || len(k) > len(n.Content[best].Value)) {
					best = i
				}
			}
			if best < 0 {
				return line
			}
			line = n.Content[best].Line
			rest = rest[len(n.Content[best].Value):]
			n = n.Content[best+1]
		}
	}
	return line
}

// locate sets the line of every violation of an *InvalidError decoded from
// doc, which starts on line first of its stream.
func locate(err error, doc []byte, first int) {
	ie, ok := err.(*InvalidError)
	if !ok {
		return
	}
	for i := range ie.Violations {
		if l := FieldLine(doc, ie.Violations[i].Field); l > 0 && ie.Violations[i].Field != "" {
			ie.Violations[i].Line = first + l - 1
		}
	}
}
