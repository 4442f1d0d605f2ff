package kds

import (
	"encoding/json"
	"maps"

	kdsv1 "github.com/meshtrace/meshtrace/proto/kds/v1"
	"github.com/meshtrace/meshtrace/resource"
)

// Resources travel as their Universal JSON form; this file is the only place
// that knows it.

func encodeResource(r *resource.Resource) ([]byte, error) { return json.Marshal(r) }

func decodeResource(b []byte) (*resource.Resource, error) {
	r := &resource.Resource{}
	if err := json.Unmarshal(b, r); err != nil {
		return nil, err
	}
	return r, nil
}

// contentHash is equal for two resources with the same key, labels and spec,
// whatever their times and store versions.
func contentHash(r *resource.Resource) string { return resource.Hash(r) }

// wireResource turns a queued change into its message form.
func wireResource(e *entry) (*kdsv1.Resource, error) {
	w := &kdsv1.Resource{Type: string(e.key.Type), Mesh: e.key.Mesh, Name: e.key.Name, Delete: e.del, Revision: e.rev}
	if !e.del {
		b, err := encodeResource(e.res)
		if err != nil {
			return nil, err
		}
		w.Json = b
	}
	return w, nil
}

// wireSize estimates the encoded size of w inside a Batch.
func wireSize(w *kdsv1.Resource) int {
	return len(w.Json) + len(w.Type) + len(w.Mesh) + len(w.Name) + 32
}

func keyOf(w *kdsv1.Resource) resource.Key {
	return resource.Key{Type: resource.Type(w.Type), Mesh: w.Mesh, Name: w.Name}
}

func withLabels(in map[string]string, set map[string]string) map[string]string {
	out := make(map[string]string, len(in)+len(set))
	maps.Copy(out, in)
	maps.Copy(out, set)
	return out
}
