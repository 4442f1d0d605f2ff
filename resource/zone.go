package resource

import "time"

// ZoneSpec is a zone known to global (fields inline, like Kuma's Zone).
type ZoneSpec struct {
	Enabled *bool `json:"enabled,omitempty"`
}

// SetDefaults enables a zone unless told otherwise.
func (s *ZoneSpec) SetDefaults() {
	if s.Enabled == nil {
		t := true
		s.Enabled = &t
	}
}

// Validate accepts any zone.
func (s *ZoneSpec) Validate() ValidationErrors { return nil }

// ZoneInsightSpec is what global knows of a zone's sync state, reported by the
// zone and completed by global.
type ZoneInsightSpec struct {
	Online           bool      `json:"online"`
	ConnectedTime    time.Time `json:"connectedTime,omitzero"`
	DisconnectedTime time.Time `json:"disconnectedTime,omitzero"`
	// GlobalInstance is the global replica the zone is connected to.
	GlobalInstance string `json:"globalInstance,omitempty"`
	// LastAckedRevision is the last global store revision the zone applied.
	LastAckedRevision int64 `json:"lastAckedRevision"`
	// LagRevisions is global's revision minus LastAckedRevision when reported.
	LagRevisions int64 `json:"lagRevisions"`
	NACKs        int64 `json:"nacks"`
	LastNACK     *NACK `json:"lastNack,omitempty"`
	// Stats counts per resource type what was sent, ACKed and NACKed.
	Stats map[string]TypeStats `json:"stats,omitempty"`
	// Proxies lists the zone's proxies and the tracing backend each uses.
	Proxies []ProxyTracing `json:"proxies,omitempty"`
}

// NACK records one rejected resource.
type NACK struct {
	Type     Type      `json:"type"`
	Mesh     string    `json:"mesh,omitempty"`
	Name     string    `json:"name"`
	Revision int64     `json:"revision"`
	Reason   string    `json:"reason"`
	Time     time.Time `json:"time"`
}

// TypeStats are per-type sync counters.
type TypeStats struct {
	Sent   int64 `json:"sent"`
	Acked  int64 `json:"acked"`
	Nacked int64 `json:"nacked"`
}

// ProxyTracing is one proxy's effective tracing backend.
type ProxyTracing struct {
	Mesh      string   `json:"mesh"`
	Name      string   `json:"name"`
	Service   string   `json:"service,omitempty"`
	Backend   string   `json:"backend,omitempty"`   // Zipkin, Datadog, OpenTelemetry or "" for off
	Collector string   `json:"collector,omitempty"` // url or endpoint
	Policies  []string `json:"policies,omitempty"`
}

// SetDefaults does nothing.
func (s *ZoneInsightSpec) SetDefaults() {}

// Validate accepts any insight.
func (s *ZoneInsightSpec) Validate() ValidationErrors { return nil }

func init() {
	Register(&Descriptor{
		Type:    TypeZone,
		Plural:  "zones",
		Scope:   ScopeGlobal,
		NewSpec: func() Spec { return &ZoneSpec{} },
	})
	Register(&Descriptor{
		Type:    TypeZoneInsight,
		Plural:  "zone-insights",
		Scope:   ScopeGlobal,
		Sync:    SyncZoneToGlobal,
		NewSpec: func() Spec { return &ZoneInsightSpec{} },
	})
}
