package store

import (
	"encoding/json"
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/meshtrace/meshtrace/resource"
)

// Storage layout, shared by every implementation:
//
//	<prefix>resources/<Type>/<mesh or "_">/<name>  one resource (JSON envelope)
//	<prefix>values/<key>                           one GetValue/PutValue value
//
// The envelope is this package's own format, independent of the wire codecs in
// resource/, so the two can evolve separately.

const (
	// DefaultPrefix is the key prefix used when a config leaves it empty.
	DefaultPrefix = "/meshtrace/"
	// DefaultMaxValueBytes caps one stored value.
	DefaultMaxValueBytes = 512 * 1024
	// MaxTxnOps is the largest number of operations sent in one transaction.
	MaxTxnOps = 128

	noMesh       = "_"
	resourcesDir = "resources/"
	valuesDir    = "values/"
)

// envelope is the stored form of a resource. Meta.Version is never stored: it
// is the key's modification revision.
type envelope struct {
	Meta resource.Meta   `json:"meta"`
	Spec json.RawMessage `json:"spec,omitempty"`
}

// keyspace builds and parses keys under one prefix.
type keyspace struct {
	prefix string
}

func newKeyspace(prefix string) keyspace {
	if prefix == "" {
		prefix = DefaultPrefix
	}
	if !strings.HasSuffix(prefix, "/") {
		prefix += "/"
	}
	return keyspace{prefix: prefix}
}

// checkKey rejects keys that cannot be mapped to one storage key unambiguously.
func checkKey(k resource.Key) error {
	if _, ok := resource.Lookup(k.Type); !ok {
		return fmt.Errorf("store: unknown resource type %q", k.Type)
	}
	if k.Name == "" {
		return fmt.Errorf("store: %s: empty name", k)
	}
	if k.Mesh == noMesh || strings.Contains(k.Mesh, "/") {
		return fmt.Errorf("store: %s: invalid mesh name %q", k, k.Mesh)
	}
	return nil
}

func (ks keyspace) resourceKey(k resource.Key) string {
	mesh := k.Mesh
	if mesh == "" {
		mesh = noMesh
	}
	return ks.prefix + resourcesDir + string(k.Type) + "/" + mesh + "/" + k.Name
}

// typePrefix is the prefix of every resource of t, or of every resource when t is "".
func (ks keyspace) typePrefix(t resource.Type) string {
	if t == "" {
		return ks.prefix + resourcesDir
	}
	return ks.prefix + resourcesDir + string(t) + "/"
}

// listPrefix is the range a List of t reads: one mesh or the whole type.
func (ks keyspace) listPrefix(t resource.Type, mesh string) string {
	d, ok := resource.Lookup(t)
	if mesh == "" || (ok && d.Scope == resource.ScopeGlobal) {
		return ks.typePrefix(t)
	}
	return ks.typePrefix(t) + mesh + "/"
}

func (ks keyspace) valueKey(key string) string {
	return ks.prefix + valuesDir + key
}

// parseKey recovers a resource key from a storage key.
func (ks keyspace) parseKey(key string) (resource.Key, bool) {
	rest, ok := strings.CutPrefix(key, ks.prefix)
	if !ok {
		return resource.Key{}, false
	}
	if rest, ok = strings.CutPrefix(rest, resourcesDir); !ok {
		return resource.Key{}, false
	}
	typ, rest, ok := strings.Cut(rest, "/")
	if !ok {
		return resource.Key{}, false
	}
	mesh, name, ok := strings.Cut(rest, "/")
	if !ok {
		return resource.Key{}, false
	}
	k := resource.Key{Type: resource.Type(typ), Mesh: mesh, Name: name}
	if k.Mesh == noMesh {
		k.Mesh = ""
	}
	return k, true
}

// encode returns the stored form of r, or ErrTooLarge when over maxBytes.
// specJSON, when not nil, is json.Marshal(r.Spec), which the caller already
// encoded (see BatchOptions.SpecJSON).
func encode(r *resource.Resource, maxBytes int, specJSON []byte) ([]byte, error) {
	if r == nil {
		return nil, fmt.Errorf("store: nil resource")
	}
	if err := checkKey(r.Key()); err != nil {
		return nil, err
	}
	b, ok := appendEnvelope(nil, r, specJSON)
	if !ok {
		// What appendEnvelope leaves to encoding/json, which also words the
		// error of what cannot be encoded.
		env := typedEnvelope{Meta: r.Meta}
		env.Meta.Version = 0
		if r.Spec != nil {
			env.Spec = r.Spec
		}
		var err error
		if b, err = json.Marshal(env); err != nil {
			return nil, fmt.Errorf("store: encode %s: %w", r.Key(), err)
		}
	}
	if maxBytes > 0 && len(b) > maxBytes {
		return nil, fmt.Errorf("%w: %s is %d bytes, the cap is %d", ErrTooLarge, r.Key(), len(b), maxBytes)
	}
	return b, nil
}

// envelopeBytes is appendEnvelope's text around the names, labels and spec,
// with both times at their longest.
const envelopeBytes = len(`{"meta":{"type":"","mesh":"","name":"","labels":{},"creationTime":"","modificationTime":""},"spec":}`) +
	2*len("2006-01-02T15:04:05.999999999-07:00")

// appendEnvelope appends what json.Marshal writes for r's typedEnvelope
// (Meta without its Version, then the spec unless r has none), writing the
// envelope itself instead of reflecting over it: every write encodes one.
// The spec is specJSON when given, else encoded here. ok is false when a
// time does not fit RFC 3339 or the spec does not encode: encoding/json
// refuses those, and encode lets it say why.
func appendEnvelope(b []byte, r *resource.Resource, specJSON []byte) ([]byte, bool) {
	if r.Spec != nil && specJSON == nil {
		var err error
		if specJSON, err = json.Marshal(r.Spec); err != nil {
			return nil, false
		}
	}
	if b == nil {
		// Room for all of it unless something needs escapes: the text
		// around the spec, with both times and a label, is over 200 bytes,
		// and growing the buffer would allocate and copy it twice.
		n := len(specJSON) + len(r.Type) + len(r.Name) + len(r.Mesh) + envelopeBytes
		for k, v := range r.Labels {
			n += len(k) + len(v) + len(`"":"",`)
		}
		b = make([]byte, 0, n)
	}
	b = append(b, `{"meta":{"type":`...)
	b = resource.AppendJSONString(b, string(r.Type))
	if r.Mesh != "" {
		b = append(b, `,"mesh":`...)
		b = resource.AppendJSONString(b, r.Mesh)
	}
	b = append(b, `,"name":`...)
	b = resource.AppendJSONString(b, r.Name)
	if len(r.Labels) > 0 {
		// encoding/json writes a map's keys sorted.
		b = append(b, `,"labels":{`...)
		var buf [8]string // on the stack: a resource has a few labels
		keys := buf[:0]
		for k := range r.Labels {
			keys = append(keys, k)
		}
		slices.Sort(keys)
		for i, k := range keys {
			if i > 0 {
				b = append(b, ',')
			}
			b = resource.AppendJSONString(b, k)
			b = append(b, ':')
			b = resource.AppendJSONString(b, r.Labels[k])
		}
		b = append(b, '}')
	}
	var ok bool
	if b, ok = appendTime(b, `,"creationTime":"`, r.CreationTime); !ok {
		return nil, false
	}
	if b, ok = appendTime(b, `,"modificationTime":"`, r.ModificationTime); !ok {
		return nil, false
	}
	b = append(b, '}')
	if r.Spec != nil {
		b = append(b, `,"spec":`...)
		b = append(b, specJSON...)
	}
	return append(b, '}'), true
}

// appendTime appends field and t as time.Time's MarshalJSON writes it (the
// same RFC 3339 text as AppendText), nothing for the zero time (omitzero).
func appendTime(b []byte, field string, t time.Time) ([]byte, bool) {
	if t.IsZero() {
		return b, true
	}
	b = append(b, field...)
	b, err := t.AppendText(b)
	if err != nil {
		return nil, false
	}
	return append(b, '"'), true
}

// decode turns the value stored under k back into a resource with Version
// set; an error wraps ErrCorrupt.
func decode(k resource.Key, b []byte, version int64) (*resource.Resource, error) {
	if r, ok := decodeOnePass(k, b, version); ok {
		return r, nil
	}
	// Corrupt or unknown: the two steps say what exactly.
	r, raw, err := decodeMeta(k, b, version)
	if err != nil {
		return nil, err
	}
	return r, decodeSpec(r, raw)
}

// typedEnvelope is envelope with the spec encoded or decoded in the same
// pass: Spec holds the resource's spec (a pointer to the key type's spec,
// which encoding/json fills when decoding).
type typedEnvelope struct {
	Meta resource.Meta `json:"meta"`
	Spec any           `json:"spec,omitempty"`
}

// decodeOnePass decodes a well-formed value of k's type in one parse (watch
// events and reads decode every value: the spec is not scanned twice); ok
// is false for anything else, which decode then reports.
func decodeOnePass(k resource.Key, b []byte, version int64) (*resource.Resource, bool) {
	d, ok := resource.Lookup(k.Type)
	if !ok {
		return nil, false
	}
	spec := d.NewSpec()
	env := typedEnvelope{Spec: spec}
	if err := json.Unmarshal(b, &env); err != nil {
		return nil, false
	}
	r := &resource.Resource{Meta: env.Meta, Spec: spec}
	if r.Key() != k {
		return nil, false
	}
	if env.Spec == nil {
		// "spec": null, as decodeSpec: the zero spec.
		r.Spec = d.NewSpec()
	}
	r.Version = version
	return r, true
}

// decodeMeta decodes the envelope but leaves the spec raw, so List decodes
// specs only for the page it returns. The key is the identity: an envelope
// naming another resource is corrupt.
func decodeMeta(k resource.Key, b []byte, version int64) (*resource.Resource, json.RawMessage, error) {
	var env envelope
	if err := json.Unmarshal(b, &env); err != nil {
		return nil, nil, corruptf("decode %s: %v", k, err)
	}
	r := &resource.Resource{Meta: env.Meta}
	if r.Key() != k {
		return nil, nil, corruptf("the value under %s names %s", k, r.Key())
	}
	r.Version = version
	return r, env.Spec, nil
}

// decodeSpec allocates r's typed spec and fills it from raw.
func decodeSpec(r *resource.Resource, raw json.RawMessage) error {
	d, ok := resource.Lookup(r.Type)
	if !ok {
		return fmt.Errorf("store: decode: unknown resource type %q", r.Type)
	}
	spec := d.NewSpec()
	if len(raw) > 0 && string(raw) != "null" {
		if err := json.Unmarshal(raw, spec); err != nil {
			return corruptf("decode the spec of %s: %v", r.Key(), err)
		}
	}
	r.Spec = spec
	return nil
}

// lazyList collects resources with raw specs; page decodes the kept ones.
// Corrupt values are recorded in bad and left out.
type lazyList struct {
	items []*resource.Resource
	specs map[*resource.Resource]json.RawMessage
	bad   *corruptSet
	keys  map[*resource.Resource]string // storage keys, for reports
}

func (l *lazyList) add(k resource.Key, storageKey string, b []byte, version int64) {
	r, raw, err := decodeMeta(k, b, version)
	if err != nil {
		l.bad.record(k, storageKey, version, err)
		return
	}
	l.bad.clear(k)
	if l.keys == nil {
		l.keys = map[*resource.Resource]string{}
	}
	l.keys[r] = storageKey
	if l.specs == nil {
		l.specs = map[*resource.Resource]json.RawMessage{}
	}
	l.items = append(l.items, r)
	l.specs[r] = raw
}

// page filters, sorts and cuts the list, then decodes the specs of the
// page; a spec that does not decode is recorded and left out of the page.
func (l *lazyList) page(opts ListOptions) ([]*resource.Resource, int) {
	out, total := page(l.items, opts)
	kept := out[:0]
	for _, r := range out {
		if err := decodeSpec(r, l.specs[r]); err != nil {
			l.bad.record(r.Key(), l.keys[r], r.Version, err)
			total--
			continue
		}
		kept = append(kept, r)
	}
	return kept, total
}

// matchLabels reports whether r carries every label in want.
func matchLabels(r *resource.Resource, want map[string]string) bool {
	for k, v := range want {
		if got, ok := r.Labels[k]; !ok || got != v {
			return false
		}
	}
	return true
}

// page sorts items by mesh then name and applies the label filter, offset and limit.
func page(items []*resource.Resource, opts ListOptions) ([]*resource.Resource, int) {
	kept := items[:0]
	for _, r := range items {
		if matchLabels(r, opts.Labels) {
			kept = append(kept, r)
		}
	}
	sortResources(kept)
	total := len(kept)
	if opts.Offset > 0 {
		if opts.Offset >= len(kept) {
			kept = kept[:0]
		} else {
			kept = kept[opts.Offset:]
		}
	}
	if opts.Limit > 0 && len(kept) > opts.Limit {
		kept = kept[:opts.Limit]
	}
	out := make([]*resource.Resource, len(kept))
	copy(out, kept)
	return out, total
}

func sortResources(rs []*resource.Resource) {
	slices.SortFunc(rs, func(a, b *resource.Resource) int {
		if c := strings.Compare(a.Mesh, b.Mesh); c != 0 {
			return c
		}
		return strings.Compare(a.Name, b.Name)
	})
}

// wantType reports whether t passes a Types filter (empty means every type).
func wantType(types []resource.Type, t resource.Type) bool {
	if len(types) == 0 {
		return true
	}
	for _, w := range types {
		if w == t {
			return true
		}
	}
	return false
}

// keyList collects keys and versions for a KeysOnly list.
type keyList struct{ items []*resource.Resource }

func (l *keyList) add(k resource.Key, version int64) {
	l.items = append(l.items, &resource.Resource{Meta: resource.Meta{Type: k.Type, Mesh: k.Mesh, Name: k.Name, Version: version}})
}

// page sorts and cuts the list (no label filter: labels are not read).
func (l *keyList) page(opts ListOptions) ([]*resource.Resource, int) {
	opts.Labels = nil
	return page(l.items, opts)
}
