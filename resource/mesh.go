package resource

import "encoding/json"

// MeshSpec is Kuma's Mesh (fields inline at the top level). Sections this project
// does not act on are kept as given, so kumactl-written meshes round-trip.
type MeshSpec struct {
	MTLS                        json.RawMessage `json:"mtls,omitempty"`
	Logging                     json.RawMessage `json:"logging,omitempty"`
	Metrics                     json.RawMessage `json:"metrics,omitempty"`
	Tracing                     json.RawMessage `json:"tracing,omitempty"`
	Networking                  json.RawMessage `json:"networking,omitempty"`
	Routing                     json.RawMessage `json:"routing,omitempty"`
	Constraints                 json.RawMessage `json:"constraints,omitempty"`
	SkipCreatingInitialPolicies []string        `json:"skipCreatingInitialPolicies,omitempty"`
}

// SetDefaults does nothing: a Mesh has no defaults this project fills in.
func (s *MeshSpec) SetDefaults() {}

// Validate accepts any mesh; its opaque sections are not interpreted.
func (s *MeshSpec) Validate() ValidationErrors { return nil }

func init() {
	Register(&Descriptor{
		Type:    TypeMesh,
		Plural:  "meshes",
		Scope:   ScopeGlobal,
		Sync:    SyncGlobalToZone,
		NewSpec: func() Spec { return &MeshSpec{} },
	})
}
