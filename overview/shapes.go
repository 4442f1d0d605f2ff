// Package overview serves the insight and overview endpoints that kumactl
// 2.7's inspect commands read, in the JSON shapes kumactl parses (Kuma's
// DataplaneOverview, ZoneOverview, MeshInsight and policy inspect entries,
// written as protojson writes them: camelCase, RFC 3339 times, 64-bit
// counters as strings). Fields kumactl does not know are ignored by it; the
// few meshtrace adds are marked so.
//
//	GET /meshes/{mesh}/dataplanes+insights[/{name}]   kumactl inspect dataplanes
//	GET /dataplanes+insights                          every mesh
//	GET /meshes/{mesh}/dataplanes/_overview[/{name}]  Kuma 2.7's newer spelling
//	GET /zones+insights[/{name}], /zones/_overview    kumactl inspect zones
//	GET /mesh-insights[/{name}]                       kumactl inspect meshes
//	GET /meshes/{mesh}/meshtraces/{name}/dataplanes   kumactl inspect meshtrace NAME
package overview

import (
	"time"

	"github.com/meshtrace/meshtrace/resource"
)

// Meta is Kuma's resource envelope without a spec.
type Meta struct {
	Type             string            `json:"type"`
	Mesh             string            `json:"mesh,omitempty"`
	Name             string            `json:"name"`
	CreationTime     time.Time         `json:"creationTime"`
	ModificationTime time.Time         `json:"modificationTime"`
	Labels           map[string]string `json:"labels,omitempty"`
}

// List is Kuma's list shape.
type List[T any] struct {
	Total int     `json:"total"`
	Items []T     `json:"items"`
	Next  *string `json:"next"`
}

// DataplaneOverview is a Dataplane with its insight.
type DataplaneOverview struct {
	Meta
	Dataplane *resource.DataplaneSpec `json:"dataplane"`
	// DataplaneInsight is absent for a proxy that never connected.
	DataplaneInsight *DataplaneInsight `json:"dataplaneInsight,omitempty"`
}

// DataplaneInsight lists a proxy's xDS connections; meshtrace keeps the
// current (or last) one.
type DataplaneInsight struct {
	Subscriptions []DiscoverySubscription `json:"subscriptions"`
}

// DiscoverySubscription is one xDS connection of a proxy to a zone CP.
type DiscoverySubscription struct {
	ID                     string             `json:"id"`
	ControlPlaneInstanceID string             `json:"controlPlaneInstanceId"`
	ConnectTime            *time.Time         `json:"connectTime,omitempty"`
	DisconnectTime         *time.Time         `json:"disconnectTime,omitempty"`
	Status                 SubscriptionStatus `json:"status"`
	Version                *DataplaneVersion  `json:"version,omitempty"`
	Generation             uint32             `json:"generation"`
	// AckedVersion (meshtrace) is the last xDS version the proxy ACKed.
	AckedVersion string `json:"ackedVersion,omitempty"`
}

// SubscriptionStatus counts responses; meshtrace counts them over all types.
type SubscriptionStatus struct {
	LastUpdateTime *time.Time `json:"lastUpdateTime,omitempty"`
	Total          Stats      `json:"total"`
}

// Stats are response counters (uint64, so strings in protojson).
type Stats struct {
	ResponsesSent         uint64 `json:"responsesSent,omitempty,string"`
	ResponsesAcknowledged uint64 `json:"responsesAcknowledged,omitempty,string"`
	ResponsesRejected     uint64 `json:"responsesRejected,omitempty,string"`
}

// DataplaneVersion is the proxy's software; meshtrace knows Envoy's version
// when the proxy reports it.
type DataplaneVersion struct {
	Envoy *EnvoyVersion `json:"envoy,omitempty"`
}

// EnvoyVersion is the proxy's Envoy build.
type EnvoyVersion struct {
	Version string `json:"version"`
}

// ZoneOverview is a Zone with its insight.
type ZoneOverview struct {
	Meta
	Zone *resource.ZoneSpec `json:"zone"`
	// ZoneInsight is absent for a zone that never connected.
	ZoneInsight *ZoneInsight `json:"zoneInsight,omitempty"`
}

// ZoneInsight lists a zone's KDS connections; meshtrace keeps the current
// (or last) one.
type ZoneInsight struct {
	Subscriptions []KDSSubscription `json:"subscriptions"`
}

// KDSSubscription is one KDS connection of a zone to a global instance.
type KDSSubscription struct {
	ID               string      `json:"id"`
	GlobalInstanceID string      `json:"globalInstanceId"`
	ConnectTime      *time.Time  `json:"connectTime,omitempty"`
	DisconnectTime   *time.Time  `json:"disconnectTime,omitempty"`
	Status           KDSStatus   `json:"status"`
	Version          *KDSVersion `json:"version,omitempty"`
	Generation       uint32      `json:"generation"`
	// Config is the zone CP's configuration as JSON; kumactl reads store.type.
	Config string `json:"config,omitempty"`
	// meshtrace: sync position and rejections of this connection.
	LastAckedRevision int64 `json:"lastAckedRevision"`
	LagRevisions      int64 `json:"lagRevisions"`
	NACKs             int64 `json:"nacks"`
	Proxies           int   `json:"proxies"`
}

// KDSStatus counts what global sent the zone, in total and per type.
type KDSStatus struct {
	LastUpdateTime *time.Time       `json:"lastUpdateTime,omitempty"`
	Total          Stats            `json:"total"`
	Stat           map[string]Stats `json:"stat,omitempty"`
}

// KDSVersion is the zone CP's version.
type KDSVersion struct {
	KumaCP CPVersion `json:"kumaCp"`
}

// CPVersion is a control plane build.
type CPVersion struct {
	Version string `json:"version"`
}

// MeshInsight sums up one mesh.
type MeshInsight struct {
	Meta
	Dataplanes DataplaneStat `json:"dataplanes"`
	// Policies counts policies by type ("MeshTrace").
	Policies         map[string]PolicyStat `json:"policies"`
	DPVersions       DPVersions            `json:"dpVersions"`
	MTLS             MTLSStat              `json:"mTLS"`
	Services         ServiceStat           `json:"services"`
	DataplanesByType DataplanesByType      `json:"dataplanesByType"`
}

// DataplaneStat counts proxies by status.
type DataplaneStat struct {
	Total             uint32 `json:"total"`
	Online            uint32 `json:"online"`
	Offline           uint32 `json:"offline"`
	PartiallyDegraded uint32 `json:"partiallyDegraded"`
}

func (s *DataplaneStat) add(status string) {
	s.Total++
	switch status {
	case StatusOnline:
		s.Online++
	case StatusPartiallyDegraded:
		s.PartiallyDegraded++
	default:
		s.Offline++
	}
}

// PolicyStat counts policies of one type.
type PolicyStat struct {
	Total uint32 `json:"total"`
}

// DPVersions counts proxies by software version.
type DPVersions struct {
	KumaDP map[string]DataplaneStat `json:"kumaDp"`
	Envoy  map[string]DataplaneStat `json:"envoy"`
}

// MTLSStat counts proxies by certificate backend; meshtrace has none.
type MTLSStat struct {
	IssuedBackends    map[string]DataplaneStat `json:"issuedBackends"`
	SupportedBackends map[string]DataplaneStat `json:"supportedBackends"`
}

// ServiceStat counts services (kuma.io/service values).
type ServiceStat struct {
	Total    uint32 `json:"total"`
	Internal uint32 `json:"internal"`
	External uint32 `json:"external"`
}

// DataplanesByType splits proxies into sidecars and gateways.
type DataplanesByType struct {
	Standard         DataplaneStat `json:"standard"`
	Gateway          DataplaneStat `json:"gateway"`
	GatewayBuiltin   DataplaneStat `json:"gatewayBuiltin"`
	GatewayDelegated DataplaneStat `json:"gatewayDelegated"`
}

// Entry kinds of the policy inspect answer.
const (
	KindSidecarDataplane = "SidecarDataplane"
	AttachmentDataplane  = "dataplane"
)

// PolicyInspectEntry is one proxy a policy applies to. MeshTrace applies to
// the proxy as a whole, so its one attachment is the dataplane itself.
type PolicyInspectEntry struct {
	Kind        string       `json:"kind"`
	Dataplane   ResourceKey  `json:"dataplane"`
	Attachments []Attachment `json:"attachments"`
}

// ResourceKey names a resource.
type ResourceKey struct {
	Mesh string `json:"mesh"`
	Name string `json:"name"`
}

// Attachment is where a policy attaches on a proxy.
type Attachment struct {
	Type    string `json:"type"`
	Name    string `json:"name,omitempty"`
	Service string `json:"service,omitempty"`
}

// Proxy statuses, as kumactl prints them.
const (
	StatusOnline            = "Online"
	StatusOffline           = "Offline"
	StatusPartiallyDegraded = "Partially degraded"
)
