package cli

import (
	"strings"
	"testing"
)

// Errors name the line of the offending key: a typo found while decoding
// (apiVersoin on line 12) and a value the server refuses (targetRef.kind on
// line 18), in a multi-document file; the refusal lists the supported kinds.
func TestApplyErrorsPointAtTheLine(t *testing.T) {
	r := newRunner(t)
	const backend = "  default:\n    backends:\n    - zipkin:\n        url: http://zipkin:9411\n"
	typo := "type: MeshTrace\nname: a\nmesh: default\nspec:\n" + backend + // lines 1-8
		"---\n" + // 9
		"kind: MeshTrace\n" + // 10
		"metadata: {name: b}\n" + // 11
		"apiVersoin: kuma.io/v1alpha1\n" + // 12
		"spec:\n" + backend
	code, _, errOut := r.run(typo, "apply", "-f", "-")
	if code == 0 || !strings.Contains(errOut, "line 12: apiVersoin: unknown field") {
		t.Fatalf("typo: %d\n%s", code, errOut)
	}

	bad := "type: MeshTrace\nname: a\nmesh: default\nspec:\n" + backend + // lines 1-8
		"---\n" + // 9
		"type: MeshTrace\nname: b\nmesh: default\n" + // 10-12
		"labels:\n  team: x\n" + // 13-14
		"spec:\n" + // 15
		"  targetRef:\n" + // 16
		"    name: web\n" + // 17
		"    kind: MeshHTTPRoute\n" + // 18
		backend
	for _, args := range [][]string{{"apply", "-f", "-"}, {"apply", "--dry-run", "-f", "-"}} {
		code, _, errOut = r.run(bad, args...)
		want := `line 18: spec.targetRef.kind: value is not supported: "MeshHTTPRoute"; supported: Mesh, MeshSubset, MeshService, MeshServiceSubset, MeshGateway`
		if code == 0 || !strings.Contains(errOut, want) {
			t.Fatalf("%v: %d\n%s\nwant %s", args, code, errOut, want)
		}
	}
	// One document goes through PUT: same pointer.
	one := bad[strings.Index(bad, "---\n")+4:]
	code, _, errOut = r.run(one, "apply", "-f", "-")
	if code == 0 || !strings.Contains(errOut, "line 9: spec.targetRef.kind: value is not supported") {
		t.Fatalf("one document: %d\n%s", code, errOut)
	}
}
