package resource

import (
	"errors"
	"strings"
	"testing"
)

// multiDoc has a typo (apiVersoin) on line 12, in the third document.
const multiDoc = `type: Mesh
name: default
---
apiVersion: kuma.io/v1alpha1
kind: MeshTrace
metadata:
  name: ok
spec:
  default: {}
---
kind: MeshTrace
apiVersoin: kuma.io/v1alpha1
metadata:
  name: bad
  labels:
    kuma.io/mesh: default
spec:
  targetRef:
    kind: Mesh
  default:
    backends:
    - zipkin:
        url: http://zipkin:9411
        colour: blue
`

func TestDecodeAllPointsAtTheLine(t *testing.T) {
	_, err := DecodeAll([]byte(multiDoc))
	var de *DocumentError
	if !errors.As(err, &de) || de.Index != 2 || de.Line != 10 {
		t.Fatalf("got %v", err)
	}
	lines := map[string]int{}
	for _, v := range violations(t, err) {
		lines[v.Field] = v.Line
	}
	want := map[string]int{
		"apiVersoin":                             12,
		"apiVersion":                             0, // missing: no line to point at
		"spec.default.backends[0].zipkin.colour": 24,
	}
	for f, l := range want {
		if got, ok := lines[f]; !ok || got != l {
			t.Errorf("%s: line %d (present %v), want %d; all: %v", f, got, ok, l, lines)
		}
	}
	if !strings.Contains(err.Error(), "line 12: apiVersoin: unknown field") {
		t.Errorf("message does not name line 12: %q", err.Error())
	}
}

func TestFieldLine(t *testing.T) {
	doc := "type: MeshTrace\nname: t\nlabels:\n  kuma.io/zone: west\nspec:\n  targetRef:\n    kind: Bad\n  default:\n    backends:\n    - type: Zipkin\n      zipkin:\n        url: x\n"
	for _, tc := range []struct {
		field string
		want  int
	}{
		{"type", 1},
		{"labels.kuma.io/zone", 4},
		{"spec.targetRef.kind", 7},
		{"spec.default.backends[0]", 10},
		{"spec.default.backends[0].zipkin.url", 12},
		{"spec.default.backends[0].zipkin.apiVersion", 11}, // missing: its parent
		{"spec.default.backends[3].type", 9},               // no such item: the list
		{"nothing", 0},
		{"", 0},
	} {
		if got := FieldLine([]byte(doc), tc.field); got != tc.want {
			t.Errorf("FieldLine(%q) = %d, want %d", tc.field, got, tc.want)
		}
	}
	if got := FieldLine([]byte("{\n \"type\": \"Mesh\",\n \"nmae\": \"x\"\n}"), "nmae"); got != 3 {
		t.Errorf("JSON: line %d, want 3", got)
	}
	if got := FieldLine([]byte(": : :\n\t- ["), "a"); got != 0 {
		t.Errorf("unparsable: line %d, want 0", got)
	}
}

func FuzzFieldLine(f *testing.F) {
	f.Add([]byte(multiDoc), "spec.default.backends[0].zipkin.colour")
	f.Add([]byte("a:\n- b: [1, {c: d}]\n"), "a[0].b[1].c")
	f.Add([]byte("{}"), "[")
	f.Fuzz(func(t *testing.T, doc []byte, field string) {
		if l := FieldLine(doc, field); l < 0 {
			t.Fatalf("negative line %d", l)
		}
	})
}
