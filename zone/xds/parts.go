package xds

import (
	"crypto/sha256"
	"fmt"
	"sync"

	clusterv3 "github.com/envoyproxy/go-control-plane/envoy/config/cluster/v3"
	endpointv3 "github.com/envoyproxy/go-control-plane/envoy/config/endpoint/v3"
	hcmv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/network/http_connection_manager/v3"

	"github.com/meshtrace/meshtrace/policy/meshtrace/envoy"
	"github.com/meshtrace/meshtrace/resource"
)

// maxTracings bounds how many prepared tracing configurations parts keeps;
// past it the cache starts over (builds in use keep what they reference).
const maxTracings = 1024

// parts shares between proxies the pieces of configuration that do not depend
// on the proxy: clusters with their load assignments (EDS destinations, local
// applications, collectors) and the prepared tracing of each merged MeshTrace
// configuration, with its marshaled HttpConnectionManager parts. Shared
// messages are never modified once built. The zero value is not usable; a nil
// *parts shares nothing. Safe for concurrent use.
type parts struct {
	mu       sync.Mutex
	clusters map[string]*part
	tracings map[digest]*prepared
}

// newParts returns an empty parts.
func newParts() *parts {
	return &parts{clusters: map[string]*part{}, tracings: map[digest]*prepared{}}
}

// part is a validated cluster, its load assignment when it uses EDS, and a
// hash of each for snapshot versions.
type part struct {
	cluster *clusterv3.Cluster
	cla     *endpointv3.ClusterLoadAssignment
	sum     digest // of the cluster
	claSum  digest // of the load assignment; zero without one
}

func newPart(c *clusterv3.Cluster, cla *endpointv3.ClusterLoadAssignment) (*part, error) {
	if err := c.ValidateAll(); err != nil {
		return nil, fmt.Errorf("cluster %s: %w", c.GetName(), err)
	}
	buf, err := marshal.Marshal(c)
	if err != nil {
		return nil, err
	}
	p := &part{cluster: c, cla: cla, sum: sha256.Sum256(buf)}
	if cla != nil {
		if err := cla.ValidateAll(); err != nil {
			return nil, fmt.Errorf("load assignment %s: %w", cla.GetClusterName(), err)
		}
		if buf, err = marshal.Marshal(cla); err != nil {
			return nil, err
		}
		p.claSum = sha256.Sum256(buf)
	}
	return p, nil
}

// cluster returns the part stored under key, creating it with create.
func (ps *parts) cluster(key string, create func() (*part, error)) (*part, error) {
	if ps == nil {
		return create()
	}
	ps.mu.Lock()
	p, ok := ps.clusters[key]
	ps.mu.Unlock()
	if ok {
		return p, nil
	}
	p, err := create()
	if err != nil {
		return nil, err
	}
	ps.mu.Lock()
	defer ps.mu.Unlock()
	if existing, ok := ps.clusters[key]; ok {
		return existing, nil
	}
	ps.clusters[key] = p
	return p, nil
}

// prepared is the tracing of one merged configuration, shared by every proxy
// with that configuration.
type prepared struct {
	tracer    *envoy.Tracer
	collector *part

	mu     sync.Mutex
	shared map[*hcmv3.HttpConnectionManager_Tracing][]byte
}

// tracing returns the prepared tracing of conf (nil when tracing is off),
// cached under key (and opts) when ps is not nil.
func (ps *parts) tracing(key digest, conf resource.MeshTraceConf, opts envoy.Options) (*prepared, error) {
	if opts.IPv6 {
		key[0] ^= 0xff // IPv6 proxies resolve collectors differently
	}
	if ps != nil {
		ps.mu.Lock()
		p, ok := ps.tracings[key]
		ps.mu.Unlock()
		if ok {
			return p, nil
		}
	}
	p, err := prepare(conf, opts)
	if err != nil || ps == nil {
		return p, err
	}
	ps.mu.Lock()
	defer ps.mu.Unlock()
	if existing, ok := ps.tracings[key]; ok {
		return existing, nil
	}
	if len(ps.tracings) >= maxTracings {
		clear(ps.tracings)
	}
	ps.tracings[key] = p
	return p, nil
}

func prepare(conf resource.MeshTraceConf, opts envoy.Options) (*prepared, error) {
	t, err := envoy.NewTracer(conf, opts)
	if err != nil || t == nil {
		return nil, err
	}
	collector, err := newPart(t.Cluster(), nil)
	if err != nil {
		return nil, err
	}
	return &prepared{tracer: t, collector: collector, shared: map[*hcmv3.HttpConnectionManager_Tracing][]byte{}}, nil
}

// sharedHCM returns the validated encoding of the HttpConnectionManager
// fields that do not depend on the listener, once per tracing block. p is nil
// when tracing is off.
func (p *prepared) sharedHCM(tracing *hcmv3.HttpConnectionManager_Tracing) ([]byte, error) {
	if p == nil {
		return untracedHCM, nil
	}
	p.mu.Lock()
	b, ok := p.shared[tracing]
	p.mu.Unlock()
	if ok {
		return b, nil
	}
	b, err := sharedFields(tracing)
	if err != nil {
		return nil, err
	}
	p.mu.Lock()
	p.shared[tracing] = b
	p.mu.Unlock()
	return b, nil
}
