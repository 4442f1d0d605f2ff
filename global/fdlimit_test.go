package global

import (
	"bufio"
	"context"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

const fdChildEnv = "MESHTRACE_TEST_FD_CHILD"

// TestFDLimitChild is the global run by TestFloodUnderLowFDLimit in a child
// process with a low open-file limit; it prints its addresses and runs until
// its stdin closes.
func TestFDLimitChild(t *testing.T) {
	dir := os.Getenv(fdChildEnv)
	if dir == "" {
		t.Skip("run by TestFloodUnderLowFDLimit")
	}
	lim := syscall.Rlimit{Cur: 512, Max: 512}
	if err := syscall.Setrlimit(syscall.RLIMIT_NOFILE, &lim); err != nil {
		t.Fatal(err)
	}
	g, err := New(testConfig(dir), nil)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- g.Run(ctx) }()
	select {
	case <-g.KDSStarted():
	case err := <-done:
		t.Fatal(err)
	}
	fmt.Printf("ADDRS %s %s %s %s\n", g.APIAddr(), g.KDSAddr(), g.DiagnosticsAddr(), g.AdminToken())
	go func() {
		_, _ = bufio.NewReader(os.Stdin).ReadString('\n')
		cancel()
	}()
	if err := <-done; err != nil {
		t.Fatal(err)
	}
}

// With `ulimit -n 512`, thousands of idle connections to the API and KDS
// ports neither exhaust the descriptors etcd needs nor stop the process;
// writes keep working during the flood.
func TestFloodUnderLowFDLimit(t *testing.T) {
	if testing.Short() {
		t.Skip("floods")
	}
	cmd := exec.Command(os.Args[0], "-test.run=^TestFDLimitChild$", "-test.v")
	cmd.Env = append(os.Environ(), fdChildEnv+"="+t.TempDir())
	stdin, _ := cmd.StdinPipe()
	out, _ := cmd.StdoutPipe()
	cmd.Stderr = os.Stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	exited := make(chan error, 1)
	var api, kdsAddr, diagAddr, token string
	sc := bufio.NewScanner(out)
	for sc.Scan() {
		if f := strings.Fields(sc.Text()); len(f) == 5 && f[0] == "ADDRS" {
			api, kdsAddr, diagAddr, token = f[1], f[2], f[3], f[4]
			break
		}
	}
	if api == "" {
		t.Fatal("child did not start")
	}
	go func() {
		for sc.Scan() {
		}
		exited <- cmd.Wait()
	}()
	defer func() {
		stdin.Close()
		select {
		case <-exited:
		case <-time.After(10 * time.Second):
			cmd.Process.Kill()
		}
	}()

	var mu sync.Mutex
	var conns []net.Conn
	defer func() {
		for _, c := range conns {
			c.Close()
		}
	}()
	var wg sync.WaitGroup
	for i := range 1500 {
		addr := api
		if i%2 == 1 {
			addr = kdsAddr
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			c, err := net.DialTimeout("tcp", addr, 5*time.Second)
			if err == nil {
				mu.Lock()
				conns = append(conns, c)
				mu.Unlock()
			}
		}()
		if i%100 == 99 {
			wg.Wait()
		}
	}
	wg.Wait()
	t.Logf("%d flood connections open", len(conns))

	select {
	case err := <-exited:
		t.Fatalf("global exited during the flood: %v", err)
	default:
	}
	body := strings.Replace(traceBody, "mesh: prod", "mesh: default", 1)
	code, resp := call(t, http.MethodPut, "http://"+api+"/meshes/default/meshtraces/t1", token, body)
	if code != http.StatusCreated && code != http.StatusOK {
		t.Fatalf("write during the flood: %d %s", code, resp)
	}
	if code, resp := call(t, http.MethodGet, "http://"+diagAddr+"/readyz", "", ""); code != http.StatusOK {
		t.Fatalf("readyz during the flood: %d %s", code, resp)
	}
}
