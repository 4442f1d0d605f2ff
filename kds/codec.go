package kds

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"maps"
	"sync"
	"time"

	kdsv1 "github.com/meshtrace/meshtrace/proto/kds/v1"
	"github.com/meshtrace/meshtrace/resource"
)

// Resources travel as their Universal JSON form; this file is the only place
// that knows it.

// encodeResource calls the resource's MarshalJSON itself: through
// json.Marshal the same bytes would be scanned again (compacted and checked)
// and copied, for nothing (resource's TestMarshalJSONMatchesReference holds
// the two equal).
func encodeResource(r *resource.Resource) ([]byte, error) { return r.MarshalJSON() }

func decodeResource(b []byte) (*resource.Resource, error) {
	r := &resource.Resource{}
	if err := json.Unmarshal(b, r); err != nil {
		return nil, err
	}
	return r, nil
}

// decodeWire decodes a received resource and checks that it is the one the
// message names and that it is valid; an error is the reason to reject it.
//
// A policy takes shorter ways first (decodeCompact, then decodeEncoded);
// whatever they do not accept is decoded strictly, so a rejection always
// carries the strict decoder's reason (unknown field, wrong type, with its
// path).
func decodeWire(w *kdsv1.Resource) (*resource.Resource, error) {
	r, _, err := decodeWireSpec(w)
	return r, err
}

// decodeWireSpec is decodeWire that also returns the spec's JSON when
// decodeCompact has it exactly as the store would write it (else nil).
func decodeWireSpec(w *kdsv1.Resource) (*resource.Resource, []byte, error) {
	r, specJSON, ok := decodeCompact(w.Json)
	var err error
	if !ok {
		r, err = decodeEncoded(w.Json)
		if err != nil {
			r, err = decodeResource(w.Json)
		}
	}
	if err != nil {
		return nil, nil, err
	}
	if r.Key() != keyOf(w) {
		return nil, nil, fmt.Errorf("resource is %s, the message says %s", r.Key(), keyOf(w))
	}
	if err := resource.Validate(r); err != nil {
		return nil, nil, err
	}
	return r, specJSON, nil
}

// encodedPolicy is a policy's Universal JSON as encodeResource writes it;
// Spec holds a pointer to the type's spec, which the JSON fills.
type encodedPolicy struct {
	Type             resource.Type     `json:"type"`
	Mesh             string            `json:"mesh"`
	Name             string            `json:"name"`
	Labels           map[string]string `json:"labels"`
	CreationTime     time.Time         `json:"creationTime"`
	ModificationTime time.Time         `json:"modificationTime"`
	Spec             any               `json:"spec"`
}

var errNotEncodedPolicy = errors.New("not a policy as global encodes it")

// encodedTypePrefix starts every resource encodeResource writes.
var encodedTypePrefix = []byte(`{"type":"`)

// decodeEncoded decodes a policy (a type with a spec field) written by
// encodeResource straight into its typed value, in one pass of
// encoding/json that refuses unknown fields at any depth: what a zone of an
// older version does not know (a field added on global) still fails, and is
// then decoded strictly for the reason. It is faster than the strict
// decoder, which parses into a generic tree first to name every problem
// with its path. Lexically it is laxer: encoding/json matches keys
// case-insensitively and merges a repeated key, neither of which
// encodeResource writes; the API, where people write documents, keeps the
// strict decoder. The result is validated as any other (decodeWire).
func decodeEncoded(b []byte) (*resource.Resource, error) {
	// The type comes first in what global writes: the spec's Go type is
	// known before the spec is read.
	rest, ok := bytes.CutPrefix(b, encodedTypePrefix)
	end := bytes.IndexByte(rest, '"')
	if !ok || end < 0 {
		return nil, errNotEncodedPolicy
	}
	d, ok := resource.Lookup(resource.Type(rest[:end]))
	if !ok || !d.IsPolicy {
		return nil, errNotEncodedPolicy
	}
	spec := d.NewSpec()
	p := encodedPolicy{Spec: spec}
	dec := json.NewDecoder(bytes.NewReader(b))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&p); err != nil {
		return nil, err
	}
	if len(bytes.TrimSpace(b[dec.InputOffset():])) > 0 {
		return nil, errors.New("data after the JSON value")
	}
	if p.Type != d.Type || p.Spec != any(spec) {
		// A repeated type, or no spec object (null, absent): the strict
		// decoder says what is wrong.
		return nil, errNotEncodedPolicy
	}
	if len(p.Labels) == 0 {
		p.Labels = nil
	}
	return &resource.Resource{Meta: resource.Meta{Type: p.Type, Mesh: p.Mesh, Name: p.Name, Labels: p.Labels,
		CreationTime: p.CreationTime, ModificationTime: p.ModificationTime}, Spec: spec}, nil
}

// contentHash is equal for two resources with the same key, labels and spec,
// whatever their times and store versions.
func contentHash(r *resource.Resource) string { return resource.Hash(r) }

// wireResource turns a queued change into its message form; cache may be nil.
//
// An entry of the feed (shared) keeps its form for the other zones' queues,
// which send the same message (read-only from then on: gRPC may encode it
// for two streams at once), and is encoded without the cache: a change of
// the feed is new to it, and with every resource in it the cache is a large
// map whose lookups and inserts cost more than the encoding they spare
// (three times as much in a burst on global). Snapshots and catch-ups, whose
// entries are each stream's own, share encodings through the cache.
func wireResource(e *entry, cache *wireCache) (*kdsv1.Resource, error) {
	if e.shared {
		if w := e.wire.Load(); w != nil {
			return w, nil
		}
	}
	w := &kdsv1.Resource{Type: string(e.key.Type), Mesh: e.key.Mesh, Name: e.key.Name, Delete: e.del, Revision: e.rev}
	if !e.del {
		var b []byte
		var err error
		if e.shared {
			b, err = encodeResource(e.res)
		} else {
			b, err = cache.encode(e)
		}
		if err != nil {
			return nil, err
		}
		w.Json = b
	}
	if e.shared {
		e.wire.Store(w)
	}
	return w, nil
}

// wireCache shares the encoded form of a resource version among the streams
// of one server: a change is encoded once, not once per zone. A key and its
// store revision name one content in one store. It holds one entry per live
// resource; deletes drop theirs.
type wireCache struct {
	mu sync.Mutex
	m  map[resource.Key]wireVersion
}

type wireVersion struct {
	rev  int64
	json []byte
}

func newWireCache() *wireCache { return &wireCache{m: map[resource.Key]wireVersion{}} }

func (c *wireCache) encode(e *entry) ([]byte, error) {
	if c == nil || e.rev <= 0 {
		return encodeResource(e.res)
	}
	c.mu.Lock()
	v, ok := c.m[e.key]
	c.mu.Unlock()
	if ok && v.rev == e.rev {
		return v.json, nil
	}
	b, err := encodeResource(e.res)
	if err != nil {
		return nil, err
	}
	c.mu.Lock()
	if cur, ok := c.m[e.key]; !ok || cur.rev < e.rev {
		c.m[e.key] = wireVersion{rev: e.rev, json: b}
	}
	c.mu.Unlock()
	return b, nil
}

// forget drops the entry of a key deleted at rev.
func (c *wireCache) forget(key resource.Key, rev int64) {
	if c == nil {
		return
	}
	c.mu.Lock()
	if cur, ok := c.m[key]; ok && cur.rev < rev {
		delete(c.m, key)
	}
	c.mu.Unlock()
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
