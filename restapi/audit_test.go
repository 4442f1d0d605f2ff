package restapi

import (
	"bytes"
	"regexp"
	"strings"
	"sync"
	"testing"

	"github.com/hashicorp/go-hclog"

	"github.com/meshtrace/meshtrace/config"
)

// syncBuffer is a bytes.Buffer safe for concurrent writes.
type syncBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *syncBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *syncBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}

// Every write logs its audit line, the same through a config logger (which
// formats it itself, see config.LogConfig.Logger) as through hclog's Info.
func TestWritesLogAuditLines(t *testing.T) {
	timestamp := regexp.MustCompile(`(?m)^\S+ `)
	run := func(log hclog.Logger, out *syncBuffer) string {
		s := newTestServer(t, nil, func(c *Config) { c.Logger = log })
		for _, step := range []struct{ method, body string }{
			{"PUT", meshTrace("default", "t1", "")},
			{"PUT", meshTrace("default", "t1", "")},
			{"PUT", meshTrace("default", "t1", "")},
			{"DELETE", ""},
		} {
			if r := s.do(t, step.method, "/meshes/default/meshtraces/t1", step.body, "ok"); r.status >= 300 {
				t.Fatalf("%s: %d %s", step.method, r.status, r.body)
			}
		}
		// A dry run logs nothing.
		if r := s.do(t, "PUT", "/meshes/default/meshtraces/t2?dry-run=true", meshTrace("default", "t2", ""), "ok"); r.status != 201 {
			t.Fatalf("dry run: %d %s", r.status, r.body)
		}
		return timestamp.ReplaceAllString(out.String(), "")
	}
	var plain, fast syncBuffer
	want := run(hclog.New(&hclog.LoggerOptions{Name: "global", Output: &plain}).Named("api"), &plain)
	got := run(config.LogConfig{Level: "info"}.Logger("global", &fast).Named("api"), &fast)
	if got != want {
		t.Fatalf("config logger wrote\n%s\nhclog wrote\n%s", got, want)
	}
	lines := strings.Split(strings.TrimSuffix(got, "\n"), "\n")
	wantLines := []string{
		`[INFO]  global.api: resource created: type=MeshTrace mesh=default name=t1 rev=`,
		`[INFO]  global.api: resource updated: type=MeshTrace mesh=default name=t1 rev=`,
		`[INFO]  global.api: resource updated: type=MeshTrace mesh=default name=t1 rev=`,
		`[INFO]  global.api: resource deleted: type=MeshTrace mesh=default name=t1 rev=`,
	}
	if len(lines) != len(wantLines) {
		t.Fatalf("%d lines, want %d:\n%s", len(lines), len(wantLines), got)
	}
	for i, l := range lines {
		if !strings.HasPrefix(l, wantLines[i]) {
			t.Errorf("line %d: %q, want %q...", i, l, wantLines[i])
		}
	}
}
