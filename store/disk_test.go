package store

import (
	"errors"
	"strings"
	"testing"
)

// A file system without room for etcd's WAL fails before etcd starts (etcd
// itself would panic), naming the dir and the space needed.
func TestCheckFreeSpace(t *testing.T) {
	dir := t.TempDir()
	if err := checkFreeSpace(dir, 1); err != nil {
		t.Fatalf("1 byte: %v", err)
	}
	err := checkFreeSpace(dir, 1<<62)
	if !errors.Is(err, ErrDiskFull) || !strings.Contains(err.Error(), dir) || !strings.Contains(err.Error(), "MiB") {
		t.Fatalf("huge requirement: %v", err)
	}
}
