package resource

import "strconv"

// fieldPath is the path of a field being validated, written out as a string
// only when a violation is reported. Validation runs on every write and on
// every resource a zone receives, nearly always on valid input, so building
// "default.backends[0].zipkin.url" for every field it visits was most of
// its allocations. A segment points to its parent, so a validator keeps the
// path on its stack: take a child with field, index or key and pass its
// address down. A nil *fieldPath is the empty path.
type fieldPath struct {
	parent *fieldPath
	name   string // field name, or map key for segKey
	idx    int    // list index for segIndex
	kind   segKind
}

type segKind uint8

const (
	segField segKind = iota // .name (name alone at the root)
	segIndex                // [index]
	segKey                  // ["key"], quoted as strconv.Quote does
)

// rootPath is a path already written out, for callers that build their own.
func rootPath(s string) fieldPath { return fieldPath{name: s} }

func (p *fieldPath) field(name string) fieldPath { return fieldPath{parent: p, name: name} }

func (p *fieldPath) index(i int) fieldPath { return fieldPath{parent: p, idx: i, kind: segIndex} }

func (p *fieldPath) key(k string) fieldPath { return fieldPath{parent: p, name: k, kind: segKey} }

// String writes the path as joinField, joinIndex and joinKey would have.
func (p *fieldPath) String() string {
	if p == nil {
		return ""
	}
	// Walk up from p for each segment, root first, rather than collecting
	// the segments: a slice of them would make escape analysis move every
	// path to the heap. Paths are short and only written on violations.
	n := 0
	for q := p; q != nil; q = q.parent {
		n++
	}
	var b []byte
	for i := n - 1; i >= 0; i-- {
		q := p
		for range i {
			q = q.parent
		}
		switch q.kind {
		case segField:
			if len(b) > 0 {
				b = append(b, '.')
			}
			b = append(b, q.name...)
		case segIndex:
			b = append(b, '[')
			b = strconv.AppendInt(b, int64(q.idx), 10)
			b = append(b, ']')
		case segKey:
			b = append(b, '[')
			b = strconv.AppendQuote(b, q.name)
			b = append(b, ']')
		}
	}
	return string(b)
}

// addAt appends a violation at path p.
func (v *ValidationErrors) addAt(p *fieldPath, msg string) { v.Add(p.String(), msg) }

// addField appends a violation at the field name of p, the common case.
func (v *ValidationErrors) addField(p *fieldPath, name, msg string) {
	f := p.field(name)
	v.Add(f.String(), msg)
}
