package zone

import (
	"errors"
	"fmt"
	"net"
	"regexp"
	"strings"

	"github.com/meshtrace/meshtrace/config"
	"github.com/meshtrace/meshtrace/policy/meshtrace/envoy"
	"github.com/meshtrace/meshtrace/store"
)

// Config is the zone control plane's whole configuration. Load it with
// config.Load over DefaultConfig(), then call Validate.
type Config struct {
	// Name is this zone's name; it is stamped on every local proxy as kuma.io/zone.
	Name        string                   `json:"name" desc:"zone name (required), set as kuma.io/zone on every proxy"`
	DataDir     string                   `json:"dataDir" desc:"directory for the zone's state"`
	Store       store.Config             `json:"store"`
	API         APIConfig                `json:"api"`
	XDS         XDSConfig                `json:"xds"`
	Global      GlobalConfig             `json:"global"`
	Diagnostics config.DiagnosticsConfig `json:"diagnostics"`
	Log         config.LogConfig         `json:"log"`
}

// APIConfig is the zone's REST API.
type APIConfig struct {
	Address        string `json:"address" desc:"REST API listen address (dataplanes, read-only policies, inspect)"`
	Token          string `json:"token" desc:"bearer token required for writes; when empty only Dataplane writes are open, and only on a loopback api.address"`
	MaxConnections int    `json:"maxConnections" desc:"cap on open API connections; at the cap the oldest idle one is closed"`
}

// XDSConfig is the Envoy ADS server.
type XDSConfig struct {
	Address        string             `json:"address" desc:"Envoy ADS (gRPC) listen address"`
	MaxConnections int                `json:"maxConnections" desc:"cap on open xDS connections (about one per proxy); at the cap the oldest connection without a stream is closed"`
	TLSCertFile    string             `json:"tlsCertFile" desc:"server certificate for xDS over TLS; without it xDS is plaintext (a warning is logged on a non-loopback address)"`
	TLSKeyFile     string             `json:"tlsKeyFile" desc:"server key for xDS over TLS"`
	Collector      CollectorTLSConfig `json:"collector"`
}

// CollectorTLSConfig is how proxies check https tracing collectors.
type CollectorTLSConfig struct {
	TrustedCAFile string `json:"trustedCAFile" desc:"CA bundle, on the proxy's file system, that https collectors' certificates are verified against"`
	SkipVerify    bool   `json:"skipVerify" desc:"do not verify https collectors' certificates (logs a warning at start-up)"`
}

// GlobalConfig is how the zone reaches global over KDS.
type GlobalConfig struct {
	Addresses       []string        `json:"addresses" desc:"global KDS addresses host:port, tried in turn; empty runs the zone standalone"`
	Token           string          `json:"token" desc:"zone token issued by global (meshtrace-cp global token zone --name NAME)"`
	TokenFile       string          `json:"tokenFile" desc:"file holding the zone token (instead of token)"`
	CAFile          string          `json:"caFile" desc:"CA certificate of global's KDS server (pinned)"`
	Insecure        bool            `json:"insecure" desc:"skip TLS (tests only)"`
	MaxMessageBytes int             `json:"maxMessageBytes" desc:"largest KDS message the zone accepts (announced to global, which cuts its batches to fit) and sends"`
	Heartbeat       config.Duration `json:"heartbeat" desc:"KDS heartbeat interval"`
	AuthGrace       config.Duration `json:"authGrace" desc:"how long the zone retries while global answers Unauthenticated before it exits non-zero"`
}

// MinMessageBytes is the smallest KDS message cap a zone accepts: room for
// one resource of the store's largest size (512 KiB) and the message frame.
const MinMessageBytes = 1 << 20

// DefaultConfig returns the defaults documented in zone/config.defaults.yaml.
func DefaultConfig() Config {
	return Config{
		DataDir: "./data-zone",
		Store: store.Config{
			Embedded: store.EmbeddedStoreConfig{Dir: "./data-zone/etcd", AutoCompactionRetention: "1h"},
			External: store.ExternalStoreConfig{DialTimeout: config.Duration(5e9)},
		},
		API: APIConfig{Address: "127.0.0.1:5682", MaxConnections: 1024},
		XDS: XDSConfig{Address: "127.0.0.1:5678", MaxConnections: 8192,
			Collector: CollectorTLSConfig{TrustedCAFile: envoy.DefaultTrustedCA}},
		Diagnostics: config.DiagnosticsConfig{Address: "127.0.0.1:5692", MaxConnections: 64},
		Global: GlobalConfig{
			MaxMessageBytes: 4 << 20,
			Heartbeat:       config.Duration(5e9),
			AuthGrace:       config.Duration(15e9),
		},
		Log: config.LogConfig{Level: "info"},
	}
}

var zoneNameRE = regexp.MustCompile(`^[a-z0-9]([-a-z0-9]*[a-z0-9])?$`)

// Validate reports every nonsensical setting; it has no side effects.
func (c Config) Validate() error {
	var errs []error
	if c.Name == "" {
		errs = append(errs, errors.New("name: must be set (the zone's name, e.g. west)"))
	} else if len(c.Name) > 63 || !zoneNameRE.MatchString(c.Name) {
		errs = append(errs, fmt.Errorf("name: %q must be lower-case letters, digits and dashes, at most 63", c.Name))
	}
	for _, a := range []struct{ key, addr string }{
		{"api.address", c.API.Address}, {"xds.address", c.XDS.Address}, {"diagnostics.address", c.Diagnostics.Address},
	} {
		if _, _, err := net.SplitHostPort(a.addr); err != nil {
			errs = append(errs, fmt.Errorf("%s: %q is not host:port: %w", a.key, a.addr, err))
		}
	}
	for _, m := range []struct {
		key string
		n   int
	}{{"api.maxConnections", c.API.MaxConnections}, {"xds.maxConnections", c.XDS.MaxConnections}, {"diagnostics.maxConnections", c.Diagnostics.MaxConnections}} {
		if m.n < 1 {
			errs = append(errs, fmt.Errorf("%s: must be at least 1, got %d", m.key, m.n))
		}
	}
	if c.API.Token == "" && !config.IsLoopback(c.API.Address) {
		errs = append(errs, fmt.Errorf("api.token: must be set when api.address %q is not a loopback address (anyone reaching it could register proxies)", c.API.Address))
	}
	if (c.XDS.TLSCertFile == "") != (c.XDS.TLSKeyFile == "") {
		errs = append(errs, errors.New("xds.tlsCertFile: tlsCertFile and tlsKeyFile must be set together"))
	}
	for i, a := range c.Global.Addresses {
		if _, _, err := net.SplitHostPort(a); err != nil {
			errs = append(errs, fmt.Errorf("global.addresses[%d]: %q is not host:port: %w", i, a, err))
		}
	}
	if len(c.Global.Addresses) > 0 && c.Global.Token == "" && c.Global.TokenFile == "" {
		errs = append(errs, errors.New("global.token: a zone token is required to connect to global (or global.tokenFile)"))
	}
	if len(c.Global.Addresses) > 0 && !c.Global.Insecure && c.Global.CAFile == "" {
		errs = append(errs, errors.New("global.caFile: global's CA certificate is required for TLS (or global.insecure: true in tests)"))
	}
	if !c.XDS.Collector.SkipVerify && !strings.HasPrefix(c.XDS.Collector.TrustedCAFile, "/") {
		errs = append(errs, fmt.Errorf("xds.collector.trustedCAFile: %q must be an absolute path on the proxies (or set xds.collector.skipVerify)", c.XDS.Collector.TrustedCAFile))
	}
	if c.Global.MaxMessageBytes < MinMessageBytes {
		errs = append(errs, fmt.Errorf("global.maxMessageBytes: must be at least %d (a resource of the store's largest size must fit), got %d", MinMessageBytes, c.Global.MaxMessageBytes))
	}
	if c.Global.Heartbeat.D() <= 0 {
		errs = append(errs, errors.New("global.heartbeat: must be positive"))
	}
	if c.Global.AuthGrace.D() <= 0 {
		errs = append(errs, errors.New("global.authGrace: must be positive"))
	}
	if err := c.Log.Validate(); err != nil {
		errs = append(errs, err)
	}
	return errors.Join(errs...)
}

// EnvPrefix prefixes every environment override, e.g. MESHTRACE_API_ADDRESS.
const EnvPrefix = "MESHTRACE"

// LoadConfig returns the defaults overridden by the YAML file at path (none
// when "") and then by MESHTRACE_* environment variables. Apply flags to the
// result, then call Validate.
func LoadConfig(path string) (Config, error) {
	cfg := DefaultConfig()
	if err := config.Load(path, &cfg, EnvPrefix); err != nil {
		return Config{}, err
	}
	return cfg, nil
}

// ConfigReference renders the markdown table of every key, its environment
// variable, default and description.
func ConfigReference() string {
	return "# Zone control plane configuration\n\n" +
		"Generated from `zone.Config` (`go test ./zone -run TestConfigReference` with `UPDATE_GOLDEN=1`).\n" +
		"Precedence: defaults, then the YAML file (`--config`), then the environment, then flags.\n\n" +
		config.Reference(DefaultConfig(), EnvPrefix)
}
