package cli

import (
	"context"
	"fmt"
	"strings"
	"testing"

	"github.com/meshtrace/meshtrace/resource"
	"github.com/meshtrace/meshtrace/store"
)

func tracesDoc(n int, bad map[int]string) string {
	var b strings.Builder
	for i := range n {
		if i > 0 {
			b.WriteString("---\n")
		}
		sampling := "10"
		if s, ok := bad[i]; ok {
			sampling = s
		}
		fmt.Fprintf(&b, "type: MeshTrace\nname: p-%03d\nmesh: default\nspec:\n  default:\n    backends: []\n    sampling:\n      overall: %s\n", i, sampling)
	}
	return b.String()
}

func storedTraces(t *testing.T, r runner) int {
	t.Helper()
	l, err := r.g.Store().List(context.Background(), resource.TypeMeshTrace, store.ListOptions{})
	if err != nil {
		t.Fatal(err)
	}
	return l.Total
}

// A document the server refuses (document 1 is valid YAML but out of range)
// stops the whole apply before anything is written, and the output points at
// the document, its line and the field.
func TestApplyValidatesEveryDocumentBeforeWriting(t *testing.T) {
	r := newRunner(t)
	code, out, errOut := r.run(tracesDoc(3, map[int]string{1: "101"}), "apply", "-f", "-")
	if code == 0 || out != "" {
		t.Fatalf("apply: %d %q", code, out)
	}
	for _, want := range []string{"document 1 (line 9) meshtrace/p-001", "spec.default.sampling.overall: must be between 0 and 100", "nothing was applied"} {
		if !strings.Contains(errOut, want) {
			t.Errorf("stderr lacks %q:\n%s", want, errOut)
		}
	}
	if n := storedTraces(t, r); n != 0 {
		t.Fatalf("%d policies stored", n)
	}
	// Unknown fields in two documents: both reported, by line.
	doc := tracesDoc(3, nil)
	doc = strings.Replace(doc, "name: p-000", "nmae: p-000", 1)
	doc = strings.Replace(doc, "name: p-002", "name: p-002\nbogus: 1", 1)
	code, _, errOut = r.run(doc, "apply", "-f", "-")
	if code == 0 || !strings.Contains(errOut, "nmae") || !strings.Contains(errOut, "bogus") || !strings.Contains(errOut, "2 of 3 documents") {
		t.Fatalf("two bad documents: %d\n%s", code, errOut)
	}
	if n := storedTraces(t, r); n != 0 {
		t.Fatalf("%d policies stored", n)
	}
}

func TestApplyLargeFileShowsProgress(t *testing.T) {
	r := newRunner(t)
	doc := tracesDoc(600, nil)
	code, out, errOut := r.run(doc, "apply", "--dry-run", "-f", "-")
	if code != 0 || strings.Count(out, "valid (dry run, would be created)") != 600 {
		t.Fatalf("dry run: %d %d lines\n%s", code, strings.Count(out, "\n"), errOut)
	}
	if n := storedTraces(t, r); n != 0 {
		t.Fatalf("dry run stored %d", n)
	}
	code, out, errOut = r.run(doc, "apply", "-f", "-")
	if code != 0 || strings.Count(out, " created\n") != 600 {
		t.Fatalf("apply: %d\n%s", code, errOut)
	}
	// One request; the server reports after each transaction (127 policies
	// and the mesh check).
	for _, want := range []string{"applied 127/600 documents (21%)", "applied 508/600", "applied 600/600 documents (100%)"} {
		if !strings.Contains(errOut, want) {
			t.Errorf("progress lacks %q:\n%s", want, errOut)
		}
	}
	if n := storedTraces(t, r); n != 600 {
		t.Fatalf("%d policies stored", n)
	}
	// A bad document at the end of a large file: nothing of it is written.
	code, _, errOut = r.run(strings.ReplaceAll(tracesDoc(600, map[int]string{599: "-1"}), "name: p-", "name: q-"), "apply", "-f", "-")
	if code == 0 || !strings.Contains(errOut, "document 599") || !strings.Contains(errOut, "nothing was applied") {
		t.Fatalf("bad last document: %d\n%s", code, errOut)
	}
	if n := storedTraces(t, r); n != 600 {
		t.Fatalf("%d policies stored after a refused apply", n)
	}
}

// Files over bulkOneRequestMax documents: a dry run of all of them first,
// then batches, with a progress line per batch.
func TestApplyVeryLargeFileInBatches(t *testing.T) {
	defer func(n int) { bulkOneRequestMax = n }(bulkOneRequestMax)
	bulkOneRequestMax = 100
	r := newRunner(t)
	code, out, errOut := r.run(tracesDoc(600, nil), "apply", "-f", "-")
	if code != 0 || strings.Count(out, " created\n") != 600 {
		t.Fatalf("apply: %d\n%s", code, errOut)
	}
	for _, want := range []string{"validated 600 documents", "applied 250/600 documents (41%)", "applied 500/600", "applied 600/600 documents (100%)"} {
		if !strings.Contains(errOut, want) {
			t.Errorf("progress lacks %q:\n%s", want, errOut)
		}
	}
	code, _, errOut = r.run(strings.ReplaceAll(tracesDoc(600, map[int]string{599: "-1"}), "name: p-", "name: q-"), "apply", "-f", "-")
	if code == 0 || !strings.Contains(errOut, "document 599") || !strings.Contains(errOut, "nothing was applied") {
		t.Fatalf("bad last document: %d\n%s", code, errOut)
	}
	if n := storedTraces(t, r); n != 600 {
		t.Fatalf("%d policies stored after a refused apply", n)
	}
}
