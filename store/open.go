package store

import (
	"context"
	"fmt"
	"net/url"

	"github.com/meshtrace/meshtrace/config"
)

// Config chooses a store from configuration files: embedded etcd unless
// external endpoints are set. It is the `store` section of a CP config.
type Config struct {
	Embedded EmbeddedStoreConfig `json:"embedded"`
	External ExternalStoreConfig `json:"external"`
}

// EmbeddedStoreConfig configures the etcd server run inside the process.
type EmbeddedStoreConfig struct {
	Dir                     string `json:"dir" desc:"Embedded etcd data directory. etcd listens only on unix sockets (0600) in it, never on TCP."`
	AutoCompactionRetention string `json:"autoCompactionRetention" desc:"etcd history kept for KDS resumes, e.g. 1h; 0 disables compaction."`
}

// ExternalStoreConfig connects to an etcd cluster instead.
type ExternalStoreConfig struct {
	Endpoints   []string        `json:"endpoints" desc:"etcd client URLs; set to use an external etcd instead of the embedded one."`
	CertFile    string          `json:"certFile" desc:"Client certificate for etcd TLS."`
	KeyFile     string          `json:"keyFile" desc:"Client key for etcd TLS."`
	CAFile      string          `json:"caFile" desc:"CA bundle verifying the etcd servers."`
	DialTimeout config.Duration `json:"dialTimeout" desc:"Bound on the first connection to etcd."`
}

// UsesExternal says whether c points at an external etcd.
func (c Config) UsesExternal() bool { return len(c.External.Endpoints) > 0 }

// Validate reports nonsensical settings, each naming its key under "store.".
func (c Config) Validate() error {
	if !c.UsesExternal() {
		if c.Embedded.Dir == "" {
			return fmt.Errorf("store.embedded.dir: must not be empty")
		}
		return nil
	}
	for i, ep := range c.External.Endpoints {
		if err := ValidateEndpoint(ep); err != nil {
			return fmt.Errorf("store.external.endpoints[%d]: %w", i, err)
		}
	}
	if (c.External.CertFile == "") != (c.External.KeyFile == "") {
		return fmt.Errorf("store.external.certFile: certFile and keyFile must be set together")
	}
	return nil
}

// ValidateEndpoint accepts an etcd client URL: http:// or https:// with a
// host, or unix:// or unixs:// with a socket path.
func ValidateEndpoint(ep string) error {
	u, err := url.Parse(ep)
	if err == nil {
		switch u.Scheme {
		case "http", "https":
			if u.Host != "" {
				return nil
			}
		case "unix", "unixs":
			if u.Host+u.Path != "" {
				return nil
			}
		}
	}
	return fmt.Errorf("%q is not an http://, https://, unix:// or unixs:// URL", ep)
}

// Open opens the store c describes: OpenExternal when endpoints are set,
// OpenEmbedded otherwise.
func Open(ctx context.Context, c Config, o Options) (*EtcdStore, error) {
	if c.UsesExternal() {
		e := c.External
		return OpenExternal(ctx, ExternalConfig{
			Endpoints: e.Endpoints, CertFile: e.CertFile, KeyFile: e.KeyFile, CAFile: e.CAFile,
			DialTimeout: e.DialTimeout.D(), Options: o,
		})
	}
	return OpenEmbedded(ctx, EmbeddedConfig{
		Dir:                     c.Embedded.Dir,
		AutoCompactionRetention: c.Embedded.AutoCompactionRetention, Options: o,
	})
}
