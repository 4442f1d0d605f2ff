package resource

import (
	"bytes"
	"encoding/json"
	"fmt"
	"strings"
	"unicode"

	yamlv2 "go.yaml.in/yaml/v2"
	yamlv3 "go.yaml.in/yaml/v3"
)

// jsonToOrderedYAML converts JSON to block-style YAML keeping the key order of
// the JSON (sigs.k8s.io/yaml would sort keys, putting `type` last).
func jsonToOrderedYAML(js []byte) ([]byte, error) {
	dec := json.NewDecoder(bytes.NewReader(js))
	dec.UseNumber()
	root, err := yamlNode(dec)
	if err != nil {
		return nil, err
	}
	var b bytes.Buffer
	enc := yamlv3.NewEncoder(&b)
	enc.SetIndent(2)
	enc.CompactSeqIndent()
	if err := enc.Encode(root); err != nil {
		return nil, err
	}
	if err := enc.Close(); err != nil {
		return nil, err
	}
	return b.Bytes(), nil
}

// yamlNode reads one JSON value from dec as a YAML node.
func yamlNode(dec *json.Decoder) (*yamlv3.Node, error) {
	tok, err := dec.Token()
	if err != nil {
		return nil, err
	}
	switch tok := tok.(type) {
	case json.Delim:
		n := &yamlv3.Node{Kind: yamlv3.SequenceNode, Tag: "!!seq"}
		if tok == '{' {
			n.Kind, n.Tag = yamlv3.MappingNode, "!!map"
		}
		for dec.More() {
			if n.Kind == yamlv3.MappingNode {
				k, err := dec.Token()
				if err != nil {
					return nil, err
				}
				key, ok := k.(string)
				if !ok {
					return nil, fmt.Errorf("object key %v is not a string", k)
				}
				n.Content = append(n.Content, stringNode(key))
			}
			c, err := yamlNode(dec)
			if err != nil {
				return nil, err
			}
			n.Content = append(n.Content, c)
		}
		if _, err := dec.Token(); err != nil { // closing delimiter
			return nil, err
		}
		return n, nil
	case string:
		return stringNode(tok), nil
	case json.Number:
		tag := "!!int"
		if strings.ContainsAny(tok.String(), ".eE") {
			tag = "!!float"
		}
		return &yamlv3.Node{Kind: yamlv3.ScalarNode, Tag: tag, Value: tok.String()}, nil
	case bool:
		return &yamlv3.Node{Kind: yamlv3.ScalarNode, Tag: "!!bool", Value: fmt.Sprint(tok)}, nil
	case nil:
		return &yamlv3.Node{Kind: yamlv3.ScalarNode, Tag: "!!null", Value: "null"}, nil
	default:
		return nil, fmt.Errorf("unexpected JSON token %v", tok)
	}
}

// stringNode is a string scalar. The encoder quotes strings that YAML 1.2
// would read as another type; strings that only YAML 1.1 readers
// (sigs.k8s.io/yaml, kubectl) would misread, such as "y", "on" or "1:20", and
// strings with control characters are double-quoted here.
func stringNode(s string) *yamlv3.Node {
	n := &yamlv3.Node{Kind: yamlv3.ScalarNode, Tag: "!!str", Value: s}
	if !plainSafe(s) {
		n.Style = yamlv3.DoubleQuotedStyle
	}
	return n
}

// plainSafe reports whether s can be written unquoted and read back as the
// same string by a YAML 1.1 parser.
func plainSafe(s string) bool {
	if s == "" {
		return true // the encoder quotes it itself
	}
	for _, r := range s {
		if !unicode.IsPrint(r) || r == '\uFEFF' {
			return false
		}
	}
	var v any
	if err := yamlv2.Unmarshal([]byte("k: "+s), &v); err != nil {
		return false
	}
	m, ok := v.(map[any]any)
	if !ok || len(m) != 1 {
		return false
	}
	got, ok := m["k"].(string)
	return ok && got == s
}
