package testcluster

import (
	"os"
	"path/filepath"
	"runtime"
)

// readSeed reads an example of the MeshTrace page from resource/testdata/seed.
func readSeed(name string) (string, error) {
	_, file, _, _ := runtime.Caller(0)
	b, err := os.ReadFile(filepath.Join(filepath.Dir(file), "..", "resource", "testdata", "seed", name))
	return string(b), err
}
