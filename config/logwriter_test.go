package config

import (
	"bytes"
	"fmt"
	"io"
	"os/exec"
	"runtime"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/hashicorp/go-hclog"
)

// recordingWriter records every write; block, when set, holds the first
// write until it is closed.
type recordingWriter struct {
	mu     sync.Mutex
	buf    bytes.Buffer
	writes int
	block  chan struct{}
	inside chan struct{} // closed when the first write has started
}

func (r *recordingWriter) Write(p []byte) (int, error) {
	r.mu.Lock()
	first := r.writes == 0
	r.writes++
	r.mu.Unlock()
	if first && r.block != nil {
		close(r.inside)
		<-r.block
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.buf.Write(p)
}

func (r *recordingWriter) contents() (string, int) {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.buf.String(), r.writes
}

// Every line logged by concurrent callers is written once, whole, in each
// caller's order, and before the call that logged it returns, through
// Info or Audit.
func TestLoggerWritesEveryLineBeforeReturning(t *testing.T) {
	for _, json := range []bool{false, true} {
		t.Run(fmt.Sprintf("json=%v", json), func(t *testing.T) {
			out := &recordingWriter{}
			log := LogConfig{Level: "info", JSON: json}.Logger("test", out).Named("api")
			const callers, lines = 8, 200
			var wg sync.WaitGroup
			for c := range callers {
				wg.Go(func() {
					for i := range lines {
						if name := fmt.Sprintf("c%d-%d", c, i); c%2 == 0 {
							log.Info("resource created", "name", name)
						} else {
							log.(auditor).Audit("resource created", "MeshTrace", "default", name, int64(i))
						}
						// Out before the call returned.
						if got, _ := out.contents(); !strings.Contains(got, fmt.Sprintf("c%d-%d", c, i)) {
							t.Errorf("line c%d-%d not written when Info returned", c, i)
							return
						}
					}
				})
			}
			wg.Wait()
			got, writes := out.contents()
			all := strings.Split(strings.TrimSuffix(got, "\n"), "\n")
			if len(all) != callers*lines {
				t.Fatalf("%d lines, want %d", len(all), callers*lines)
			}
			next := make([]int, callers)
			for _, l := range all {
				var c, i int
				if !strings.Contains(l, "resource created") {
					t.Fatalf("malformed line %q", l)
				}
				if _, err := fmt.Sscanf(strings.Trim(l[strings.LastIndex(l, "name")+4:], `=":}`), "c%d-%d", &c, &i); err != nil {
					t.Fatalf("line %q: %v", l, err)
				}
				if i != next[c] {
					t.Fatalf("caller %d: line %d after %d", c, i, next[c]-1)
				}
				next[c]++
			}
			t.Logf("%d lines in %d writes", len(all), writes)
		})
	}
}

// Lines logged while a write is under way leave together in the next one.
func TestLoggerCoalescesLinesLoggedDuringAWrite(t *testing.T) {
	out := &recordingWriter{block: make(chan struct{}), inside: make(chan struct{})}
	w := newLineWriter(out)
	log := LogConfig{Level: "info"}.logger("test", w, time.Now)
	firstDone := make(chan struct{})
	go func() {
		log.Info("first")
		close(firstDone)
	}()
	<-out.inside
	const n = 10
	var wg sync.WaitGroup
	for i := range n {
		wg.Go(func() { log.Info("queued", "i", i) })
	}
	// Each queued line is in the writer before its caller waits for it.
	for {
		w.pmu.Lock()
		queued := w.queued
		w.pmu.Unlock()
		if queued == n+1 {
			break
		}
		runtime.Gosched()
	}
	close(out.block)
	<-firstDone
	wg.Wait()
	got, writes := out.contents()
	if c := strings.Count(got, "queued"); c != n {
		t.Fatalf("%d queued lines written, want %d:\n%s", c, n, got)
	}
	if writes != 2 {
		t.Fatalf("%d writes, want 2 (the first line, then the %d queued during it)", writes, n)
	}
}

// BenchmarkAuditLines: eight goroutines logging global's audit line to a
// pipe read by another process (as a control plane's stderr is), straight
// to the pipe (hclog's own lock), through lineWriter, and through
// lineWriter with Audit instead of Info. cpu-ns/line is this process's CPU
// (the reader's not included).
func BenchmarkAuditLines(b *testing.B) {
	for _, tc := range []struct {
		name   string
		logger func(out io.Writer) hclog.Logger
	}{
		{"direct", func(out io.Writer) hclog.Logger {
			return hclog.New(&hclog.LoggerOptions{Name: "global", Level: hclog.Info, Output: out})
		}},
		{"lineWriter", func(out io.Writer) hclog.Logger { return LogConfig{Level: "info"}.Logger("global", out) }},
		{"audit", func(out io.Writer) hclog.Logger { return LogConfig{Level: "info"}.Logger("global", out) }},
	} {
		b.Run(tc.name, func(b *testing.B) {
			cat := exec.Command("cat")
			in, err := cat.StdinPipe()
			if err != nil {
				b.Fatal(err)
			}
			if err := cat.Start(); err != nil {
				b.Fatal(err)
			}
			defer func() { _ = in.Close(); _ = cat.Wait() }()
			cw := &countingWriter{w: in}
			log := tc.logger(cw).Named("api")
			b.SetParallelism(4) // 8 goroutines on 2 CPUs
			var ru0, ru1 syscall.Rusage
			_ = syscall.Getrusage(syscall.RUSAGE_SELF, &ru0)
			b.ResetTimer()
			b.RunParallel(func(pb *testing.PB) {
				i := int64(0)
				// Not constants, as the API's values are not: hclog boxes each.
				typ, mesh, name := string([]byte("MeshTrace")), string([]byte("default")), string([]byte("burst-1-123"))
				a, audit := log.(auditor)
				audit = audit && tc.name == "audit"
				for pb.Next() {
					i++
					if audit {
						a.Audit("resource created", typ, mesh, name, i)
					} else {
						log.Info("resource created", "type", typ, "mesh", mesh, "name", name, "rev", i)
					}
				}
			})
			b.StopTimer()
			_ = syscall.Getrusage(syscall.RUSAGE_SELF, &ru1)
			cpu := ru1.Utime.Nano() + ru1.Stime.Nano() - ru0.Utime.Nano() - ru0.Stime.Nano()
			b.ReportMetric(float64(cpu)/float64(b.N), "cpu-ns/line")
			b.ReportMetric(float64(b.N)/float64(cw.n.Load()), "lines/write")
		})
	}
}

type countingWriter struct {
	w io.Writer
	n atomic.Int64
}

func (c *countingWriter) Write(p []byte) (int, error) {
	c.n.Add(1)
	return c.w.Write(p)
}
