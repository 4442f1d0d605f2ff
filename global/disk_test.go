package global

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/meshtrace/meshtrace/store"
)

// smallFS mounts a tiny tmpfs (root only; skipped elsewhere).
func smallFS(t *testing.T, size string) string {
	t.Helper()
	dir := t.TempDir()
	if out, err := exec.Command("mount", "-t", "tmpfs", "-o", "size="+size, "tmpfs", dir).CombinedOutput(); err != nil {
		t.Skipf("cannot mount a tmpfs: %v %s", err, out)
	}
	t.Cleanup(func() { _ = exec.Command("umount", dir).Run() })
	return dir
}

func fill(t *testing.T, dir string) {
	t.Helper()
	f, err := os.Create(filepath.Join(dir, "filler"))
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	buf := make([]byte, 64<<10)
	for {
		if _, err := f.Write(buf); err != nil {
			return
		}
	}
}

// On a full disk the admin token write fails cleanly and leaves no file
// behind, so the next start (with space again) generates a token.
func TestAdminTokenWriteOnFullDisk(t *testing.T) {
	data := smallFS(t, "1m")
	fill(t, data)
	cfg := testConfig(data)
	cfg.Store.Embedded.Dir = filepath.Join(t.TempDir(), "etcd")
	g, err := New(cfg, nil)
	if err != nil {
		t.Fatal(err)
	}
	err = g.Run(context.Background())
	if err == nil || !strings.Contains(err.Error(), "admin token") {
		t.Fatalf("Run on a full disk: %v", err)
	}
	if _, err := os.Stat(filepath.Join(data, AdminTokenFile)); !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("a failed write left %s: %v", AdminTokenFile, err)
	}
	entries, _ := os.ReadDir(data)
	for _, e := range entries {
		if e.Name() != "filler" {
			t.Fatalf("left behind %s", e.Name())
		}
	}
	os.Remove(filepath.Join(data, "filler"))
	g2, err := New(cfg, nil)
	if err != nil {
		t.Fatal(err)
	}
	r := start(t, g2)
	if g2.AdminToken() == "" {
		t.Fatal("no admin token after space came back")
	}
	r.stop()
}

// A fresh start on a disk without room for etcd fails with one clear error
// instead of etcd's panic.
func TestFreshStartOnFullDisk(t *testing.T) {
	data := smallFS(t, "16m")
	g, err := New(testConfig(data), nil)
	if err != nil {
		t.Fatal(err)
	}
	err = g.Run(context.Background())
	if err == nil || !strings.Contains(err.Error(), "free") {
		t.Fatalf("Run on a small disk: %v", err)
	}
	if _, err := os.Stat(filepath.Join(data, AdminTokenFile)); !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("admin token written before the store check: %v", err)
	}
}

// An empty admin token file (left by an older version) is replaced.
func TestEmptyAdminTokenFileReplaced(t *testing.T) {
	dir := t.TempDir()
	if err := os.WriteFile(filepath.Join(dir, AdminTokenFile), nil, 0o600); err != nil {
		t.Fatal(err)
	}
	g, err := New(testConfig(dir), nil)
	if err != nil {
		t.Fatal(err)
	}
	start(t, g)
	b, _ := os.ReadFile(filepath.Join(dir, AdminTokenFile))
	if strings.TrimSpace(string(b)) == "" || strings.TrimSpace(string(b)) != g.AdminToken() {
		t.Fatalf("token file %q, token %q", b, g.AdminToken())
	}
}

// A second global on the same data dir fails within 2 s naming the dir and
// the holder, and creates nothing.
func TestSecondGlobalOnSameDataDir(t *testing.T) {
	dir := t.TempDir()
	g1, err := New(testConfig(dir), nil)
	if err != nil {
		t.Fatal(err)
	}
	start(t, g1)
	<-g1.KDSStarted() // its generated certificates are written
	before := tree(t, dir)
	g2, err := New(testConfig(dir), nil)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	err = g2.Run(ctx)
	if !errors.Is(err, store.ErrDirLocked) || !strings.Contains(err.Error(), filepath.Join(dir, "etcd")) ||
		!strings.Contains(err.Error(), fmt.Sprintf("process %d", os.Getpid())) {
		t.Fatalf("second global: %v", err)
	}
	if after := tree(t, dir); after != before {
		t.Fatalf("the second global changed the data dir:\n%s\nvs\n%s", before, after)
	}
}

// tree lists the files under dir (names and sizes of regular files,
// skipping etcd's own changing files).
func tree(t *testing.T, dir string) string {
	t.Helper()
	var b strings.Builder
	_ = filepath.WalkDir(dir, func(p string, d os.DirEntry, err error) error {
		if err != nil || strings.Contains(p, "member") {
			return nil
		}
		fmt.Fprintln(&b, strings.TrimPrefix(p, dir))
		return nil
	})
	return b.String()
}
