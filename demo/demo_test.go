package demo

import (
	"bytes"
	"context"
	"net"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/hashicorp/go-hclog"

	"github.com/meshtrace/meshtrace/cli"
)

// syncBuffer is a bytes.Buffer safe to read while the demo writes.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// The demo runs on its default ports with 5681 taken, as on a host where
// something else serves there: it must move to free ports and print commands
// that work against where it really listens.
func TestDemoPrintsRegionalCollectorsAndStopsOnSignal(t *testing.T) {
	if ln, err := net.Listen("tcp", "127.0.0.1:5681"); err == nil {
		defer ln.Close()
	} else {
		t.Logf("127.0.0.1:5681 is already taken by another process (%v): fine for this test", err)
	}
	cfg := DefaultConfig()
	cfg.Dir = t.TempDir()
	var out syncBuffer
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	done := make(chan error, 1)
	go func() { done <- Run(ctx, cfg, &out, hclog.NewNullLogger()) }()

	deadline := time.After(90 * time.Second)
	for !strings.Contains(out.String(), "Ctrl-C stops the demo") {
		select {
		case err := <-done:
			t.Fatalf("demo ended early: %v\n%s", err, out.String())
		case <-deadline:
			t.Fatalf("demo did not get ready:\n%s", out.String())
		case <-time.After(20 * time.Millisecond):
		}
	}
	text := out.String()
	for _, want := range []string{
		"ZONE   PROXY",
		"east   backend-east     backend     Zipkin    http://east.zipkincollector:9411/api/v2/spans",
		"west   inventory-west   inventory   Zipkin    http://west.zipkincollector:9411/api/v2/spans",
		"OK: every west proxy sends to west's collector",
		"meshtracectl",
	} {
		if !strings.Contains(text, want) {
			t.Errorf("output lacks %q:\n%s", want, text)
		}
	}
	for _, line := range strings.Split(text, "\n") {
		if strings.HasPrefix(line, "east ") && strings.Contains(line, "west.zipkincollector") ||
			strings.HasPrefix(line, "west ") && strings.Contains(line, "east.zipkincollector") {
			t.Errorf("cross-region line: %q", line)
		}
	}
	checkFreePortFallback(t, text)

	cancel() // what Ctrl-C does through signal.NotifyContext
	select {
	case err := <-done:
		if err != nil {
			t.Fatalf("demo shutdown: %v", err)
		}
	case <-time.After(30 * time.Second):
		t.Fatal("demo did not stop within 30s of the signal")
	}
	if !strings.Contains(out.String(), "stopping") {
		t.Errorf("no stopping line:\n%s", out.String())
	}
}

var configSetRe = regexp.MustCompile(`meshtracectl config set --address (http://\S+) --token "\$\(cat (\S+)\)"`)

// checkFreePortFallback checks the demo said it left 5681, then runs the
// printed `config set` line and a printed command with meshtracectl.
func checkFreePortFallback(t *testing.T, text string) {
	t.Helper()
	if !strings.Contains(text, "127.0.0.1:5681 is not available") {
		t.Errorf("the demo did not say 5681 was busy:\n%s", text)
	}
	m := configSetRe.FindStringSubmatch(text)
	if m == nil {
		t.Fatalf("no config set line:\n%s", text)
	}
	address, tokenFile := m[1], m[2]
	if strings.HasSuffix(address, ":5681") || !strings.Contains(text, "global: API "+address+",") {
		t.Errorf("config set uses %s, not the address global listens on:\n%s", address, text)
	}
	token, err := os.ReadFile(tokenFile)
	if err != nil || len(bytes.TrimSpace(token)) == 0 {
		t.Fatalf("token file %s: %v %q", tokenFile, err, token)
	}
	conf := filepath.Join(t.TempDir(), "meshtracectl.yaml")
	run := func(args ...string) string {
		var stdout, stderr bytes.Buffer
		app := &cli.App{Stdin: strings.NewReader(""), Stdout: &stdout, Stderr: &stderr, ConfigPath: conf}
		if code := app.Run(context.Background(), args); code != 0 {
			t.Fatalf("meshtracectl %v: %d %s", args, code, stderr.String())
		}
		return stdout.String()
	}
	run("config", "set", "--address", address, "--token", string(token))
	if out := run("get", "meshtraces"); !strings.Contains(out, "trace-west") {
		t.Errorf("get meshtraces after the printed config set: %q", out)
	}
	run("delete", "meshtrace", "trace-east") // needs the token config set saved
}

func TestCrossRegion(t *testing.T) {
	rows := []Row{
		{Zone: "east", Proxy: "a", Collector: "http://east.zipkincollector:9411/api/v2/spans"},
		{Zone: "west", Proxy: "b", Collector: "http://east.zipkincollector:9411/api/v2/spans"},
	}
	bad := CrossRegion(rows)
	if len(bad) != 1 || !strings.Contains(bad[0], "west/b") {
		t.Fatalf("got %v", bad)
	}
}
