package meshtrace

import (
	"errors"
	"fmt"
	"net"
	"net/url"
	"strconv"
	"strings"
	"unicode"
	"unicode/utf8"

	"github.com/meshtrace/meshtrace/resource"
)

const (
	defaultZipkinPath  = "/api/v2/spans"
	defaultDatadogPort = 8126
	clusterNamePrefix  = "meshtrace:"
	defaultOTelPort    = resource.DefaultOpenTelemetryPort
	defaultHTTPPort    = 80
	defaultHTTPSPort   = 443
)

// ErrNoBackend is returned for a backend none of whose typed sections is set.
var ErrNoBackend = errors.New("backend has no zipkin, datadog or openTelemetry section")

// BackendType returns the backend's type, inferred from the section that is
// set when `type` is omitted (as in the Kong Mesh docs' east/west example).
func BackendType(b resource.Backend) string {
	if b.Type != "" {
		return b.Type
	}
	switch {
	case b.Zipkin != nil:
		return resource.BackendZipkin
	case b.Datadog != nil:
		return resource.BackendDatadog
	case b.OpenTelemetry != nil:
		return resource.BackendOpenTelemetry
	}
	return ""
}

// EffectiveCollector returns the type and the address (URL or endpoint, as
// written in the policy) of the backend conf sends spans to, or two empty
// strings when tracing is off. Like Kuma, only the first backend is used.
func EffectiveCollector(conf resource.MeshTraceConf) (backendType, collector string) {
	if !Enabled(conf) {
		return "", ""
	}
	b := (*conf.Backends)[0]
	switch t := BackendType(b); t {
	case resource.BackendZipkin:
		if b.Zipkin != nil {
			return t, b.Zipkin.URL
		}
	case resource.BackendDatadog:
		if b.Datadog != nil {
			return t, b.Datadog.URL
		}
	case resource.BackendOpenTelemetry:
		if b.OpenTelemetry != nil {
			return t, b.OpenTelemetry.Endpoint
		}
	}
	return BackendType(b), ""
}

// Collector is where a backend sends spans, parsed from its URL or endpoint.
type Collector struct {
	Type string // resource.BackendZipkin, BackendDatadog or BackendOpenTelemetry
	Host string // host name or IP, without brackets
	Port uint32
	// Path is the Zipkin collector endpoint path (default /api/v2/spans).
	Path string
	// Authority is the host[:port] exactly as written in the URL (Zipkin's collector_hostname).
	Authority string
	// TLS is set for https URLs.
	TLS bool
}

// ClusterName is the deterministic name of the collector's Envoy cluster:
// meshtrace:<type>:<host>_<port>, with "-tls" appended to the type for https.
func (c Collector) ClusterName() string {
	t := strings.ToLower(c.Type)
	if c.TLS {
		t += "-tls"
	}
	return clusterNamePrefix + t + ":" + c.Host + "_" + strconv.FormatUint(uint64(c.Port), 10)
}

// ParseBackend parses the backend's URL or endpoint. Zipkin and Datadog URLs
// default their port by scheme (80 for http, 443 for https; Datadog agents
// without a port get 8126); OpenTelemetry endpoints are host[:port] and
// default to port 4317.
func ParseBackend(b resource.Backend) (Collector, error) {
	c := Collector{Type: BackendType(b)}
	var err error
	if addr := backendAddress(b); !utf8.ValidString(addr) || strings.ContainsFunc(addr, unicode.IsSpace) {
		return c, fmt.Errorf("%s backend: address %q is not valid", c.Type, addr)
	}
	switch {
	case c.Type == resource.BackendZipkin && b.Zipkin != nil:
		err = c.parseURL(b.Zipkin.URL, 0)
		if c.Path == "" || c.Path == "/" {
			c.Path = defaultZipkinPath
		}
	case c.Type == resource.BackendDatadog && b.Datadog != nil:
		err = c.parseURL(b.Datadog.URL, defaultDatadogPort)
	case c.Type == resource.BackendOpenTelemetry && b.OpenTelemetry != nil:
		err = c.parseEndpoint(b.OpenTelemetry.Endpoint)
	case c.Type == "":
		return c, ErrNoBackend
	default:
		return c, fmt.Errorf("backend type %q has no matching section", c.Type)
	}
	if err != nil {
		return c, fmt.Errorf("%s backend: %w", c.Type, err)
	}
	return c, nil
}

func backendAddress(b resource.Backend) string {
	switch {
	case b.Zipkin != nil:
		return b.Zipkin.URL
	case b.Datadog != nil:
		return b.Datadog.URL
	case b.OpenTelemetry != nil:
		return b.OpenTelemetry.Endpoint
	}
	return ""
}

func (c *Collector) parseURL(raw string, defaultPort uint32) error {
	u, err := url.Parse(raw)
	if err != nil {
		return fmt.Errorf("invalid url %q: %w", raw, err)
	}
	switch u.Scheme {
	case "http":
	case "https":
		c.TLS = true
	default:
		return fmt.Errorf("url %q: scheme must be http or https", raw)
	}
	c.Host = u.Hostname()
	if c.Host == "" {
		return fmt.Errorf("url %q has no host", raw)
	}
	c.Authority = u.Host
	c.Path = u.EscapedPath()
	switch p := u.Port(); {
	case p != "":
		n, err := strconv.ParseUint(p, 10, 16)
		if err != nil || n == 0 {
			return fmt.Errorf("url %q: invalid port", raw)
		}
		c.Port = uint32(n)
	case defaultPort != 0:
		c.Port = defaultPort
	case c.TLS:
		c.Port = defaultHTTPSPort
	default:
		c.Port = defaultHTTPPort
	}
	return nil
}

func (c *Collector) parseEndpoint(raw string) error {
	ep := raw
	if i := strings.Index(ep, "://"); i >= 0 {
		if ep[:i] == "https" {
			c.TLS = true
		}
		ep = ep[i+3:]
	}
	ep = strings.TrimSuffix(ep, "/")
	host, port, err := net.SplitHostPort(ep)
	if err != nil {
		// No port: the whole endpoint is the host (IPv6 may be bracketed).
		host, port = strings.Trim(ep, "[]"), ""
	}
	if host == "" {
		return fmt.Errorf("endpoint %q has no host", raw)
	}
	c.Host, c.Authority, c.Port = host, ep, defaultOTelPort
	if port != "" {
		n, err := strconv.ParseUint(port, 10, 16)
		if err != nil || n == 0 {
			return fmt.Errorf("endpoint %q: invalid port", raw)
		}
		c.Port = uint32(n)
	}
	return nil
}
