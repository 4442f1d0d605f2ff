package demo

import (
	"bytes"
	"context"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/hashicorp/go-hclog"
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

func freePorts(cfg *Config) {
	cfg.GlobalAPI, cfg.GlobalKDS = "127.0.0.1:0", "127.0.0.1:0"
	for i := range cfg.Zones {
		cfg.Zones[i].API, cfg.Zones[i].XDS, cfg.Zones[i].Diagnostics = "127.0.0.1:0", "127.0.0.1:0", "127.0.0.1:0"
	}
}

func TestDemoPrintsRegionalCollectorsAndStopsOnSignal(t *testing.T) {
	cfg := DefaultConfig()
	freePorts(&cfg)
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
