package store

import (
	"fmt"
	"testing"
	"time"

	"github.com/meshtrace/meshtrace/resource"
)

// A hint is what was set, copied: changing the resource after, or the
// resource get returns, does not change the hint.
func TestHintsAreCopies(t *testing.T) {
	var h hints
	r := &resource.Resource{Meta: resource.Meta{Type: resource.TypeMeshTrace, Mesh: "m", Name: "a",
		Labels: map[string]string{"k": "v"}, CreationTime: time.Unix(1, 0).UTC(), Version: 7}}
	h.set("a", r)
	r.Labels["k"], r.Version = "changed", 8
	got, ok := h.get("a")
	if !ok || got.Version != 7 || got.Labels["k"] != "v" || got.Name != "a" || !got.CreationTime.Equal(time.Unix(1, 0)) {
		t.Fatalf("hint %+v %v, want version 7 and label v", got, ok)
	}
	got.Version = 9
	if again, _ := h.get("a"); again.Version != 7 {
		t.Errorf("changing what get returned changed the hint: %d", again.Version)
	}
	h.set("a", nil)
	if _, ok := h.get("a"); ok {
		t.Error("a hint set to nil is still there")
	}
}

// BenchmarkHintsSetNewKeys sets hints for names never written before, as a
// burst of creates does: the map grows all the time.
func BenchmarkHintsSetNewKeys(b *testing.B) {
	var h hints
	keys := make([]string, b.N)
	for i := range keys {
		keys[i] = fmt.Sprintf("/meshtrace/resources/MeshTrace/default/burst-%d", i)
	}
	r := &resource.Resource{Meta: resource.Meta{Type: resource.TypeMeshTrace, Mesh: "default", Name: "x",
		CreationTime: time.Now(), ModificationTime: time.Now(), Version: 1}}
	b.ReportAllocs()
	b.ResetTimer()
	for i := range b.N {
		h.set(keys[i], r)
	}
}
