package main

import (
	"bufio"
	"bytes"
	"context"
	"net"
	"os"
	"os/exec"
	"strings"
	"syscall"
	"testing"
	"time"
)

// TestMain lets a test run this binary as meshtrace-cp itself.
func TestMain(m *testing.M) {
	if os.Getenv("MESHTRACE_CP_TEST_MAIN") == "1" {
		os.Args = append([]string{"meshtrace-cp"}, strings.Fields(os.Getenv("MESHTRACE_CP_TEST_ARGS"))...)
		main()
		os.Exit(0)
	}
	os.Exit(m.Run())
}

// mainCommand returns a command that runs this test binary as
// `meshtrace-cp args` (see TestMain).
func mainCommand(args string) *exec.Cmd {
	cmd := exec.Command(os.Args[0], "-test.run=^$")
	cmd.Env = append(os.Environ(), "MESHTRACE_CP_TEST_MAIN=1", "MESHTRACE_CP_TEST_ARGS="+args)
	return cmd
}

// Ctrl-C reaches every process of the terminal's foreground group. The demo
// must exit 0 on it, and `make demo` must not put `go run` in between: go run
// exits 1 when it gets the interrupt, whatever its child does.
func TestDemoExitsZeroOnInterrupt(t *testing.T) {
	mk, err := os.ReadFile("../../Makefile")
	if err != nil {
		t.Fatal(err)
	}
	recipe := strings.SplitN(string(mk), "\ndemo:\n", 2)
	if len(recipe) != 2 {
		t.Fatal("Makefile has no demo target")
	}
	if body, _, _ := strings.Cut(recipe[1], "\n\n"); strings.Contains(body, "go run") || strings.Contains(body, "$(GO) run") {
		t.Fatalf("make demo runs the demo through go run:\n%s", body)
	}

	cmd := mainCommand("demo --dir " + t.TempDir())
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	ready := make(chan struct{})
	go func() {
		sc := bufio.NewScanner(stdout)
		for sc.Scan() {
			if strings.Contains(sc.Text(), "Ctrl-C stops the demo") {
				close(ready)
			}
		}
	}()
	select {
	case <-ready:
	case <-time.After(90 * time.Second):
		_ = cmd.Process.Kill()
		t.Fatal("demo did not get ready")
	}
	if err := syscall.Kill(-cmd.Process.Pid, syscall.SIGINT); err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- cmd.Wait() }()
	select {
	case err := <-done:
		if err != nil {
			t.Fatalf("demo exit after Ctrl-C: %v (want 0)", err)
		}
	case <-time.After(30 * time.Second):
		_ = cmd.Process.Kill()
		t.Fatal("demo did not stop within 30s of Ctrl-C")
	}
}

// An address given with --global-api is kept: when it is taken the demo
// fails naming it instead of moving elsewhere.
func TestDemoKeepsAnExplicitGlobalAPI(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	var out, errb bytes.Buffer
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	err = run(ctx, []string{"demo", "--dir", t.TempDir(), "--global-api", ln.Addr().String()}, &out, &errb)
	if err == nil || !strings.Contains(err.Error(), ln.Addr().String()) || strings.Contains(out.String(), "free port") {
		t.Fatalf("demo with a taken --global-api: %v\n%s", err, out.String())
	}
}
