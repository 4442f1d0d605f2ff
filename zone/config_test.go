package zone

import (
	"bytes"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/hashicorp/go-hclog"

	"github.com/meshtrace/meshtrace/config/configtest"
)

func TestDefaultsFileEqualsDefaultConfig(t *testing.T) {
	configtest.DefaultsFile(t, "config.defaults.yaml", DefaultConfig(), EnvPrefix, func(c *Config) {
		if len(c.Store.External.Endpoints) == 0 {
			c.Store.External.Endpoints = nil
		}
		if len(c.Global.Addresses) == 0 {
			c.Global.Addresses = nil
		}
	})
	c := DefaultConfig()
	c.Name = "west"
	if err := c.Validate(); err != nil {
		t.Fatalf("defaults plus a name do not validate: %v", err)
	}
}

func TestConfigReference(t *testing.T) {
	configtest.Golden(t, "config.md", ConfigReference())
}

func TestLoadConfigFileThenEnv(t *testing.T) {
	path := filepath.Join(t.TempDir(), "zone.yaml")
	if err := os.WriteFile(path, []byte("name: east\napi:\n  address: 127.0.0.1:7000\nglobal:\n  addresses: [g1:5685]\n  token: t\n  insecure: true\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	t.Setenv("MESHTRACE_API_ADDRESS", "127.0.0.1:7001")
	t.Setenv("MESHTRACE_GLOBAL_ADDRESSES", "g1:5685, g2:5685")
	cfg, err := LoadConfig(path)
	if err != nil {
		t.Fatal(err)
	}
	if cfg.Name != "east" || cfg.API.Address != "127.0.0.1:7001" || len(cfg.Global.Addresses) != 2 || cfg.Global.Addresses[1] != "g2:5685" {
		t.Fatalf("unexpected config %+v", cfg)
	}
	if err := cfg.Validate(); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(path, []byte("nmae: east\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err := LoadConfig(path); err == nil || !strings.Contains(err.Error(), "nmae") {
		t.Fatalf("unknown key: got %v, want an error naming nmae", err)
	}
}

func TestValidate(t *testing.T) {
	base := DefaultConfig()
	base.Name = "west"
	cases := []struct {
		name   string
		mutate func(*Config)
		want   string
	}{
		{"no name", func(c *Config) { c.Name = "" }, "name: must be set"},
		{"bad name", func(c *Config) { c.Name = "West_1" }, `name: "West_1"`},
		{"bad api address", func(c *Config) { c.API.Address = "nope" }, "api.address"},
		{"bad xds address", func(c *Config) { c.XDS.Address = "" }, "xds.address"},
		{"global without token", func(c *Config) { c.Global.Addresses = []string{"g:5685"}; c.Global.Insecure = true }, "global.token"},
		{"global without ca", func(c *Config) { c.Global.Addresses = []string{"g:5685"}; c.Global.Token = "t" }, "global.caFile"},
		{"bad global address", func(c *Config) { c.Global.Addresses = []string{"g"}; c.Global.Token = "t"; c.Global.Insecure = true }, "global.addresses[0]"},
		{"message cap", func(c *Config) { c.Global.MaxMessageBytes = 1000 }, "global.maxMessageBytes"},
		{"heartbeat", func(c *Config) { c.Global.Heartbeat = 0 }, "global.heartbeat"},
		{"log level", func(c *Config) { c.Log.Level = "loud" }, "log.level"},
		{"relative collector CA", func(c *Config) { c.XDS.Collector.TrustedCAFile = "ca.pem" }, "xds.collector.trustedCAFile"},
		{"no collector CA", func(c *Config) { c.XDS.Collector.TrustedCAFile = "" }, "xds.collector.trustedCAFile"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			c := base
			tc.mutate(&c)
			err := c.Validate()
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("got %v, want an error containing %q", err, tc.want)
			}
		})
	}
}

// Skipping collector certificate verification is allowed but said aloud.
func TestSkipCollectorVerifyWarns(t *testing.T) {
	cfg := DefaultConfig()
	cfg.Name = "west"
	var buf bytes.Buffer
	log := hclog.New(&hclog.LoggerOptions{Level: hclog.Info, Output: &buf})
	if _, err := New(cfg, log); err != nil {
		t.Fatal(err)
	}
	if strings.Contains(buf.String(), "not verified") {
		t.Fatalf("warning without skipVerify: %s", buf.String())
	}
	cfg.XDS.Collector.SkipVerify = true
	cfg.XDS.Collector.TrustedCAFile = ""
	if _, err := New(cfg, log); err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(buf.String(), "[WARN]") || !strings.Contains(buf.String(), "xds.collector.skipVerify") {
		t.Fatalf("no warning: %s", buf.String())
	}
}
