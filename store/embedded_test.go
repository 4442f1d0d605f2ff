package store_test

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"net"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/meshtrace/meshtrace/resource"
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

// The store calls its embedded server in-process, not through the client
// socket (which stays for tools): with the socket unlinked, writes, reads
// and watches still work, while a client dialing the socket cannot connect.
func TestEmbeddedStoreDoesNotUseTheSocket(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	s := openEmbedded(t, t.TempDir(), true)
	sock := strings.TrimPrefix(s.Endpoints()[0], "unix://")
	if err := os.Remove(sock); err != nil {
		t.Fatal(err)
	}
	if _, err := net.Dial("unix", sock); err == nil {
		t.Fatal("the unlinked socket still accepts connections")
	}
	wch, err := s.Watch(ctx, store.WatchOptions{Types: []resource.Type{resource.TypeMesh}})
	if err != nil {
		t.Fatal(err)
	}
	m, _ := resource.New(resource.TypeMesh, "", "m1")
	rev, err := s.Put(ctx, m, store.MustNotExist)
	if err != nil {
		t.Fatal(err)
	}
	if _, _, err := s.Get(ctx, m.Key()); err != nil {
		t.Fatal(err)
	}
	select {
	case resp := <-wch:
		if resp.Err != nil || len(resp.Events) != 1 || resp.Revision != rev {
			t.Fatalf("watch: %+v, want the put at %d", resp, rev)
		}
	case <-ctx.Done():
		t.Fatal("no watch event")
	}
}

// Close while reads, lists, writes and transactions run: every call either
// completes or fails with ErrClosed, none reaches the stopped server (with
// the in-process client, a read of the closed backend crashed the process),
// and Close returns. Seeded: the seed is printed.
func TestEmbeddedCloseDuringCalls(t *testing.T) {
	seed := time.Now().UnixNano()
	t.Logf("seed %d", seed)
	rng := rand.New(rand.NewPCG(uint64(seed), 0))
	for round := range 4 {
		s, err := store.OpenEmbedded(context.Background(), store.EmbeddedConfig{Dir: t.TempDir(), UnsafeNoFsync: round%2 == 0})
		if err != nil {
			t.Fatal(err)
		}
		ctx := context.Background()
		for i := range 20 {
			m, _ := resource.New(resource.TypeMesh, "", fmt.Sprintf("m%d", i))
			if _, err := s.Put(ctx, m, store.AnyVersion); err != nil {
				t.Fatal(err)
			}
		}
		var wg sync.WaitGroup
		errs := make(chan error, 8)
		started := make(chan struct{}, 8)
		for w := range 8 {
			wg.Add(1)
			go func() {
				defer wg.Done()
				for i := 0; ; i++ {
					if i == 1 {
						started <- struct{}{}
					}
					m, _ := resource.New(resource.TypeMesh, "", fmt.Sprintf("m%d", (w+i)%20))
					var err error
					switch (w + i) % 4 {
					case 0:
						_, _, err = s.Get(ctx, m.Key())
					case 1:
						_, err = s.List(ctx, resource.TypeMesh, store.ListOptions{})
					case 2:
						_, err = s.Put(ctx, m, store.AnyVersion)
					default:
						_, err = s.Txn(ctx, []store.Op{{Resource: m}})
					}
					if err != nil {
						errs <- err
						return
					}
				}
			}()
		}
		for range 8 {
			<-started
		}
		time.Sleep(time.Duration(rng.IntN(3000)) * time.Microsecond)
		done := make(chan error, 1)
		go func() { done <- s.Close() }()
		select {
		case err := <-done:
			if err != nil {
				t.Fatalf("round %d: close: %v", round, err)
			}
		case <-time.After(30 * time.Second):
			t.Fatalf("round %d: close did not return", round)
		}
		wg.Wait()
		close(errs)
		for err := range errs {
			if !errors.Is(err, store.ErrClosed) {
				t.Fatalf("round %d: a call racing close failed with %v, want ErrClosed", round, err)
			}
		}
	}
}
