package resource

import (
	"bufio"
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"math/rand/v2"
	"reflect"
	"strings"
	"testing"
	"time"
)

// marshalReference is Resource.MarshalJSON as it was written before it
// appended its fields itself: every field through json.Marshal.
func marshalReference(r Resource) ([]byte, error) {
	d, _ := Lookup(r.Type)
	spec := r.Spec
	if spec == nil {
		spec = d.NewSpec()
	}
	specJSON, err := json.Marshal(spec)
	if err != nil {
		return nil, err
	}
	var b bytes.Buffer
	field := func(name string, v any) {
		if b.Len() > 1 {
			b.WriteByte(',')
		}
		k, _ := json.Marshal(name)
		b.Write(k)
		b.WriteByte(':')
		if raw, ok := v.(json.RawMessage); ok {
			b.Write(raw)
			return
		}
		val, _ := json.Marshal(v)
		b.Write(val)
	}
	b.WriteByte('{')
	field("type", r.Type)
	if r.Mesh != "" {
		field("mesh", r.Mesh)
	}
	field("name", r.Name)
	if !r.CreationTime.IsZero() {
		field("creationTime", r.CreationTime.Format(time.RFC3339Nano))
	}
	if !r.ModificationTime.IsZero() {
		field("modificationTime", r.ModificationTime.Format(time.RFC3339Nano))
	}
	if len(r.Labels) > 0 {
		field("labels", r.Labels)
	}
	if d.IsPolicy {
		field("spec", json.RawMessage(specJSON))
	} else if inner := bytes.TrimSpace(specJSON); len(inner) > 2 && inner[0] == '{' {
		b.WriteByte(',')
		b.Write(inner[1 : len(inner)-1])
	}
	b.WriteByte('}')
	return b.Bytes(), nil
}

// TestMarshalJSONMatchesReference: MarshalJSON writes the bytes it wrote
// when every field went through json.Marshal, for names, meshes and labels
// with characters JSON escapes, times and every type.
func TestMarshalJSONMatchesReference(t *testing.T) {
	rng := rand.New(rand.NewPCG(3, 4))
	strs := []string{"", "a", "default", "caf\u00e9", "a<b>&c", "q\"uote\\", "ctl\x01\x7f", "bad\xff", "\u2028", "kuma.io/zone"}
	pick := func() string { return strs[rng.IntN(len(strs))] }
	for i := range 5000 {
		for _, d := range Types() {
			r := Resource{Meta: Meta{Type: d.Type, Mesh: pick(), Name: pick()}, Spec: d.NewSpec()}
			if d.Type == TypeMeshTrace {
				r.Spec = randomMeshTrace(rng)
			}
			if rng.IntN(2) == 0 {
				r.Labels = map[string]string{pick(): pick(), pick(): pick()}
			}
			if rng.IntN(2) == 0 {
				r.CreationTime = time.Date(2026, 11, 30, 5, 0, rng.IntN(60), rng.IntN(1e9), time.FixedZone("x", 3600*rng.IntN(3)))
				r.ModificationTime = r.CreationTime.Add(time.Duration(rng.IntN(1e9)))
			}
			if i%100 == 0 {
				r.Spec = nil
			}
			want, werr := marshalReference(r)
			got, gerr := r.MarshalJSON()
			if (werr == nil) != (gerr == nil) || !bytes.Equal(want, got) {
				t.Fatalf("%s: got %s (%v), want %s (%v)", d.Type, got, gerr, want, werr)
			}
			viaJSON, err := json.Marshal(r)
			if err != nil || !bytes.Equal(viaJSON, got) {
				t.Fatalf("%s: json.Marshal gives %s (%v), MarshalJSON %s", d.Type, viaJSON, err, got)
			}
		}
	}
}

// TestDocumentEmpty: a document is empty when each of its lines is blank, a
// comment or "...", as bufio.Scanner's lines read it.
func TestDocumentEmpty(t *testing.T) {
	reference := func(data []byte) bool {
		sc := bufio.NewScanner(bytes.NewReader(data))
		sc.Buffer(nil, len(data)+1)
		for sc.Scan() {
			l := strings.TrimSpace(sc.Text())
			if l != "" && !strings.HasPrefix(l, "#") && l != "..." {
				return false
			}
		}
		return true
	}
	rng := rand.New(rand.NewPCG(5, 6))
	parts := []string{"", " ", "\t", "\r", "\n", "\r\n", "#", "# x", "...", ". ..", "x", "\u00a0", "\u2028", "--"}
	for range 20000 {
		var b []byte
		for range rng.IntN(6) {
			b = append(b, parts[rng.IntN(len(parts))]...)
		}
		if got, want := (document{data: b}).empty(), reference(b); got != want {
			t.Fatalf("empty(%q) = %v, want %v", b, got, want)
		}
	}
}

// TestDecodeDocumentsInParallel: a long stream decodes on every core; each
// document's resource or error is the one it has alone, in stream order.
func TestDecodeDocumentsInParallel(t *testing.T) {
	var stream strings.Builder
	var singles [][]byte
	for i := range 200 {
		doc := fmt.Sprintf("type: MeshTrace\nmesh: default\nname: t-%d\nspec:\n  default:\n    backends: []\n", i)
		if i%7 == 3 {
			doc = fmt.Sprintf("type: MeshTrace\nmesh: default\nname: t-%d\nspec:\n  default:\n    backend: []\n", i)
		}
		if i > 0 {
			stream.WriteString("---\n")
		}
		stream.WriteString(doc)
		singles = append(singles, []byte(doc))
	}
	docs := DecodeDocuments([]byte(stream.String()))
	if len(docs) != len(singles) {
		t.Fatalf("%d documents, want %d", len(docs), len(singles))
	}
	for i, doc := range docs {
		want, werr := Decode(singles[i])
		if line := max(1, 7*i); doc.Index != i || doc.Line != line { // its "---" line
			t.Errorf("document %d: index %d line %d", i, doc.Index, doc.Line)
		}
		if (werr == nil) != (doc.Err == nil) || !reflect.DeepEqual(want, doc.Resource) {
			t.Fatalf("document %d: got %v %v, want %v %v", i, doc.Resource, doc.Err, want, werr)
		}
	}
	_, err := DecodeAll([]byte(stream.String()))
	var de *DocumentError
	if !errors.As(err, &de) || de.Index != 3 || de.Line != 21 || !strings.Contains(err.Error(), "line 27: spec.default.backend: unknown field") {
		t.Fatalf("DecodeAll: %v", err)
	}
}
