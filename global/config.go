package global

import (
	"errors"
	"fmt"
	"net"
	"os"
	"strconv"
	"strings"
	"time"

	"github.com/meshtrace/meshtrace/config"
	"github.com/meshtrace/meshtrace/kds"
	"github.com/meshtrace/meshtrace/store"
)

// EnvPrefix prefixes every environment override, e.g. MESHTRACE_API_ADDRESS.
const EnvPrefix = "MESHTRACE"

// Config is the whole configuration of the global control plane. The YAML
// key of each field is its json tag; see config.md (generated from this
// struct by ConfigReference) for every key with its environment variable.
type Config struct {
	DataDir     string                   `json:"dataDir" desc:"Directory for state that is not in etcd (the generated admin token)."`
	Store       store.Config             `json:"store"`
	API         APIConfig                `json:"api"`
	KDS         KDSConfig                `json:"kds"`
	Diagnostics config.DiagnosticsConfig `json:"diagnostics"`
	Log         config.LogConfig         `json:"log"`
}

// APIConfig configures the REST API (kumactl and meshtracectl talk to it).
type APIConfig struct {
	Address        string `json:"address" desc:"host:port of the REST API."`
	AdminToken     string `json:"adminToken" desc:"Bearer token for writes; when empty it is read from, or generated into, the file admin-token in dataDir."`
	MaxConnections int    `json:"maxConnections" desc:"Cap on open API connections; at the cap the oldest idle one is closed (caps are lowered to fit the open-file limit)."`
}

// KDSConfig configures the zone sync server.
type KDSConfig struct {
	Address         string          `json:"address" desc:"host:port zones connect to over gRPC."`
	TLSCertFile     string          `json:"tlsCertFile" desc:"Server certificate for KDS; when empty a self-signed CA and server certificate are generated into <dataDir>/kds-tls on first start (zones pin its ca.crt)."`
	TLSKeyFile      string          `json:"tlsKeyFile" desc:"Server key for KDS."`
	TLSHosts        []string        `json:"tlsHosts" desc:"Extra DNS names or IPs for the generated KDS server certificate (localhost, 127.0.0.1 and the hostname are always in)."`
	Insecure        bool            `json:"insecure" desc:"Serve KDS without TLS (tests only)."`
	MaxMessageBytes int             `json:"maxMessageBytes" desc:"Largest gRPC message KDS sends or accepts."`
	Heartbeat       config.Duration `json:"heartbeat" desc:"Interval of KDS keepalive pings."`
	BatchGap        config.Duration `json:"batchGap" desc:"Least time between two batches of changes to one zone when changes piled up while the previous one was in flight, or the previous one carried several changes: a stream of changes goes out in fewer, larger batches (each one commit and fsync in the zone's store and one xDS push), while a change made when the zone has nothing pending after a batch of one change goes out at once; 0 sends the next batch as soon as the zone acknowledges the previous one."`
	BatchStretch    config.Duration `json:"batchStretch" desc:"Longest a batch held by batchGap waits while changes keep coming, each within batchGap of the one before (a burst of writes, a bulk apply): the burst reaches each zone as a few large batches instead of one every batchGap, and the zones' CPU stays with the writers; once no change came for batchGap, or 128 changes (one zone transaction) are pending, the batch goes. At most batchGap: no stretch."`
	MaxConnections  int             `json:"maxConnections" desc:"Cap on open KDS connections; at the cap the oldest connection without a stream is closed."`
}

// DefaultConfig returns the defaults; config.defaults.yaml spells them out.
func DefaultConfig() Config {
	return Config{
		DataDir: "./data",
		Store: store.Config{
			Embedded: store.EmbeddedStoreConfig{
				Dir:                     "./data/etcd",
				AutoCompactionRetention: "1h",
			},
			External: store.ExternalStoreConfig{DialTimeout: config.Duration(5 * time.Second)},
		},
		API: APIConfig{Address: "127.0.0.1:5681", MaxConnections: 1024},
		KDS: KDSConfig{
			Address:         "0.0.0.0:5685",
			MaxMessageBytes: 10 << 20,
			Heartbeat:       config.Duration(10 * time.Second),
			BatchGap:        config.Duration(kds.DefaultBatchGap),
			BatchStretch:    config.Duration(kds.DefaultBatchStretch),
			MaxConnections:  1024,
		},
		Diagnostics: config.DiagnosticsConfig{Address: "127.0.0.1:5680", MaxConnections: 64},
		Log:         config.LogConfig{Level: "info"},
	}
}

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
	return "# Global control plane configuration\n\n" +
		"Generated from `global.Config` (`go test ./global -run TestConfigReference` with `UPDATE_GOLDEN=1`).\n" +
		"Precedence: defaults, then the YAML file (`--config`), then the environment, then flags.\n\n" +
		config.Reference(DefaultConfig(), EnvPrefix)
}

// UsesExternalStore says whether the config points at an external etcd.
func (c Config) UsesExternalStore() bool { return c.Store.UsesExternal() }

// Validate reports every nonsensical value, each naming its key. It reads
// certificate files' existence but changes nothing.
func (c Config) Validate() error {
	var errs []error
	bad := func(key, format string, args ...any) {
		errs = append(errs, fmt.Errorf("%s: %s", key, fmt.Sprintf(format, args...)))
	}
	if strings.TrimSpace(c.DataDir) == "" {
		bad("dataDir", "must not be empty")
	}
	if c.UsesExternalStore() {
		for i, ep := range c.Store.External.Endpoints {
			if err := store.ValidateEndpoint(ep); err != nil {
				bad(fmt.Sprintf("store.external.endpoints[%d]", i), "%v", err)
			}
		}
		if (c.Store.External.CertFile == "") != (c.Store.External.KeyFile == "") {
			bad("store.external.certFile", "certFile and keyFile must be set together")
		}
		checkFile(bad, "store.external.certFile", c.Store.External.CertFile)
		checkFile(bad, "store.external.keyFile", c.Store.External.KeyFile)
		checkFile(bad, "store.external.caFile", c.Store.External.CAFile)
		if c.Store.External.DialTimeout <= 0 {
			bad("store.external.dialTimeout", "must be positive, got %s", c.Store.External.DialTimeout)
		}
	} else {
		if strings.TrimSpace(c.Store.Embedded.Dir) == "" {
			bad("store.embedded.dir", "must not be empty when store.external.endpoints is empty")
		}
		if r := c.Store.Embedded.AutoCompactionRetention; r != "0" {
			if d, err := time.ParseDuration(r); err != nil || d <= 0 {
				bad("store.embedded.autoCompactionRetention", "%q is not a positive duration like \"1h\" (or \"0\" to disable)", r)
			}
		}
	}
	checkAddress(bad, "api.address", c.API.Address)
	if strings.ContainsAny(c.API.AdminToken, " \t\r\n") {
		bad("api.adminToken", "must not contain whitespace")
	}
	checkAddress(bad, "kds.address", c.KDS.Address)
	if (c.KDS.TLSCertFile == "") != (c.KDS.TLSKeyFile == "") {
		bad("kds.tlsCertFile", "tlsCertFile and tlsKeyFile must be set together")
	}
	checkFile(bad, "kds.tlsCertFile", c.KDS.TLSCertFile)
	checkFile(bad, "kds.tlsKeyFile", c.KDS.TLSKeyFile)
	if c.KDS.MaxMessageBytes < 64<<10 {
		bad("kds.maxMessageBytes", "must be at least 65536, got %d", c.KDS.MaxMessageBytes)
	}
	if c.KDS.Heartbeat < config.Duration(100*time.Millisecond) {
		bad("kds.heartbeat", "must be at least 100ms, got %s", c.KDS.Heartbeat)
	}
	if c.KDS.BatchGap < 0 || c.KDS.BatchGap > config.Duration(time.Second) {
		bad("kds.batchGap", "must be between 0 and 1s, got %s", c.KDS.BatchGap)
	}
	if c.KDS.BatchStretch < 0 || c.KDS.BatchStretch > config.Duration(time.Second) {
		bad("kds.batchStretch", "must be between 0 and 1s, got %s", c.KDS.BatchStretch)
	}
	checkAddress(bad, "diagnostics.address", c.Diagnostics.Address)
	for _, m := range []struct {
		key string
		n   int
	}{{"api.maxConnections", c.API.MaxConnections}, {"kds.maxConnections", c.KDS.MaxConnections}, {"diagnostics.maxConnections", c.Diagnostics.MaxConnections}} {
		if m.n < 1 {
			bad(m.key, "must be at least 1, got %d", m.n)
		}
	}
	if samePort(c.API.Address, c.Diagnostics.Address) {
		bad("diagnostics.address", "%q is the same port as api.address", c.Diagnostics.Address)
	}
	if err := c.Log.Validate(); err != nil {
		bad("log.level", "%q is not one of trace, debug, info, warn, error", c.Log.Level)
	}
	if len(errs) == 0 {
		return nil
	}
	return fmt.Errorf("invalid configuration: %w", errors.Join(errs...))
}

func checkAddress(bad func(string, string, ...any), key, addr string) {
	_, port, err := net.SplitHostPort(addr)
	if err != nil {
		bad(key, "%q is not host:port", addr)
		return
	}
	if n, err := strconv.Atoi(port); err != nil || n < 0 || n > 65535 {
		bad(key, "%q has no valid port (0-65535)", addr)
	}
}

func samePort(a, b string) bool {
	ha, pa, err1 := net.SplitHostPort(a)
	hb, pb, err2 := net.SplitHostPort(b)
	if err1 != nil || err2 != nil || pa == "0" || pa != pb {
		return false
	}
	wild := func(h string) bool { return h == "" || h == "0.0.0.0" || h == "::" }
	return ha == hb || wild(ha) || wild(hb)
}

func checkFile(bad func(string, string, ...any), key, path string) {
	if path == "" {
		return
	}
	if st, err := os.Stat(path); err != nil {
		bad(key, "%v", err)
	} else if st.IsDir() {
		bad(key, "%s is a directory", path)
	}
}
