//go:build e2e

package e2e

import (
	"flag"
	"fmt"
	"os"
	"os/signal"
	"strings"
	"syscall"
	"testing"
	"time"
)

// dockerMissing says why Docker cannot be used; "" when it can.
var dockerMissing string

// needDocker skips the test when Docker is not reachable.
func needDocker(t testing.TB) {
	t.Helper()
	if dockerMissing != "" {
		t.Skipf("e2e needs a reachable Docker Engine (DOCKER_HOST or /var/run/docker.sock): %s", dockerMissing)
	}
}

func TestMain(m *testing.M) {
	// No reaper: its image cannot be pulled here. Cleanup is ours, by label.
	os.Setenv("TESTCONTAINERS_RYUK_DISABLED", "true")
	// With a local daemon, published ports are on the loopback interface.
	// Left alone, testcontainers guesses a gateway address when it finds
	// itself inside a container, which is wrong on a docker-in-docker host.
	if _, set := os.LookupEnv("TESTCONTAINERS_HOST_OVERRIDE"); !set {
		if h := os.Getenv("DOCKER_HOST"); h == "" || strings.HasPrefix(h, "unix://") {
			os.Setenv("TESTCONTAINERS_HOST_OVERRIDE", "127.0.0.1")
		}
	}
	if why := dockerReachable(); why != "" {
		dockerMissing = why
		fmt.Fprintf(os.Stderr, "e2e: Docker Engine not reachable, every test will skip: %s\n", why)
		os.Exit(m.Run())
	}
	// Leftovers of runs that died without cleaning up (timeout, kill -9).
	removeLabeled(0)

	sig := make(chan os.Signal, 1)
	signal.Notify(sig, os.Interrupt, syscall.SIGTERM)
	go func() {
		s := <-sig
		logf("got %s: removing containers and networks", s)
		removeLabeled(os.Getpid())
		removeImages()
		os.Exit(1)
	}()

	// go test -timeout ends the binary with a panic that runs no cleanup:
	// clean up just before it.
	flag.Parse()
	if f := flag.Lookup("test.timeout"); f != nil {
		if d, err := time.ParseDuration(f.Value.String()); err == nil && d > time.Minute {
			time.AfterFunc(d-30*time.Second, func() {
				logf("test timeout %s is near: removing containers, networks and images", d)
				removeLabeled(os.Getpid())
				removeImages()
			})
		}
	}

	code := m.Run()
	shared.mu.Lock()
	shared.topo.teardown()
	shared.mu.Unlock()
	removeLabeled(os.Getpid())
	if failed := removeImages(); len(failed) > 0 {
		fmt.Fprintf(os.Stderr, "e2e: images left behind: %s\n", strings.Join(failed, "; "))
		if code == 0 {
			code = 1
		}
	}
	os.Exit(code)
}
