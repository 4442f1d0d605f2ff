package resource

import (
	"bytes"

	yamlv3 "go.yaml.in/yaml/v3"
)

// jsonToOrderedYAML converts JSON to block-style YAML keeping the key order of
// the JSON (sigs.k8s.io/yaml would sort keys, putting `type` last).
func jsonToOrderedYAML(js []byte) ([]byte, error) {
	var doc yamlv3.Node
	if err := yamlv3.Unmarshal(js, &doc); err != nil {
		return nil, err
	}
	plainStyle(&doc)
	var b bytes.Buffer
	enc := yamlv3.NewEncoder(&b)
	enc.SetIndent(2)
	enc.CompactSeqIndent()
	if err := enc.Encode(&doc); err != nil {
		return nil, err
	}
	if err := enc.Close(); err != nil {
		return nil, err
	}
	return b.Bytes(), nil
}

// plainStyle drops the flow and quoting styles the JSON parser recorded; the
// encoder still quotes strings that would otherwise read as another type.
func plainStyle(n *yamlv3.Node) {
	n.Style = 0
	for _, c := range n.Content {
		plainStyle(c)
	}
}
