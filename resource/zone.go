package resource

import (
	"encoding/json"
	"errors"
	"fmt"
	"time"

	"github.com/meshtrace/meshtrace/residency/allow"
)

// ZoneSpec is a zone known to global (fields inline, like Kuma's Zone; under
// `spec` in a Kubernetes manifest).
type ZoneSpec struct {
	Enabled *bool `json:"enabled,omitempty"`
	// Residency declares where the zone's proxies may send spans.
	Residency *Residency `json:"residency,omitempty"`
}

// ResidencyMode is Enforce, Audit or Off.
type ResidencyMode string

// UnmarshalJSON reads a mode string. It also takes the boolean false, which
// is what YAML makes of an unquoted `mode: Off`.
func (m *ResidencyMode) UnmarshalJSON(b []byte) error {
	var v any
	if err := json.Unmarshal(b, &v); err != nil {
		return err
	}
	switch v := v.(type) {
	case string:
		*m = ResidencyMode(v)
	case bool:
		if v {
			return fmt.Errorf("must be one of %s, %s or %s, got the boolean true (YAML reads an unquoted yes/on/true as one)",
				ResidencyEnforce, ResidencyAudit, ResidencyOff)
		}
		*m = ResidencyOff
	case nil:
	default:
		return errors.New("must be a string")
	}
	return nil
}

// Residency modes.
const (
	// ResidencyEnforce: global refuses policy writes that would send a proxy
	// of the zone to a collector outside the allowed set, and the zone never
	// serves such a tracing config (the proxy gets tracing off).
	ResidencyEnforce ResidencyMode = "Enforce"
	// ResidencyAudit: writes are admitted; violations are recorded and shown.
	ResidencyAudit ResidencyMode = "Audit"
	// ResidencyOff: no check (the default).
	ResidencyOff ResidencyMode = "Off"
)

// Residency is a zone's declared trace residency.
type Residency struct {
	// Mode is Enforce, Audit or Off (default).
	Mode ResidencyMode `json:"mode,omitempty"`
	// AllowedCollectors are the collector addresses the zone's proxies may
	// export to: host names, *.domain wildcards, IPs and CIDR blocks, each
	// with an optional :port (see package residency/allow).
	AllowedCollectors []string `json:"allowedCollectors,omitempty"`
}

// ResidencyMode returns the zone's residency mode, Off when none is declared.
func (s *ZoneSpec) ResidencyMode() ResidencyMode {
	if s == nil || s.Residency == nil || s.Residency.Mode == "" {
		return ResidencyOff
	}
	return s.Residency.Mode
}

// SetDefaults enables a zone unless told otherwise and defaults a declared
// residency's mode to Off.
func (s *ZoneSpec) SetDefaults() {
	if s.Enabled == nil {
		t := true
		s.Enabled = &t
	}
	if s.Residency != nil && s.Residency.Mode == "" {
		s.Residency.Mode = ResidencyOff
	}
}

// Validate checks the residency section: a known mode and parseable
// collector patterns, each problem under its own field path.
func (s *ZoneSpec) Validate() ValidationErrors {
	var errs ValidationErrors
	if s.Residency == nil {
		return nil
	}
	switch s.Residency.Mode {
	case "", ResidencyEnforce, ResidencyAudit, ResidencyOff:
	default:
		errs.Add("residency.mode", fmt.Sprintf("must be one of %s, %s or %s, got %q",
			ResidencyEnforce, ResidencyAudit, ResidencyOff, s.Residency.Mode))
	}
	_, err := allow.Compile(s.Residency.AllowedCollectors)
	for _, e := range unwrapAll(err) {
		var fe *allow.FieldError
		if errors.As(e, &fe) {
			errs.Add(fmt.Sprintf("residency.allowedCollectors[%d]", fe.Index), fe.Err.Error())
		}
	}
	return errs
}

// unwrapAll returns the errors joined in err (err itself when not joined).
func unwrapAll(err error) []error {
	if err == nil {
		return nil
	}
	if j, ok := err.(interface{ Unwrap() []error }); ok {
		return j.Unwrap()
	}
	return []error{err}
}

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
	// Uploaded counts, by type, the resources the zone has on global
	// (its Dataplanes, the policies created on it).
	Uploaded map[string]int64 `json:"uploaded,omitempty"`
	// ProxiesOmitted counts the proxies left out of Proxies so that the
	// insight fits the store's value cap (thousands of proxies).
	ProxiesOmitted int `json:"proxiesOmitted,omitempty"`
	// Held is set while the zone refuses a snapshot's deletes because global
	// looked like it lost its data; an operator releases them
	// (POST /zones/{name}/release-deletes).
	Held *HeldDeletes `json:"held,omitempty"`
}

// HeldDeletes describes snapshot deletes a zone holds.
type HeldDeletes struct {
	Reason  string    `json:"reason"`
	Deletes int64     `json:"deletes"`
	Since   time.Time `json:"since"`
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
	// XDS is the proxy's xDS connection as the zone's ADS server sees it;
	// nil when the proxy never connected.
	XDS *ProxyXDS `json:"xds,omitempty"`
	// ResidencyViolation, when set, says why the collector the merged
	// policies name is outside the zone's allowed collectors; with
	// ResidencyBlocked (Enforce) the zone serves the proxy tracing off, and
	// Backend and Collector are empty while ResidencyCollector names the
	// collector refused.
	ResidencyViolation string `json:"residencyViolation,omitempty"`
	ResidencyCollector string `json:"residencyCollector,omitempty"`
	ResidencyBlocked   bool   `json:"residencyBlocked,omitempty"`
}

// ProxyXDS is one proxy's xDS connection: what kumactl inspect dataplanes
// shows as its DataplaneInsight.
type ProxyXDS struct {
	Online bool `json:"online"`
	// ControlPlane names the zone control plane instance serving the proxy.
	ControlPlane     string    `json:"controlPlane,omitempty"`
	ConnectedTime    time.Time `json:"connectedTime,omitzero"`
	DisconnectedTime time.Time `json:"disconnectedTime,omitzero"`
	// LastUpdateTime is when the last response was sent to the proxy.
	LastUpdateTime time.Time `json:"lastUpdateTime,omitzero"`
	// Sent, Acked and Rejected count responses on the current connection.
	Sent     uint64 `json:"sent"`
	Acked    uint64 `json:"acked"`
	Rejected uint64 `json:"rejected"`
	// AckedVersion is the last configuration version the proxy ACKed.
	AckedVersion string `json:"ackedVersion,omitempty"`
	EnvoyVersion string `json:"envoyVersion,omitempty"`
}

// SetDefaults does nothing.
func (s *ZoneInsightSpec) SetDefaults() {}

// Validate accepts any insight.
func (s *ZoneInsightSpec) Validate() ValidationErrors { return nil }

func init() {
	Register(&Descriptor{
		Type:   TypeZone,
		Plural: "zones",
		Scope:  ScopeGlobal,
		// Down to zones, so each holds its residency and enforces it itself.
		Sync:    SyncGlobalToZone,
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
