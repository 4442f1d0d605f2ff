package store_test

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/meshtrace/meshtrace/store"
)

// The embedded etcd listens on unix sockets only this user can open: no TCP
// port another local user could reach and read the token signing key from.
func TestEmbeddedListensOnPrivateSocketsOnly(t *testing.T) {
	dir := t.TempDir()
	s := openEmbedded(t, filepath.Join(dir, "etcd"), true)
	eps := s.Endpoints()
	if len(eps) != 1 || !strings.HasPrefix(eps[0], "unix://") {
		t.Fatalf("endpoints %v: want one unix:// socket", eps)
	}
	path := strings.TrimPrefix(eps[0], "unix://")
	st, err := os.Stat(path)
	if err != nil {
		t.Fatal(err)
	}
	if st.Mode()&os.ModeSocket == 0 || st.Mode().Perm() != 0o600 {
		t.Fatalf("%s: mode %v, want a socket with 0600", path, st.Mode())
	}
	for _, name := range []string{"client.sock", "peer.sock"} {
		st, err := os.Stat(filepath.Join(filepath.Dir(path), name))
		if err != nil || st.Mode().Perm() != 0o600 {
			t.Fatalf("%s: %v %v, want mode 0600", name, st, err)
		}
	}
	if ls := tcpListeners(t); len(ls) > 0 {
		t.Fatalf("this process listens on TCP %v", ls)
	}
	if _, err := s.Revision(context.Background()); err != nil {
		t.Fatal(err)
	}
}

// A data dir whose socket path would exceed the kernel's limit still works
// (the sockets move to a private temporary dir).
func TestEmbeddedLongDir(t *testing.T) {
	dir := filepath.Join(t.TempDir(), strings.Repeat("d", 60), strings.Repeat("e", 60))
	s := openEmbedded(t, dir, true)
	if _, err := s.Revision(context.Background()); err != nil {
		t.Fatal(err)
	}
	sock := strings.TrimPrefix(s.Endpoints()[0], "unix://")
	parent, err := os.Stat(filepath.Dir(sock))
	if err != nil {
		t.Fatal(err)
	}
	if parent.Mode().Perm() != 0o700 {
		t.Fatalf("socket dir mode %v, want 0700", parent.Mode().Perm())
	}
	s.Close()
	if _, err := os.Stat(filepath.Dir(sock)); !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("temporary socket dir left behind: %v", err)
	}
}

// A second store on the same dir fails fast, naming the dir and the holder,
// instead of waiting forever on etcd's file lock.
func TestEmbeddedSecondOpenFailsFast(t *testing.T) {
	dir := t.TempDir()
	openEmbedded(t, dir, true)
	start := time.Now()
	_, err := store.OpenEmbedded(context.Background(), store.EmbeddedConfig{Dir: dir, UnsafeNoFsync: true})
	took := time.Since(start)
	if !errors.Is(err, store.ErrDirLocked) {
		t.Fatalf("second open: %v, want ErrDirLocked", err)
	}
	if !strings.Contains(err.Error(), dir) || !strings.Contains(err.Error(), "process") {
		t.Fatalf("error %q does not name the dir and the holder", err)
	}
	if took > 2*time.Second {
		t.Fatalf("second open took %s", took)
	}
}

// After Close the dir can be opened again.
func TestEmbeddedLockReleasedOnClose(t *testing.T) {
	dir := t.TempDir()
	s, err := store.OpenEmbedded(context.Background(), store.EmbeddedConfig{Dir: dir, UnsafeNoFsync: true})
	if err != nil {
		t.Fatal(err)
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	openEmbedded(t, dir, true)
}

// tcpListeners lists the local addresses (hex, as in /proc/net/tcp) of the
// TCP sockets this process listens on.
func tcpListeners(t *testing.T) []string {
	t.Helper()
	fds, err := os.ReadDir("/proc/self/fd")
	if err != nil {
		t.Skipf("no /proc: %v", err)
	}
	mine := map[string]bool{}
	for _, fd := range fds {
		if l, err := os.Readlink(filepath.Join("/proc/self/fd", fd.Name())); err == nil && strings.HasPrefix(l, "socket:[") {
			mine[strings.TrimSuffix(strings.TrimPrefix(l, "socket:["), "]")] = true
		}
	}
	var out []string
	for _, f := range []string{"/proc/self/net/tcp", "/proc/self/net/tcp6"} {
		b, err := os.ReadFile(f)
		if err != nil {
			continue
		}
		for _, line := range strings.Split(string(b), "\n")[1:] {
			fs := strings.Fields(line)
			if len(fs) > 9 && fs[3] == "0A" && mine[fs[9]] {
				out = append(out, fs[1])
			}
		}
	}
	return out
}
