package global

import (
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/meshtrace/meshtrace/config"
	"github.com/meshtrace/meshtrace/config/configtest"
)

func TestDefaultsFileEqualsDefaultConfig(t *testing.T) {
	configtest.DefaultsFile(t, "config.defaults.yaml", DefaultConfig(), EnvPrefix, func(c *Config) {
		if len(c.Store.External.Endpoints) == 0 {
			c.Store.External.Endpoints = nil // "[]" in the file, nil in the struct
		}
		if len(c.KDS.TLSHosts) == 0 {
			c.KDS.TLSHosts = nil
		}
	})
	if err := DefaultConfig().Validate(); err != nil {
		t.Fatalf("defaults do not validate: %v", err)
	}
}

func TestConfigReference(t *testing.T) {
	got := ConfigReference()
	configtest.Golden(t, "config.md", got)
	for _, env := range []string{"MESHTRACE_STORE_EMBEDDED_DIR", "MESHTRACE_KDS_MAX_MESSAGE_BYTES", "MESHTRACE_DATA_DIR", "MESHTRACE_API_ADMIN_TOKEN"} {
		if !strings.Contains(got, "`"+env+"`") {
			t.Errorf("reference lacks %s", env)
		}
	}
}

func TestLoadConfig(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "global.yaml")
	if err := os.WriteFile(path, []byte("api:\n  address: 127.0.0.1:7000\nkds:\n  heartbeat: 3s\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	t.Setenv("MESHTRACE_API_ADDRESS", "127.0.0.1:7001")
	t.Setenv("MESHTRACE_STORE_EXTERNAL_ENDPOINTS", "http://etcd-0:2379,http://etcd-1:2379")
	cfg, err := LoadConfig(path)
	if err != nil {
		t.Fatal(err)
	}
	want := DefaultConfig()
	want.API.Address = "127.0.0.1:7001"
	want.KDS.Heartbeat = config.Duration(3 * time.Second)
	want.Store.External.Endpoints = []string{"http://etcd-0:2379", "http://etcd-1:2379"}
	if !reflect.DeepEqual(cfg, want) {
		t.Fatalf("got %+v\nwant %+v", cfg, want)
	}
	if !cfg.UsesExternalStore() {
		t.Fatal("external endpoints set but UsesExternalStore is false")
	}
	if err := os.WriteFile(path, []byte("api:\n  adress: x\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err := LoadConfig(path); err == nil || !strings.Contains(err.Error(), `"api.adress"`) {
		t.Fatalf("unknown key error = %v", err)
	}
}

func TestValidate(t *testing.T) {
	dir := t.TempDir()
	cert := filepath.Join(dir, "tls.crt")
	if err := os.WriteFile(cert, []byte("x"), 0o600); err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name   string
		mutate func(c *Config)
		want   []string // each must appear in the error; none means valid
	}{
		{name: "defaults", mutate: func(c *Config) {}},
		{name: "port zero everywhere", mutate: func(c *Config) {
			c.API.Address, c.Diagnostics.Address, c.KDS.Address = "127.0.0.1:0", "127.0.0.1:0", ":0"
		}},
		{name: "external store", mutate: func(c *Config) {
			c.Store.External.Endpoints = []string{"https://etcd:2379"}
			c.Store.External.CertFile, c.Store.External.KeyFile, c.Store.External.CAFile = cert, cert, cert
			c.Store.Embedded.Dir = ""
		}},
		{name: "kds tls", mutate: func(c *Config) { c.KDS.TLSCertFile, c.KDS.TLSKeyFile = cert, cert }},
		{name: "empty dirs", mutate: func(c *Config) { c.DataDir, c.Store.Embedded.Dir = "", " " },
			want: []string{"dataDir: must not be empty", "store.embedded.dir: must not be empty"}},
		{name: "bad addresses", mutate: func(c *Config) {
			c.API.Address, c.KDS.Address, c.Diagnostics.Address = "localhost", "h:99999", "h:x"
		}, want: []string{`api.address: "localhost" is not host:port`, "kds.address", "diagnostics.address"}},
		{name: "same port", mutate: func(c *Config) { c.Diagnostics.Address = "0.0.0.0:5681" },
			want: []string{"diagnostics.address: \"0.0.0.0:5681\" is the same port as api.address"}},
		{name: "external problems", mutate: func(c *Config) {
			c.Store.External.Endpoints = []string{"etcd:2379", "https://ok:2379"}
			c.Store.External.CertFile = filepath.Join(dir, "missing.crt")
			c.Store.External.CAFile = dir
			c.Store.External.DialTimeout = 0
		}, want: []string{"store.external.endpoints[0]", "store.external.certFile: certFile and keyFile must be set together",
			"store.external.certFile: stat", "store.external.caFile: " + dir + " is a directory", "store.external.dialTimeout: must be positive"}},
		{name: "kds limits", mutate: func(c *Config) {
			c.KDS.MaxMessageBytes, c.KDS.Heartbeat, c.KDS.TLSKeyFile = 10, config.Duration(time.Millisecond), cert
		}, want: []string{"kds.maxMessageBytes: must be at least 65536", "kds.heartbeat: must be at least 100ms, got 1ms", "kds.tlsCertFile: tlsCertFile and tlsKeyFile"}},
		{name: "kds batch gap negative", mutate: func(c *Config) { c.KDS.BatchGap = config.Duration(-time.Millisecond) },
			want: []string{"kds.batchGap: must be between 0 and 1s, got -1ms"}},
		{name: "kds batch gap too long", mutate: func(c *Config) { c.KDS.BatchGap = config.Duration(2 * time.Second) },
			want: []string{"kds.batchGap: must be between 0 and 1s, got 2s"}},
		{name: "kds batch stretch", mutate: func(c *Config) { c.KDS.BatchStretch = config.Duration(-time.Second) },
			want: []string{"kds.batchStretch: must be between 0 and 1s, got -1s"}},
		{name: "log and token", mutate: func(c *Config) { c.Log.Level, c.API.AdminToken = "loud", "a b" },
			want: []string{`log.level: "loud" is not one of`, "api.adminToken: must not contain whitespace"}},
		{name: "compaction", mutate: func(c *Config) { c.Store.Embedded.AutoCompactionRetention = "forever" },
			want: []string{"store.embedded.autoCompactionRetention"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c := DefaultConfig()
			tt.mutate(&c)
			before := c
			err := c.Validate()
			if !reflect.DeepEqual(before, c) {
				t.Fatal("Validate changed the config")
			}
			if len(tt.want) == 0 {
				if err != nil {
					t.Fatalf("unexpected error: %v", err)
				}
				return
			}
			if err == nil {
				t.Fatalf("no error, want %v", tt.want)
			}
			for _, w := range tt.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("error %q lacks %q", err, w)
				}
			}
			if lines := strings.Split(err.Error(), "\n"); len(lines) < len(tt.want) {
				t.Errorf("want one line per problem, got %q", err)
			}
		})
	}
}
