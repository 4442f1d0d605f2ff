// Package configtest checks a control plane's documented defaults file and
// generated reference against its config struct.
package configtest

import (
	"os"
	"reflect"
	"strings"
	"testing"

	"sigs.k8s.io/yaml"

	"github.com/meshtrace/meshtrace/config"
)

// DefaultsFile checks that the YAML file at path loads into exactly defaults
// (normalize may fix up representation differences such as [] vs nil) and
// spells out every key of the struct.
func DefaultsFile[T any](t *testing.T, path string, defaults T, envPrefix string, normalize func(*T)) {
	t.Helper()
	var got T
	if err := config.Load(path, &got, "MESHTRACE_TEST_UNSET"); err != nil {
		t.Fatal(err)
	}
	if normalize != nil {
		normalize(&got)
	}
	if !reflect.DeepEqual(got, defaults) {
		t.Fatalf("%s differs from the defaults in code:\nfile %+v\ncode %+v", path, got, defaults)
	}
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	var tree map[string]any
	if err := yaml.Unmarshal(data, &tree); err != nil {
		t.Fatal(err)
	}
	for _, line := range strings.Split(config.Reference(defaults, envPrefix), "\n")[2:] {
		if line == "" {
			continue
		}
		key := strings.Trim(strings.Split(line, "|")[1], " `")
		var node any = tree
		for _, part := range strings.Split(key, ".") {
			m, _ := node.(map[string]any)
			v, ok := m[part]
			if !ok {
				t.Errorf("%s lacks key %q", path, key)
				break
			}
			node = v
		}
	}
}

// Golden compares got with the file at path, rewriting it when UPDATE_GOLDEN=1.
func Golden(t *testing.T, path, got string) {
	t.Helper()
	if os.Getenv("UPDATE_GOLDEN") == "1" {
		if err := os.WriteFile(path, []byte(got), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	want, err := os.ReadFile(path)
	if err != nil {
		t.Fatalf("%v (run with UPDATE_GOLDEN=1 to create it)", err)
	}
	if got != string(want) {
		t.Fatalf("%s is stale: rerun the test with UPDATE_GOLDEN=1 and review the diff", path)
	}
}
