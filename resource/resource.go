// Package resource holds the resource model shared by global, zones and the CLI:
// the Universal envelope, the spec types, their codecs and validation.
package resource

import (
	"fmt"
	"reflect"
	"sort"
	"time"
)

// Type names a kind of resource, exactly as Kuma spells it in the Universal `type` field.
type Type string

const (
	TypeMesh        Type = "Mesh"
	TypeMeshTrace   Type = "MeshTrace"
	TypeDataplane   Type = "Dataplane"
	TypeZone        Type = "Zone"
	TypeZoneInsight Type = "ZoneInsight"
)

// Scope says whether a resource lives inside a mesh or beside the meshes.
type Scope int

const (
	ScopeMesh Scope = iota
	ScopeGlobal
)

// SyncDirection says which way KDS carries a type; the directions combine
// (SyncBoth).
type SyncDirection int

const (
	SyncNone SyncDirection = 0
	// SyncGlobalToZone: defined on global, read-only copies on every zone (Mesh, policies).
	SyncGlobalToZone SyncDirection = 1
	// SyncZoneToGlobal: defined on a zone, reported up to global (Dataplane, ZoneInsight).
	SyncZoneToGlobal SyncDirection = 2
	// SyncBoth: defined on global (copies on every zone) or on one zone (a
	// read-only copy on global, labelled kuma.io/origin: zone), as Kuma 2.7
	// syncs policies (GlobalToAllZones | ZoneToGlobal).
	SyncBoth = SyncGlobalToZone | SyncZoneToGlobal
)

// Has reports whether d includes the direction x.
func (d SyncDirection) Has(x SyncDirection) bool { return d&x == x && x != SyncNone }

// Descriptor tells everything generic code needs to know about a type. Adding a
// policy kind means registering one more Descriptor; nothing switches on Type.
type Descriptor struct {
	Type Type
	// Plural is the REST path segment, e.g. "meshtraces".
	Plural string
	// KubeKind is the Kubernetes kind, usually equal to Type.
	KubeKind string
	Scope    Scope
	// IsPolicy marks new-style policies whose Universal form carries a `spec` field.
	// Other types (Mesh, Dataplane, Zone, ZoneInsight) inline their spec fields at
	// the top level, as Kuma does.
	IsPolicy bool
	Sync     SyncDirection
	// NewSpec returns an empty spec of this type.
	NewSpec func() Spec

	specType reflect.Type // of what NewSpec returns
}

// Spec is the type-specific part of a resource.
type Spec interface {
	// SetDefaults fills in defaults in place, so a stored resource shows them.
	SetDefaults()
	// Validate returns every violation, field paths relative to the spec root
	// (the codec prefixes "spec." for policies).
	Validate() ValidationErrors
}

var registry = map[Type]*Descriptor{}

// Register adds a type to the registry. It panics on duplicates; call it from init.
func Register(d *Descriptor) {
	if _, ok := registry[d.Type]; ok {
		panic(fmt.Sprintf("resource type %q registered twice", d.Type))
	}
	if d.KubeKind == "" {
		d.KubeKind = string(d.Type)
	}
	d.specType = reflect.TypeOf(d.NewSpec())
	registry[d.Type] = d
}

// Lookup returns the descriptor of t.
func Lookup(t Type) (*Descriptor, bool) {
	d, ok := registry[t]
	return d, ok
}

// LookupPlural returns the descriptor whose REST path segment is plural.
func LookupPlural(plural string) (*Descriptor, bool) {
	for _, d := range registry {
		if d.Plural == plural {
			return d, true
		}
	}
	return nil, false
}

// Types returns every registered descriptor, sorted by type name.
func Types() []*Descriptor {
	out := make([]*Descriptor, 0, len(registry))
	for _, d := range registry {
		out = append(out, d)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Type < out[j].Type })
	return out
}

// Well-known labels.
const (
	LabelOrigin      = "kuma.io/origin"
	LabelMesh        = "kuma.io/mesh"
	LabelDisplayName = "kuma.io/display-name"
	LabelZone        = "kuma.io/zone"
	OriginGlobal     = "global"
	OriginZone       = "zone"
)

// Tag keys used in matching.
const (
	TagService  = "kuma.io/service"
	TagProtocol = "kuma.io/protocol"
	TagZone     = "kuma.io/zone"
)

// Meta is the Universal envelope of every resource.
type Meta struct {
	Type             Type              `json:"type"`
	Mesh             string            `json:"mesh,omitempty"`
	Name             string            `json:"name"`
	Labels           map[string]string `json:"labels,omitempty"`
	CreationTime     time.Time         `json:"creationTime,omitzero"`
	ModificationTime time.Time         `json:"modificationTime,omitzero"`
	// Version is the store's modification revision of this resource (etcd
	// ModRevision). It is not part of the wire form; 0 means never stored.
	Version int64 `json:"-"`
}

// Key identifies a resource.
type Key struct {
	Type Type
	Mesh string
	Name string
}

func (k Key) String() string {
	if k.Mesh == "" {
		return string(k.Type) + "/" + k.Name
	}
	return string(k.Type) + "/" + k.Mesh + "/" + k.Name
}

// Resource is an envelope plus a typed spec.
type Resource struct {
	Meta
	Spec Spec
}

// Key returns the identity of r.
func (r *Resource) Key() Key { return Key{Type: r.Type, Mesh: r.Mesh, Name: r.Name} }

// New returns an empty resource of type t with its spec allocated.
func New(t Type, mesh, name string) (*Resource, error) {
	d, ok := Lookup(t)
	if !ok {
		return nil, fmt.Errorf("unknown resource type %q", t)
	}
	if d.Scope == ScopeGlobal {
		mesh = ""
	}
	return &Resource{Meta: Meta{Type: t, Mesh: mesh, Name: name}, Spec: d.NewSpec()}, nil
}
