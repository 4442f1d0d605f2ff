package config

import (
	"encoding/json"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"time"
)

type testConfig struct {
	DataDir string `json:"dataDir" desc:"where state lives"`
	Store   struct {
		Embedded struct {
			Dir string `json:"dir" desc:"etcd data | wal"`
		} `json:"embedded"`
		External struct {
			Endpoints []string `json:"endpoints" desc:"etcd URLs"`
		} `json:"external"`
	} `json:"store"`
	KDS struct {
		MaxMessageBytes int      `json:"maxMessageBytes" desc:"gRPC cap"`
		Heartbeat       Duration `json:"heartbeat" desc:"ping interval"`
		Ratio           float64  `json:"ratio"`
		Port            uint16   `json:"port"`
	} `json:"kds"`
	Log struct {
		JSON  bool   `json:"json"`
		Level string `json:"level" env:"LOGLEVEL"`
	} `json:"log"`
	Ignored string `json:"-"`
	private string //nolint:unused
}

func defaults() *testConfig {
	c := &testConfig{DataDir: "./data"}
	c.Store.Embedded.Dir = "./data/etcd"
	c.KDS.MaxMessageBytes = 1024
	c.KDS.Heartbeat = Duration(10 * time.Second)
	c.KDS.Ratio = 0.5
	c.KDS.Port = 5685
	c.Log.Level = "info"
	return c
}

func writeFile(t *testing.T, content string) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), "c.yaml")
	if err := os.WriteFile(p, []byte(content), 0o600); err != nil {
		t.Fatal(err)
	}
	return p
}

func TestLoad(t *testing.T) {
	tests := []struct {
		name    string
		yaml    string // "" means no file
		env     map[string]string
		want    func(c *testConfig)
		wantErr string
	}{
		{name: "defaults only", want: func(c *testConfig) {}},
		{name: "empty file", yaml: "\n", want: func(c *testConfig) {}},
		{
			name: "file overrides some keys, keeps the rest",
			yaml: "dataDir: /var/lib/mt\nkds:\n  heartbeat: 2s\n  ratio: 0.25\nstore:\n  external:\n    endpoints: [https://a:2379, https://b:2379]\n",
			want: func(c *testConfig) {
				c.DataDir = "/var/lib/mt"
				c.KDS.Heartbeat = Duration(2 * time.Second)
				c.KDS.Ratio = 0.25
				c.Store.External.Endpoints = []string{"https://a:2379", "https://b:2379"}
			},
		},
		{
			name: "env overrides file",
			yaml: "log:\n  level: debug\nkds:\n  maxMessageBytes: 10\n",
			env: map[string]string{
				"MESHTRACE_KDS_MAX_MESSAGE_BYTES":      "0x20",
				"MESHTRACE_KDS_HEARTBEAT":              "1m30s",
				"MESHTRACE_KDS_RATIO":                  "1.5",
				"MESHTRACE_KDS_PORT":                   "6000",
				"MESHTRACE_LOG_JSON":                   "true",
				"MESHTRACE_LOG_LOGLEVEL":               "warn",
				"MESHTRACE_STORE_EXTERNAL_ENDPOINTS":   " http://a:2379 , ,http://b:2379",
				"MESHTRACE_STORE_EMBEDDED_DIR":         "",
				"MESHTRACE_DATA_DIR":                   "/d",
				"MESHTRACE_IGNORED":                    "x",
				"MESHTRACE_UNRELATED_BUT_PREFIXED_KEY": "y",
			},
			want: func(c *testConfig) {
				c.KDS.MaxMessageBytes = 32
				c.KDS.Heartbeat = Duration(90 * time.Second)
				c.KDS.Ratio = 1.5
				c.KDS.Port = 6000
				c.Log.JSON = true
				c.Log.Level = "warn"
				c.Store.External.Endpoints = []string{"http://a:2379", "http://b:2379"}
				c.Store.Embedded.Dir = ""
				c.DataDir = "/d"
			},
		},
		{name: "unknown top key", yaml: "dataDri: x\n", wantErr: `unknown key "dataDri"`},
		{name: "unknown nested key", yaml: "store:\n  embedded:\n    dri: x\n", wantErr: `unknown key "store.embedded.dri"`},
		{name: "json-ignored field is unknown", yaml: "Ignored: x\n", wantErr: `unknown key "Ignored"`},
		{name: "duplicate key", yaml: "dataDir: a\ndataDir: b\n", wantErr: "dataDir"},
		{name: "duration as number", yaml: "kds:\n  heartbeat: 5\n", wantErr: "invalid duration 5"},
		{name: "bad duration", yaml: "kds:\n  heartbeat: fast\n", wantErr: `invalid duration "fast"`},
		{name: "wrong type", yaml: "kds:\n  maxMessageBytes: lots\n", wantErr: `key "kds.maxMessageBytes"`},
		{name: "not a mapping", yaml: "- a\n", wantErr: "mapping"},
		{name: "bad env int", env: map[string]string{"MESHTRACE_KDS_MAX_MESSAGE_BYTES": "ten"}, wantErr: `MESHTRACE_KDS_MAX_MESSAGE_BYTES (key "kds.maxMessageBytes"): invalid integer "ten"`},
		{name: "bad env bool", env: map[string]string{"MESHTRACE_LOG_JSON": "yes please"}, wantErr: "invalid bool"},
		{name: "bad env duration", env: map[string]string{"MESHTRACE_KDS_HEARTBEAT": "10"}, wantErr: "invalid duration"},
		{name: "bad env float", env: map[string]string{"MESHTRACE_KDS_RATIO": "half"}, wantErr: "invalid number"},
		{name: "env uint overflow", env: map[string]string{"MESHTRACE_KDS_PORT": "70000"}, wantErr: "invalid unsigned integer"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			for k, v := range tt.env {
				t.Setenv(k, v)
			}
			path := ""
			if tt.yaml != "" {
				path = writeFile(t, tt.yaml)
			}
			got := defaults()
			err := Load(path, got, "MESHTRACE")
			if tt.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
					t.Fatalf("error = %v, want it to contain %q", err, tt.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			want := defaults()
			tt.want(want)
			if !reflect.DeepEqual(got, want) {
				t.Fatalf("got %+v\nwant %+v", got, want)
			}
		})
	}
}

func TestLoadErrors(t *testing.T) {
	var notStruct int
	if err := Load("", &notStruct, "X"); err == nil {
		t.Fatal("want an error for a non-struct target")
	}
	if err := Load(filepath.Join(t.TempDir(), "missing.yaml"), defaults(), "X"); err == nil {
		t.Fatal("want an error for a missing file")
	}
}

func TestEnvName(t *testing.T) {
	for in, want := range map[string]string{
		"dir":             "DIR",
		"maxMessageBytes": "MAX_MESSAGE_BYTES",
		"dataDir":         "DATA_DIR",
		"zone-insights":   "ZONE_INSIGHTS",
		"tlsCertFile":     "TLS_CERT_FILE",
		"caFile":          "CA_FILE",
		"KDS":             "KDS",
		"kdsTLSFile":      "KDS_TLS_FILE",
		"json":            "JSON",
		"http2Enabled":    "HTTP2_ENABLED",
	} {
		if got := EnvName(in); got != want {
			t.Errorf("EnvName(%q) = %q, want %q", in, got, want)
		}
	}
}

func TestDuration(t *testing.T) {
	d := Duration(1500 * time.Millisecond)
	b, err := json.Marshal(struct{ D Duration }{d})
	if err != nil || string(b) != `{"D":"1.5s"}` {
		t.Fatalf("marshal = %s, %v", b, err)
	}
	var back struct{ D Duration }
	if err := json.Unmarshal(b, &back); err != nil || back.D != d {
		t.Fatalf("unmarshal = %v, %v", back.D, err)
	}
	if d.D() != 1500*time.Millisecond || d.String() != "1.5s" {
		t.Fatalf("D/String = %v %q", d.D(), d.String())
	}
}

func TestReference(t *testing.T) {
	got := Reference(defaults(), "MESHTRACE_")
	want := "| key | environment | default | description |\n" +
		"| --- | --- | --- | --- |\n" +
		"| `dataDir` | `MESHTRACE_DATA_DIR` | `./data` | where state lives |\n" +
		"| `store.embedded.dir` | `MESHTRACE_STORE_EMBEDDED_DIR` | `./data/etcd` | etcd data \\| wal |\n" +
		"| `store.external.endpoints` | `MESHTRACE_STORE_EXTERNAL_ENDPOINTS` | (empty) | etcd URLs |\n" +
		"| `kds.maxMessageBytes` | `MESHTRACE_KDS_MAX_MESSAGE_BYTES` | `1024` | gRPC cap |\n" +
		"| `kds.heartbeat` | `MESHTRACE_KDS_HEARTBEAT` | `10s` | ping interval |\n" +
		"| `kds.ratio` | `MESHTRACE_KDS_RATIO` | `0.5` |  |\n" +
		"| `kds.port` | `MESHTRACE_KDS_PORT` | `5685` |  |\n" +
		"| `log.json` | `MESHTRACE_LOG_JSON` | `false` |  |\n" +
		"| `log.level` | `MESHTRACE_LOG_LOGLEVEL` | `info` |  |\n"
	if got != want {
		t.Fatalf("Reference:\n%s\nwant:\n%s", got, want)
	}
	c := defaults()
	c.Store.External.Endpoints = []string{"a", "b"}
	if !strings.Contains(Reference(*c, "P"), "| `P_STORE_EXTERNAL_ENDPOINTS` | `a,b` |") {
		t.Fatalf("list default not rendered:\n%s", Reference(*c, "P"))
	}
}
