package kds

import (
	"bytes"

	"github.com/meshtrace/meshtrace/resource"
)

// decodeCompact reads a policy in the form encodeResource writes it straight
// into its typed value, in one pass over the bytes with code written for the
// type (compactSpecs), where encoding/json scans the bytes twice, looks every
// key up by folding its case and fills through reflect. It takes a narrow
// form only: no whitespace, each key once and spelt exactly as its json tag,
// strings of printable ASCII without escapes, integers, no null. On anything
// else, and for a policy type without a reader in compactSpecs, it declines
// (ok false) and the caller takes decodeEncoded's way, which says what is
// wrong when something is. What it accepts, decodeEncoded accepts and reads
// equal (FuzzDecodeCompactMatchesEncoded); it reads as the reflective reader
// it replaced, kept as the reference in compact_ref_test.go
// (FuzzDecodeCompactMatchesReflective).
//
// specJSON is the spec's bytes when they are exactly what json.Marshal
// writes for the spec read (FuzzDecodeCompactMatchesEncoded), nil
// otherwise: the zone's store then keeps them instead of encoding the spec
// again. That holds for everything global sends as it is; what this reader
// checks for it is in compactReader.canon.
func decodeCompact(b []byte) (_ *resource.Resource, specJSON []byte, ok bool) {
	rest, ok := bytes.CutPrefix(b, encodedTypePrefix)
	if !ok {
		return nil, nil, false
	}
	end := bytes.IndexByte(rest, '"')
	if end < 0 {
		return nil, nil, false
	}
	d, ok := resource.Lookup(resource.Type(rest[:end]))
	if !ok || !d.IsPolicy {
		return nil, nil, false
	}
	readSpec := compactSpecs[d.Type]
	if readSpec == nil {
		return nil, nil, false
	}
	r := &resource.Resource{Meta: resource.Meta{Type: d.Type}}
	c := compactReader{b: b, i: len(encodedTypePrefix) + end + 1}
	var seen uint8
	const (
		seenMesh = 1 << iota
		seenName
		seenLabels
		seenCreation
		seenModification
		seenSpec
	)
	once := func(bit uint8) bool {
		if seen&bit != 0 {
			return false
		}
		seen |= bit
		return true
	}
	for !c.take('}') {
		if !c.take(',') {
			return nil, nil, false
		}
		key, ok := c.str()
		if !ok || !c.take(':') {
			return nil, nil, false
		}
		switch string(key) {
		case "mesh":
			ok = once(seenMesh) && c.text(&r.Mesh)
		case "name":
			ok = once(seenName) && c.text(&r.Name)
		case "labels":
			ok = once(seenLabels) && c.strMap(&r.Labels)
		case "creationTime":
			ok = once(seenCreation) && c.time(&r.CreationTime)
		case "modificationTime":
			ok = once(seenModification) && c.time(&r.ModificationTime)
		case "spec":
			start := c.i
			c.canon = true
			ok = once(seenSpec)
			if ok {
				r.Spec, ok = readSpec(&c)
			}
			if ok && c.canon {
				specJSON = c.b[start:c.i]
			}
		default:
			ok = false
		}
		if !ok {
			return nil, nil, false
		}
	}
	if c.i != len(c.b) || seen&seenSpec == 0 {
		return nil, nil, false
	}
	if len(r.Labels) == 0 {
		r.Labels = nil
	}
	return r, specJSON, true
}

// compactSpecs reads the spec of each policy type decodeCompact takes. A
// policy type without one is decoded by decodeEncoded; a reader is checked
// against the reflective one in compact_ref_test.go, which reads any type.
var compactSpecs = map[resource.Type]func(*compactReader) (resource.Spec, bool){
	resource.TypeMeshTrace: readMeshTrace,
}

// compactReader reads JSON in decodeCompact's narrow form.
type compactReader struct {
	b []byte
	i int
	// canon stays true while what was read is exactly what json.Marshal
	// writes for the values read: struct fields in their order, each there
	// unless omitempty leaves it out, map keys sorted, no character
	// json.Marshal escapes (<, > and &), integers as strconv writes them,
	// values of types with their own MarshalJSON as it writes them, and no
	// type json.Marshal writes in another way ([]byte, map values of types
	// other than plain strings, booleans and integers, types with
	// MarshalText).
	canon bool
}

func (c *compactReader) take(ch byte) bool {
	if c.i < len(c.b) && c.b[c.i] == ch {
		c.i++
		return true
	}
	return false
}

func (c *compactReader) peek() byte {
	if c.i < len(c.b) {
		return c.b[c.i]
	}
	return 0
}

// str reads a string of printable ASCII without escapes and returns what is
// between its quotes.
func (c *compactReader) str() ([]byte, bool) {
	if !c.take('"') {
		return nil, false
	}
	start := c.i
	for ; c.i < len(c.b); c.i++ {
		switch ch := c.b[c.i]; {
		case ch == '"':
			c.i++
			return c.b[start : c.i-1], true
		case ch < 0x20 || ch >= 0x7f || ch == '\\':
			return nil, false
		case ch == '<' || ch == '>' || ch == '&':
			c.canon = false // json.Marshal escapes them
		}
	}
	return nil, false
}

// integer reads a JSON number without fraction or exponent.
func (c *compactReader) integer() ([]byte, bool) {
	start := c.i
	c.take('-')
	digits := c.i
	for c.i < len(c.b) && c.b[c.i] >= '0' && c.b[c.i] <= '9' {
		c.i++
	}
	n := c.i - digits
	if n == 0 || n > 1 && c.b[digits] == '0' {
		return nil, false
	}
	if ch := c.peek(); ch == '.' || ch == 'e' || ch == 'E' {
		return nil, false
	}
	if c.i-start == 2 && c.b[start] == '-' && c.b[start+1] == '0' {
		c.canon = false // -0: json.Marshal writes 0
	}
	return c.b[start:c.i], true
}

func (c *compactReader) literal(word string) bool {
	if len(c.b)-c.i >= len(word) && string(c.b[c.i:c.i+len(word)]) == word {
		c.i += len(word)
		return true
	}
	return false
}
