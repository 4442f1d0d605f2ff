package store

import (
	"context"
	"fmt"

	"github.com/meshtrace/meshtrace/config"
)

// Config is the store section of a control plane's configuration: embedded
// etcd unless external endpoints are set.
type Config struct {
	Embedded EmbeddedStoreConfig `json:"embedded"`
	External ExternalStoreConfig `json:"external"`
}

// EmbeddedStoreConfig configures the etcd server run inside the process.
type EmbeddedStoreConfig struct {
	Dir                     string `json:"dir" desc:"Embedded etcd data directory (independent of dataDir)."`
	ClientAddress           string `json:"clientAddress" desc:"host:port the embedded etcd serves clients on; port 0 picks a free port."`
	AutoCompactionRetention string `json:"autoCompactionRetention" desc:"etcd history kept for KDS resumes, e.g. 1h; 0 disables compaction."`
}

// ExternalStoreConfig connects to an etcd cluster instead.
type ExternalStoreConfig struct {
	Endpoints   []string        `json:"endpoints" desc:"etcd client URLs, comma separated in the environment; set to use an external etcd instead of the embedded one."`
	CertFile    string          `json:"certFile" desc:"Client certificate for etcd TLS."`
	KeyFile     string          `json:"keyFile" desc:"Client key for etcd TLS."`
	CAFile      string          `json:"caFile" desc:"CA bundle verifying the etcd servers."`
	DialTimeout config.Duration `json:"dialTimeout" desc:"Bound on the first connection to etcd."`
}

// UsesExternal reports whether the config points at an external cluster.
func (c Config) UsesExternal() bool { return len(c.External.Endpoints) > 0 }

// Open opens the configured store: the external cluster when endpoints are
// set, else an embedded etcd.
func Open(ctx context.Context, c Config, opts Options) (*EtcdStore, error) {
	var (
		st  *EtcdStore
		err error
	)
	if c.UsesExternal() {
		ext := c.External
		st, err = OpenExternal(ctx, ExternalConfig{
			Endpoints: ext.Endpoints, CertFile: ext.CertFile, KeyFile: ext.KeyFile, CAFile: ext.CAFile,
			DialTimeout: ext.DialTimeout.D(), Options: opts,
		})
	} else {
		emb := c.Embedded
		st, err = OpenEmbedded(ctx, EmbeddedConfig{
			Dir: emb.Dir, ClientAddr: emb.ClientAddress, AutoCompactionRetention: emb.AutoCompactionRetention, Options: opts,
		})
	}
	if err != nil {
		return nil, fmt.Errorf("open store: %w", err)
	}
	return st, nil
}
