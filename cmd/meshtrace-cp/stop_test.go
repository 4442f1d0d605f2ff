package main

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"os/exec"
	"strings"
	"syscall"
	"testing"
	"time"
)

// A part that ignores the signal cannot hold the process past the deadline.
func TestExitAfterDeadline(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	exited := make(chan int, 1)
	var errb bytes.Buffer
	go exitAfterDeadline(ctx, 100*time.Millisecond, &errb, func(code int) { exited <- code })
	cancel()
	select {
	case code := <-exited:
		if code != 1 || !strings.Contains(errb.String(), "exiting now") {
			t.Fatalf("exit %d, %q", code, errb.String())
		}
	case <-time.After(5 * time.Second):
		t.Fatal("no exit after the deadline")
	}
}

// writeGlobalConfig writes dir/global.yaml: a global with its data in dir
// and every listener on a free loopback port.
func writeGlobalConfig(tb testing.TB, dir string) string {
	tb.Helper()
	return writeFile(tb, dir, "global.yaml", fmt.Sprintf("dataDir: %s\nstore:\n  embedded:\n    dir: %s/etcd\napi:\n  address: 127.0.0.1:0\nkds:\n  address: 127.0.0.1:0\ndiagnostics:\n  address: 127.0.0.1:0\n", dir, dir))
}

// waitStarted reads a control plane's log until it reports that it started
// (or ends), then drains the rest in the background.
func waitStarted(log io.Reader) {
	sc := bufio.NewScanner(log)
	for sc.Scan() {
		if strings.Contains(sc.Text(), "control plane started") {
			break
		}
	}
	go func() {
		for sc.Scan() {
		}
	}()
}

// SIGTERM stops a running global and a zone well within 5 s.
func TestSignalStopsWithin5s(t *testing.T) {
	dir := t.TempDir()
	cfg := writeGlobalConfig(t, dir)
	zdir := t.TempDir()
	zcfg := writeFile(t, zdir, "zone.yaml", fmt.Sprintf("dataDir: %s\nstore:\n  embedded:\n    dir: %s/etcd\napi:\n  address: 127.0.0.1:0\nxds:\n  address: 127.0.0.1:0\ndiagnostics:\n  address: 127.0.0.1:0\n", zdir, zdir))
	for name, args := range map[string]string{
		"global": "global --config " + cfg,
		"zone":   "zone --name west --config " + zcfg,
	} {
		t.Run(name, func(t *testing.T) {
			cmd := mainCommand(args)
			stderr, _ := cmd.StderrPipe()
			if err := cmd.Start(); err != nil {
				t.Fatal(err)
			}
			waitStarted(stderr)
			start := time.Now()
			cmd.Process.Signal(syscall.SIGTERM)
			done := make(chan error, 1)
			go func() { done <- cmd.Wait() }()
			select {
			case err := <-done:
				if took := time.Since(start); took > 5*time.Second || err != nil {
					t.Fatalf("stopped after %s with %v", took, err)
				}
			case <-time.After(10 * time.Second):
				cmd.Process.Kill()
				t.Fatal("still running 10s after SIGTERM")
			}
		})
	}
}

// A second control plane on the same data dir exits non-zero within 2 s,
// naming the dir, instead of hanging on etcd's lock.
func TestSecondProcessOnSameDataDir(t *testing.T) {
	dir := t.TempDir()
	cfg := writeGlobalConfig(t, dir)
	first := mainCommand("global --config " + cfg)
	stderr, _ := first.StderrPipe()
	if err := first.Start(); err != nil {
		t.Fatal(err)
	}
	defer func() { first.Process.Signal(syscall.SIGTERM); first.Wait() }()
	waitStarted(stderr)

	second := mainCommand("global --config " + cfg)
	var out bytes.Buffer
	second.Stderr = &out
	start := time.Now()
	err := second.Run()
	took := time.Since(start)
	var ee *exec.ExitError
	if !errors.As(err, &ee) || ee.ExitCode() != 1 {
		t.Fatalf("second global: %v, want exit status 1\n%s", err, out.String())
	}
	if took > 2*time.Second || !strings.Contains(out.String(), "in use by another process") || !strings.Contains(out.String(), dir) {
		t.Fatalf("second global took %s:\n%s", took, out.String())
	}
}
